//! A training run prepared from a workspace: the adapter lane's model, the dataset's train and valid
//! splits rendered into sequences, where the adapter goes — shared by `tunebench train` and the TUI.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{Event, Output, Sequence, Summary, TrainConfig, TrainError, data};
use crate::dataset::{Dataset, Split};
use crate::engine::local::LoadedModel;
use crate::lora::Provenance;
use crate::workspace::Workspace;

/// What the user chose (the CLI's flags; the TUI uses the defaults).
#[derive(Debug, Clone)]
pub struct Options {
    /// The adapter folder name under adapters/ (default: the adapter lane's).
    pub adapter: Option<String>,
    /// `all-linear` or short module names (`q_proj,v_proj`).
    pub targets: String,
    pub device: String,
    pub resume: bool,
    /// Write into adapters/NAME even when it holds an adapter (else a new version beside it).
    pub overwrite: bool,
    /// Write into this folder as it is (a sweep point's own), instead of adapters/NAME or a version.
    pub out_dir: Option<PathBuf>,
    /// Train on the first N train examples of an order shuffled by this seed (so N ⊂ M for N < M).
    pub subset: Option<(usize, u64)>,
    pub config: TrainConfig,
}

pub struct Job {
    pub model: Arc<LoadedModel>,
    pub config: TrainConfig,
    pub train: Vec<Sequence>,
    pub valid: Vec<Sequence>,
    /// Examples left out, with why.
    pub skipped: Vec<String>,
    pub output: Output,
    /// The lane that will use the adapter.
    pub lane: String,
    /// The folder that lane names (the run writes `output.adapter_dir`, which may be a new version beside it).
    pub lane_adapter: Option<PathBuf>,
    pub device: String,
}

/// Short module names for `--targets`, among the family's `modules` (`self_attn.q_proj` …).
pub fn targets(spec: &str, modules: &[&str]) -> Result<Vec<String>, String> {
    let known: Vec<&str> = modules.iter().map(|m| m.rsplit('.').next().unwrap_or(m)).collect();
    if spec == "all-linear" {
        return Ok(known.iter().map(|s| s.to_string()).collect());
    }
    let mut out = Vec::new();
    for t in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !known.contains(&t) {
            return Err(format!("--targets: unknown module `{t}` (all-linear, or some of {})", known.join(", ")));
        }
        out.push(t.to_string());
    }
    if out.is_empty() {
        return Err("--targets: name at least one module, or all-linear".into());
    }
    Ok(out)
}

