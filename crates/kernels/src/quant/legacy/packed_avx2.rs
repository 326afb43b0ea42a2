//! The kernels over repacked legacy weights (layout in `packed`), written once and compiled for AVX2 and for
//! AVX-512 VNNI on 256-bit registers. A block of a group unpacks to eight registers `U[k]` (lane i: row i's
//! elements 4k..4k+4, unsigned); each activation row's dword k is broadcast and multiplied with `U[k]`, so
//! eight u8×i8 dot instructions give a block's sums for all eight rows, then one subtraction of
//! `BIAS · Σy`, one conversion and one fused multiply-add by the rows' scales. Weight blocks unpack once per
//! block for up to four activation rows (prefill tiles).

use std::arch::x86_64::*;

use crate::quant::{Kind, MAX_ROWS, PREFETCH_AHEAD};

use super::packed::{GROUP, Lay};

/// Activation block bytes (Q8_0S: f16 d, i16 Σy, f32 d, f32 d·Σy, 32 × i8).
pub(super) const AB: usize = 44;

/// One repacked format: its group block's bytes, the offset its unsigned quants carry, and how they unpack.
pub(super) trait Packed {
    const BYTES: usize;
    /// value = d · (u − BIAS).
    const BIAS: i32;
    /// The quants reach 255 (Q8_0), where AVX2's `maddubs` would saturate: that path signs them back.
    const WIDE: bool;
    /// The block carries the rows' minimums `m` (8 × f16 after the scales): value = d·u + m.
    const MIN: bool = false;
    /// The format (whether its groups go in interleaved pairs: `packed::interleaved`).
    const KIND: Kind;
    /// Where the quants (Q5_0: the fifth bits, then the nibbles) start in a group's own block: after the
    /// scales, and the minimums where there are.
    const Q: usize;
    /// The eight quant registers of the group block at `b`, its fields where layout `L` puts them (see `at`).
    ///
    /// # Safety
    /// `b` points at a whole group block (of layout 1 or 2: its pair's).
    unsafe fn quants<const L: u8>(b: *const u8) -> [__m256i; 8];
}

/// Where a field `off` bytes into a group's own block, `size` long, lies in layout `L`: 0, the group's own
/// block (alone, or its half of a pair interleaved block by block); 1 and 2, the first and the second group of
/// a pair interleaved field by field (`Lay::field`). A constant, so that every load's offset is one.
pub(super) const fn at<const L: u8>(off: usize, size: usize) -> usize {
    match L {
        0 => off,
        1 => 2 * off,
        _ => 2 * off + size,
    }
}

pub(super) struct P40;
pub(super) struct P41;
pub(super) struct P50;
pub(super) struct P80;

/// The four nibble registers of the block at `b`, the first `q` bytes into a group's own block (layout `L`),
/// as eight: the low nibbles of each, then the high ones.
#[target_feature(enable = "avx2")]
unsafe fn nibbles<const L: u8>(b: *const u8, q: usize) -> [__m256i; 8] {
    let m = _mm256_set1_epi8(0x0F);
    // SAFETY: the caller hands a whole block, whose four registers of nibbles these are.
    let (p0, p1, p2, p3) = unsafe {
        (
            _mm256_loadu_si256(b.add(at::<L>(q, 32)).cast()),
            _mm256_loadu_si256(b.add(at::<L>(q + 32, 32)).cast()),
            _mm256_loadu_si256(b.add(at::<L>(q + 64, 32)).cast()),
            _mm256_loadu_si256(b.add(at::<L>(q + 96, 32)).cast()),
        )
    };
    [
        _mm256_and_si256(p0, m),
        _mm256_and_si256(p1, m),
        _mm256_and_si256(p2, m),
        _mm256_and_si256(p3, m),
        _mm256_and_si256(_mm256_srli_epi16::<4>(p0), m),
        _mm256_and_si256(_mm256_srli_epi16::<4>(p1), m),
        _mm256_and_si256(_mm256_srli_epi16::<4>(p2), m),
        _mm256_and_si256(_mm256_srli_epi16::<4>(p3), m),
    ]
}

impl Packed for P40 {
    const KIND: Kind = Kind::Q4_0;
    const BYTES: usize = 144;
    const BIAS: i32 = 8;
    const WIDE: bool = false;
    const Q: usize = 16;
    #[target_feature(enable = "avx2")]
    unsafe fn quants<const L: u8>(b: *const u8) -> [__m256i; 8] {
        // SAFETY: 128 bytes of nibbles follow the scales.
        unsafe { nibbles::<L>(b, Self::Q) }
    }
}

