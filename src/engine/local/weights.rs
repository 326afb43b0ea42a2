//! Base model weights, loaded once and shared by every lane: from a GGUF file or a safetensors folder.

use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};

use super::arch::{Arch, LayerTensors, LinearTensors, TensorNames};
use super::cpu::{HostBase, Weights};
use super::decoder::{Family, LayerPlan, RopeScaling, RopeSpec, RopeSwitch};
use super::linear::{BaseLinear, WeightPlan};
use super::{LocalError, Result, candle_text};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub context: usize,
    /// Multiplies q·k before the softmax (1/√head_dim unless the family says otherwise).
    pub attn_scale: f64,
    /// The distinct rope tables the layers use (`LayerPlan::rope` indexes them).
    pub ropes: Vec<RopeSpec>,
    /// Per layer: attention window and rope table.
    pub layer_plan: Vec<LayerPlan>,
    /// Multiplies the token embeddings (Gemma: √hidden, in the dtype transformers computes it in).
    pub embed_scale: Option<f32>,
    /// Longrope's short/long table choice by sequence length (Phi-3.5, Phi-4-mini).
    pub rope_switch: Option<RopeSwitch>,
    /// What the blocks compute (norms, rope layout, activation …): the decoder reads it.
    pub family: Family,
}

/// Positions whose rotary tables are built; longer contexts are capped (and the title says so).
pub const MAX_CONTEXT: usize = 32_768;

impl Config {
    /// Refuses shapes that would panic or mis-run, naming the value.
    pub fn validate(&mut self) -> Result<Option<String>> {
        let bad = |what: String| Err(LocalError::Model(format!("invalid model shape: {what}")));
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!("{} attention heads over {} key/value heads", self.heads, self.kv_heads));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head dimension {}", self.head_dim));
        }
        if self.layers == 0 || self.layers > 1024 || self.vocab == 0 || self.hidden == 0 {
            return bad(format!("{} layers, vocabulary {}, width {}", self.layers, self.vocab, self.hidden));
        }
        if self.layer_plan.len() != self.layers {
            return bad(format!("{} layer plans for {} layers", self.layer_plan.len(), self.layers));
        }
        for (i, plan) in self.layer_plan.iter().enumerate() {
            if let Some(r) = plan.rope
                && r >= self.ropes.len()
            {
                return bad(format!("layer {i} names rope table {r} of {}", self.ropes.len()));
            }
            if plan.window == Some(0) {
                return bad(format!("layer {i} has a sliding window of 0 tokens"));
            }
        }
        if let Some(s) = self.rope_switch
            && (s.short >= self.ropes.len() || s.long >= self.ropes.len())
        {
            return bad(format!("longrope tables {} and {} of {}", s.short, s.long, self.ropes.len()));
        }
        for rope in &self.ropes {
            if rope.dims == 0 || !rope.dims.is_multiple_of(2) || rope.dims > self.head_dim {
                return bad(format!("{} rotary dimensions in heads of {}", rope.dims, self.head_dim));
            }
            if let RopeScaling::FreqFactors(f) = &rope.scaling
                && f.len() != rope.dims / 2
            {
                return bad(format!("{} rope frequency factors for {} rotary dimensions", f.len(), rope.dims));
            }
        }
        if self.context > MAX_CONTEXT {
            let note = format!("context capped at {MAX_CONTEXT} of {}", self.context);
            self.context = MAX_CONTEXT;
            return Ok(Some(note));
        }
        Ok(None)
    }
}

pub struct BaseLayer {
    pub attn_norm: Tensor,
    pub ffn_norm: Tensor,
    /// Norms of the attention and MLP outputs before their residual adds, where the family has them.
    pub post_attn_norm: Option<Tensor>,
    pub post_ffn_norm: Option<Tensor>,
    /// Per-head q and k norm weights `[head_dim]`, where the family has them.
    pub qk_norm: Option<(Tensor, Tensor)>,
    /// In the family's module order (`Family::modules`).
    pub linears: Vec<Arc<BaseLinear>>,
}

