//! Float weights (f32, f16, bf16) against f32 activations: the scalar reference kernels (the AVX2 ones are in
//! `plain_avx2`).

use half::{bf16, f16};

use super::{Kernel, Kind};

/// Element `c` of a row of `kind` (f32, f16 or bf16, little-endian); 0 past the end.
#[inline(always)]
fn at(kind: Kind, w: &[u8], c: usize) -> f32 {
    match kind {
        Kind::F16 => w.get(2 * c..2 * c + 2).map_or(0.0, |b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
        Kind::BF16 => w.get(2 * c..2 * c + 2).map_or(0.0, |b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        _ => w.get(4 * c..4 * c + 4).map_or(0.0, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    }
}

#[inline(always)]
fn dequantize(kind: Kind, w: &[u8], out: &mut [f32]) {
    for (c, o) in out.iter_mut().enumerate() {
        *o = at(kind, w, c);
    }
}

#[inline(always)]
fn dot(kind: Kind, cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    for o in out.iter_mut() {
        *o = 0.0;
    }
    for c in 0..cols {
        let x = at(kind, w, c);
        for (o, a) in out.iter_mut().zip(acts) {
            *o += x * at(Kind::F32, a, c);
        }
    }
}

macro_rules! plain_kernel {
    ($dot:ident, $deq:ident, $kind:expr) => {
        fn $deq(w: &[u8], out: &mut [f32]) {
            dequantize($kind, w, out)
        }
        fn $dot(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
            dot($kind, cols, w, acts, out)
        }
    };
}

plain_kernel!(dot_f32, deq_f32, Kind::F32);
plain_kernel!(dot_f16, deq_f16, Kind::F16);
plain_kernel!(dot_bf16, deq_bf16, Kind::BF16);

pub fn reference(kind: Kind) -> Kernel {
    match kind {
        Kind::F16 => Kernel { dot: dot_f16, dequantize: deq_f16 },
        Kind::BF16 => Kernel { dot: dot_bf16, dequantize: deq_bf16 },
        _ => Kernel { dot: dot_f32, dequantize: deq_f32 },
    }
}

/// The AVX2 kernel of `kind`; only called once `simd_available()` said yes.
pub fn fast(kind: Kind) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        super::plain_avx2::kernel(kind)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        reference(kind)
    }
}
