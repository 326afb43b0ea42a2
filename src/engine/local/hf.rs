//! A Hugging Face model folder: config.json + tokenizer.json (+ tokenizer_config.json) + *.safetensors.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::arch::{Arch, LinearTensors};
use super::cpu::Weights;
use super::linear::{BaseLinear, WeightPlan};
use super::tokenizer::{Model, Tokenizer, Vocab};
use super::weights::{BaseWeights, Embed, Parts, build_layers, finish, shift, tied_embed};
use super::{LocalError, Result};

/// What the tokenizer reads from config.json (the model's shape is `arch`'s business).
#[derive(Deserialize)]
struct HfConfig {
    max_position_embeddings: Option<usize>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<serde_json::Value>,
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
/// `model.safetensors.index.json` weight_map names when there is one, else every *.safetensors. Mistral repos
/// also ship consolidated.safetensors, the same weights under Mistral's own names: it never loads beside
/// transformers' files (it would double the memory), only when it is the folder's one weights file. A shard the
/// index names but the folder lacks is an error naming it.
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
    let mistral =
        |p: &std::path::PathBuf| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("consolidated"));
    if files.iter().any(|p| !mistral(p)) {
        files.retain(|p| !mistral(p));
    }
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
    let Arch { mut cfg, tensors: names, notes } = super::arch::config_json(&dir.join("config.json"))?;
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
    // A bias the family does not read would silently change nothing: refused instead.
    let read = |l: &LinearTensors| l.bias.then(|| format!("{}.bias", l.stem));
    let expected: std::collections::HashSet<String> =
        names.layers.iter().flat_map(|l| l.linears.iter().filter_map(read)).collect();
    let mut stray: Vec<&String> = tensors.keys().filter(|k| k.ends_with(".bias") && !expected.contains(*k)).collect();
    stray.sort();
    if let Some(b) = stray.first() {
        return Err(LocalError::Unsupported(format!(
            "bias tensor `{b}` ({}: this family's projections have none)",
            dir.display()
        )));
    }
    let f32_bytes: usize = tensors.values().map(|t| t.elem_count() * 4).sum();
    let plan = super::weights::host_plan(device, plan.unwrap_or_else(|| super::store::plan_for(device, f32_bytes)));
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
    let embed = take(&names.embed)?;
    let norm = shift(take(&names.norm)?, names.norm_shift)?;
    let tied_head = names.lm_head.is_none();
    let head = match &names.lm_head {
        None => embed.clone(),
        Some(name) => take(name)?,
    };
    let lm_head = Arc::new(BaseLinear::from_tensor("lm_head", head, WeightPlan { f32_prefill: false, ..plan })?);
    // On the CPU: the host engine's f32 rows (the tied head's own, when tied), no second copy.
    let embed = if !device.is_cpu() {
        Embed::Tensor(embed)
    } else if tied_head {
        tied_embed(None, &lm_head)?
    } else {
        let values = embed.flatten_all()?.to_vec1::<f32>()?;
        let w = Weights::from_f32(cfg.vocab, cfg.hidden, &values)
            .map_err(|e| LocalError::Model(format!("token embeddings: {e}")))?;
        Embed::Host(Arc::new(w))
    };
    let take = std::cell::RefCell::new(take);
    let layers = build_layers(
        &names,
        |l| {
            let mut take = take.borrow_mut();
            let bias = if l.bias { Some(take(&format!("{}.bias", l.stem))?) } else { None };
            let w = take(&format!("{}.weight", l.stem))?;
            Ok(Arc::new(BaseLinear::from_tensor(&l.module, w, plan)?.with_bias(bias)?))
        },
        |name| shift(take.borrow_mut()(name)?, names.norm_shift),
    )?;
    let mut format = plan.describe("f32");
    for note in capped.into_iter().chain(notes) {
        format.push_str(&format!(" · {note}"));
    }
    let base = finish(cfg, device, Parts { embed, layers, norm, lm_head, format, tied_head })?;
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
    seed.context_length = hc.max_position_embeddings;
    Ok(Tokenizer::from_hf_json(&dir.join("tokenizer.json"), seed)?)
}
