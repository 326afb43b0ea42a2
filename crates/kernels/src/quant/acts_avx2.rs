//! AVX2 activation quantizers for Q8_0 and Q8_1 (32 f32 to 32 i8 and an f16 scale), bit-identical to the
//! scalar `quantize_row_reference`: the same scale arithmetic in f32, round half away from zero (not the
//! half-to-even `_MM_FROUND_TO_NEAREST_INT` ggml's AVX2 path uses), NaN to 0, clamped to ±127.

use std::arch::x86_64::*;

use super::ActKind;

/// Quantizes `x` (whole blocks of 32) into `out`; only called once `simd_available()` said yes.
pub fn quantize_q8(kind: ActKind, x: &[f32], out: &mut [u8]) {
    // SAFETY: quantize_row calls this only after simd_available() found AVX2 (and FMA, F16C).
    unsafe { blocks(kind, x, out) }
}

/// Rounds each lane half away from zero exactly as `f32::round`: truncate, then step away from zero when
/// the dropped fraction (exact: |v| < 2²³ here, or already whole) is at least a half. NaN lanes become 0.
#[target_feature(enable = "avx2")]
fn round_away(v: __m256) -> __m256 {
    let sign = _mm256_set1_ps(-0.0);
    let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
    let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    let away = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0));
    let r = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, _mm256_set1_ps(0.5)), away));
    _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(v, v))
}

/// `v` as little-endian f16 bytes, rounded to nearest even as `half::f16::from_f32` rounds (F16C: the
/// software conversion costs more than the rest of a block).
#[target_feature(enable = "avx2,f16c")]
fn half(v: f32) -> [u8; 2] {
    let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(v));
    (_mm_extract_epi16::<0>(h) as u16).to_le_bytes()
}

#[target_feature(enable = "avx2")]
fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// Blocks whose scales one pass computes together: one vector division for eight blocks' `d` and one for
/// their `1/d`, and one F16C conversion for their f16 scales, instead of scalar ones per block (the scalar
/// divisions and conversions were most of a block's time).
const BATCH: usize = 8;

