//! The llama forward pass for training: differentiable ops only (candle's fused rms_norm, rope and softmax
//! have no backward), frozen base weights, trainable LoRA A/B on the targeted modules, and the vocabulary
//! projection computed only at the positions the loss reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{D, DType, Device, Result, Tensor, Var};
use candle_nn::ops::{rms_norm_slow, silu, softmax};
use candle_nn::rotary_emb::{rope_i_slow, rope_slow};
use rand::{Rng, SeedableRng};

use super::frozen::Frozen;
use crate::engine::local::{BaseWeights, MODULES};

/// One adapted module's trainable pair, in the base's row order (GGUF q/k rows permuted).
pub struct LoraPair {
    /// `[r, in]`.
    pub a: Var,
    /// `[out, r]`.
    pub b: Var,
    pub scale: f64,
}

pub struct TrainModel {
    pub base: Arc<BaseWeights>,
    /// Per layer, in `MODULES` order.
    linears: Vec<Vec<Frozen>>,
    head: Frozen,
    /// By module name (`model.layers.0.self_attn.q_proj`), sorted.
    pub lora: BTreeMap<String, LoraPair>,
    pub rank: usize,
    pub alpha: f64,
}

impl TrainModel {
    /// LoRA pairs on every module whose short name (`q_proj` …) is in `targets`: A drawn as PEFT does
    /// (Kaiming-uniform, bound 1/√in) from `seed`, B zero, so training starts from the base model exactly.
    pub fn new(base: Arc<BaseWeights>, targets: &[String], rank: usize, alpha: f64, seed: u64) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut linears = Vec::with_capacity(base.layers.len());
        let mut lora = BTreeMap::new();
        for layer in &base.layers {
            let mut row = Vec::with_capacity(MODULES.len());
            for (lin, module) in layer.linears.iter().zip(MODULES) {
                row.push(Frozen::new(lin.weight_f32()?)?);
                let short = module.rsplit('.').next().unwrap_or(module);
                if targets.iter().any(|t| t == short) {
                    let bound = 1.0 / (lin.in_dim as f64).sqrt();
                    let a: Vec<f32> = (0..rank * lin.in_dim).map(|_| rng.random_range(-bound..bound) as f32).collect();
                    let a = Var::from_tensor(&Tensor::from_vec(a, (rank, lin.in_dim), &base.device)?)?;
                    let b = Var::zeros((lin.out_dim, rank), DType::F32, &base.device)?;
                    lora.insert(lin.name.clone(), LoraPair { a, b, scale: alpha / rank as f64 });
                }
            }
            linears.push(row);
        }
        let head = Frozen::new(base.lm_head.weight_f32()?)?;
        Ok(Self { base, linears, head, lora, rank, alpha })
    }

    /// Base layers through candle's plain matmul, whose backward also computes the frozen weights'
    /// gradients: the reference `benches/train.rs` measures the custom op against.
    pub fn with_plain_matmul(mut self) -> Self {
        for f in self.linears.iter_mut().flatten().chain(std::iter::once(&mut self.head)) {
            f.plain = true;
        }
        self
    }

    pub fn device(&self) -> &Device {
        &self.base.device
    }

    /// Every trainable tensor, in a fixed order (A then B per module, modules sorted).
    pub fn vars(&self) -> Vec<&Var> {
        self.lora.values().flat_map(|p| [&p.a, &p.b]).collect()
    }

    fn linear(&self, layer: usize, m: usize, x: &Tensor) -> Result<Tensor> {
        let y = self.linears[layer][m].forward(x)?;
        let name = &self.base.layers[layer].linears[m].name;
        match self.lora.get(name) {
            Some(p) => {
                let delta = x.broadcast_matmul(&p.a.as_tensor().t()?)?.broadcast_matmul(&p.b.as_tensor().t()?)?;
                y + (delta * p.scale)?
            }
            None => Ok(y),
        }
    }

    /// Logits `[positions.len(), vocab]` of one sequence, at `positions` only.
    pub fn logits(&self, ids: &[u32], positions: &[u32]) -> Result<Tensor> {
        let b = &self.base;
        let c = &b.cfg;
        let n = ids.len();
        let dev = &b.device;
        let mut x = b.embed.index_select(&Tensor::new(ids, dev)?, 0)?.unsqueeze(0)?;
        let (cos, sin) = (b.cos.narrow(0, 0, n)?, b.sin.narrow(0, 0, n)?);
        let rep = c.heads / c.kv_heads;
        let mask: Vec<f32> =
            (0..rep * n).flat_map(|r| (0..n).map(move |j| if j <= r % n { 0.0 } else { f32::NEG_INFINITY })).collect();
        let mask = Tensor::from_vec(mask, (rep * n, n), dev)?;
        let eps = c.rms_eps as f32;
        for (i, layer) in b.layers.iter().enumerate() {
            let h = rms_norm_slow(&x, &layer.attn_norm, eps)?;
            let heads = |t: Tensor, nh: usize| t.reshape((1, n, nh, c.head_dim))?.transpose(1, 2)?.contiguous();
            let q = heads(self.linear(i, 0, &h)?, c.heads)?;
            let k = heads(self.linear(i, 1, &h)?, c.kv_heads)?;
            let v = heads(self.linear(i, 2, &h)?, c.kv_heads)?;
            let (q, k) = if c.rope_interleaved {
                (rope_i_slow(&q, &cos, &sin)?, rope_i_slow(&k, &cos, &sin)?)
            } else {
                (rope_slow(&q, &cos, &sin)?, rope_slow(&k, &cos, &sin)?)
            };
            // Grouped-query attention as inference does it: the `rep` query heads sharing a KV head are
            // `rep * n` rows against that head's keys (no copies of K/V).
            let q = q.contiguous()?.reshape((1, c.kv_heads, rep * n, c.head_dim))?;
            let att = (q.matmul(&k.t()?)? / (c.head_dim as f64).sqrt())?.broadcast_add(&mask)?;
            let att = softmax(&att, D::Minus1)?;
            let y = att.matmul(&v.contiguous()?)?.reshape((1, c.heads, n, c.head_dim))?;
            let y = y.transpose(1, 2)?.reshape((1, n, c.heads * c.head_dim))?;
            x = (x + self.linear(i, 3, &y)?)?;
            let h = rms_norm_slow(&x, &layer.ffn_norm, eps)?;
            let gate = silu(&self.linear(i, 4, &h)?)?;
            let mlp = self.linear(i, 6, &(gate * self.linear(i, 5, &h)?)?)?;
            x = (x + mlp)?;
        }
        let x = rms_norm_slow(&x, &b.norm, eps)?.squeeze(0)?;
        let picked = x.index_select(&Tensor::new(positions, dev)?, 0)?;
        self.head.forward(&picked)
    }

    /// Mean cross-entropy of `targets` predicted at `positions` (one target per position).
    pub fn loss(&self, ids: &[u32], positions: &[u32], targets: &[u32]) -> Result<Tensor> {
        let logits = self.logits(ids, positions)?;
        candle_nn::loss::cross_entropy(&logits, &Tensor::new(targets, self.device())?)
    }
}
