//! K-quant weights (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: 256-element super-blocks) against Q8_K activations: the
//! scalar reference kernels, the AVX2+FMA ones, and the Q8_K activation quantizer.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod blocks;
mod q8k;
#[cfg(test)]
mod tests;

pub use q8k::{quantize_q8_k, quantize_scalar as quantize_q8_k_scalar};

use super::{Kernel, Kind, MAX_ROWS};
use blocks::ACT_BYTES;

/// Whether `cols` is `nb` whole blocks, `nb` blocks of `bytes` each fit in `w`, each activation row holds
/// `nb` Q8_K blocks, and `out` has a slot per row: the kernels' contract, checked once per call so that a
/// caller's slip gives NaN outputs, never a read out of bounds.
fn shapes_fit(cols: usize, bytes: usize, nb: usize, w: &[u8], acts: &[&[u8]], out: &[f32]) -> bool {
    nb * blocks::QK == cols
        && (1..=MAX_ROWS).contains(&acts.len())
        && out.len() >= acts.len()
        && w.len() >= nb * bytes
        && acts.iter().all(|a| a.len() >= nb * ACT_BYTES)
}

macro_rules! scalar_kernel {
    ($dot:ident, $deq:ident, $kind:expr) => {
        fn $dot(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
            blocks::dot($kind, cols, w, acts, out)
        }
        fn $deq(w: &[u8], out: &mut [f32]) {
            blocks::dequantize($kind, w, out)
        }
    };
}

scalar_kernel!(dot_q2k, deq_q2k, Kind::Q2_K);
scalar_kernel!(dot_q3k, deq_q3k, Kind::Q3_K);
scalar_kernel!(dot_q4k, deq_q4k, Kind::Q4_K);
scalar_kernel!(dot_q5k, deq_q5k, Kind::Q5_K);
scalar_kernel!(dot_q6k, deq_q6k, Kind::Q6_K);

pub fn reference(kind: Kind) -> Kernel {
    match kind {
        Kind::Q2_K => Kernel { dot: dot_q2k, dequantize: deq_q2k },
        Kind::Q3_K => Kernel { dot: dot_q3k, dequantize: deq_q3k },
        Kind::Q4_K => Kernel { dot: dot_q4k, dequantize: deq_q4k },
        Kind::Q5_K => Kernel { dot: dot_q5k, dequantize: deq_q5k },
        Kind::Q6_K => Kernel { dot: dot_q6k, dequantize: deq_q6k },
        _ => super::plain::reference(kind),
    }
}

/// The AVX2 dot products (dequantize stays scalar: it is not on the hot path). Called only once
/// `simd_available()` said yes.
pub fn fast(kind: Kind) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        let base = reference(kind);
        match avx2::dot_fn(kind) {
            Some(dot) => Kernel { dot, ..base },
            None => base,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        reference(kind)
    }
}