/// # Safety
/// The CPU has AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn blocks(kind: ActKind, x: &[f32], out: &mut [u8]) {
    let (_, bytes) = kind.block();
    let head = bytes - 32;
    let sign = _mm256_set1_ps(-0.0);
    let lim = _mm256_set1_ps(127.0);
    let load = |xb: &[f32]| -> [__m256; 4] {
        // SAFETY: xb holds 32 f32; loadu has no alignment need.
        std::array::from_fn(|k| unsafe { _mm256_loadu_ps(xb.as_ptr().add(8 * k)) })
    };
    for (xs, os) in x.chunks(32 * BATCH).zip(out.chunks_mut(bytes * BATCH)) {
        let count = (xs.len() / 32).min(os.len() / bytes);
        // Each block's largest magnitude; max(|v|, acc) keeps acc where |v| is NaN, as f32::max does in the
        // scalar fold.
        let mut amax = [0f32; BATCH];
        for (m, xb) in amax.iter_mut().zip(xs.chunks_exact(32)) {
            *m = hmax(
                load(xb).iter().fold(_mm256_setzero_ps(), |acc, &v| _mm256_max_ps(_mm256_andnot_ps(sign, v), acc)),
            );
        }
        // SAFETY: amax holds 8 f32.
        let d = _mm256_div_ps(unsafe { _mm256_loadu_ps(amax.as_ptr()) }, lim);
        // 1/d where d ≠ 0, else 0 (as the scalar `if d != 0.0`).
        let nonzero = _mm256_cmp_ps::<_CMP_NEQ_UQ>(d, _mm256_setzero_ps());
        let id = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0), d), nonzero);
        // The f16 scales, rounded to nearest even as `half::f16::from_f32` rounds, and their f32 values.
        let d16 = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(d);
        let (mut ds, mut ids, mut hs, mut d16s) = ([0f32; BATCH], [0f32; BATCH], [0u16; BATCH], [0f32; BATCH]);
        // SAFETY: each array holds 8 elements of the stored type.
        unsafe {
            _mm256_storeu_ps(ds.as_mut_ptr(), d);
            _mm256_storeu_ps(ids.as_mut_ptr(), id);
            _mm_storeu_si128(hs.as_mut_ptr().cast(), d16);
            _mm256_storeu_ps(d16s.as_mut_ptr(), _mm256_cvtph_ps(d16));
        }
        for (j, (xb, ob)) in xs.chunks_exact(32).zip(os.chunks_exact_mut(bytes)).enumerate().take(count) {
            let idv = _mm256_set1_ps(ids[j]);
            let q = load(xb).map(|v| {
                let r = round_away(_mm256_mul_ps(v, idv));
                _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim))
            });
            // i32 → i16 → i8 (in range, so no saturation), then undo the packs' lane interleave.
            let packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            let ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            // SAFETY: ob[head..] is 32 bytes; storeu has no alignment need.
            unsafe { _mm256_storeu_si256(ob[head..].as_mut_ptr().cast(), ordered) };
            ob[..2].copy_from_slice(&hs[j].to_le_bytes());
            if matches!(kind, ActKind::Q8_1 | ActKind::Q8_0S) {
                let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
                let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
                let sum = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)));
                if kind == ActKind::Q8_1 {
                    ob[2..4].copy_from_slice(&half(ds[j] * sum as f32));
                } else {
                    super::acts::s_head(ob, d16s[j], sum);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{quantize_row_reference, simd_available};

    fn both(kind: ActKind, x: &[f32]) -> (Vec<u8>, Vec<u8>) {
        let (mut fast, mut scalar) = (vec![0u8; kind.row_bytes(x.len())], vec![0u8; kind.row_bytes(x.len())]);
        quantize_q8(kind, x, &mut fast);
        quantize_row_reference(kind, x, &mut scalar);
        (fast, scalar)
    }

    #[test]
    fn avx2_and_scalar_quantizers_write_the_same_bytes() {
        if !simd_available() {
            return;
        }
        let mut seed = 0x2545_f491_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut x = Vec::new();
        // Ordinary, huge, tiny, subnormal, all-zero, negative-zero, NaN and inf blocks, and exact ties.
        for style in 0..12 {
            for j in 0..32 {
                let u = (next() % 2_000_001) as f32 / 1e6 - 1.0;
                x.push(match style {
                    0..=2 => u,
                    3 => u * 3e37,
                    4 => u * 1e-30,
                    5 => u * 1e-40,
                    6 => 0.0,
                    7 => -0.0,
                    8 if j == 5 => f32::NAN,
                    9 if j == 9 => f32::INFINITY,
                    // amax 127 gives id 1: j - 15.5 lands on halves, exact ties for the rounding.
                    10 => {
                        if j == 0 {
                            127.0
                        } else {
                            j as f32 - 15.5
                        }
                    }
                    11 => {
                        if j == 0 {
                            -254.0
                        } else {
                            2.0 * j as f32 - 31.0
                        }
                    }
                    _ => u * 5.0,
                });
            }
        }
        // Rows of every block count around the eight-block batches, their scales computed together.
        let mut rows: Vec<Vec<f32>> =
            (1..=19).map(|b| (0..32 * b).map(|_| (next() % 2001) as f32 / 1e3 - 1.0).collect()).collect();
        rows.push(x);
        for (kind, x) in
            [ActKind::Q8_0, ActKind::Q8_1, ActKind::Q8_0S].into_iter().flat_map(|k| rows.iter().map(move |x| (k, x)))
        {
            let (fast, scalar) = both(kind, x);
            let (_, bytes) = kind.block();
            for (b, (f, s)) in fast.chunks(bytes).zip(scalar.chunks(bytes)).enumerate() {
                assert_eq!(f, s, "{kind:?} block {b}");
            }
        }
    }

    #[test]
    fn ties_round_away_from_zero() {
        if !simd_available() {
            return;
        }
        let mut x: Vec<f32> = (0..32).map(|j| j as f32 - 15.5).collect();
        x[0] = -127.0;
        let (fast, _) = both(ActKind::Q8_0, &x);
        // -127 sets d = 1: 0.5 → 1, -0.5 → -1, 1.5 → 2, -14.5 → -15.
        assert_eq!(fast[2 + 16] as i8, 1);
        assert_eq!(fast[2 + 15] as i8, -1);
        assert_eq!(fast[2 + 17] as i8, 2);
        assert_eq!(fast[2 + 1] as i8, -15);
    }
}
