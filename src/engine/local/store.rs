//! Loaded models, one per (file, device): weights, tokenizer and chat template shared by every lane.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::Device;

use super::decoder::Llama;
use super::linear::{WeightPlan, plain};
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
    /// Adapter views of this base, by adapter folder, with the weights file's mtime they were read at.
    adapters: Mutex<AdapterCache>,
    sha256: std::sync::OnceLock<String>,
}

/// Adapter views by folder, with the weights file's mtime when read.
type AdapterCache = HashMap<PathBuf, (Option<String>, Arc<AdapterView>)>;

/// A lane's model with an adapter applied (sharing this base), and what to tell the user about it.
pub struct AdapterView {
    pub model: Arc<Llama>,
    pub name: String,
    pub rank: usize,
    pub modules: usize,
    pub warnings: Vec<String>,
}

impl LoadedModel {
    pub fn base(&self) -> &Arc<BaseWeights> {
        &self.plain.base
    }

    /// The base with the adapter at `dir`; re-read when the adapter's files change, never the base.
    pub fn with_adapter(&self, dir: &Path) -> Result<Arc<AdapterView>> {
        // Any of the adapter's files changing (weights, config, provenance) means reading it again.
        let stamp = |f: &str| std::fs::metadata(dir.join(f)).ok().map(|m| (m.len(), m.modified().ok()));
        let mtime = Some(format!(
            "{:?}",
            [stamp("adapter_model.safetensors"), stamp("adapter_config.json"), stamp("tunebench.json"), stamp("")]
        ));
        let mut cache = self.adapters.lock().map_err(|_| poisoned())?;
        if let Some((t, v)) = cache.get(dir)
            && *t == mtime
        {
            return Ok(v.clone());
        }
        let adapter = crate::lora::Adapter::load(dir, self.base())
            .map_err(|e| LocalError::Run(format!("adapter {}: {e}", dir.display())))?;
        let mut warnings = Vec::new();
        for (left_out, why) in [
            (&adapter.unmatched, "match no layer of this model"),
            (&adapter.untargeted, "are for modules adapter_config.json does not target"),
        ] {
            if let Some(first) = left_out.first() {
                warnings.push(format!(
                    "adapter {}: {} tensor(s) {why} and are not applied (first: {first})",
                    adapter.name,
                    left_out.len()
                ));
            }
        }
        if let Some(e) = &adapter.provenance_error {
            warnings.push(format!("adapter {}: provenance not read: {e}", adapter.name));
        }
        if let Some(want) = adapter.provenance.as_ref().and_then(|p| p.base_sha256.clone()) {
            match self.sha256() {
                Ok(have) if !want.eq_ignore_ascii_case(&have) => warnings.push(format!(
                    "adapter {} was trained on another base (sha256 {}…), not this model ({}…)",
                    adapter.name,
                    want.chars().take(12).collect::<String>(),
                    have.chars().take(12).collect::<String>()
                )),
                Ok(_) => {}
                Err(e) => warnings.push(format!("adapter {}: cannot compare its recorded base: {e}", adapter.name)),
            }
        }
        let model = Arc::new(adapter.view(self.base()).map_err(|e| LocalError::Run(e.to_string()))?);
        let view = Arc::new(AdapterView {
            model,
            name: adapter.name.clone(),
            rank: adapter.rank(),
            modules: adapter.modules.len(),
            warnings,
        });
        cache.insert(dir.to_path_buf(), (mtime, view.clone()));
        Ok(view)
    }

    /// sha256 of the model file, or of a folder's *.safetensors in name order (computed once, when an
    /// adapter's provenance asks for it).
    pub fn sha256(&self) -> Result<String> {
        if let Some(s) = self.sha256.get() {
            return Ok(s.clone());
        }
        let s = if self.path.is_dir() { folder_sha256(&self.path)? } else { file_sha256(&self.path)? };
        Ok(self.sha256.get_or_init(|| s).clone())
    }
}

fn folder_sha256(dir: &Path) -> Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for f in hf::safetensors_files(dir)? {
        h.update(file_sha256(&f)?.as_bytes());
    }
    Ok(crate::metrics::history::hex(&h.finalize()))
}

pub fn file_sha256(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|source| LocalError::Io { path: path.to_path_buf(), source })?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|source| LocalError::Io { path: path.to_path_buf(), source })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::metrics::history::hex(&h.finalize()))
}

#[derive(Default)]
pub struct ModelStore {
    models: Mutex<HashMap<(PathBuf, String), Arc<LoadedModel>>>,
}

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
    load_unnamed(path, device, plan).map_err(|e| in_file(path, e))
}

/// Whatever went wrong inside a model file names the file: a tensor's or a key's name alone does not say
/// which of the workspace's models is broken.
fn in_file(path: &Path, e: LocalError) -> LocalError {
    let (file, text) = (path.display().to_string(), e.to_string());
    if text.contains(&file) { e } else { LocalError::Model(format!("{file}: {text}")) }
}

fn load_unnamed(path: &Path, device: &Device, plan: Option<WeightPlan>) -> Result<LoadedModel> {
    let started = std::time::Instant::now();
    let (base, tokenizer) = if path.is_dir() {
        hf::load(path, device, plan)?
    } else {
        let mut f = std::fs::File::open(path).map_err(|source| LocalError::Io { path: path.to_path_buf(), source })?;
        read_gguf(&mut f, path, device, plan)?
    };
    assemble(base, tokenizer, path, started)
}

/// Loads a GGUF model from any reader (`path` names it in errors): what `load` does for a file.
pub fn load_gguf_from<R: std::io::Read + std::io::Seek>(
    reader: &mut R,
    path: &Path,
    device: &Device,
    plan: Option<WeightPlan>,
) -> Result<LoadedModel> {
    let started = std::time::Instant::now();
    let (base, tokenizer) = read_gguf(reader, path, device, plan)?;
    assemble(base, tokenizer, path, started)
}

fn assemble(base: BaseWeights, tokenizer: Tokenizer, path: &Path, started: std::time::Instant) -> Result<LoadedModel> {
    let template = ChatTemplate::new(tokenizer.vocab.chat_template.as_deref(), |t| tokenizer.token_id(t).is_some())?;
    let plain = Arc::new(Llama::new(Arc::new(base), &plain)?);
    Ok(LoadedModel {
        plain,
        tokenizer: Arc::new(tokenizer),
        template,
        path: path.to_path_buf(),
        load_secs: started.elapsed().as_secs_f64(),
        adapters: Mutex::default(),
        sha256: std::sync::OnceLock::new(),
    })
}

fn read_gguf<R: std::io::Read + std::io::Seek>(
    f: &mut R,
    path: &Path,
    device: &Device,
    plan: Option<WeightPlan>,
) -> Result<(BaseWeights, Tokenizer)> {
    let ct = super::gguf::read_content(f, path)?;
    // read_content checked that every tensor fits in the file, so this sum cannot overflow.
    let f32_bytes: usize = ct.tensor_infos.values().map(|t| t.shape.elem_count() * 4).sum();
    let base = load_gguf(&ct, f, device, plan.unwrap_or_else(|| plan_for(device, f32_bytes)))?;
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

/// The file's own format, in every phase: on the CPU the host engine runs every GGML type it has a kernel for
/// (a type without one is requantized to Q8_0 and the title says so); GPUs run candle on the file's format.
pub fn plan_for(_device: &Device, _f32_bytes: usize) -> WeightPlan {
    WeightPlan { decode: None, f32_prefill: false }
}

fn poisoned() -> LocalError {
    LocalError::Run("the model store lock was poisoned by an earlier panic".into())
}
