//! The one decoder every local path runs: inference (fused ops, quantized weights, KV cache) and training
//! (differentiable ops, frozen weights) compute the same forward pass here, for a family described by data
//! (`family.rs`). LoRA-agnostic: a factory keyed by weight name chooses each linear layer.

mod batch;
mod family;
mod ops;
mod rope;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

pub use batch::{Batch, BatchRow, MAX_BATCH};
pub use family::{Activation, Bias, Cap, Family, LayerPlan, Norm, Projections, QkNorm, RopePairs, SoftCaps};
pub use ops::Ops;
pub use rope::{RopeScaling, RopeSpec, RopeSwitch};

use super::cache::KvCache;
use super::cpu::{self, HostCache};
use super::linear::{Lin, LinearFactory};
use super::weights::BaseWeights;
use super::{LocalError, Result};

/// One lane's (or one training run's) view of a model: the shared base plus the layers its factory chose.
pub struct Decoder {
    pub base: Arc<BaseWeights>,
    /// Per layer, in the family's module order (`Family::modules`).
    layers: Vec<Vec<Arc<dyn Lin>>>,
    lm_head: Arc<dyn Lin>,
    ops: Ops,
    /// Inference on the CPU with every layer in host form: the host engine (`cpu/`) runs the forward.
    host: bool,
}

/// The decoder's name before families were data; callers written against it keep working.
pub type Llama = Decoder;

impl Decoder {
    /// For inference: fused ops.
    pub fn new(base: Arc<BaseWeights>, factory: &LinearFactory<'_>) -> Result<Self> {
        Self::with_ops(base, factory, Ops::Fused)
    }

    /// Every linear layer (in the family's module order per layer, then `lm_head`) from `factory`, run with `ops`.
    pub fn with_ops(base: Arc<BaseWeights>, factory: &LinearFactory<'_>, ops: Ops) -> Result<Self> {
        let mut layers = Vec::with_capacity(base.layers.len());
        for layer in &base.layers {
            let mut lins = Vec::with_capacity(layer.linears.len());
            for lin in &layer.linears {
                lins.push(factory(&lin.name, lin)?);
            }
            layers.push(lins);
        }
        let lm_head = factory("lm_head", &base.lm_head)?;
        let host = ops == Ops::Fused
            && base.host.is_some()
            && lm_head.host().is_some()
            && layers.iter().flatten().all(|l| l.host().is_some());
        Ok(Self { base, layers, lm_head, ops, host })
    }

    pub fn device(&self) -> &Device {
        &self.base.device
    }

    pub fn family(&self) -> &Family {
        &self.base.cfg.family
    }

    /// Whether the host engine runs this decoder's forward passes.
    pub fn on_host(&self) -> bool {
        self.host
    }

