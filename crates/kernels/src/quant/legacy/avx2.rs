//! AVX2+FMA(+F16C) kernels of the legacy formats: each weight block is unpacked once to 32 bytes of quants
//! and multiplied against the same block of 1..=4 activation rows (`_mm256_maddubs_epi16`, u8 × i8, with
//! the sign moved onto the activations for the signed formats), so prefill's 4-row tiles read each weight
//! byte once. Decode (1 row) is bound by memory: two block accumulators hide the FMA latency and the loads
//! stream through the row in order.

use std::arch::x86_64::*;

use super::{QK, scalar};
use crate::quant::{Kernel, Kind, MAX_ROWS};

/// One weight format: its block size, whether it carries a minimum (and so reads Q8_1 activations), and
/// how its quants unpack.
trait Format {
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

struct Q40;
struct Q41;
struct Q50;
struct Q51;
struct Q80;

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
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The little-endian i32 at `p` (a block's two f16 heads).
///
/// # Safety
/// `p` points at 4 readable bytes.
#[inline(always)]
unsafe fn heads(p: *const u8) -> i32 {
    // SAFETY: as the caller promised; read_unaligned has no alignment need.
    unsafe { std::ptr::read_unaligned(p.cast::<i32>()) }
}

/// Block `$i` of the weight row against block `$i` of each activation row, into `$acc` and `$mins`.
macro_rules! block {
    ($f:ty, $n:expr, $w:expr, $acts:expr, $i:expr, $acc:expr, $mins:expr) => {{
        let ab_bytes = if <$f>::MIN { 36 } else { 34 };
        // SAFETY: `$i` < the block count the caller checked every row holds, so each pointer below is the
        // start of a whole block (its heads are its first 4 bytes, its 32 quants its last).
        let (x, wh, ab) = unsafe {
            let wb = $w.add($i * <$f>::BYTES);
            (<$f>::quants(wb), heads(wb), $acts.map(|a| a.add($i * ab_bytes)))
        };
        // SAFETY: as above.
        let head = |r: usize| ab.get(r).map_or(0, |&p| unsafe { heads(p) });
        // Every row's (d, s) in one conversion, times the weight's (d, m): lane 2r is d_w·d_r, lane 2r+1 m·s_r
        // (junk for the formats without m, whose bytes 2..4 are quants, and then unused).
        let scales = _mm256_mul_ps(
            _mm256_cvtph_ps(_mm_set_epi32(head(3), head(2), head(1), head(0))),
            _mm256_cvtph_ps(_mm_set1_epi32(wh)),
        );
        if <$f>::MIN {
            $mins = _mm256_add_ps($mins, scales);
        }
        // maddubs reads its first operand unsigned: signed quants give it |x| and hand their sign to y.
        let ux = if <$f>::MIN { x } else { _mm256_sign_epi8(x, x) };
        let ones = _mm256_set1_epi16(1);
        for r in 0..$n {
            // SAFETY: as above.
            let y = unsafe { _mm256_loadu_si256(ab[r].add(ab_bytes - QK).cast()) };
            let y = if <$f>::MIN { y } else { _mm256_sign_epi8(y, x) };
            let sum = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ux, y), ones));
            let d = _mm256_permutevar8x32_ps(scales, _mm256_set1_epi32(2 * r as i32));
            $acc[r] = _mm256_fmadd_ps(d, sum, $acc[r]);
        }
    }};
}

/// `out[r] = Σ blocks` of the weight row at `w` against the `N` activation rows, over `nb` blocks.
///
/// # Safety
/// `w` holds `nb` weight blocks and every `acts[r]` `nb` activation blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows<F: Format, const N: usize>(nb: usize, w: *const u8, acts: [*const u8; N], out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); N];
    let mut mins = _mm256_setzero_ps();
    let mut i = 0;
    if N <= 2 {
        // Few rows leave the FMA chain short of work: a second accumulator takes the odd blocks.
        let mut acc2 = [_mm256_setzero_ps(); N];
        while i + 1 < nb {
            block!(F, N, w, acts, i, acc, mins);
            block!(F, N, w, acts, i + 1, acc2, mins);
            i += 2;
        }
        for r in 0..N {
            acc[r] = _mm256_add_ps(acc[r], acc2[r]);
        }
    }
    while i < nb {
        block!(F, N, w, acts, i, acc, mins);
        i += 1;
    }
    let mut m = [0f32; 8];
    if F::MIN {
        // SAFETY: m holds 8 f32.
        unsafe { _mm256_storeu_ps(m.as_mut_ptr(), mins) };
    }
    for (r, o) in out.iter_mut().enumerate().take(N) {
        *o = hsum(acc[r]) + m[2 * r + 1];
    }
}

/// Dispatches on the row count, 4 rows at a time; blocks past the shortest input are not read.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot<F: Format>(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    let ab_bytes = if F::MIN { 36 } else { 34 };
    let shortest = acts.iter().map(|a| a.len() / ab_bytes).min().unwrap_or(0);
    let nb = (cols / QK).min(w.len() / F::BYTES).min(shortest);
    for (a, o) in acts.chunks(MAX_ROWS).zip(out.chunks_mut(MAX_ROWS)) {
        let p = |r: usize| a[r].as_ptr();
        // SAFETY: nb blocks fit in w and in every activation row (checked above).
        unsafe {
            match a.len().min(o.len()) {
                1 => rows::<F, 1>(nb, w.as_ptr(), [p(0)], o),
                2 => rows::<F, 2>(nb, w.as_ptr(), [p(0), p(1)], o),
                3 => rows::<F, 3>(nb, w.as_ptr(), [p(0), p(1), p(2)], o),
                _ => rows::<F, 4>(nb, w.as_ptr(), [p(0), p(1), p(2), p(3)], o),
            }
        }
    }
}

macro_rules! kernels {
    ($($kind:ident => $fmt:ty, $name:ident;)*) => {
        $(
            fn $name(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
                // SAFETY: `kernel` hands these out only once `simd_available()` found AVX2, FMA and F16C.
                unsafe { dot::<$fmt>(cols, w, acts, out) }
            }
        )*

        /// The AVX2 kernel of `kind`; only called once `simd_available()` said yes.
        pub fn kernel(kind: Kind) -> Kernel {
            let dequantize = scalar::kernel(kind).dequantize;
            match kind {
                $(Kind::$kind => Kernel { dot: $name, dequantize },)*
                _ => scalar::kernel(kind),
            }
        }
    };
}

kernels! {
    Q4_0 => Q40, dot_q4_0;
    Q4_1 => Q41, dot_q4_1;
    Q5_0 => Q50, dot_q5_0;
    Q5_1 => Q51, dot_q5_1;
    Q8_0 => Q80, dot_q8_0;
}