impl Packed for P41 {
    const KIND: Kind = Kind::Q4_1;
    const BYTES: usize = 160;
    const BIAS: i32 = 0;
    const WIDE: bool = false;
    const MIN: bool = true;
    const Q: usize = 32;
    #[target_feature(enable = "avx2")]
    unsafe fn quants<const L: u8>(b: *const u8) -> [__m256i; 8] {
        // SAFETY: 128 bytes of nibbles follow the scales and minimums.
        unsafe { nibbles::<L>(b, Self::Q) }
    }
}

impl Packed for P50 {
    const KIND: Kind = Kind::Q5_0;
    const BYTES: usize = 176;
    const BIAS: i32 = 16;
    const WIDE: bool = false;
    const Q: usize = 16;
    #[target_feature(enable = "avx2")]
    unsafe fn quants<const L: u8>(b: *const u8) -> [__m256i; 8] {
        // SAFETY: 32 bytes of fifth bits, then 128 of nibbles, follow the scales.
        let (h, n) = unsafe { (_mm256_loadu_si256(b.add(at::<L>(Self::Q, 32)).cast()), nibbles::<L>(b, Self::Q + 32)) };
        let t = _mm256_set1_epi8(0x10);
        // Bit k of each byte of h is U[k]'s fifth bit: moved to bit 4 by 16-bit shifts, which never carry a
        // byte's bit into bit 4 of the other byte for shifts of at most 4.
        let fifth = |k: __m256i| _mm256_and_si256(k, t);
        [
            _mm256_or_si256(n[0], fifth(_mm256_slli_epi16::<4>(h))),
            _mm256_or_si256(n[1], fifth(_mm256_slli_epi16::<3>(h))),
            _mm256_or_si256(n[2], fifth(_mm256_slli_epi16::<2>(h))),
            _mm256_or_si256(n[3], fifth(_mm256_slli_epi16::<1>(h))),
            _mm256_or_si256(n[4], fifth(h)),
            _mm256_or_si256(n[5], fifth(_mm256_srli_epi16::<1>(h))),
            _mm256_or_si256(n[6], fifth(_mm256_srli_epi16::<2>(h))),
            _mm256_or_si256(n[7], fifth(_mm256_srli_epi16::<3>(h))),
        ]
    }
}

impl Packed for P80 {
    const KIND: Kind = Kind::Q8_0;
    const BYTES: usize = 272;
    const BIAS: i32 = 128;
    const WIDE: bool = true;
    const Q: usize = 16;
    #[target_feature(enable = "avx2")]
    unsafe fn quants<const L: u8>(b: *const u8) -> [__m256i; 8] {
        // SAFETY: 8 × 32 bytes of quants follow the scales.
        std::array::from_fn(|k| unsafe { _mm256_loadu_si256(b.add(at::<L>(Self::Q + 32 * k, 32)).cast()) })
    }
}

