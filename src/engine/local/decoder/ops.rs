//! The decoder's ops in two modes over the same maths: fused kernels for inference, and ops with a backward
//! pass for training (candle's fused rms_norm, rope and softmax have none). A family's variant gets its op here,
//! in both modes, so inference and training cannot drift apart.

use candle_core::{D, Device, Result, Tensor};
use candle_nn::ops::{rms_norm, rms_norm_slow, silu, softmax, softmax_last_dim};
use candle_nn::rotary_emb::{rope, rope_i, rope_i_slow, rope_slow};

use super::family::{Activation, Cap, Norm, RopePairs};

/// Which implementation of each op the decoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ops {
    /// Fused kernels, no gradients: inference.
    Fused,
    /// Differentiable ops: training (LoRA vars get gradients through them).
    Differentiable,
}

impl Ops {
    pub fn norm(self, kind: Norm, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
        match (kind, self) {
            (Norm::Rms, Ops::Fused) => rms_norm(x, w, eps),
            (Norm::Rms, Ops::Differentiable) => rms_norm_slow(x, w, eps),
        }
    }

    /// `x [1, heads, n, head_dim]` rotated by the tables' rows for its positions.
    pub fn rope(self, pairs: RopePairs, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        match (pairs, self) {
            (RopePairs::Interleaved, Ops::Fused) => rope_i(x, cos, sin),
            (RopePairs::Interleaved, Ops::Differentiable) => rope_i_slow(x, cos, sin),
            (RopePairs::Halves, Ops::Fused) => rope(x, cos, sin),
            (RopePairs::Halves, Ops::Differentiable) => rope_slow(x, cos, sin),
        }
    }

    pub fn softmax(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Ops::Fused => softmax_last_dim(x),
            Ops::Differentiable => softmax(x, D::Minus1),
        }
    }

    /// The gate's activation (one implementation serves both modes: candle's silu and tanh-approximated gelu
    /// have a backward pass).
    pub fn activation(self, kind: Activation, x: &Tensor) -> Result<Tensor> {
        match kind {
            Activation::Silu => silu(x),
            // `gelu_pytorch_tanh`: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), candle's `gelu`.
            Activation::GeluTanh => x.gelu(),
        }
    }

    /// `cap · tanh(x / cap)`: Gemma's soft-cap on attention scores and final logits (plain ops, which have a
    /// backward pass, in both modes).
    pub fn soft_cap(self, x: &Tensor, cap: Cap) -> Result<Tensor> {
        (x / f64::from(cap.0))?.tanh()? * f64::from(cap.0)
    }
}

/// `[rep * n, pos + n]`: row r * n + i is query i (absolute position pos + i) of the r-th head in a
/// group; it sees keys 0..=pos + i, or with a sliding `window` w only the last w of them (itself included,
/// as transformers and llama.cpp count it).
pub fn causal_mask(n: usize, pos: usize, rep: usize, window: Option<usize>, dev: &Device) -> Result<Tensor> {
    let total = pos + n;
    let seen = move |i: usize, j: usize| j <= pos + i && window.is_none_or(|w| pos + i - j < w);
    let mask: Vec<f32> = (0..rep)
        .flat_map(|_| {
            (0..n).flat_map(move |i| (0..total).map(move |j| if seen(i, j) { 0.0 } else { f32::NEG_INFINITY }))
        })
        .collect();
    Tensor::from_vec(mask, (rep * n, total), dev)
}
