//! The one decoder every local path runs: inference (fused ops, quantized weights, KV cache) and training
//! (differentiable ops, frozen weights) compute the same forward pass here, for a family described by data
//! (`family.rs`). LoRA-agnostic: a factory keyed by weight name chooses each linear layer.

mod batch;
mod family;
mod ops;
mod pass;
mod rope;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

pub use batch::{Batch, BatchRow, MAX_BATCH};
pub use family::{Activation, Bias, Cap, Family, LayerPlan, Norm, Projections, QkNorm, RopePairs, SoftCaps};
pub use ops::Ops;
pub use rope::{RopeScaling, RopeSpec, RopeSwitch};

use pass::Seg;

use super::cache::KvCache;
use super::cpu::{self, HostCache};
use super::linear::{Lin, LinearFactory};
use super::weights::BaseWeights;
use super::{LocalError, Result};
use crate::workspace::KvCacheType;

/// One lane's (or one training run's) view of a model: the shared base plus the layers its factory chose.
#[derive(Clone)]
pub struct Decoder {
    pub base: Arc<BaseWeights>,
    /// Per layer, in the family's module order (`Family::modules`).
    layers: Vec<Vec<Arc<dyn Lin>>>,
    lm_head: Arc<dyn Lin>,
    ops: Ops,
    /// Inference on the CPU with every layer in host form: the host engine (`cpu/`) runs the forward.
    host: bool,
    /// Inference with every layer over a base layer: candle passes may take this lane's rows beside others'.
    shares: bool,
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
        let shares = ops == Ops::Fused
            && lm_head.base_layer().is_some()
            && layers.iter().flatten().all(|l| l.base_layer().is_some());
        Ok(Self { base, layers, lm_head, ops, host, shares })
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

    /// A generation's KV cache, in f32 (the numbers transformers gives).
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        self.new_cache_of(capacity, KvCacheType::F32)
    }

    /// A generation's KV cache: the host engine holds it in `kv`'s element (see `KvCacheType`); candle's
    /// cache holds the model's own dtype (`holds_kv` says which applies).
    pub fn new_cache_of(&self, capacity: usize, kv: KvCacheType) -> Result<KvCache> {
        let c = &self.base.cfg;
        if self.host {
            return Ok(KvCache::host(c.layers, c.kv_heads, c.head_dim, capacity, kv == KvCacheType::F16));
        }
        Ok(KvCache::new(c.layers, c.kv_heads, c.head_dim, capacity, &self.base.device)?)
    }

    /// Whether a run's KV cache takes the element `new_cache_of` is asked for (the host engine's does; candle's
    /// keeps the model's dtype).
    pub fn holds_kv(&self, kv: KvCacheType) -> bool {
        self.host || kv == KvCacheType::F32
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
            // f32: a training loss reads these.
            let c = &self.base.cfg;
            let mut cache = HostCache::new(c.layers, c.kv_heads, c.head_dim, ids.len(), false);
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
        self.cap_logits(self.lm_head.forward(h)?)
    }

    /// The family's final soft-cap (Gemma 2) on the head's output.
    fn cap_logits(&self, logits: Tensor) -> candle_core::Result<Tensor> {
        match self.base.cfg.family.soft_caps {
            SoftCaps::Tanh { logits: Some(cap), .. } => self.ops.soft_cap(&logits, cap),
            SoftCaps::Tanh { logits: None, .. } | SoftCaps::None => Ok(logits),
        }
    }

    /// The final-normed hidden states `[1, n, hidden]` of `ids` at positions `pos..`. Without a cache the
    /// keys are this call's only (`pos` must then be 0).
    fn hidden(&self, ids: &[u32], pos: usize, cache: Option<&mut KvCache>) -> candle_core::Result<Tensor> {
        let mut rows = [Seg { lins: &self.layers, pos, n: ids.len(), cache }];
        self.hidden_rows(ids, &mut rows)
    }
}

/// `ensure_finite` for host buffers.
fn host_finite(values: &[f32], what: &str, position: usize) -> Result<()> {
    // An exponent of all ones is NaN or infinity; or-ing the test over sixteen lanes vectorizes (a running sum
    // does not: its order is fixed), which matters as every lane of a batched step checks its whole vocabulary.
    const EXP: u32 = 0x7f80_0000;
    let mut bad = [false; 16];
    let chunks = values.chunks_exact(16);
    let rest = chunks.remainder().iter().any(|v| v.to_bits() & EXP == EXP);
    for c in chunks {
        for (b, v) in bad.iter_mut().zip(c) {
            *b |= v.to_bits() & EXP == EXP;
        }
    }
    if !rest && !bad.contains(&true) {
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