/// The loops for one instruction set: `$features` for `#[target_feature]`; in scope `prep::<F>(u)` (the
/// quants as the dot instruction reads them: `(unsigned, sign source)`), `dp::<F>(acc, u, s, y)` (acc plus
/// the eight lanes' four-product sums) and `BIASED::<F>` (whether the sums still carry `BIAS`).
macro_rules! loops {
    ($features:tt) => {
        /// `out[r][i] = Σ_blocks` row i of the group at `w` (its blocks `stride` bytes apart, their fields in
        /// layout `L`, see `at`) against activation row r, over `nb` blocks; the `reach` bytes from `w` on may
        /// be prefetched.
        ///
        /// # Safety
        /// `w` holds `nb` group blocks so placed and every `acts[r]` `nb` Q8_0S blocks; `reach` bytes from `w`
        /// are one allocation.
        #[target_feature(enable = $features)]
        unsafe fn group<F: Packed, const N: usize, const L: u8>(
            (nb, stride): (usize, usize),
            w: *const u8,
            reach: usize,
            acts: [*const u8; N],
            out: &mut [[f32; GROUP]],
        ) {
            let mut acc = [_mm256_setzero_ps(); N];
            for b in 0..nb {
                // The block `PREFETCH_AHEAD` bytes on is asked for now, where the caller handed it over (the
                // groups after this one, within its part of the matrix): the hardware prefetcher alone leaves a
                // decode's weight stream well below the memory's speed. Non-temporal: a token's weights, read
                // once a step and far larger than the caches, do not push out of L2 and L3 what is read again
                // soon (the KV caches, LoRA factors, activations). Every byte up to the next block: an
                // interleaved pair's other group comes next, and its lines are shared with this one's.
                if b * stride + PREFETCH_AHEAD + stride <= reach {
                    let mut line = 0;
                    while line < stride {
                        // SAFETY: inside the `reach` bytes the caller handed over; a prefetch reads nothing.
                        unsafe { _mm_prefetch::<_MM_HINT_NTA>(w.add(b * stride + PREFETCH_AHEAD + line).cast()) };
                        line += 64;
                    }
                }
                // SAFETY: b < nb: a whole group block, its 8 scales first.
                let (dw, mw, u) = unsafe {
                    let wb = w.add(b * stride);
                    let half = |off: usize| _mm256_cvtph_ps(_mm_loadu_si128(wb.add(at::<L>(off, 16)).cast()));
                    let mw = if F::MIN { half(16) } else { dw_zero() };
                    (half(0), mw, F::quants::<L>(wb))
                };
                let (u, s) = prep::<F>(u);
                for r in 0..N {
                    // SAFETY: b < nb: a whole activation block (head, then 32 quants).
                    let (ab, y) = unsafe {
                        let ab = acts[r].add(b * AB);
                        (ab, ab.add(12).cast::<i32>())
                    };
                    // SAFETY: dword k < 8 of the block's 32 quants.
                    let bc = |k: usize| unsafe { _mm256_set1_epi32(std::ptr::read_unaligned(y.add(k))) };
                    let (mut s0, mut s1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                    s0 = dp::<F>(s0, u[0], s[0], bc(0));
                    s1 = dp::<F>(s1, u[1], s[1], bc(1));
                    s0 = dp::<F>(s0, u[2], s[2], bc(2));
                    s1 = dp::<F>(s1, u[3], s[3], bc(3));
                    s0 = dp::<F>(s0, u[4], s[4], bc(4));
                    s1 = dp::<F>(s1, u[5], s[5], bc(5));
                    s0 = dp::<F>(s0, u[6], s[6], bc(6));
                    s1 = dp::<F>(s1, u[7], s[7], bc(7));
                    let mut sum = _mm256_add_epi32(s0, s1);
                    if F::BIAS != 0 && biased::<F>() {
                        // SAFETY: the block's i16 Σy at byte 2.
                        let ysum = i32::from(unsafe { std::ptr::read_unaligned(ab.add(2).cast::<i16>()) });
                        sum = _mm256_sub_epi32(sum, _mm256_set1_epi32(F::BIAS * ysum));
                    }
                    // SAFETY: the block's f32 d at byte 4 and d·Σy at byte 8.
                    let da = unsafe { _mm256_set1_ps(std::ptr::read_unaligned(ab.add(4).cast::<f32>())) };
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(dw, da), acc[r]);
                    if F::MIN {
                        // Σ (d·u + m)·d_y·y = d·d_y·Σ u·y + m·d_y·Σy, the sum exact in the activation block.
                        // SAFETY: as above.
                        let ys = unsafe { _mm256_set1_ps(std::ptr::read_unaligned(ab.add(8).cast::<f32>())) };
                        acc[r] = _mm256_fmadd_ps(mw, ys, acc[r]);
                    }
                }
            }
            for (o, a) in out.iter_mut().zip(acc) {
                // SAFETY: o holds GROUP = 8 f32.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
            }
        }

        /// Dispatches on the activation row count, `MAX_ROWS` at a time; blocks past the shortest input are
        /// not read. The group's blocks lie as `lay` says (at least a block apart; a paired group's, a pair's
        /// block apart); bytes of `w` past its `cols / 32` blocks are only prefetched (the caller's permission
        /// to ask for the groups that follow).
        #[target_feature(enable = $features)]
        pub(in crate::quant::legacy) fn dot<F: Packed>(
            cols: usize,
            w: &[u8],
            lay: Lay,
            acts: &[&[u8]],
            out: &mut [[f32; GROUP]],
        ) {
            let shortest = acts.iter().map(|a| a.len() / AB).min().unwrap_or(0);
            // A pair's group read block by block is its own blocks, a block further in for the second; read
            // field by field, its fields lie across the pair's whole block.
            let (w, layout, span) = match lay.half {
                Some(h) if !lay.fields => (w.get(h * F::BYTES..).unwrap_or(&[]), 0, F::BYTES),
                Some(h) => (w, 1 + u8::from(h == 1), 2 * F::BYTES),
                None => (w, 0, F::BYTES),
            };
            let stride = lay.stride.max(1);
            let fit = if w.len() < span { 0 } else { (w.len() - span) / stride + 1 };
            let nb = (cols / 32).min(fit).min(shortest);
            for (a, o) in acts.chunks(MAX_ROWS).zip(out.chunks_mut(MAX_ROWS)) {
                let at = (nb, stride);
                // SAFETY: nb blocks `stride` apart, each `span` long, fit in w and nb in every activation row
                // (checked above).
                unsafe {
                    match layout {
                        0 => rows::<F, 0>(at, w, a, o),
                        1 => rows::<F, 1>(at, w, a, o),
                        _ => rows::<F, 2>(at, w, a, o),
                    }
                }
            }
        }

        /// `group` for the activation rows `a` (at most `MAX_ROWS`), its row count a constant.
        ///
        /// # Safety
        /// As `group`.
        #[target_feature(enable = $features)]
        unsafe fn rows<F: Packed, const L: u8>(at: (usize, usize), w: &[u8], a: &[&[u8]], o: &mut [[f32; GROUP]]) {
            let p = |r: usize| a[r].as_ptr();
            // SAFETY: the caller's bounds.
            unsafe {
                match a.len().min(o.len()) {
                    1 => group::<F, 1, L>(at, w.as_ptr(), w.len(), [p(0)], o),
                    2 => group::<F, 2, L>(at, w.as_ptr(), w.len(), [p(0), p(1)], o),
                    3 => group::<F, 3, L>(at, w.as_ptr(), w.len(), [p(0), p(1), p(2)], o),
                    _ => group::<F, 4, L>(at, w.as_ptr(), w.len(), [p(0), p(1), p(2), p(3)], o),
                }
            }
        }
    };
}

