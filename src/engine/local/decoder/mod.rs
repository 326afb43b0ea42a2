//! The one decoder every local path runs: inference (fused ops, quantized weights, KV cache) and training
//! (differentiable ops, frozen weights) compute the same forward pass here, for a family described by data
//! (`family.rs`). LoRA-agnostic: a factory keyed by weight name chooses each linear layer.

mod family;
mod ops;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

pub use family::{Activation, Bias, Family, Norm, Projections, QkNorm, Rope, RopePairs, RotaryDims, SoftCaps, Window};
pub use ops::Ops;

use super::cache::KvCache;
use super::linear::{Lin, LinearFactory};
use super::weights::{BaseWeights, MODULES};
use super::{LocalError, Result};

/// One lane's (or one training run's) view of a model: the shared base plus the layers its factory chose.
pub struct Decoder {
    pub base: Arc<BaseWeights>,
    /// Per layer, in `MODULES` order.
    layers: Vec<Vec<Arc<dyn Lin>>>,
    lm_head: Arc<dyn Lin>,
    ops: Ops,
}

/// The decoder's name before families were data; callers written against it keep working.
pub type Llama = Decoder;

impl Decoder {
    /// For inference: fused ops.
    pub fn new(base: Arc<BaseWeights>, factory: &LinearFactory<'_>) -> Result<Self> {
        Self::with_ops(base, factory, Ops::Fused)
    }

    /// Every linear layer (in `MODULES` order per layer, then `lm_head`) from `factory`, run with `ops`.
    pub fn with_ops(base: Arc<BaseWeights>, factory: &LinearFactory<'_>, ops: Ops) -> Result<Self> {
        let mut layers = Vec::with_capacity(base.layers.len());
        for layer in &base.layers {
            let mut lins = Vec::with_capacity(MODULES.len());
            for lin in &layer.linears {
                lins.push(factory(&lin.name, lin)?);
            }
            layers.push(lins);
        }
        let lm_head = factory("lm_head", &base.lm_head)?;
        Ok(Self { base, layers, lm_head, ops })
    }

    pub fn device(&self) -> &Device {
        &self.base.device
    }

