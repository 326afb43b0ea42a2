//! A base layer plus its low-rank update, applied unmerged: y = base(x) + scale · (x Aᵀ) Bᵀ.

use std::sync::Arc;

use candle_core::{DType, Result, Tensor};

use tunebench_kernels::lora::QCols;
use tunebench_kernels::matmul::{Factor, Linear, Lora};
use tunebench_kernels::quant::{ActKind, Kind, Weights, quantize_row};

use crate::engine::local::{BaseLinear, Lin, host_forward};

/// The host's copy of A and scale·Bᵀ. Over a quantized base they are held in 8 bits (A as Q8_0 blocks, as
/// llama.cpp runs a Q8_0 LoRA GGUF; B with one scale per output, `QCols`): decode reads them every token (f32
/// factors of r = 16 on every linear add a fifth to a Q4 model's bytes, 8-bit ones a twentieth), and their
/// rounding (at most half a step of 1/127 of each block's or output's largest value) stays below the base's
/// own quantization error (a Q4 base: 1/15 of its blocks' range). Shapes 8 bits cannot hold (an input not
/// whole blocks of 32, outputs not a multiple of 8, a rank not of 4) are held in f16. Over an f32/f16/bf16 base
/// they stay f32, so the unquantized lane still matches PEFT to f32 summation order.
enum HostFactors {
    F32 { a: Vec<f32>, b: Vec<f32> },
    F16 { a: Vec<half::f16>, b: Vec<half::f16> },
    Q8 { a: Weights, b: QCols },
}

/// A's `rows × cols` f32 values as Q8_0 weights (repacked where they can be).
fn q8(values: &[f32], rows: usize, cols: usize) -> Option<Weights> {
    let rb = Kind::Q8_0.row_bytes(cols)?;
    let mut bytes = vec![0u8; rows * rb];
    for (v, o) in values.chunks_exact(cols).zip(bytes.chunks_exact_mut(rb)) {
        quantize_row(ActKind::Q8_0, v, o);
    }
    Weights::new(Kind::Q8_0, rows, cols, &bytes).ok()
}

pub struct LoraLinear {
    pub base: Arc<BaseLinear>,
    /// `[in, r]` (Aᵀ, contiguous) for the batched path.
    a_t: Tensor,
    /// `[r, out]`, scale folded in.
    b_t: Tensor,
    /// The same numbers for the host engine, row-major: A `[r, in]`, scale·Bᵀ `[r, out]`.
    host: HostFactors,
    rank: usize,
}

impl LoraLinear {
    /// `a` is `[r, in]`, `b` is `[out, r]` as PEFT stores them.
    pub fn new(base: Arc<BaseLinear>, a: &Tensor, b: &Tensor, scale: f64) -> Result<Self> {
        let rank = a.dim(0)?;
        let a_t = a.t()?.contiguous()?;
        let b_t = (b.t()? * scale)?.contiguous()?;
        let quantized = base.host().is_some_and(|l| !matches!(l.w.kind, Kind::F32 | Kind::F16 | Kind::BF16));
        let host = if quantized {
            let f32 = |t: &Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
            let (out, inp) = (b_t.dim(1)?, a.dim(1)?);
            let b_scaled = (b * scale)?;
            match (q8(&f32(a)?, rank, inp), QCols::new(&f32(&b_scaled)?, out, rank)) {
                (Some(a), Some(b)) => HostFactors::Q8 { a, b },
                _ => {
                    let f16 = |t: &Tensor| t.to_dtype(DType::F16)?.flatten_all()?.to_vec1();
                    HostFactors::F16 { a: f16(a)?, b: f16(&b_t)? }
                }
            }
        } else {
            let f32 = |t: &Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1();
            HostFactors::F32 { a: f32(a)?, b: f32(&b_t)? }
        };
        Ok(Self { base, a_t, b_t, host, rank })
    }
}

