//! The Q8_K activation quantizer (f32 d, i8 qs[256], i16 bsums[16]), scalar and AVX2, bit-identical: the
//! format every K-quant dot product reads.

use super::blocks::{ACT_BYTES, QK};

/// Quantizes `x` (whole 256-blocks) into `out` (292 bytes a block) as ggml's `quantize_row_q8_K_ref`: the
/// scale keeps the sign of the largest-magnitude value (the first, on a tie) and quants round to nearest,
/// ties to even (ggml's `nearest_int`).
pub fn quantize_q8_k(x: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::simd_available() {
        // SAFETY: AVX2 and FMA were detected at run time; the function reads only whole blocks of `x` and
        // writes only whole blocks of `out`, both bounded by the slices' lengths.
        unsafe { avx2::quantize(x, out) };
        return;
    }
    quantize_scalar(x, out)
}

/// The plain form: the reference the AVX2 form is tested bit-for-bit against.
pub fn quantize_scalar(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(ACT_BYTES)) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            ob.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        let mut qs = [0i8; QK];
        for (q, v) in qs.iter_mut().zip(xb) {
            *q = (iscale * v).round_ties_even().min(127.0) as i8;
        }
        ob[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
        for (o, q) in ob[4..260].iter_mut().zip(&qs) {
            *o = *q as u8;
        }
        for (j, chunk) in qs.chunks_exact(16).enumerate() {
            let s: i16 = chunk.iter().map(|&q| i16::from(q)).sum();
            ob[260 + 2 * j..262 + 2 * j].copy_from_slice(&s.to_le_bytes());
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{ACT_BYTES, QK};

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize(x: &[f32], out: &mut [u8]) {
        let abs_mask = _mm256_set1_ps(f32::from_bits(0x7fff_ffff));
        // packs interleave the two 128-bit lanes; this puts the 32 quants back in order
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(ACT_BYTES)) {
            let p = xb.as_ptr();
            // SAFETY (every load below): `xb` holds 256 f32, read 8 at a time at offsets below 256.
            let mut amax_v = _mm256_setzero_ps();
            for k in 0..32 {
                let v = _mm256_and_ps(unsafe { _mm256_loadu_ps(p.add(8 * k)) }, abs_mask);
                // operand order: a NaN in `v` leaves the running max as it was, as the scalar `>` does
                amax_v = _mm256_max_ps(v, amax_v);
            }
            let amax = hmax(amax_v);
            if amax == 0.0 {
                ob.fill(0);
                continue;
            }
            let want = _mm256_set1_ps(amax);
            let mut max = 0f32;
            for k in 0..32 {
                let v = unsafe { _mm256_loadu_ps(p.add(8 * k)) };
                let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_and_ps(v, abs_mask), want));
                if hit != 0 {
                    max = xb[8 * k + hit.trailing_zeros() as usize];
                    break;
                }
            }
            let iscale = -127.0 / max;
            let mul = _mm256_set1_ps(iscale);
            let top = _mm256_set1_ps(127.0);
            let mut sums = [0u64; 16];
            for c in 0..8 {
                let mut iv = [_mm256_setzero_si256(); 4];
                for (j, v) in iv.iter_mut().enumerate() {
                    let f = _mm256_mul_ps(unsafe { _mm256_loadu_ps(p.add(32 * c + 8 * j)) }, mul);
                    let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(f);
                    // min(r, 127) returns 127 for a NaN `r`, as f32::min does in the scalar form
                    *v = _mm256_cvtps_epi32(_mm256_min_ps(r, top));
                }
                let w16a = _mm256_packs_epi32(iv[0], iv[1]);
                let w16b = _mm256_packs_epi32(iv[2], iv[3]);
                let q = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w16a, w16b), order);
                // SAFETY: `ob` is 292 bytes; bytes 4 + 32c .. 36 + 32c lie within its quants.
                unsafe { _mm256_storeu_si256(ob.as_mut_ptr().add(4 + 32 * c).cast(), q) };
                // sums of each 8 quants, offset by 128 each so the unsigned byte sums see them
                let s = _mm256_sad_epu8(_mm256_xor_si256(q, _mm256_set1_epi8(-128)), _mm256_setzero_si256());
                let mut lanes = [0u64; 4];
                // SAFETY: `lanes` is 32 bytes.
                unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), s) };
                sums[2 * c] = lanes[0] + lanes[1];
                sums[2 * c + 1] = lanes[2] + lanes[3];
            }
            ob[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
            for (j, s) in sums.iter().enumerate() {
                let v = (*s as i64 - 16 * 128) as i16;
                ob[260 + 2 * j..262 + 2 * j].copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
        _mm_cvtss_f32(m)
    }
}