impl Job {
    pub fn prepare(ws: &Workspace, opts: &Options) -> Result<Self, String> {
        let lane = ws
            .adapter_lane()
            .or_else(|| ws.dataset_lane().map(|(l, _)| l))
            .ok_or("no local lane to train for: give a local lane an `adapter = \"adapters/NAME\"`")?;
        let model_spec =
            ws.models.get(&lane.model).ok_or_else(|| format!("lane `{}`: no [models.{}]", lane.id, lane.model))?;
        let name = adapter_name(lane, opts)?;
        let mut config = opts.config.clone();
        check_config(&config)?;
        let ds = Dataset::load(&ws.dataset_dir()).map_err(|e| e.to_string())?;
        if let Some((s, m)) = ds.malformed().next() {
            return Err(format!(
                "{}:{}: not an example ({}); `tunebench dataset … check` lists them",
                ds.path(s).display(),
                m.line,
                m.error
            ));
        }
        let split = |s: Split| ds.examples().filter(|(x, ..)| *x == s).map(|(_, x, _)| x).collect::<Vec<_>>();
        let (mut train_x, valid_x) = (split(Split::Train), split(Split::Valid));
        if let Some((n, seed)) = opts.subset {
            use rand::SeedableRng;
            use rand::seq::SliceRandom;
            train_x.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            train_x.truncate(n);
        }
        if train_x.is_empty() {
            return Err(format!(
                "{}: no training examples (Ctrl+P promotes answers; `dataset import` adds files)",
                ds.path(Split::Train).display()
            ));
        }
        let (device, dev) = crate::engine::local::pick_device(&opts.device).map_err(|e| e.to_string())?;
        let path = crate::engine::local::paths::resolve(&model_spec.path).map_err(|e| e.to_string())?;
        let model = Arc::new(crate::engine::local::load(&path, &dev, None).map_err(|e| e.to_string())?);
        // The family decides which modules exist (PEFT names differ, e.g. Phi's fused qkv_proj).
        config.targets = targets(&opts.targets, model.base().cfg.family.modules())?;
        config.base_name = match model_spec.path_raw.strip_prefix("hf:") {
            // The hub repo is the name PEFT and the hub know the base by.
            Some(repo) => repo.splitn(3, '/').take(2).collect::<Vec<_>>().join("/"),
            None => base_name(&path),
        };
        let template =
            crate::engine::local::prompt::template_for(&model.tokenizer, model_spec.chat_template.as_deref())
                .map_err(|e| e.to_string())?;
        let (train, mut skipped) = data::sequences(&model.tokenizer, &template, &train_x, config.max_seq_len);
        let (valid, skipped_valid) = data::sequences(&model.tokenizer, &template, &valid_x, config.max_seq_len);
        skipped.extend(skipped_valid);
        let mut all = train_x.clone();
        all.extend(&valid_x);
        let dataset_sha256 = data::hash(&all);
        let hyperparameters = match serde_json::to_value(&config) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        let provenance = Provenance {
            base_sha256: model.sha256().ok(),
            dataset_sha256: Some(dataset_sha256.clone()),
            hyperparameters,
            train_loss: None,
            valid_loss: None,
        };
        let output = Output {
            adapter_dir: match &opts.out_dir {
                Some(d) => d.clone(),
                None => target(&ws.root.join("adapters"), &name, opts.overwrite, opts.resume)?,
            },
            provenance,
            dataset_sha256,
            resume: opts.resume,
        };
        let lane_adapter = lane.adapter.as_deref().map(|a| ws.resolve(a));
        Ok(Self { model, config, train, valid, skipped, output, lane: lane.id.clone(), lane_adapter, device })
    }

    pub fn run(&mut self, stop: &AtomicBool, on_event: &mut dyn FnMut(Event)) -> Result<Summary, TrainError> {
        super::run(self.model.base().clone(), &self.config, &self.train, &self.valid, &mut self.output, stop, on_event)
    }
}

/// The adapter's folder name under adapters/: `--adapter`, else the lane's adapter folder's, else `lora`.
fn adapter_name(lane: &crate::workspace::LaneSpec, opts: &Options) -> Result<String, String> {
    let name = match (&opts.adapter, &lane.adapter) {
        (Some(n), _) => n.clone(),
        // --overwrite replaces the version the lane runs; otherwise the run is the next version of its name.
        (None, Some(a)) if opts.overwrite => {
            Path::new(a).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        }
        (None, Some(a)) => versions_name(Path::new(a)),
        (None, None) => "lora".into(),
    };
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(format!("--adapter `{name}`: a folder name under adapters/"));
    }
    Ok(name)
}

/// The folder a run with `opts` would write now, and the lane it trains for (what F10 shows before it starts).
pub fn planned(ws: &Workspace, opts: &Options) -> Result<(String, PathBuf), String> {
    let lane = ws.adapter_lane().or_else(|| ws.dataset_lane().map(|(l, _)| l)).ok_or("no local lane to train for")?;
    let name = adapter_name(lane, opts)?;
    Ok((lane.id.clone(), target(&ws.root.join("adapters"), &name, opts.overwrite, opts.resume)?))
}

/// The name an adapter folder's versions share: `ticket-lora` for `adapters/ticket-lora` and for its versions
/// `adapters/ticket-lora-v2`, `-v3` … (so that a lane on a version trains the next one, not `ticket-lora-v2-v2`).
pub fn versions_name(adapter: &Path) -> String {
    let name = adapter.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.rsplit_once("-v") {
        Some((base, n)) if !base.is_empty() && n.parse::<usize>().is_ok_and(|n| n >= 2) => base.to_string(),
        _ => name,
    }
}