    /// The same decoder run by candle's ops (tensors, candle's KV cache) even where the host engine could run
    /// it: the reference the host engine is held to (tests, benchmarks).
    pub fn on_candle(self) -> Self {
        Self { host: false, ..self }
    }

    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let c = &self.base.cfg;
        if self.host {
            return Ok(KvCache::host(c.layers, c.kv_heads, c.head_dim, capacity));
        }
        Ok(KvCache::new(c.layers, c.kv_heads, c.head_dim, capacity, &self.base.device)?)
    }

    /// The host engine's forward over `cache`: logits `[rows, vocab]` (every position's, or the last's).
    fn host_forward(&self, ids: &[u32], pos: usize, cache: &mut HostCache, all: bool) -> Result<usize> {
        let host = self.base.host.as_ref().ok_or_else(|| LocalError::Run("the model has no host form".into()))?;
        let lins = cpu::Layers { layers: &self.layers, lm_head: &*self.lm_head };
        cpu::forward(&self.base.cfg, host, &lins, ids, pos, cache, all)
    }

    /// Runs `ids` at positions `pos..`; returns logits `[vocab]` of the last position, refusing non-finite ones.
    pub fn forward_last(&self, ids: &[u32], pos: usize, cache: &mut KvCache) -> Result<Tensor> {
        if let KvCache::Host(cache) = cache {
            let at = pos + ids.len().max(1) - 1;
            let len = self.host_forward(ids, pos, cache, false)?;
            host_finite(cpu::last_hidden(cache, self.base.cfg.hidden), "hidden state", at)?;
            let logits = cpu::logits(cache, len);
            host_finite(logits, "logits", at)?;
            return Ok(Tensor::from_slice(logits, len, &Device::Cpu)?);
        }
        let h = self.hidden(ids, pos, Some(cache))?;
        let last = h.narrow(1, ids.len() - 1, 1)?;
        // Checked before the output layer too: a quantized lm_head turns NaN activations into all-zero logits,
        // which look finite and sample token 0 for ever.
        let at = pos + ids.len() - 1;
        ensure_finite(&last, "hidden state", at)?;
        let logits = self.head(&last)?.flatten_all()?;
        ensure_finite(&logits, "logits", at)?;
        Ok(logits)
    }

    /// Logits `[len, vocab]` at every position (teacher forcing, fidelity checks).
    pub fn forward_all(&self, ids: &[u32], pos: usize, cache: &mut KvCache) -> Result<Tensor> {
        if let KvCache::Host(cache) = cache {
            let len = self.host_forward(ids, pos, cache, true)?;
            let logits = cpu::logits(cache, len);
            return Ok(Tensor::from_slice(logits, (ids.len(), len / ids.len()), &Device::Cpu)?);
        }
        let h = self.hidden(ids, pos, Some(cache))?;
        Ok(self.head(&h)?.squeeze(0)?)
    }

    /// Logits `[positions.len(), vocab]` of a whole sequence (from position 0, no cache), computing the
    /// vocabulary projection only at `positions`: what a training loss reads.
    pub fn logits_at(&self, ids: &[u32], positions: &[u32]) -> candle_core::Result<Tensor> {
        if self.host {
            let mut cache =
                HostCache::new(self.base.cfg.layers, self.base.cfg.kv_heads, self.base.cfg.head_dim, ids.len());
            let len =
                self.host_forward(ids, 0, &mut cache, true).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let all = Tensor::from_slice(cpu::logits(&cache, len), (ids.len(), len / ids.len()), &Device::Cpu)?;
            return all.index_select(&Tensor::new(positions, &Device::Cpu)?, 0);
        }
        let h = self.hidden(ids, 0, None)?.squeeze(0)?;
        let picked = h.index_select(&Tensor::new(positions, self.device())?, 0)?;
        self.head(&picked)
    }

    /// The output head on final-normed hidden states, then the family's final soft-cap (Gemma 2).
    fn head(&self, h: &Tensor) -> candle_core::Result<Tensor> {
        let logits = self.lm_head.forward(h)?;
        match self.base.cfg.family.soft_caps {
            SoftCaps::Tanh { logits: Some(cap), .. } => self.ops.soft_cap(&logits, cap),
            SoftCaps::Tanh { logits: None, .. } | SoftCaps::None => Ok(logits),
        }
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
            // Biases are applied by the base layers themselves (`BaseLinear`), so every variant runs the same.
            bias: Bias::None | Bias::Qkv,
            qk_norm,
            activation,
            soft_caps,
            rope_pairs,
            projections,
        } = c.family;
        let n = ids.len();
        let eps = c.rms_eps as f32;
        let mut x = b.embed.rows(ids, &b.device)?;
        if let Some(scale) = c.embed_scale {
            x = (x * f64::from(scale))?;
        }
        // Soft-capped logits are the head's business (`head`); attention scores are capped here.
        let attn_cap = match soft_caps {
            SoftCaps::Tanh { attention, logits: _ } => attention,
            SoftCaps::None => None,
        };
        let tables = b
            .ropes
            .iter()
            .map(|(cos, sin)| Ok((cos.narrow(0, pos, n)?, sin.narrow(0, pos, n)?)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        // The length longrope chooses its table by: the whole sequence's (the KV cache holds prompt + answer)
        // so a prompt prefilled in chunks, and its answer, all use one table.
        let seq_len = cache.as_deref().map_or(pos + n, |k| k.capacity().max(pos + n));
        let rep = c.heads / c.kv_heads;
        let mut masks = Masks::default();
        for (i, ((layer, lins), plan)) in b.layers.iter().zip(&self.layers).zip(&c.layer_plan).enumerate() {
            let h = ops.norm(norm, &x, &layer.attn_norm, eps)?;
            let heads = |t: Tensor, nh: usize| t.reshape((1, n, nh, c.head_dim))?.transpose(1, 2)?.contiguous();
            let (q, k, v) = match projections {
                Projections::Separate => (lins[0].forward(&h)?, lins[1].forward(&h)?, lins[2].forward(&h)?),
                Projections::Fused => {
                    let qkv = lins[0].forward(&h)?;
                    let (nq, nkv) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
                    (qkv.narrow(2, 0, nq)?, qkv.narrow(2, nq, nkv)?, qkv.narrow(2, nq + nkv, nkv)?)
                }
            };
            let (mut q, mut k, v) = (heads(q, c.heads)?, heads(k, c.kv_heads)?, heads(v, c.kv_heads)?);
            match (qk_norm, &layer.qk_norm) {
                (QkNorm::None, None) => {}
                (QkNorm::Rms, Some((qn, kn))) => {
                    q = ops.norm(Norm::Rms, &q, qn, eps)?;
                    k = ops.norm(Norm::Rms, &k, kn, eps)?;
                }
                _ => {
                    return Err(candle_core::Error::Msg(format!(
                        "layer {i}: q/k norm weights do not match the family"
                    )));
                }
            }
            if let Some(r) = plan.rope {
                let r = c.rope_switch.map_or(r, |s| s.table(r, seq_len));
                let (cos, sin) = &tables[r];
                let dims = c.ropes[r].dims;
                q = rotate(ops, rope_pairs, &q, cos, sin, dims)?;
                k = rotate(ops, rope_pairs, &k, cos, sin, dims)?;
            }
            let (k, v) = match cache.as_deref_mut() {
                Some(cache) => cache.append(i, pos, &k, &v)?,
                None => (k, v),
            };
            // Grouped-query attention without copying K/V per query head: the `rep` query heads that
            // share a KV head become `rep * n` rows against that head's keys.
            let q = q.contiguous()?.reshape((1, c.kv_heads, rep * n, c.head_dim))?;
            let mut att = (q.matmul(&k.t()?)? * c.attn_scale)?;
            if let Some(cap) = attn_cap {
                att = ops.soft_cap(&att, cap)?;
            }
            if let Some(m) = masks.get(n, pos, rep, plan.window, &b.device)? {
                att = att.broadcast_add(m)?;
            }
            let att = ops.softmax(&att)?;
            let y = att.matmul(&v)?.reshape((1, c.heads, n, c.head_dim))?;
            let y = y.transpose(1, 2)?.reshape((1, n, c.heads * c.head_dim))?;
            let (o, down) = match projections {
                Projections::Separate => (&lins[3], &lins[6]),
                Projections::Fused => (&lins[1], &lins[3]),
            };
            let mut y = o.forward(&y)?;
            if let Some(w) = &layer.post_attn_norm {
                y = ops.norm(norm, &y, w, eps)?;
            }
            x = (x + y)?;
            let h = ops.norm(norm, &x, &layer.ffn_norm, eps)?;
            let (gate, up) = match projections {
                Projections::Separate => (lins[4].forward(&h)?, lins[5].forward(&h)?),
                Projections::Fused => {
                    let gate_up = lins[2].forward(&h)?;
                    let ffn = gate_up.dim(2)? / 2;
                    (gate_up.narrow(2, 0, ffn)?, gate_up.narrow(2, ffn, ffn)?)
                }
            };
            let mut y = down.forward(&(ops.activation(activation, &gate)? * up)?)?;
            if let Some(w) = &layer.post_ffn_norm {
                y = ops.norm(norm, &y, w, eps)?;
            }
            x = (x + y)?;
        }
        ops.norm(norm, &x, &b.norm, eps)
    }
}

