//! A base layer plus its low-rank update, applied unmerged: y = base(x) + scale · (x Aᵀ) Bᵀ.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use tunebench_kernels::matmul::{Linear, Lora};

use crate::engine::local::{BaseLinear, Lin, host_forward};

pub struct LoraLinear {
    pub base: Arc<BaseLinear>,
    /// `[in, r]` (Aᵀ, contiguous) for the batched path.
    a_t: Tensor,
    /// `[r, out]`, scale folded in.
    b_t: Tensor,
    /// The same numbers for the host engine, row-major: A `[r, in]`, scale·Bᵀ `[r, out]`.
    a_host: Vec<f32>,
    b_host: Vec<f32>,
    rank: usize,
}

impl LoraLinear {
    /// `a` is `[r, in]`, `b` is `[out, r]` as PEFT stores them.
    pub fn new(base: Arc<BaseLinear>, a: &Tensor, b: &Tensor, scale: f64) -> Result<Self> {
        let rank = a.dim(0)?;
        let a_t = a.t()?.contiguous()?;
        let b_t = (b.t()? * scale)?.contiguous()?;
        let a_host = a.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?;
        let b_host = b_t.flatten_all()?.to_vec1()?;
        Ok(Self { base, a_t, b_t, a_host, b_host, rank })
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

    fn host(&self) -> Option<Linear<'_>> {
        let base = self.base.host()?;
        Some(Linear { lora: Some(Lora { a: &self.a_host, rank: self.rank, b: &self.b_host }), ..base })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::local::WeightPlan;
    use candle_core::Device;

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
}
