//! The legacy 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): their byte layouts as ggml writes
//! them, and the choice between the scalar reference kernels and the SIMD ones (AVX2, or AVX-512 VNNI on
//! 256-bit registers where the CPU has it: the same loops with one `vpdpbusd` for the u8×i8 sums; and, for
//! several activation rows, two repacked groups at once on 512-bit registers).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_rows;
pub mod packed;
#[cfg(target_arch = "x86_64")]
mod packed_avx2;
#[cfg(target_arch = "x86_64")]
mod packed_avx512;
mod scalar;

use half::f16;

use super::{GroupFn, Kernel, Kind, PairFn};

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

/// The fastest SIMD kernel of `kind` (AVX-512 VNNI where the CPU has it, else AVX2); only called once
/// `simd_available()` said yes.
pub fn fast(kind: Kind) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::vnni_available() { avx2::kernel_vnni(kind) } else { avx2::kernel(kind) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        reference(kind)
    }
}

/// Every SIMD kernel this CPU runs for `kind`, named; only called once `simd_available()` said yes.
pub fn variants(kind: Kind) -> Vec<(&'static str, Kernel)> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut all = vec![("avx2", avx2::kernel(kind))];
        if avx2::vnni_available() {
            all.push(("avx512vnni", avx2::kernel_vnni(kind)));
        }
        all
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kind;
        Vec::new()
    }
}

/// Every repacked-group kernel this CPU runs for `kind`, named, fastest last; empty where `kind` does not
/// repack or the CPU lacks AVX2 (then the weights stay in rows).
pub fn group_variants(kind: Kind) -> Vec<(&'static str, GroupFn)> {
    #[cfg(target_arch = "x86_64")]
    {
        use packed_avx2::{P40, P41, P50, P80};
        macro_rules! wrap {
            ($($name:ident => $isa:ident, $fmt:ty;)*) => {
                $(
                    fn $name(cols: usize, w: &[u8], lay: packed::Lay, acts: &[&[u8]], out: &mut [[f32; packed::GROUP]]) {
                        // SAFETY: handed out below only once simd_available() found AVX2, FMA and F16C (and
                        // vnni_available() for the VNNI ones).
                        unsafe { packed_avx2::$isa::dot::<$fmt>(cols, w, lay, acts, out) }
                    }
                )*
            };
        }
        wrap! {
            avx2_q4_0 => avx2, P40; avx2_q4_1 => avx2, P41; avx2_q5_0 => avx2, P50; avx2_q8_0 => avx2, P80;
            vnni_q4_0 => vnni, P40; vnni_q4_1 => vnni, P41; vnni_q5_0 => vnni, P50; vnni_q8_0 => vnni, P80;
        }
        if packed::block_bytes(kind).is_none() || !super::simd_available() {
            return Vec::new();
        }
        let (a, v): (GroupFn, GroupFn) = match kind {
            Kind::Q4_0 => (avx2_q4_0, vnni_q4_0),
            Kind::Q4_1 => (avx2_q4_1, vnni_q4_1),
            Kind::Q5_0 => (avx2_q5_0, vnni_q5_0),
            _ => (avx2_q8_0, vnni_q8_0),
        };
        let mut all = vec![("avx2", a)];
        if avx2::vnni_available() {
            all.push(("avx512vnni", v));
        }
        all
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kind;
        Vec::new()
    }
}

/// The kernel that computes the two groups of an interleaved pair at once (AVX-512 F, BW and VNNI, the same bits
/// as the group kernels); None where `kind` does not repack or the CPU lacks those.
pub fn pair_variant(kind: Kind) -> Option<PairFn> {
    #[cfg(target_arch = "x86_64")]
    {
        use packed_avx2::{P40, P41, P50, P80};
        macro_rules! wrap {
            ($($name:ident => $fmt:ty;)*) => {
                $(
                    fn $name(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [[f32; packed::GROUP]]) {
                        // SAFETY: handed out below only once packed_avx512::available() said yes.
                        unsafe { packed_avx512::dot::<$fmt>(cols, w, acts, out) }
                    }
                )*
            };
        }
        wrap! { pair_q4_0 => P40; pair_q4_1 => P41; pair_q5_0 => P50; pair_q8_0 => P80; }
        if packed::block_bytes(kind).is_none() || !packed_avx512::available() {
            return None;
        }
        Some(match kind {
            Kind::Q4_0 => pair_q4_0,
            Kind::Q4_1 => pair_q4_1,
            Kind::Q5_0 => pair_q5_0,
            _ => pair_q8_0,
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kind;
        None
    }
}