/// Rope on the leading `dims` dimensions of each head of `x [1, heads, n, head_dim]`; the rest pass through.
fn rotate(
    ops: Ops,
    pairs: RopePairs,
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    dims: usize,
) -> candle_core::Result<Tensor> {
    let head_dim = x.dim(3)?;
    if dims == head_dim {
        return ops.rope(pairs, x, cos, sin);
    }
    let rotated = ops.rope(pairs, &x.narrow(3, 0, dims)?.contiguous()?, cos, sin)?;
    Tensor::cat(&[rotated, x.narrow(3, dims, head_dim - dims)?], 3)?.contiguous()
}

/// One forward's attention masks, built once per distinct window.
#[derive(Default)]
struct Masks(Vec<(Option<usize>, Option<Tensor>)>);

impl Masks {
    /// The mask for `window`, or None where every key is visible anyway (one new token, within its window).
    fn get(
        &mut self,
        n: usize,
        pos: usize,
        rep: usize,
        window: Option<usize>,
        dev: &Device,
    ) -> candle_core::Result<Option<&Tensor>> {
        let i = match self.0.iter().position(|(w, _)| *w == window) {
            Some(i) => i,
            None => {
                let needed = n > 1 || window.is_some_and(|w| pos + n > w);
                let mask = if needed { Some(ops::causal_mask(n, pos, rep, window, dev)?) } else { None };
                self.0.push((window, mask));
                self.0.len() - 1
            }
        };
        Ok(self.0[i].1.as_ref())
    }
}

/// `ensure_finite` for host buffers.
fn host_finite(values: &[f32], what: &str, position: usize) -> Result<()> {
    if values.iter().sum::<f32>().is_finite() {
        return Ok(());
    }
    let nan = values.iter().filter(|v| v.is_nan()).count();
    let inf = values.iter().filter(|v| v.is_infinite()).count();
    if nan + inf == 0 {
        return Ok(());
    }
    Err(non_finite(what, position, nan, inf, values.len()))
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
    Err(non_finite(what, position, nan, inf, values.len()))
}

fn non_finite(what: &str, position: usize, nan: usize, inf: usize, of: usize) -> LocalError {
    LocalError::Run(format!(
        "the model computed non-finite values in its {what} at position {position} ({nan} NaN, {inf} infinite of \
         {of}): its weights or its LoRA adapter's hold NaN or infinity, or overflow (check lora_B, lora_alpha and \
         the tensors' dtypes)"
    ))
}