pub struct BaseWeights {
    pub cfg: Config,
    pub device: Device,
    pub embed: Embed,
    pub layers: Vec<BaseLayer>,
    pub norm: Tensor,
    pub lm_head: Arc<BaseLinear>,
    /// `(cos, sin)` per rope spec (`Config::ropes`), each `[context, dims / 2]`.
    pub ropes: Vec<(Tensor, Tensor)>,
    /// e.g. "Q8_0 decode · f32 prefill", for the pane title.
    pub format: String,
    /// The output head is the token embedding matrix (no separate lm_head weights).
    pub tied_head: bool,
    /// The host engine's view (on the CPU, when the layers have host weights).
    pub host: Option<HostBase>,
}

impl BaseWeights {
    pub fn bytes(&self) -> usize {
        self.embed.bytes()
            + self.lm_head.bytes()
            + self.layers.iter().map(|l| l.linears.iter().map(|x| x.bytes()).sum::<usize>()).sum::<usize>()
    }
}

/// Reads GGUF metadata, naming the key when it is missing or of the wrong type.
pub struct Meta<'a>(pub &'a Content);

impl Meta<'_> {
    pub fn get(&self, key: &str) -> Result<&Value> {
        self.0.metadata.get(key).ok_or_else(|| LocalError::Model(format!("GGUF metadata has no `{key}`")))
    }
    pub fn u32(&self, key: &str) -> Result<u32> {
        self.get(key)?.to_u32().map_err(|e| LocalError::Model(format!("GGUF `{key}`: {}", candle_text(&e))))
    }
    pub fn f32(&self, key: &str) -> Result<f32> {
        self.get(key)?.to_f32().map_err(|e| LocalError::Model(format!("GGUF `{key}`: {}", candle_text(&e))))
    }
    pub fn string(&self, key: &str) -> Result<String> {
        self.get(key)?.to_string().cloned().map_err(|e| LocalError::Model(format!("GGUF `{key}`: {}", candle_text(&e))))
    }
    /// An optional key: None when absent, an error naming it when present with the wrong type.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        if self.0.metadata.contains_key(key) { self.u32(key).map(Some) } else { Ok(None) }
    }
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        if self.0.metadata.contains_key(key) { self.f32(key).map(Some) } else { Ok(None) }
    }
}

