//! A base layer plus its low-rank update, applied unmerged: y = base(x) + scale · (x Aᵀ) Bᵀ.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::engine::local::{BaseLinear, Lin};

pub struct LoraLinear {
    pub base: Arc<BaseLinear>,
    /// `[in, r]` (Aᵀ, contiguous) for the batched path.
    a_t: Tensor,
    /// `[r, out]`, scale folded in.
    b_t: Tensor,
    /// The same numbers on the host for one-token decode on the CPU: A row-major `[r, in]`,
    /// scale·Bᵀ row-major `[r, out]`.
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
        let a_host = a.flatten_all()?.to_vec1()?;
        let b_host = b_t.flatten_all()?.to_vec1()?;
        Ok(Self { base, a_t, b_t, a_host, b_host, rank })
    }

    /// One token on the CPU: a few thousand multiply-adds, cheaper done here than as three tensor ops
    /// (whose fixed cost, times every adapted layer, dominated decode).
    fn add_delta_host(&self, x: &Tensor, y: Tensor) -> Result<Tensor> {
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let mut ys: Vec<f32> = y.flatten_all()?.to_vec1()?;
        let (inp, out) = (xs.len(), ys.len());
        for r in 0..self.rank {
            let a = &self.a_host[r * inp..(r + 1) * inp];
            let t = dot(a, &xs);
            let b = &self.b_host[r * out..(r + 1) * out];
            for (yj, bj) in ys.iter_mut().zip(b) {
                *yj += t * bj;
            }
        }
        Tensor::from_vec(ys, y.shape(), y.device())
    }
}

/// A dot product with eight independent partial sums, so the compiler can use SIMD lanes (a single
/// running f32 sum must stay in order and cannot be vectorised).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl Lin for LoraLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.base.forward(x)?;
        let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?;
        if rows == 1 && x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            return self.add_delta_host(x, y);
        }
        let delta = x.broadcast_matmul(&self.a_t)?.broadcast_matmul(&self.b_t)?;
        y + delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::local::WeightPlan;
    use candle_core::Device;

    #[test]
    fn one_token_on_the_host_equals_the_batched_path() {
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
}
