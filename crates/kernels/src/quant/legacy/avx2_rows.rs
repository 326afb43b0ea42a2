//! The block loops of the legacy SIMD kernels, written once and compiled twice: for AVX2 (u8×i8 products
//! by `maddubs` then `madd`) and for AVX-512 VNNI on 256-bit registers (one `vpdpbusd`). Each weight block
//! is unpacked once and multiplied against the same block of 1..=4 activation rows, so prefill's 4-row tiles
//! read each weight byte once; decode (1 row) streams the row in order with two block accumulators to hide
//! the FMA latency. At about 12 GB/s of Q4_1 a core (benches/dot.rs, this machine) two cores come near the
//! memory's speed.

use std::arch::x86_64::*;

use super::QK;
use super::avx2::{Format, heads, hsum};
use crate::quant::MAX_ROWS;

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
        // The u8×i8 products read x unsigned: signed quants give |x| and hand their sign to y.
        let ux = if <$f>::MIN { x } else { _mm256_sign_epi8(x, x) };
        for r in 0..$n {
            // SAFETY: as above.
            let y = unsafe { _mm256_loadu_si256(ab[r].add(ab_bytes - QK).cast()) };
            let y = if <$f>::MIN { y } else { _mm256_sign_epi8(y, x) };
            let sum = _mm256_cvtepi32_ps(sum_u8i8(ux, y));
            let d = _mm256_permutevar8x32_ps(scales, _mm256_set1_epi32(2 * r as i32));
            $acc[r] = _mm256_fmadd_ps(d, sum, $acc[r]);
        }
    }};
}

/// The loops for one instruction set: `$features` for `#[target_feature]`, `sum_u8i8(u, y)` in scope giving
/// the eight i32 sums of four u8×i8 products each.
macro_rules! loops {
    ($features:tt) => {
        /// One activation row (decode) of a format with m, two blocks a step: both blocks' weight and activation
        /// heads go through one F16C conversion and one multiply, and each block has its own accumulator.
        ///
        /// # Safety
        /// `w` holds `nb` weight blocks and `a` `nb` activation blocks.
        #[target_feature(enable = $features)]
        unsafe fn row1<F: Format>(nb: usize, w: *const u8, a: *const u8, out: &mut [f32]) {
            let ab_bytes = if F::MIN { 36 } else { 34 };
            let (mut acc0, mut acc1, mut mins) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 1 < nb {
                // SAFETY: i + 1 < nb: blocks i and i + 1 of both rows are whole.
                let (x0, x1, y0, y1, h) = unsafe {
                    let (w0, w1) = (w.add(i * F::BYTES), w.add((i + 1) * F::BYTES));
                    let (a0, a1) = (a.add(i * ab_bytes), a.add((i + 1) * ab_bytes));
                    (
                        F::quants(w0),
                        F::quants(w1),
                        _mm256_loadu_si256(a0.add(ab_bytes - QK).cast()),
                        _mm256_loadu_si256(a1.add(ab_bytes - QK).cast()),
                        _mm_set_epi32(heads(a1), heads(a0), heads(w1), heads(w0)),
                    )
                };
                // [dw0, mw0, dw1, mw1 | da0, sa0, da1, sa1] times its own halves swapped: lanes 0..4 hold
                // dw0·da0, mw0·sa0, dw1·da1, mw1·sa1 (the m lanes junk for the formats without m).
                let f = _mm256_cvtph_ps(h);
                let s = _mm256_mul_ps(f, _mm256_permute2f128_ps::<1>(f, f));
                if F::MIN {
                    mins = _mm256_add_ps(mins, s);
                }
                let (u0, v0) = if F::MIN { (x0, y0) } else { (_mm256_sign_epi8(x0, x0), _mm256_sign_epi8(y0, x0)) };
                let (u1, v1) = if F::MIN { (x1, y1) } else { (_mm256_sign_epi8(x1, x1), _mm256_sign_epi8(y1, x1)) };
                let sum0 = _mm256_cvtepi32_ps(sum_u8i8(u0, v0));
                let sum1 = _mm256_cvtepi32_ps(sum_u8i8(u1, v1));
                acc0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm256_castps256_ps128(s)), sum0, acc0);
                acc1 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(s, _mm256_set1_epi32(2)), sum1, acc1);
                i += 2;
            }
            let mut m = [0f32; 8];
            if F::MIN {
                // SAFETY: m holds 8 f32.
                unsafe { _mm256_storeu_ps(m.as_mut_ptr(), mins) };
            }
            let mut tail = [_mm256_setzero_ps()];
            let mut tail_min = _mm256_setzero_ps();
            if i < nb {
                block!(F, 1, w, [a], i, tail, tail_min);
            }
            let mut t = [0f32; 8];
            if F::MIN {
                // SAFETY: t holds 8 f32.
                unsafe { _mm256_storeu_ps(t.as_mut_ptr(), tail_min) };
            }
            if let Some(o) = out.first_mut() {
                *o = hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), tail[0])) + (m[1] + m[3]) + t[1];
            }
        }

        /// `out[r] = Σ blocks` of the weight row at `w` against the `N` activation rows, over `nb` blocks.
        ///
        /// # Safety
        /// `w` holds `nb` weight blocks and every `acts[r]` `nb` activation blocks.
        #[target_feature(enable = $features)]
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
        #[target_feature(enable = $features)]
        pub(in crate::quant::legacy) fn dot<F: Format>(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
            let ab_bytes = if F::MIN { 36 } else { 34 };
            let shortest = acts.iter().map(|a| a.len() / ab_bytes).min().unwrap_or(0);
            let nb = (cols / QK).min(w.len() / F::BYTES).min(shortest);
            for (a, o) in acts.chunks(MAX_ROWS).zip(out.chunks_mut(MAX_ROWS)) {
                let p = |r: usize| a[r].as_ptr();
                // SAFETY: nb blocks fit in w and in every activation row (checked above).
                unsafe {
                    match a.len().min(o.len()) {
                        // The paired path pays off where the heads carry m too (A/B: +4-8% on Q4_1, -2-8% on the others).
                        1 if F::MIN => row1::<F>(nb, w.as_ptr(), p(0), o),
                        1 => rows::<F, 1>(nb, w.as_ptr(), [p(0)], o),
                        2 => rows::<F, 2>(nb, w.as_ptr(), [p(0), p(1)], o),
                        3 => rows::<F, 3>(nb, w.as_ptr(), [p(0), p(1), p(2)], o),
                        _ => rows::<F, 4>(nb, w.as_ptr(), [p(0), p(1), p(2), p(3)], o),
                    }
                }
            }
        }
    };
}

/// AVX2: `maddubs` (pairs to i16, which cannot saturate here: |x| ≤ 128, |y| ≤ 127) then `madd` by ones.
pub(super) mod avx2 {
    use super::*;

    #[target_feature(enable = "avx2")]
    fn sum_u8i8(u: __m256i, y: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1))
    }

    loops!("avx2,fma,f16c");
}

/// AVX-512 VNNI on 256-bit registers: the four products and their sum in one `vpdpbusd`.
pub(super) mod vnni {
    use super::*;

    #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
    fn sum_u8i8(u: __m256i, y: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y)
    }

    loops!("avx2,fma,f16c,avx512vnni,avx512vl");
}
