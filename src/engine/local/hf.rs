//! A Hugging Face model folder: config.json + tokenizer.json (+ tokenizer_config.json) + *.safetensors.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::decoder::{Family, RopePairs};
use super::linear::{BaseLinear, WeightPlan};
use super::tokenizer::{Model, Tokenizer, Vocab};
use super::weights::{BaseLayer, BaseWeights, Config, MODULES, Parts, finish};
use super::{LocalError, Result};

#[derive(Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    #[serde(default = "theta")]
    rope_theta: f32,
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Option<serde_json::Value>,
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
}

fn theta() -> f32 {
    10_000.0
}

#[derive(Deserialize, Default)]
struct TokConfig {
    chat_template: Option<serde_json::Value>,
    add_bos_token: Option<bool>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| LocalError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| LocalError::Model(format!("{}: {e}", path.display())))
}

/// A folder's weight files, in name order (the order shards and hashes use): those the
/// `model.safetensors.index.json` weight_map names when there is one (Mistral repos also ship
/// consolidated.safetensors, the same weights under other names, which must not load), else every
/// *.safetensors. A shard the index names but the folder lacks is an error naming it.
pub fn safetensors_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return indexed_files(dir, &index);
    }
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| LocalError::Io { path: dir.to_path_buf(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    Ok(files)
}

fn indexed_files(dir: &Path, index: &Path) -> Result<Vec<std::path::PathBuf>> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let idx: Index = read_json(index)?;
    let bad = |why: String| Err(LocalError::Model(format!("{}: {why}", index.display())));
    let names: std::collections::BTreeSet<&String> = idx.weight_map.values().collect();
    if names.is_empty() {
        return bad("weight_map names no files".into());
    }
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        // A shard lives in the folder itself: a path out of it is not one.
        let plain = Path::new(name).file_name().is_some_and(|f| f == name.as_str());
        if !plain {
            return bad(format!("weight_map names `{name}`, which is not a file name in this folder"));
        }
        let path = dir.join(name);
        if !path.is_file() {
            return bad(format!("weight_map names the shard `{name}`, which is missing from {}", dir.display()));
        }
        files.push(path);
    }
    Ok(files)
}

/// `plan` None: the per-device default, sized by the weights' f32 footprint.
pub fn load(dir: &Path, device: &Device, plan: Option<WeightPlan>) -> Result<(BaseWeights, Tokenizer)> {
    let hc: HfConfig = read_json(&dir.join("config.json"))?;
    let arch = hc.architectures.first().cloned().unwrap_or_default();
    if !matches!(arch.as_str(), "LlamaForCausalLM" | "MistralForCausalLM") {
        return Err(LocalError::Unsupported(format!(
            "model architecture `{arch}` (supported: LlamaForCausalLM, MistralForCausalLM)"
        )));
    }
    if hc.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(LocalError::Unsupported("rope_scaling (config.json)".into()));
    }
    if hc.attention_bias || hc.mlp_bias {
        return Err(LocalError::Unsupported("attention_bias / mlp_bias (config.json)".into()));
    }
    let mut cfg = Config {
        vocab: hc.vocab_size,
        hidden: hc.hidden_size,
        layers: hc.num_hidden_layers,
        heads: hc.num_attention_heads,
        kv_heads: hc.num_key_value_heads.unwrap_or(hc.num_attention_heads),
        head_dim: hc.head_dim.unwrap_or(hc.hidden_size / hc.num_attention_heads.max(1)),
        rms_eps: hc.rms_norm_eps,
        rope_theta: hc.rope_theta,
        context: hc.max_position_embeddings,
        family: Family::llama(RopePairs::Halves),
    };
    let capped = cfg.validate()?;
    let files = safetensors_files(dir)?;
    if files.is_empty() {
        return Err(LocalError::Model(format!("{}: no *.safetensors files", dir.display())));
    }
    let mut tensors = std::collections::HashMap::new();
    for f in &files {
        tensors.extend(
            candle_core::safetensors::load(f, device)
                .map_err(|e| LocalError::Model(format!("{}: {}", f.display(), super::candle_text(&e))))?,
        );
    }
    let f32_bytes: usize = tensors.values().map(|t| t.elem_count() * 4).sum();
    let plan = plan.unwrap_or_else(|| super::store::plan_for(device, f32_bytes));
    let mut take = |name: &str| -> Result<Tensor> {
        let t =
            tensors.remove(name).ok_or_else(|| LocalError::Model(format!("{}: no tensor `{name}`", dir.display())))?;
        if !matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16) {
            return Err(LocalError::Unsupported(format!(
                "tensor `{name}` of type {:?} (f32, f16 or bf16 expected)",
                t.dtype()
            )));
        }
        Ok(t.to_dtype(DType::F32)?)
    };
    let embed = take("model.embed_tokens.weight")?;
    let norm = take("model.norm.weight")?;
    let head = if hc.tie_word_embeddings { embed.clone() } else { take("lm_head.weight")? };
    let lm_head = Arc::new(BaseLinear::from_tensor("lm_head", head, WeightPlan { f32_prefill: false, ..plan })?);
    let mut layers = Vec::with_capacity(cfg.layers);
    for i in 0..cfg.layers {
        let mut linears = Vec::with_capacity(7);
        for m in MODULES {
            let name = format!("model.layers.{i}.{m}");
            linears.push(Arc::new(BaseLinear::from_tensor(&name, take(&format!("{name}.weight"))?, plan)?));
        }
        layers.push(BaseLayer {
            attn_norm: take(&format!("model.layers.{i}.input_layernorm.weight"))?,
            ffn_norm: take(&format!("model.layers.{i}.post_attention_layernorm.weight"))?,
            linears,
        });
    }
    let mut format = plan.describe("f32");
    if let Some(note) = capped {
        format.push_str(&format!(" · {note}"));
    }
    let base = finish(cfg, device, Parts { embed, layers, norm, lm_head, format, tied_head: hc.tie_word_embeddings })?;
    Ok((base, tokenizer_with(dir, &hc)?))
}

