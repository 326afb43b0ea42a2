//! The llama forward pass over shared base weights: `forward(ids, pos, &mut KvCache)`; LoRA-agnostic.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use candle_nn::ops::{rms_norm, softmax_last_dim};
use candle_nn::rotary_emb::{rope, rope_i};

use super::Result;
use super::cache::KvCache;
use super::linear::{Lin, LinearFactory};
use super::weights::{BaseWeights, MODULES};

/// One lane's view of a model: the shared base plus the layers its factory chose.
pub struct Llama {
    pub base: Arc<BaseWeights>,
    layers: Vec<Vec<Arc<dyn Lin>>>,
    lm_head: Arc<dyn Lin>,
}

impl Llama {
    pub fn new(base: Arc<BaseWeights>, factory: &LinearFactory<'_>) -> Result<Self> {
        let mut layers = Vec::with_capacity(base.layers.len());
        for layer in &base.layers {
            let mut lins = Vec::with_capacity(MODULES.len());
            for lin in &layer.linears {
                lins.push(factory(&lin.name, lin)?);
            }
            layers.push(lins);
        }
        let lm_head = factory("lm_head", &base.lm_head)?;
        Ok(Self { base, layers, lm_head })
    }

    pub fn device(&self) -> &Device {
        &self.base.device
    }

    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let c = &self.base.cfg;
        Ok(KvCache::new(c.layers, c.kv_heads, c.head_dim, capacity, &self.base.device)?)
    }

    /// Runs `ids` at positions `pos..`; returns logits `[vocab]` of the last position, refusing non-finite ones.
    pub fn forward_last(&self, ids: &[u32], pos: usize, cache: &mut KvCache) -> Result<Tensor> {
        let h = self.hidden(ids, pos, cache)?;
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
        let h = self.hidden(ids, pos, cache)?;
        Ok(self.lm_head.forward(&h)?.squeeze(0)?)
    }

    fn hidden(&self, ids: &[u32], pos: usize, cache: &mut KvCache) -> Result<Tensor> {
        let b = &self.base;
        let c = &b.cfg;
        let n = ids.len();
        let ids_t = Tensor::new(ids, &b.device)?;
        let mut x = b.embed.index_select(&ids_t, 0)?.unsqueeze(0)?;
        let cos = b.cos.narrow(0, pos, n)?;
        let sin = b.sin.narrow(0, pos, n)?;
        let rep = c.heads / c.kv_heads;
        let mask = if n > 1 { Some(causal_mask(n, pos, rep, &b.device)?) } else { None };
        for (i, (layer, lins)) in b.layers.iter().zip(&self.layers).enumerate() {
            let h = rms_norm(&x, &layer.attn_norm, c.rms_eps as f32)?;
            let heads = |t: Tensor, nh: usize| t.reshape((1, n, nh, c.head_dim))?.transpose(1, 2)?.contiguous();
            let q = heads(lins[0].forward(&h)?, c.heads)?;
            let k = heads(lins[1].forward(&h)?, c.kv_heads)?;
            let v = heads(lins[2].forward(&h)?, c.kv_heads)?;
            let (q, k) = if c.rope_interleaved {
                (rope_i(&q, &cos, &sin)?, rope_i(&k, &cos, &sin)?)
            } else {
                (rope(&q, &cos, &sin)?, rope(&k, &cos, &sin)?)
            };
            let (k, v) = cache.append(i, pos, &k, &v)?;
            // Grouped-query attention without copying K/V per query head: the `rep` query heads that
            // share a KV head become `rep * n` rows against that head's keys.
            let rep = c.heads / c.kv_heads;
            let q = q.reshape((1, c.kv_heads, rep * n, c.head_dim))?;
            let mut att = (q.matmul(&k.t()?)? / (c.head_dim as f64).sqrt())?;
            if let Some(m) = &mask {
                att = att.broadcast_add(m)?;
            }
            let att = softmax_last_dim(&att)?;
            let y = att.matmul(&v)?.reshape((1, c.heads, n, c.head_dim))?;
            let y = y.transpose(1, 2)?.reshape((1, n, c.heads * c.head_dim))?;
            x = (x + lins[3].forward(&y)?)?;
            let h = rms_norm(&x, &layer.ffn_norm, c.rms_eps as f32)?;
            let gate = candle_nn::ops::silu(&lins[4].forward(&h)?)?;
            let mlp = lins[6].forward(&(gate * lins[5].forward(&h)?)?)?;
            x = (x + mlp)?;
        }
        Ok(rms_norm(&x, &b.norm, c.rms_eps as f32)?)
    }
}

/// NaN or infinity comes from broken weights (NaN in an adapter's lora_B, an absurd lora_alpha, bytes of one
/// dtype declared as another) and would otherwise sample garbage or nothing, reported as a success.
fn ensure_finite(t: &Tensor, what: &str, position: usize) -> Result<()> {
    let values = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let nan = values.iter().filter(|v| v.is_nan()).count();
    let inf = values.iter().filter(|v| v.is_infinite()).count();
    if nan + inf == 0 {
        return Ok(());
    }
    Err(super::LocalError::Run(format!(
        "the model computed non-finite values in its {what} at position {position} ({nan} NaN, {inf} infinite of {}): its \
         weights or its LoRA adapter's hold NaN or infinity, or overflow (check lora_B, lora_alpha and the \
         tensors' dtypes)",
        values.len()
    )))
}

/// `[rep * n, pos + n]`: row r * n + i is query i (absolute position pos + i) of the r-th head in a
/// group; it sees keys 0..=pos + i.
fn causal_mask(n: usize, pos: usize, rep: usize, dev: &Device) -> Result<Tensor> {
    let total = pos + n;
    let mask: Vec<f32> = (0..rep)
        .flat_map(|_| {
            (0..n).flat_map(move |i| (0..total).map(move |j| if j <= pos + i { 0.0 } else { f32::NEG_INFINITY }))
        })
        .collect();
    Ok(Tensor::from_vec(mask, (rep * n, total), dev)?)
}
