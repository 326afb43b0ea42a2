//! Float weights (f32, f16, bf16) against f32 activations.

use half::{bf16, f16};

use super::{Kernel, Kind};

fn load(kind: Kind, w: &[u8], out: &mut [f32]) {
    match kind {
        Kind::F16 => {
            for (o, b) in out.iter_mut().zip(w.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        Kind::BF16 => {
            for (o, b) in out.iter_mut().zip(w.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        _ => {
            for (o, b) in out.iter_mut().zip(w.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
}

fn as_f32(a: &[u8]) -> impl Iterator<Item = f32> + '_ {
    a.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

macro_rules! plain_kernel {
    ($dot:ident, $deq:ident, $kind:expr) => {
        fn $deq(w: &[u8], out: &mut [f32]) {
            load($kind, w, out)
        }
        fn $dot(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
            let mut row = vec![0f32; cols];
            load($kind, w, &mut row);
            for (o, a) in out.iter_mut().zip(acts) {
                *o = row.iter().zip(as_f32(a)).map(|(x, y)| x * y).sum();
            }
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

pub fn fast(kind: Kind) -> Kernel {
    reference(kind)
}
