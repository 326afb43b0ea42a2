//! Activations quantized per block, in the format a weight kind's dot product reads (as llama.cpp's
//! `vec_dot_type`): Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 (with the block sum) for Q4_1/Q5_1, Q8_K for the K-quants,
//! plain f32 for float weights; Q8_0S (Q8_0 with its exact integer sum) for the repacked legacy weights.

use half::f16;

/// A quantized activation row's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum ActKind {
    F32,
    /// 32 per block: f16 d, i8 qs[32] (34 bytes).
    Q8_0,
    /// 32 per block: f16 d, f16 s = d · Σqs, i8 qs[32] (36 bytes).
    Q8_1,
    /// 32 per block: f16 d, i16 Σqs (exact), f32 d (the f16 widened), f32 d·Σqs, i8 qs[32] (44 bytes): Q8_0
    /// with the integer sum the repacked kernels subtract their unsigned quants' offset with, and the two
    /// factors their block loop multiplies by, converted once per row instead of once per eight weight rows.
    Q8_0S,
    /// 256 per block: f32 d, i8 qs[256], i16 bsums[16] (sums of each 16) (292 bytes).
    Q8_K,
}

impl ActKind {
    pub fn block(self) -> (usize, usize) {
        match self {
            ActKind::F32 => (1, 4),
            ActKind::Q8_0 => (32, 34),
            ActKind::Q8_1 => (32, 36),
            ActKind::Q8_0S => (32, 44),
            ActKind::Q8_K => (256, 292),
        }
    }

    /// Bytes of a quantized row of `cols` elements (`cols` whole blocks).
    pub fn row_bytes(self, cols: usize) -> usize {
        let (elems, bytes) = self.block();
        cols / elems * bytes
    }
}

/// Quantizes `x` (whole blocks) into `out` (`kind.row_bytes(x.len())` bytes), rounding as llama.cpp does;
/// Q8_0, Q8_1 and Q8_K by AVX2 where the CPU has it, bit-identical to [`quantize_row_reference`].
pub fn quantize_row(kind: ActKind, x: &[f32], out: &mut [u8]) {
    if kind == ActKind::Q8_K {
        // the K-quant kernels' own quantizer picks its AVX2 or scalar form
        super::kquants::quantize_q8_k(x, out);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if matches!(kind, ActKind::Q8_0 | ActKind::Q8_1 | ActKind::Q8_0S) && super::simd_available() {
        super::acts_avx2::quantize_q8(kind, x, out);
        return;
    }
    quantize_row_reference(kind, x, out)
}

/// The scalar quantizers. Q8_0/Q8_1 round half away from zero (C's `roundf`, as ggml's reference
/// `quantize_row_q8_0_ref`; ggml's AVX2 path rounds half to even, so its bytes can differ from ours in the
/// last step on exact ties) and clamp to ±127, which only a subnormal block maximum (scale 1/d = inf) reaches.
pub fn quantize_row_reference(kind: ActKind, x: &[f32], out: &mut [u8]) {
    match kind {
        ActKind::F32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(x) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        ActKind::Q8_0 | ActKind::Q8_1 | ActKind::Q8_0S => {
            let (_, bytes) = kind.block();
            let head = bytes - 32;
            for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(bytes)) {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let mut sum = 0i32;
                for (q, v) in ob[head..].iter_mut().zip(xb) {
                    let i = ((v * id).round() as i32).clamp(-127, 127);
                    sum += i;
                    *q = i as i8 as u8;
                }
                ob[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                match kind {
                    ActKind::Q8_1 => ob[2..4].copy_from_slice(&f16::from_f32(d * sum as f32).to_le_bytes()),
                    // |Σ| ≤ 32 · 127: always an i16.
                    ActKind::Q8_0S => s_head(ob, f16::from_f32(d).to_f32(), sum),
                    _ => {}
                }
            }
        }
        ActKind::Q8_K => super::kquants::quantize_q8_k_scalar(x, out),
    }
}

/// Q8_0S's head after d: the exact sum, then d (the f16 scale's exact f32 value) and d·Σ (as the kernels
/// multiply them: one f32 product).
#[inline]
pub(super) fn s_head(ob: &mut [u8], d: f32, sum: i32) {
    ob[2..4].copy_from_slice(&(sum as i16).to_le_bytes());
    ob[4..8].copy_from_slice(&d.to_le_bytes());
    ob[8..12].copy_from_slice(&(d * sum as f32).to_le_bytes());
}

/// A quantized activation row back to f32: what the reference kernels multiply with.
pub fn dequantize_row(kind: ActKind, a: &[u8], out: &mut [f32]) {
    match kind {
        ActKind::F32 => {
            for (o, b) in out.iter_mut().zip(a.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        ActKind::Q8_0 | ActKind::Q8_1 | ActKind::Q8_0S => {
            let (_, bytes) = kind.block();
            for (ab, ob) in a.chunks_exact(bytes).zip(out.chunks_exact_mut(32)) {
                let d = f16::from_le_bytes([ab[0], ab[1]]).to_f32();
                for (o, q) in ob.iter_mut().zip(&ab[bytes - 32..]) {
                    *o = d * f32::from(*q as i8);
                }
            }
        }
        ActKind::Q8_K => {
            for (ab, ob) in a.chunks_exact(292).zip(out.chunks_exact_mut(256)) {
                let d = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
                for (o, q) in ob.iter_mut().zip(&ab[4..260]) {
                    *o = d * f32::from(*q as i8);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_round_trips_within_half_a_step() {
        let x: Vec<f32> = (0..512).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        for kind in [ActKind::F32, ActKind::Q8_0, ActKind::Q8_1, ActKind::Q8_0S, ActKind::Q8_K] {
            let mut q = vec![0u8; kind.row_bytes(x.len())];
            quantize_row(kind, &x, &mut q);
            let mut back = vec![0f32; x.len()];
            dequantize_row(kind, &q, &mut back);
            let step = 50.0 / 7.0 / 127.0;
            for (a, b) in x.iter().zip(&back) {
                assert!((a - b).abs() <= step * 0.51 + 1e-3, "{kind:?}: {a} came back as {b}");
            }
        }
    }

    #[test]
    fn q8_k_block_sums_are_the_sums_of_each_sixteen() {
        let x: Vec<f32> = (0..256).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut q = vec![0u8; 292];
        quantize_row(ActKind::Q8_K, &x, &mut q);
        for j in 0..16 {
            let want: i16 = q[4 + 16 * j..4 + 16 * (j + 1)].iter().map(|&b| i16::from(b as i8)).sum();
            assert_eq!(i16::from_le_bytes([q[260 + 2 * j], q[261 + 2 * j]]), want);
        }
    }
}