    pub fn family(&self) -> &Family {
        &self.base.cfg.family
    }

    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let c = &self.base.cfg;
        Ok(KvCache::new(c.layers, c.kv_heads, c.head_dim, capacity, &self.base.device)?)
    }

    /// Runs `ids` at positions `pos..`; returns logits `[vocab]` of the last position, refusing non-finite ones.
    pub fn forward_last(&self, ids: &[u32], pos: usize, cache: &mut KvCache) -> Result<Tensor> {
        let h = self.hidden(ids, pos, Some(cache))?;
        let last = h.narrow(1, ids.len() - 1, 1)?;
        // Checked before the output layer too: a quantized lm_head turns NaN activations into all-zero logits,
        // which look finite and sample token 0 for ever.
        let at = pos + ids.len() - 1;
        ensure_finite(&last, "hidden state", at)?;
        let logits = self.lm_head.forward(&last)?.flatten_all()?;
        ensure_finite(&logits, "logits", at)?;
        Ok(logits)
    }

    /// Logits `[len, vocab]` at every position (teacher forcing, fidelity checks).
    pub fn forward_all(&self, ids: &[u32], pos: usize, cache: &mut KvCache) -> Result<Tensor> {
        let h = self.hidden(ids, pos, Some(cache))?;
        Ok(self.lm_head.forward(&h)?.squeeze(0)?)
    }

    /// Logits `[positions.len(), vocab]` of a whole sequence (from position 0, no cache), computing the
    /// vocabulary projection only at `positions`: what a training loss reads.
    pub fn logits_at(&self, ids: &[u32], positions: &[u32]) -> candle_core::Result<Tensor> {
        let h = self.hidden(ids, 0, None)?.squeeze(0)?;
        let picked = h.index_select(&Tensor::new(positions, self.device())?, 0)?;
        self.lm_head.forward(&picked)
    }

    /// The final-normed hidden states `[1, n, hidden]` of `ids` at positions `pos..`. Without a cache the
    /// keys are this call's only (`pos` must then be 0).
    fn hidden(&self, ids: &[u32], pos: usize, mut cache: Option<&mut KvCache>) -> candle_core::Result<Tensor> {
        let (b, ops) = (&self.base, self.ops);
        let c = &b.cfg;
        // Every field is named here, so a variant added in `family.rs` does not compile until this runs it.
        let Family {
            name: _,
            norm,
            bias: Bias::None,
            qk_norm: QkNorm::None,
            activation,
            soft_caps: SoftCaps::None,
            window: Window::Full,
            rope: Rope { pairs, dims: RotaryDims::Full },
            projections: Projections::Separate,
        } = c.family;
        let n = ids.len();
        let eps = c.rms_eps as f32;
        let mut x = b.embed.index_select(&Tensor::new(ids, &b.device)?, 0)?.unsqueeze(0)?;
        let cos = b.cos.narrow(0, pos, n)?;
        let sin = b.sin.narrow(0, pos, n)?;
        let rep = c.heads / c.kv_heads;
        let mask = if n > 1 { Some(ops::causal_mask(n, pos, rep, &b.device)?) } else { None };
        for (i, (layer, lins)) in b.layers.iter().zip(&self.layers).enumerate() {
            let h = ops.norm(norm, &x, &layer.attn_norm, eps)?;
            let heads = |t: Tensor, nh: usize| t.reshape((1, n, nh, c.head_dim))?.transpose(1, 2)?.contiguous();
            let q = heads(lins[0].forward(&h)?, c.heads)?;
            let k = heads(lins[1].forward(&h)?, c.kv_heads)?;
            let v = heads(lins[2].forward(&h)?, c.kv_heads)?;
            let q = ops.rope(pairs, &q, &cos, &sin)?;
            let k = ops.rope(pairs, &k, &cos, &sin)?;
            let (k, v) = match cache.as_deref_mut() {
                Some(cache) => cache.append(i, pos, &k, &v)?,
                None => (k, v),
            };
            // Grouped-query attention without copying K/V per query head: the `rep` query heads that
            // share a KV head become `rep * n` rows against that head's keys.
            let q = q.contiguous()?.reshape((1, c.kv_heads, rep * n, c.head_dim))?;
            let mut att = (q.matmul(&k.t()?)? / (c.head_dim as f64).sqrt())?;
            if let Some(m) = &mask {
                att = att.broadcast_add(m)?;
            }
            let att = ops.softmax(&att)?;
            let y = att.matmul(&v)?.reshape((1, c.heads, n, c.head_dim))?;
            let y = y.transpose(1, 2)?.reshape((1, n, c.heads * c.head_dim))?;
            x = (x + lins[3].forward(&y)?)?;
            let h = ops.norm(norm, &x, &layer.ffn_norm, eps)?;
            let gate = ops.activation(activation, &lins[4].forward(&h)?)?;
            let mlp = lins[6].forward(&(gate * lins[5].forward(&h)?)?)?;
            x = (x + mlp)?;
        }
        ops.norm(norm, &x, &b.norm, eps)
    }
}

/// NaN or infinity comes from broken weights (NaN in an adapter's lora_B, an absurd lora_alpha, bytes of one
/// dtype declared as another) and would otherwise sample garbage or nothing, reported as a success.
fn ensure_finite(t: &Tensor, what: &str, position: usize) -> Result<()> {
    // Every token passes here: one scalar leaves the device when all is well (NaN and infinity survive a
    // sum); the values are read back and counted only to describe a failure.
    let t = t.to_dtype(DType::F32)?;
    if t.sum_all()?.to_scalar::<f32>()?.is_finite() {
        return Ok(());
    }
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    let nan = values.iter().filter(|v| v.is_nan()).count();
    let inf = values.iter().filter(|v| v.is_infinite()).count();
    if nan + inf == 0 {
        return Ok(());
    }
    Err(LocalError::Run(format!(
        "the model computed non-finite values in its {what} at position {position} ({nan} NaN, {inf} infinite of {}): its \
         weights or its LoRA adapter's hold NaN or infinity, or overflow (check lora_B, lora_alpha and the \
         tensors' dtypes)",
        values.len()
    )))
}
