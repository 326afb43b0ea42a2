//! The legacy 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): their byte layouts as ggml writes
//! them, and the choice between the scalar reference kernels and the AVX2 ones.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod scalar;

use half::f16;

use super::{Kernel, Kind};

/// Elements per block of every legacy format.
const QK: usize = 32;

/// The f16 at byte `at` of a block (scales `d`, `m` and the Q8_1 sum `s` are little-endian f16).
fn f16_at(b: &[u8], at: usize) -> f32 {
    match b.get(at..at + 2) {
        Some(h) => f16::from_le_bytes([h[0], h[1]]).to_f32(),
        None => 0.0,
    }
}

pub fn reference(kind: Kind) -> Kernel {
    scalar::kernel(kind)
}

/// The AVX2 kernel of `kind`; only called once `simd_available()` said yes.
pub fn fast(kind: Kind) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        avx2::kernel(kind)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        reference(kind)
    }
}
