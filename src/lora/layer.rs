//! A base layer plus its low-rank update, applied unmerged: y = base(x) + scale · (x Aᵀ) Bᵀ.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::engine::local::{BaseLinear, Lin};

pub struct LoraLinear {
    pub base: Arc<BaseLinear>,
    /// `[in, r]` (Aᵀ, pre-transposed and contiguous for the hot path).
    a_t: Tensor,
    /// `[r, out]`, scale folded in.
    b_t: Tensor,
}

impl LoraLinear {
    /// `a` is `[r, in]`, `b` is `[out, r]` as PEFT stores them.
    pub fn new(base: Arc<BaseLinear>, a: &Tensor, b: &Tensor, scale: f64) -> Result<Self> {
        let a_t = a.t()?.contiguous()?;
        let b_t = (b.t()? * scale)?.contiguous()?;
        Ok(Self { base, a_t, b_t })
    }
}

impl Lin for LoraLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.base.forward(x)?;
        let delta = x.broadcast_matmul(&self.a_t)?.broadcast_matmul(&self.b_t)?;
        y + delta
    }
}