/// Loads a GGUF model's tensors onto `device` with the given weight plan.
pub fn load_gguf<R: std::io::Read + std::io::Seek>(
    ct: &Content,
    reader: &mut R,
    device: &Device,
    plan: WeightPlan,
) -> Result<BaseWeights> {
    let Arch { mut cfg, tensors, mut notes } = super::arch::gguf(ct)?;
    let plan = host_plan(device, plan);
    if device.is_cpu() && plan.decode.is_none() {
        let mut missing: Vec<String> = ct
            .tensor_infos
            .values()
            .filter(|t| t.shape.dims().len() == 2 && super::cpu::kind_of(t.ggml_dtype).is_none())
            .map(|t| super::linear::type_name(t.ggml_dtype))
            .collect();
        missing.sort();
        missing.dedup();
        if !missing.is_empty() {
            notes.push(format!("{} requantized to Q8_0 (no host kernel)", missing.join("+")));
        }
    }
    // A bias the family does not read would silently change nothing: refused instead.
    let read = |l: &LinearTensors| l.bias.then(|| format!("{}.bias", l.stem));
    let expected: std::collections::HashSet<String> =
        tensors.layers.iter().flat_map(|l| l.linears.iter().filter_map(read)).collect();
    if let Some(b) = ct.tensor_infos.keys().find(|k| k.ends_with(".bias") && !expected.contains(*k)) {
        return Err(LocalError::Unsupported(format!("bias tensor `{b}` (this family's projections have none)")));
    }
    let mut get = |name: &str| {
        ct.tensor(reader, name, device).map_err(|e| LocalError::Model(format!("tensor `{name}`: {}", candle_text(&e))))
    };
    let mut factors = |name: &str| -> Result<Vec<f32>> {
        let factors = get(name)?.dequantize(device)?.flatten_all()?.to_vec1::<f32>()?;
        if factors.iter().any(|f| !f.is_finite() || *f <= 0.0) {
            return Err(LocalError::Model(format!("tensor `{name}`: rope frequency factors must be positive")));
        }
        Ok(factors)
    };
    if let Some(name) = &tensors.rope_freqs {
        let factors = factors(name)?;
        for rope in &mut cfg.ropes {
            rope.scaling = RopeScaling::FreqFactors(factors.clone());
        }
    }
    for (table, name) in &tensors.table_factors {
        let factors = factors(name)?;
        let rope =
            cfg.ropes.get_mut(*table).ok_or_else(|| LocalError::Model(format!("`{name}` names no rope table")))?;
        rope.scaling = RopeScaling::FreqFactors(factors);
    }
    let capped = cfg.validate()?;
    let embed_q = get(&tensors.embed)?;
    // On the CPU the host engine reads embedding rows from the file's bytes (the tied head's, when tied):
    // no f32 copy of the vocabulary, ever.
    let embed = if device.is_cpu() {
        match &tensors.lm_head {
            None => None,
            Some(_) => Some(Embed::Host(Arc::new(host_weights("token embeddings", &embed_q)?))),
        }
    } else {
        Some(Embed::Tensor(embed_q.dequantize(device)?))
    };
    let norm = shift(get(&tensors.norm)?.dequantize(device)?, tensors.norm_shift)?;
    let tied_head = tensors.lm_head.is_none();
    let head_q = match &tensors.lm_head {
        None => embed_q,
        Some(name) => get(name)?,
    };
    let lm_head = Arc::new(BaseLinear::from_qtensor("lm_head", head_q, WeightPlan { f32_prefill: false, ..plan })?);
    let embed = tied_embed(embed, &lm_head)?;
    let get = std::cell::RefCell::new(get);
    let layers = build_layers(
        &tensors,
        |l| {
            let mut get = get.borrow_mut();
            let bias = if l.bias { Some(get(&format!("{}.bias", l.stem))?.dequantize(device)?) } else { None };
            let lin = BaseLinear::from_qtensor(&l.module, get(&format!("{}.weight", l.stem))?, plan)?;
            Ok(Arc::new(lin.with_bias(bias)?))
        },
        |name| shift(get.borrow_mut()(name)?.dequantize(device)?, tensors.norm_shift),
    )?;
    let mut format = plan.describe(&super::gguf::weight_format(ct));
    for note in capped.into_iter().chain(notes) {
        format.push_str(&format!(" · {note}"));
    }
    finish(cfg, device, Parts { embed, layers, norm, lm_head, format, tied_head })
}

/// The token embeddings: a tensor for candle (GPUs), or host weights in the file's format whose rows are
/// dequantized on lookup (the CPU; shared with the output head when it is tied).
pub enum Embed {
    Tensor(Tensor),
    Host(Arc<Weights>),
}

impl Embed {
    pub fn dims(&self) -> [usize; 2] {
        match self {
            Embed::Tensor(t) => {
                let d = t.dims();
                [d.first().copied().unwrap_or(0), d.get(1).copied().unwrap_or(0)]
            }
            Embed::Host(w) => [w.rows, w.cols],
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Embed::Tensor(t) => t.elem_count() * t.dtype().size_in_bytes(),
            Embed::Host(w) => w.bytes(),
        }
    }

    /// `[1, ids.len(), hidden]` f32 on `device`.
    pub fn rows(&self, ids: &[u32], device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Embed::Tensor(t) => t.index_select(&Tensor::new(ids, device)?, 0)?.unsqueeze(0),
            Embed::Host(w) => {
                let mut values = vec![0f32; ids.len() * w.cols];
                for (row, &id) in values.chunks_exact_mut(w.cols).zip(ids) {
                    if id as usize >= w.rows {
                        candle_core::bail!("token id {id} is not below the vocabulary size {}", w.rows);
                    }
                    w.dequantize_row(id as usize, row);
                }
                Tensor::from_vec(values, (1, ids.len(), w.cols), device)
            }
        }
    }
}

