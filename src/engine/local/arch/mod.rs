//! Which family a model file is, and what that family reads from it: GGUF `general.architecture` and
//! config.json's `architectures[0]` (falling back to `model_type`, as transformers does) dispatched to one
//! module per family, each mapping the file's metadata to a `Config` (family, per-layer plan, rope specs) and
//! the tensor names of each layer. Mixture-of-experts and multimodal models are refused by name here.

mod gemma;
mod json;
mod llama;
mod names;
mod phi;
mod qwen;
mod smollm3;

use std::path::Path;

use candle_core::quantized::gguf_file::Content;

pub use json::Json;
pub use names::{LayerTensors, LinearTensors, Scheme, TensorNames, gguf_linear_stem};

use super::decoder::{Family, LayerPlan, RopeScaling, RopeSpec};
use super::weights::{Config, Meta};
use super::{LocalError, Result};

/// What a family module makes of a model file.
pub struct Arch {
    pub cfg: Config,
    pub tensors: TensorNames,
    /// Said in the pane title with the weights' format (e.g. a window the GGUF does not record).
    pub notes: Vec<String>,
}

/// More layers than any released decoder has (Config::validate refuses the same).
const MAX_LAYERS: usize = 1024;

/// The shape numbers every family has, read from the file's usual keys (a family module may adjust them).
pub struct Dims {
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub context: usize,
}

impl Dims {
    /// `arch.*` keys of a GGUF file.
    pub fn gguf(m: &Meta, arch: &str) -> Result<Self> {
        let hidden = m.u32(&format!("{arch}.embedding_length"))? as usize;
        let heads = m.u32(&format!("{arch}.attention.head_count"))? as usize;
        let head_dim = match m.u32(&format!("{arch}.attention.key_length")) {
            Ok(k) => k as usize,
            Err(_) => hidden / heads.max(1),
        };
        let vocab = match m.u32(&format!("{arch}.vocab_size")) {
            Ok(v) => v as usize,
            Err(_) => m.get("tokenizer.ggml.tokens")?.to_vec().map(|v| v.len()).unwrap_or(0),
        };
        Self {
            vocab,
            hidden,
            layers: m.u32(&format!("{arch}.block_count"))? as usize,
            heads,
            kv_heads: m.u32(&format!("{arch}.attention.head_count_kv")).unwrap_or(heads as u32) as usize,
            head_dim,
            rms_eps: f64::from(m.f32(&format!("{arch}.attention.layer_norm_rms_epsilon"))?),
            context: m.u32(&format!("{arch}.context_length"))? as usize,
        }
        .bounded()
    }

    /// config.json's transformers keys.
    pub fn config_json(j: &Json) -> Result<Self> {
        let hidden = j.usize("hidden_size")?;
        let heads = j.usize("num_attention_heads")?;
        Self {
            vocab: j.usize("vocab_size")?,
            hidden,
            layers: j.usize("num_hidden_layers")?,
            heads,
            kv_heads: j.opt_usize("num_key_value_heads")?.unwrap_or(heads),
            head_dim: j.opt_usize("head_dim")?.unwrap_or(hidden / heads.max(1)),
            rms_eps: j.f64("rms_norm_eps")?,
            context: j.usize("max_position_embeddings")?,
        }
        .bounded()
    }

    /// Refuses a layer count that per-layer tables would be sized by before any tensor bounds it.
    fn bounded(self) -> Result<Self> {
        if self.layers == 0 || self.layers > MAX_LAYERS {
            return Err(LocalError::Model(format!("invalid model shape: {} layers", self.layers)));
        }
        Ok(self)
    }

