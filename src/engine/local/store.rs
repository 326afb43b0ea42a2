//! Loaded models, one per (file, device): weights, tokenizer and chat template shared by every lane.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::Device;
use candle_core::quantized::{GgmlDType, gguf_file};

use super::linear::{WeightPlan, plain};
use super::model::Llama;
use super::template::ChatTemplate;
use super::tokenizer::{Tokenizer, Vocab};
use super::weights::{BaseWeights, load_gguf};
use super::{LocalError, Result, hf, paths};

pub struct LoadedModel {
    /// The base model with plain layers: what a lane without an adapter runs.
    pub plain: Arc<Llama>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub path: PathBuf,
    pub load_secs: f64,
}

impl LoadedModel {
    pub fn base(&self) -> &Arc<BaseWeights> {
        &self.plain.base
    }
}

#[derive(Default)]
pub struct ModelStore {
    models: Mutex<HashMap<(PathBuf, String), Arc<LoadedModel>>>,
}

/// Below this size of f32 weights, prefill keeps an f32 copy (fast matmul on CPU); above it, memory wins.
const F32_PREFILL_BUDGET: usize = 2 << 30;

impl ModelStore {
    /// The model at `path` on `device`, loading it on first use.
    pub fn get(&self, path: &Path, device: &Device, device_name: &str) -> Result<Arc<LoadedModel>> {
        let resolved = paths::resolve(path)?;
        let key = (resolved.clone(), device_name.to_string());
        if let Some(m) = self.models.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(m.clone());
        }
        let model = Arc::new(load(&resolved, device, None)?);
        self.models.lock().map_err(|_| poisoned())?.insert(key, model.clone());
        Ok(model)
    }
}

/// Loads a model without the store: with `plan`, exactly that weight form (benchmarks compare them).
pub fn load(path: &Path, device: &Device, plan: Option<WeightPlan>) -> Result<LoadedModel> {
    let started = std::time::Instant::now();
    let (base, tokenizer) = if path.is_dir() {
        hf::load(path, device, plan.unwrap_or_else(|| plan_for(device, 0)))?
    } else {
        load_gguf_file(path, device, plan)?
    };
    let template = ChatTemplate::new(tokenizer.vocab.chat_template.as_deref(), |t| tokenizer.token_id(t).is_some())?;
    let plain = Arc::new(Llama::new(Arc::new(base), &plain)?);
    Ok(LoadedModel {
        plain,
        tokenizer: Arc::new(tokenizer),
        template,
        path: path.to_path_buf(),
        load_secs: started.elapsed().as_secs_f64(),
    })
}

fn load_gguf_file(path: &Path, device: &Device, plan: Option<WeightPlan>) -> Result<(BaseWeights, Tokenizer)> {
    let mut f = std::fs::File::open(path).map_err(|source| LocalError::Io { path: path.to_path_buf(), source })?;
    let ct = gguf_file::Content::read(&mut f)
        .map_err(|e| LocalError::Model(format!("{}: not a GGUF file: {e}", path.display())))?;
    let f32_bytes: usize = ct.tensor_infos.values().map(|t| t.shape.elem_count() * 4).sum();
    let base = load_gguf(&ct, &mut f, device, plan.unwrap_or_else(|| plan_for(device, f32_bytes)))?;
    let tokenizer = Tokenizer::from_vocab(Vocab::from_gguf(&ct)?)?;
    if tokenizer.vocab.len() != base.cfg.vocab {
        return Err(LocalError::Model(format!(
            "{}: the tokenizer has {} tokens but the model {}",
            path.display(),
            tokenizer.vocab.len(),
            base.cfg.vocab
        )));
    }
    Ok((base, tokenizer))
}

/// Per-phase weights: on the CPU, Q8_0 decodes fastest and f32 prefills fastest (benches/local.rs
/// measures both); GPUs run the file's own format.
pub fn plan_for(device: &Device, f32_bytes: usize) -> WeightPlan {
    if device.is_cpu() {
        WeightPlan { decode: Some(GgmlDType::Q8_0), f32_prefill: f32_bytes <= F32_PREFILL_BUDGET }
    } else {
        WeightPlan { decode: None, f32_prefill: false }
    }
}

fn poisoned() -> LocalError {
    LocalError::Run("the model store lock was poisoned by an earlier panic".into())
}
