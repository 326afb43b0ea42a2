//! The legacy formats on x86: how each block unpacks to 32 bytes of quants in a 256-bit register (AVX2),
//! and the kernel tables of the two instruction sets the block loops in `avx2_rows` are compiled for.

use std::arch::x86_64::*;

use super::{avx2_rows, scalar};
use crate::quant::{Kernel, Kind};

/// One weight format: its block size, whether it carries a minimum (and so reads Q8_1 activations), and
/// how its quants unpack.
pub(super) trait Format {
    const BYTES: usize;
    /// The block has `m` (value = d·q + m, q unsigned): the dot reads the Q8_1 activation sum `s`.
    const MIN: bool;
    /// Where the quants (and the Q5 fifth bits) start.
    const QS: usize;
    /// The 32 quants of the block at `b` as bytes: i8 for the symmetric formats, u8 for the ones with `m`.
    ///
    /// # Safety
    /// `b` points at `BYTES` readable bytes.
    unsafe fn quants(b: *const u8) -> __m256i;
}

/// 16 bytes of nibbles to 32 bytes: low nibbles are elements 0..16, high nibbles 16..32.
#[target_feature(enable = "avx2")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller hands 16 readable bytes; loadu has no alignment need.
    let lo = unsafe { _mm_loadu_si128(p.cast()) };
    let hi = _mm_srli_epi16(lo, 4);
    _mm256_and_si256(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(0x0F))
}

/// 0xFF in byte j where bit j of the little-endian u32 at `p` is set (the Q5 fifth bits).
#[target_feature(enable = "avx2")]
unsafe fn bit_bytes(p: *const u8) -> __m256i {
    // SAFETY: the caller hands 4 readable bytes.
    let qh = unsafe { std::ptr::read_unaligned(p.cast::<u32>()) }.to_le();
    // Byte j of the result takes byte j/8 of qh; then each keeps only its own bit.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0),
    );
    let own_bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, own_bit), own_bit)
}

pub(super) struct Q40;
pub(super) struct Q41;
pub(super) struct Q50;
pub(super) struct Q51;
pub(super) struct Q80;

impl Format for Q40 {
    const BYTES: usize = 18;
    const MIN: bool = false;
    const QS: usize = 2;
    #[target_feature(enable = "avx2")]
    unsafe fn quants(b: *const u8) -> __m256i {
        // SAFETY: the block holds 16 bytes of nibbles from QS.
        _mm256_sub_epi8(unsafe { nibbles(b.add(Self::QS)) }, _mm256_set1_epi8(8))
    }
}

impl Format for Q41 {
    const BYTES: usize = 20;
    const MIN: bool = true;
    const QS: usize = 4;
    #[target_feature(enable = "avx2")]
    unsafe fn quants(b: *const u8) -> __m256i {
        // SAFETY: the block holds 16 bytes of nibbles from QS.
        unsafe { nibbles(b.add(Self::QS)) }
    }
}

impl Format for Q50 {
    const BYTES: usize = 22;
    const MIN: bool = false;
    const QS: usize = 6;
    #[target_feature(enable = "avx2")]
    unsafe fn quants(b: *const u8) -> __m256i {
        // SAFETY: qh is bytes 2..6 of the block, the nibbles 16 bytes from QS.
        let (low, high) = unsafe { (nibbles(b.add(Self::QS)), bit_bytes(b.add(2))) };
        // q - 16 as i8: where the fifth bit is clear, set the top four bits (x | 0xF0 = x - 16).
        _mm256_or_si256(low, _mm256_andnot_si256(high, _mm256_set1_epi8(0xF0_u8 as i8)))
    }
}

impl Format for Q51 {
    const BYTES: usize = 24;
    const MIN: bool = true;
    const QS: usize = 8;
    #[target_feature(enable = "avx2")]
    unsafe fn quants(b: *const u8) -> __m256i {
        // SAFETY: qh is bytes 4..8 of the block, the nibbles 16 bytes from QS.
        let (low, high) = unsafe { (nibbles(b.add(Self::QS)), bit_bytes(b.add(4))) };
        _mm256_or_si256(low, _mm256_and_si256(high, _mm256_set1_epi8(0x10)))
    }
}

impl Format for Q80 {
    const BYTES: usize = 34;
    const MIN: bool = false;
    const QS: usize = 2;
    #[target_feature(enable = "avx2")]
    unsafe fn quants(b: *const u8) -> __m256i {
        // SAFETY: the block holds 32 quant bytes from QS.
        unsafe { _mm256_loadu_si256(b.add(Self::QS).cast()) }
    }
}

#[target_feature(enable = "avx2")]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The little-endian i32 at `p` (a block's two f16 heads).
///
/// # Safety
/// `p` points at 4 readable bytes.
#[inline(always)]
pub(super) unsafe fn heads(p: *const u8) -> i32 {
    // SAFETY: as the caller promised; read_unaligned has no alignment need.
    unsafe { std::ptr::read_unaligned(p.cast::<i32>()) }
}

macro_rules! kernels {
    ($($kind:ident => $fmt:ty, $avx2:ident, $vnni:ident;)*) => {
        $(
            fn $avx2(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
                // SAFETY: `kernel` hands these out only once `simd_available()` found AVX2, FMA and F16C.
                unsafe { avx2_rows::avx2::dot::<$fmt>(cols, w, acts, out) }
            }
            fn $vnni(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
                // SAFETY: `kernel_vnni` hands these out only once `vnni_available()` also said yes.
                unsafe { avx2_rows::vnni::dot::<$fmt>(cols, w, acts, out) }
            }
        )*

        /// The AVX2 kernel of `kind`; only called once `simd_available()` said yes.
        pub fn kernel(kind: Kind) -> Kernel {
            let dequantize = scalar::kernel(kind).dequantize;
            match kind {
                $(Kind::$kind => Kernel { dot: $avx2, dequantize },)*
                _ => scalar::kernel(kind),
            }
        }

        /// The AVX-512 VNNI kernel of `kind`; only called once `simd_available()` and `vnni_available()`
        /// said yes.
        pub fn kernel_vnni(kind: Kind) -> Kernel {
            let dequantize = scalar::kernel(kind).dequantize;
            match kind {
                $(Kind::$kind => Kernel { dot: $vnni, dequantize },)*
                _ => scalar::kernel(kind),
            }
        }
    };
}

kernels! {
    Q4_0 => Q40, dot_q4_0, vnni_q4_0;
    Q4_1 => Q41, dot_q4_1, vnni_q4_1;
    Q5_0 => Q50, dot_q5_0, vnni_q5_0;
    Q5_1 => Q51, dot_q5_1, vnni_q5_1;
    Q8_0 => Q80, dot_q8_0, vnni_q8_0;
}

/// Whether this CPU has AVX-512 VNNI on 256-bit registers (`vpdpbusd ymm`: the u8×i8 products and their
/// sums in one instruction), checked at run time.
pub fn vnni_available() -> bool {
    std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512vl")
}