impl Lin for LoraLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(l) = self.host() {
            return host_forward(l.w, l.bias, l.lora, x);
        }
        let y = self.base.forward(x)?;
        let delta = x.broadcast_matmul(&self.a_t)?.broadcast_matmul(&self.b_t)?;
        y + delta
    }

    fn base_layer(&self) -> Option<&BaseLinear> {
        Some(&self.base)
    }

    /// With candle's f32 factors, as the candle pass runs it (a GPU's). On the CPU only the host engine's
    /// reference path takes it, and over a quantized base `forward` there uses the host's 8-bit factors instead.
    fn update(&self, x: &Tensor) -> Option<Result<Tensor>> {
        Some(x.broadcast_matmul(&self.a_t).and_then(|t| t.broadcast_matmul(&self.b_t)))
    }

    fn host(&self) -> Option<Linear<'_>> {
        let base = self.base.host()?;
        let (a, b) = match &self.host {
            HostFactors::F32 { a, b } => (Factor::F32(a), Factor::F32(b)),
            HostFactors::F16 { a, b } => (Factor::F16(a), Factor::F16(b)),
            HostFactors::Q8 { a, b } => (Factor::Q8(a), Factor::Cols(b)),
        };
        Some(Linear { lora: Some(Lora { a, rank: self.rank, b }), ..base })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::local::WeightPlan;
    use candle_core::{DType, Device};

    #[test]
    fn one_token_equals_the_same_row_of_a_batch() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.1, (40, 24), &dev).unwrap();
        let base = Arc::new(BaseLinear::from_tensor("m", w, WeightPlan { decode: None, f32_prefill: false }).unwrap());
        let a = Tensor::randn(0f32, 0.1, (4, 24), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.1, (40, 4), &dev).unwrap();
        let lora = LoraLinear::new(base, &a, &b, 1.5).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 2, 24), &dev).unwrap();
        let batched = lora.forward(&x).unwrap();
        let one = lora.forward(&x.narrow(1, 1, 1).unwrap()).unwrap();
        let diff = (one - batched.narrow(1, 1, 1).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn the_host_form_computes_base_plus_scaled_low_rank_update() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.1, (37, 64), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 37, &dev).unwrap();
        let plan = WeightPlan { decode: None, f32_prefill: false };
        let base = BaseLinear::from_tensor("m", w.clone(), plan).unwrap().with_bias(Some(bias.clone())).unwrap();
        let (a, b) =
            (Tensor::randn(0f32, 0.1, (5, 64), &dev).unwrap(), Tensor::randn(0f32, 0.1, (37, 5), &dev).unwrap());
        let lora = LoraLinear::new(Arc::new(base), &a, &b, 2.0).unwrap();
        assert!(lora.host().is_some_and(|l| l.lora.is_some() && l.bias.is_some()));
        let x = Tensor::randn(0f32, 1.0, (1, 6, 64), &dev).unwrap();
        let want = x.broadcast_matmul(&w.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        let delta = x.broadcast_matmul(&a.t().unwrap()).unwrap().broadcast_matmul(&b.t().unwrap()).unwrap();
        let want = (want + (delta * 2.0).unwrap()).unwrap();
        let diff = (lora.forward(&x).unwrap() - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn over_a_quantized_base_factors_not_in_whole_blocks_are_f16() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.1, (37, 64), &dev).unwrap();
        let plan = WeightPlan { decode: Some(candle_core::quantized::GgmlDType::Q8_0), f32_prefill: false };
        let base = Arc::new(BaseLinear::from_tensor("m", w, plan).unwrap());
        let (a, b) =
            (Tensor::randn(0f32, 0.1, (5, 64), &dev).unwrap(), Tensor::randn(0f32, 0.1, (37, 5), &dev).unwrap());
        let lora = LoraLinear::new(base.clone(), &a, &b, 2.0).unwrap();
        assert!(lora.host().is_some_and(|l| matches!(l.lora, Some(Lora { a: Factor::F16(_), .. }))));
        let x = Tensor::randn(0f32, 1.0, (1, 3, 64), &dev).unwrap();
        let got = (lora.forward(&x).unwrap() - base.forward(&x).unwrap()).unwrap();
        // The host holds A and 2·Bᵀ rounded to f16: against the same rounded factors only f32 summation order
        // is left.
        let f16_round = |t: Tensor| t.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap();
        let (a16, b16_t) = (f16_round(a.t().unwrap()), f16_round((b.t().unwrap() * 2.0).unwrap()));
        let want = x.broadcast_matmul(&a16).unwrap().broadcast_matmul(&b16_t).unwrap();
        let diff = (&got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        // Against the unrounded factors each of the 5 · 64 products moves by at most 2·2⁻¹¹ relative; with
        // |x Aᵀ| ≈ 0.8 and |2B| ≈ 0.2 that is well under 1e-3 (a Q8_0 base is itself off by ~1e-3).
        let exact = x.broadcast_matmul(&a.t().unwrap()).unwrap().broadcast_matmul(&b.t().unwrap()).unwrap();
        let diff = (got - (exact * 2.0).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-3);
    }

    /// `rows` of `v` (each `cols` long) through Q8_0 and back.
    fn q8_round(v: &[f32], cols: usize) -> Vec<f32> {
        let mut out = vec![0f32; v.len()];
        let mut q = vec![0u8; ActKind::Q8_0.row_bytes(cols)];
        for (r, o) in v.chunks(cols).zip(out.chunks_mut(cols)) {
            quantize_row(ActKind::Q8_0, r, &mut q);
            tunebench_kernels::quant::dequantize_row(ActKind::Q8_0, &q, o);
        }
        out
    }

    #[test]
    fn over_a_quantized_base_the_host_factors_are_q8_0() {
        let dev = Device::Cpu;
        let (out, inp, r) = (64, 96, 16);
        let w = Tensor::randn(0f32, 0.1, (out, inp), &dev).unwrap();
        let plan = WeightPlan { decode: Some(candle_core::quantized::GgmlDType::Q4_0), f32_prefill: false };
        let base = Arc::new(BaseLinear::from_tensor("m", w, plan).unwrap());
        let (a, b) =
            (Tensor::randn(0f32, 0.1, (r, inp), &dev).unwrap(), Tensor::randn(0f32, 0.1, (out, r), &dev).unwrap());
        let lora = LoraLinear::new(base.clone(), &a, &b, 2.0).unwrap();
        assert!(lora.host().is_some_and(|l| matches!(l.lora, Some(Lora { a: Factor::Q8(_), b: Factor::Cols(_), .. }))));
        for tokens in [1, 3, 70] {
            let x = Tensor::randn(0f32, 1.0, (1, tokens, inp), &dev).unwrap();
            let got = (lora.forward(&x).unwrap() - base.forward(&x).unwrap()).unwrap();
            // The host multiplies Q8_0-rounded A against the input rounded to Q8_0 (as for any Q8_0 weight),
            // then adds t · 2Bᵀ with B held per output (`QCols`, its own tests hold it to an f64 sum): against
            // the same rounded numbers only f32 summation order is left.
            let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (xq, aq) = (q8_round(&v(&x), inp), q8_round(&v(&a), inp));
            let cols = QCols::new(&v(&(&b * 2.0).unwrap()), out, r).unwrap();
            let got_rows = v(&got);
            for j in 0..tokens {
                let t: Vec<f32> = (0..r).map(|k| (0..inp).map(|c| xq[j * inp + c] * aq[k * inp + c]).sum()).collect();
                let mut want = vec![0f32; out];
                cols.update(&t, 0, &mut want);
                let diff = want.iter().zip(&got_rows[j * out..]).map(|(w, g)| (w - g).abs()).fold(0f32, f32::max);
                assert!(diff < 1e-4, "{tokens} tokens, row {j}: {diff}");
            }
            // Against the exact factors: each of the four roundings (x, A, x·Aᵀ, 2·Bᵀ) moves its values by up
            // to half a step of 1/127 of their block's (or row's) largest, about 0.5% of a product's size each
            // at random signs, so the delta moves by 1–2% of its own size: measured here ≤ 1.7% of its largest
            // value (1, 3 and 70 tokens), below the Q4_0 base's own error on the same outputs (several %).
            let exact = (x.broadcast_matmul(&a.t().unwrap()).unwrap().broadcast_matmul(&b.t().unwrap()).unwrap() * 2.0)
                .unwrap();
            let largest = exact.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let diff = (got - exact).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 0.03 * largest, "{tokens} tokens: {diff} against a delta up to {largest}");
        }
    }
}
