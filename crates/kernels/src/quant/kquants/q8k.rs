//! The Q8_K activation quantizer (f32 d, i8 qs[256], i16 bsums[16]), the
//! format every K-quant dot product reads.

use super::blocks::{ACT_BYTES, QK};

/// Quantizes `x` (whole 256-blocks) into `out` (292 bytes a block) as ggml's `quantize_row_q8_K_ref`: the
/// scale keeps the sign of the largest-magnitude value (the first, on a tie) and quants round to nearest,
/// ties to even (ggml's `nearest_int`).
pub fn quantize_q8_k(x: &[f32], out: &mut [u8]) {
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