/// The tokenizer of a model folder (tokenizer.json, with specials and template from the configs).
pub fn tokenizer(dir: &Path) -> Result<Tokenizer> {
    let hc: HfConfig = read_json(&dir.join("config.json"))?;
    tokenizer_with(dir, &hc)
}

/// transformers 5 writes the template to `chat_template.jinja` beside tokenizer_config.json; that file wins
/// over the config's copy, as it does in transformers.
fn folder_template(dir: &Path) -> Result<Option<String>> {
    let path = dir.join("chat_template.jinja");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| LocalError::Io { path: path.clone(), source })?;
    Ok(Some(text).filter(|t| !t.trim().is_empty()))
}

/// tokenizer_config.json's `chat_template`: a string, or a list of `{name, template}` whose `default` is
/// the chat template (the others are for tools or RAG).
fn config_template(v: Option<serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Array(named) => named.iter().find_map(|t| {
            (t.get("name")?.as_str()? == "default").then(|| t.get("template")?.as_str().map(str::to_string))?
        }),
        _ => None,
    }
}

fn tokenizer_with(dir: &Path, hc: &HfConfig) -> Result<Tokenizer> {
    let tc: TokConfig = if dir.join("tokenizer_config.json").is_file() {
        read_json(&dir.join("tokenizer_config.json"))?
    } else {
        TokConfig::default()
    };
    let template = match folder_template(dir)? {
        Some(t) => Some(t),
        None => config_template(tc.chat_template),
    };
    let eos = match &hc.eos_token_id {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| x as u32),
        Some(serde_json::Value::Array(a)) => a.first().and_then(|v| v.as_u64()).map(|x| x as u32),
        _ => None,
    };
    let stop_ids: Vec<u32> = match &hc.eos_token_id {
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_u64().map(|x| x as u32)).collect(),
        _ => eos.into_iter().collect(),
    };
    let mut seed = Vocab::finish(
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Model::Spm { add_space_prefix: false },
        hc.bos_token_id,
        eos,
        stop_ids,
        tc.add_bos_token.unwrap_or(false),
        template,
    );
    seed.context_length = Some(hc.max_position_embeddings);
    Ok(Tokenizer::from_hf_json(&dir.join("tokenizer.json"), seed)?)
}