    /// A Config with attention scaled by 1/√head_dim.
    pub fn config(self, family: Family, ropes: Vec<RopeSpec>, layer_plan: Vec<LayerPlan>) -> Config {
        Config {
            vocab: self.vocab,
            hidden: self.hidden,
            layers: self.layers,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            rms_eps: self.rms_eps,
            context: self.context,
            attn_scale: 1.0 / (self.head_dim as f64).sqrt(),
            embed_scale: None,
            rope_switch: None,
            ropes,
            layer_plan,
            family,
        }
    }
}

/// The rope a GGUF's `arch.rope.*` keys describe, read as llama.cpp reads them for dense decoders: base
/// (default 10,000), rotated dimensions (`dimension_count`, default the head), scaling `none`, `linear` (a missing
/// factor means 1) or `yarn` (original context, llama.cpp's betas 32/1, attention factor
/// `0.1·ln(factor) + 1` times `rope.scaling.attn_factor`). Other scalings are refused by name.
pub fn gguf_rope(m: &Meta, arch: &str, head_dim: usize) -> Result<RopeSpec> {
    let key = |k: &str| format!("{arch}.rope.{k}");
    let dims = m.u32(&key("dimension_count")).map_or(head_dim, |d| d as usize);
    let mut rope = RopeSpec::plain(m.f32(&key("freq_base")).unwrap_or(10_000.0), dims);
    let factor = m.f32(&key("scaling.factor")).ok().filter(|f| *f != 0.0).unwrap_or(1.0);
    let kind = m.string(&key("scaling.type")).unwrap_or_else(|_| "none".into());
    match kind.as_str() {
        "none" => {}
        "linear" if factor == 1.0 => {}
        "linear" => rope.scaling = RopeScaling::Linear { factor },
        "yarn" => {
            if let Ok(ext) = m.f32(&key("scaling.yarn_ext_factor"))
                && ext != 1.0
            {
                return Err(LocalError::Unsupported(format!(
                    "YaRN extrapolation factor {ext} ({arch}.rope.scaling.yarn_ext_factor; only 1 is implemented)"
                )));
            }
            let original_context = match m.u32(&key("scaling.original_context_length")) {
                Ok(n) => n as usize,
                Err(_) => m.u32(&format!("{arch}.context_length"))? as usize,
            };
            let mscale = if factor <= 1.0 { 1.0 } else { 0.1 * factor.ln() + 1.0 };
            rope.attention_factor = mscale * m.f32(&key("scaling.attn_factor")).unwrap_or(1.0);
            rope.scaling =
                RopeScaling::Yarn { factor, original_context, beta_fast: 32.0, beta_slow: 1.0, truncate: true };
        }
        other => {
            return Err(LocalError::Unsupported(format!(
                "rope scaling `{other}` ({arch}.rope.scaling.type; implemented: none, linear, yarn)"
            )));
        }
    }
    Ok(rope)
}

/// GGUF architectures that are mixtures of experts or not text decoders, refused by name.
const GGUF_MOE: [&str; 10] =
    ["qwen2moe", "qwen3moe", "mixtral", "deepseek2", "olmoe", "granitemoe", "phimoe", "dbrx", "arctic", "grok"];

/// The family of a GGUF file, from `general.architecture`.
pub fn gguf(ct: &Content) -> Result<Arch> {
    let m = Meta(ct);
    let arch = m.string("general.architecture")?;
    if let Ok(experts) = m.u32(&format!("{arch}.expert_count"))
        && experts > 0
    {
        return Err(LocalError::Unsupported(format!(
            "mixture-of-experts model `{arch}` ({arch}.expert_count = {experts}): only dense decoders run"
        )));
    }
    if GGUF_MOE.contains(&arch.as_str()) || arch.contains("moe") {
        return Err(LocalError::Unsupported(format!("mixture-of-experts model architecture `{arch}`")));
    }
    if arch == "clip" || arch == "mllama" {
        return Err(LocalError::Unsupported(format!(
            "multimodal model file `{arch}` (a vision projector or vision model; only text decoders run)"
        )));
    }
    match arch.as_str() {
        "llama" => llama::gguf(&m),
        "qwen2" | "qwen3" => qwen::gguf(&m, &arch),
        "smollm3" => smollm3::gguf(&m),
        "gemma2" | "gemma3" => gemma::gguf(&m, &arch),
        "phi3" => phi::gguf(&m),
        _ => Err(LocalError::Unsupported(format!(
            "model architecture `{arch}` (general.architecture; supported: {})",
            GGUF_SUPPORTED.join(", ")
        ))),
    }
}