/// Where a run writes, so that no trained adapter is ever replaced by accident: `adapters/NAME` while it
/// holds nothing (or with `overwrite`), else the next free `adapters/NAME-vN` (N ≥ 2) beside it; a lane keeps
/// the version it names. `resume` continues the newest of them that has a checkpoint.
pub fn target(adapters: &Path, name: &str, overwrite: bool, resume: bool) -> Result<PathBuf, String> {
    let at = |n: usize| if n == 1 { adapters.join(name) } else { adapters.join(format!("{name}-v{n}")) };
    // Versions run 1 (NAME), 2, 3 …; the newest is the highest that exists.
    let newest = (1..).take_while(|&n| n == 1 || at(n).exists()).last().unwrap_or(1);
    if resume {
        return (1..=newest)
            .rev()
            .map(at)
            .find(|d| super::save::latest(&d.join("checkpoints")).is_some())
            .ok_or_else(|| format!("--resume: no checkpoint under {} or its versions", adapters.join(name).display()));
    }
    let first = at(1);
    let holds_anything = |d: &Path| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some());
    if overwrite || !holds_anything(&first) {
        return Ok(first);
    }
    Ok((2..).map(at).find(|d| !d.exists()).unwrap_or(first))
}

/// Refuses settings that would train nonsense or nothing, naming the CLI flag (the TUI uses the defaults).
pub fn check_config(c: &TrainConfig) -> Result<(), String> {
    let counts = [("--rank", c.rank), ("--batch", c.batch), ("--grad-accum", c.grad_accum), ("--epochs", c.epochs)];
    let optional = [("--max-steps", c.max_steps), ("--eval-every", c.eval_every), ("--save-every", c.save_every)];
    let zero = counts.into_iter().chain(optional.into_iter().filter_map(|(f, v)| v.map(|v| (f, v))));
    for (flag, v) in zero.chain([("--max-seq-len", c.max_seq_len)]) {
        if v == 0 {
            return Err(format!("{flag} 0: must be at least 1"));
        }
    }
    let positive = |flag: &str, v: f64| {
        if v.is_finite() && v > 0.0 { Ok(()) } else { Err(format!("{flag} {v}: must be a number > 0")) }
    };
    positive("--lr", c.lr)?;
    positive("--alpha", c.alpha)?;
    if !(c.warmup_ratio.is_finite() && (0.0..=1.0).contains(&c.warmup_ratio)) {
        return Err(format!("--warmup-ratio {}: must be a share of the steps, from 0 to 1", c.warmup_ratio));
    }
    if !(c.weight_decay.is_finite() && c.weight_decay >= 0.0) {
        return Err(format!("--weight-decay {}: must be a number ≥ 0", c.weight_decay));
    }
    if !(c.max_grad_norm.is_finite() && c.max_grad_norm > 0.0) {
        return Err(format!("gradient clipping norm {}: must be a number > 0", c.max_grad_norm));
    }
    Ok(())
}

/// What adapter_config.json names as the base (PEFT's `base_model_name_or_path`): the Hugging Face repo
/// the GGUF names, else its organization and the file name without the quantization suffix
/// (`HuggingFaceTB` + `SmolLM2-135M-Instruct.Q4_1.gguf` → `HuggingFaceTB/SmolLM2-135M-Instruct`), else
/// the path as given.
fn base_name(path: &std::path::Path) -> String {
    let file = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    if path.is_dir() {
        return path.display().to_string();
    }
    let meta = |key: &str| -> Option<String> {
        let mut f = std::fs::File::open(path).ok()?;
        let ct = crate::engine::local::read_gguf_content(&mut f, path).ok()?;
        ct.metadata.get(key).and_then(|v| v.to_string().ok()).cloned()
    };
    if let Some(repo) = meta("general.source.huggingface.repository").or_else(|| meta("general.base_model.0.repo_url"))
    {
        return repo.trim_start_matches("https://huggingface.co/").to_string();
    }
    let stem = file.strip_suffix(".gguf").unwrap_or(&file);
    let stem = match stem.rsplit_once(['.', '-']) {
        Some((head, quant))
            if quant.to_ascii_uppercase().starts_with(['Q', 'F', 'B', 'I'])
                && quant.chars().any(|c| c.is_ascii_digit()) =>
        {
            head
        }
        _ => stem,
    };
    match meta("general.organization") {
        Some(org) => format!("{org}/{stem}"),
        None => path.display().to_string(),
    }
}