#[inline(always)]
fn dw_zero() -> __m256 {
    // SAFETY: only reached inside the kernels' AVX2 target-feature functions.
    unsafe { _mm256_setzero_ps() }
}

/// AVX2: `maddubs` then `madd` by ones. The unsigned 4- and 5-bit quants go in as they are (pairs ≤ 2·31·127);
/// Q8_0's would saturate, so they are signed back (`u ^ 0x80`) and multiplied as |q| × sign-moved y, which
/// leaves no bias to subtract.
pub(super) mod avx2 {
    use super::*;

    #[target_feature(enable = "avx2")]
    fn prep<F: Packed>(u: [__m256i; 8]) -> ([__m256i; 8], [__m256i; 8]) {
        if !F::WIDE {
            return (u, u);
        }
        let flip = _mm256_set1_epi8(0x80_u8 as i8);
        let q = [
            _mm256_xor_si256(u[0], flip),
            _mm256_xor_si256(u[1], flip),
            _mm256_xor_si256(u[2], flip),
            _mm256_xor_si256(u[3], flip),
            _mm256_xor_si256(u[4], flip),
            _mm256_xor_si256(u[5], flip),
            _mm256_xor_si256(u[6], flip),
            _mm256_xor_si256(u[7], flip),
        ];
        (
            [
                _mm256_abs_epi8(q[0]),
                _mm256_abs_epi8(q[1]),
                _mm256_abs_epi8(q[2]),
                _mm256_abs_epi8(q[3]),
                _mm256_abs_epi8(q[4]),
                _mm256_abs_epi8(q[5]),
                _mm256_abs_epi8(q[6]),
                _mm256_abs_epi8(q[7]),
            ],
            q,
        )
    }

    #[target_feature(enable = "avx2")]
    fn dp<F: Packed>(acc: __m256i, u: __m256i, s: __m256i, y: __m256i) -> __m256i {
        let y = if F::WIDE { _mm256_sign_epi8(y, s) } else { y };
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1)))
    }

    fn biased<F: Packed>() -> bool {
        !F::WIDE
    }

    loops!("avx2,fma,f16c");
}

/// AVX-512 VNNI on 256-bit registers: `vpdpbusd` takes the unsigned quants of every format whole.
pub(super) mod vnni {
    use super::*;

    #[target_feature(enable = "avx2")]
    fn prep<F: Packed>(u: [__m256i; 8]) -> ([__m256i; 8], [__m256i; 8]) {
        (u, u)
    }

    #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
    fn dp<F: Packed>(acc: __m256i, u: __m256i, _s: __m256i, y: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, y)
    }

    fn biased<F: Packed>() -> bool {
        true
    }

    loops!("avx2,fma,f16c,avx512vnni,avx512vl");
}