const GGUF_SUPPORTED: [&str; 7] = ["llama", "qwen2", "qwen3", "smollm3", "gemma2", "gemma3", "phi3"];
const HF_SUPPORTED: [&str; 8] = [
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "SmolLM3ForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
    "Phi3ForCausalLM",
];

/// The family of a safetensors folder, from its config.json.
pub fn config_json(path: &Path) -> Result<Arch> {
    let text = std::fs::read_to_string(path).map_err(|source| LocalError::Io { path: path.to_path_buf(), source })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LocalError::Model(format!("{}: {e}", path.display())))?;
    let j = Json::new(&value, path);
    let first = j.strings("architectures")?.into_iter().next();
    let model_type = j.opt_str("model_type")?;
    // transformers falls back to model_type when `architectures` is absent.
    let (arch, key) = match (&first, &model_type) {
        (Some(a), _) => (a.clone(), "architectures[0]"),
        (None, Some(t)) => (t.clone(), "model_type"),
        (None, None) => {
            return Err(LocalError::Model(format!(
                "{}: neither `architectures` nor `model_type` says which model this is",
                path.display()
            )));
        }
    };
    refuse_moe_and_multimodal(&j, &arch, key)?;
    match arch.as_str() {
        "LlamaForCausalLM" | "llama" => llama::config_json(&j, "llama"),
        "MistralForCausalLM" | "mistral" => llama::config_json(&j, "mistral"),
        "Qwen2ForCausalLM" | "qwen2" => qwen::config_json(&j, "qwen2"),
        "Qwen3ForCausalLM" | "qwen3" => qwen::config_json(&j, "qwen3"),
        "SmolLM3ForCausalLM" | "smollm3" => smollm3::config_json(&j),
        "Gemma2ForCausalLM" | "gemma2" => gemma::config_json(&j, false),
        "Gemma3ForCausalLM" | "gemma3_text" => gemma::config_json(&j, true),
        "Phi3ForCausalLM" | "phi3" => phi::config_json(&j),
        _ => Err(LocalError::Unsupported(format!(
            "model architecture `{arch}` ({}: {key}; supported: {})",
            path.display(),
            HF_SUPPORTED.join(", ")
        ))),
    }
}

fn refuse_moe_and_multimodal(j: &Json, arch: &str, key: &str) -> Result<()> {
    let file = j.file().display();
    for experts in ["num_experts", "num_local_experts", "n_routed_experts"] {
        if let Some(n) = j.opt_usize(experts)?
            && n > 0
        {
            return Err(LocalError::Unsupported(format!(
                "mixture-of-experts model `{arch}` ({file}: {experts} = {n}): only dense decoders run"
            )));
        }
    }
    let lower = arch.to_ascii_lowercase();
    if lower.contains("moe") || lower.starts_with("mixtral") {
        return Err(LocalError::Unsupported(format!("mixture-of-experts model `{arch}` ({file}: {key})")));
    }
    if arch.ends_with("ForConditionalGeneration") {
        return Err(LocalError::Unsupported(format!(
            "multimodal model `{arch}` ({file}: {key}): only text decoders (…ForCausalLM) run"
        )));
    }
    for vision in ["vision_config", "audio_config", "vision_tower"] {
        if j.has(vision) {
            return Err(LocalError::Unsupported(format!(
                "multimodal model `{arch}` ({file} has `{vision}`): only text decoders run"
            )));
        }
    }
    Ok(())
}