/// The embeddings a loader found, or (None: tied on the CPU) the output head's own host weights.
pub fn tied_embed(embed: Option<Embed>, lm_head: &BaseLinear) -> Result<Embed> {
    match (embed, lm_head.host_weights()) {
        (Some(e), _) => Ok(e),
        (None, Some(w)) => Ok(Embed::Host(w.clone())),
        (None, None) => Err(LocalError::Model("token embeddings: the tied output head has no host form".into())),
    }
}

/// A GGUF tensor as host weights in its own format (f32 when no host kernel reads its type).
fn host_weights(name: &str, q: &candle_core::quantized::QTensor) -> Result<Weights> {
    let (rows, cols) = q.shape().dims2()?;
    let err = |e: String| LocalError::Model(format!("{name}: {e}"));
    match super::cpu::kind_of(q.dtype()) {
        Some(kind) => Weights::new(kind, rows, cols, &q.data()?).map_err(err),
        None => {
            let values = q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
            Weights::from_f32(rows, cols, &values).map_err(err)
        }
    }
}

/// On the CPU the host engine holds one form of each weight for every phase: no f32 prefill copy.
pub fn host_plan(device: &Device, plan: WeightPlan) -> WeightPlan {
    if device.is_cpu() { WeightPlan { f32_prefill: false, ..plan } } else { plan }
}

/// A norm weight with `TensorNames::norm_shift` added (Gemma's `1 + w` from safetensors).
pub fn shift(w: Tensor, by: f32) -> Result<Tensor> {
    if by == 0.0 { Ok(w) } else { Ok((w + f64::from(by))?) }
}

/// Each layer's tensors by name: `linear` makes a projection (with its bias), `vector` reads a norm weight.
pub fn build_layers(
    names: &TensorNames,
    mut linear: impl FnMut(&LinearTensors) -> Result<Arc<BaseLinear>>,
    mut vector: impl FnMut(&str) -> Result<Tensor>,
) -> Result<Vec<BaseLayer>> {
    let mut layers = Vec::with_capacity(names.layers.len());
    for LayerTensors { linears, attn_norm, ffn_norm, post_attn_norm, post_ffn_norm, qk_norm } in &names.layers {
        let linears = linears.iter().map(&mut linear).collect::<Result<Vec<_>>>()?;
        let post_attn_norm = post_attn_norm.as_deref().map(&mut vector).transpose()?;
        let post_ffn_norm = post_ffn_norm.as_deref().map(&mut vector).transpose()?;
        let qk_norm = match qk_norm {
            Some((q, k)) => Some((vector(q)?, vector(k)?)),
            None => None,
        };
        layers.push(BaseLayer {
            attn_norm: vector(attn_norm)?,
            ffn_norm: vector(ffn_norm)?,
            post_attn_norm,
            post_ffn_norm,
            qk_norm,
            linears,
        });
    }
    Ok(layers)
}

/// The loaded tensors of a model, before the shared tables are built.
pub struct Parts {
    pub embed: Embed,
    pub layers: Vec<BaseLayer>,
    pub norm: Tensor,
    pub lm_head: Arc<BaseLinear>,
    pub format: String,
    pub tied_head: bool,
}

pub fn finish(cfg: Config, device: &Device, p: Parts) -> Result<BaseWeights> {
    // Before any table is sized by the metadata: the tensors (bounded by the file) must agree with it.
    super::shapes::check(&cfg, &p)?;
    let ropes = cfg.ropes.iter().map(|r| r.tables(cfg.context, device)).collect::<candle_core::Result<Vec<_>>>()?;
    let Parts { embed, layers, norm, lm_head, format, tied_head } = p;
    let host = if device.is_cpu() { HostBase::new(&embed, &lm_head, &layers, &norm, &ropes)? } else { None };
    Ok(BaseWeights { cfg, device: device.clone(), embed, layers, norm, lm_head, ropes, format, tied_head, host })
}
