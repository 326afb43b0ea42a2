//! Writing what training produces: the adapter in PEFT's format (names, shapes and q/k row order PEFT and
//! transformers expect), tunebench.json beside it, and resumable checkpoints.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::model::TrainModel;
use super::optim::AdamW;
use super::{TrainConfig, TrainError};
use crate::lora::Provenance;
use crate::lora::adapter::{PREFIX, permuted_heads, unpermute_rows};
use crate::workspace::store::write_atomic;

fn tensors_bytes(map: &BTreeMap<String, Tensor>) -> Result<Vec<u8>, TrainError> {
    let contiguous: BTreeMap<&String, Tensor> =
        map.iter().map(|(k, v)| Ok((k, v.contiguous()?))).collect::<candle_core::Result<_>>()?;
    safetensors::serialize(contiguous.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(|e| TrainError::Save(e.to_string()))
}

/// The adapter as PEFT saves it: `lora_A` `[r, in]`, `lora_B` `[out, r]` in Hugging Face row order (GGUF's
/// q/k permutation undone), plus adapter_config.json and tunebench.json.
pub fn adapter(model: &TrainModel, cfg: &TrainConfig, dir: &Path, prov: &Provenance) -> Result<(), TrainError> {
    let c = &model.base.cfg;
    let mut map = BTreeMap::new();
    for (name, pair) in &model.lora {
        let b = match permuted_heads(name, c) {
            Some(heads) => unpermute_rows(pair.b.as_tensor(), heads)?,
            None => pair.b.as_tensor().clone(),
        };
        map.insert(format!("{PREFIX}{name}.lora_A.weight"), pair.a.as_tensor().clone());
        map.insert(format!("{PREFIX}{name}.lora_B.weight"), b);
    }
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "lora_dropout": 0.0,
        "target_modules": cfg.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": null,
        "layers_pattern": null,
        "base_model_name_or_path": cfg.base_name,
        "revision": null,
    });
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Save(format!("{}: {e}", dir.display())))?;
    // Weights before config: a reader never sees a config naming weights that are not there yet.
    write_atomic(&dir.join("adapter_model.safetensors"), &tensors_bytes(&map)?)?;
    write_atomic(&dir.join("adapter_config.json"), pretty(&config).as_bytes())?;
    write_atomic(&dir.join("tunebench.json"), pretty(prov).as_bytes())?;
    Ok(())
}

fn pretty(v: &impl Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// Where a run stands, saved with each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub step: usize,
    /// What the curve depends on: a resume with other settings or data would not continue it.
    pub config_key: String,
    pub dataset_sha256: String,
    pub train_losses: Vec<(usize, f64)>,
    pub valid_losses: Vec<(usize, f64)>,
    pub best_valid: Option<f64>,
    pub evals_without_gain: usize,
    pub tokens: u64,
    pub seconds: f64,
}

pub fn checkpoint(model: &TrainModel, opt: &AdamW, state: &State, dir: &Path) -> Result<(), TrainError> {
    let mut map = BTreeMap::new();
    for (i, (name, pair)) in model.lora.iter().enumerate() {
        map.insert(format!("{name}.a"), pair.a.as_tensor().clone());
        map.insert(format!("{name}.b"), pair.b.as_tensor().clone());
        map.insert(format!("m.{:05}", 2 * i), opt.m[2 * i].clone());
        map.insert(format!("m.{:05}", 2 * i + 1), opt.m[2 * i + 1].clone());
        map.insert(format!("v.{:05}", 2 * i), opt.v[2 * i].clone());
        map.insert(format!("v.{:05}", 2 * i + 1), opt.v[2 * i + 1].clone());
    }
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Save(format!("{}: {e}", dir.display())))?;
    write_atomic(&dir.join("checkpoint.safetensors"), &tensors_bytes(&map)?)?;
    // The state last: its presence marks a complete checkpoint.
    write_atomic(&dir.join("state.json"), pretty(state).as_bytes())?;
    Ok(())
}

/// Restores a checkpoint into `model` and `opt`; returns its state.
pub fn restore(model: &TrainModel, opt: &mut AdamW, dir: &Path) -> Result<State, TrainError> {
    let bad = |e: String| TrainError::Resume(format!("{}: {e}", dir.display()));
    let state: State =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    let t = candle_core::safetensors::load(dir.join("checkpoint.safetensors"), model.device())
        .map_err(|e| bad(e.to_string()))?;
    let get = |k: &str| t.get(k).cloned().ok_or_else(|| bad(format!("no tensor `{k}`")));
    for (i, (name, pair)) in model.lora.iter().enumerate() {
        pair.a.set(&get(&format!("{name}.a"))?)?;
        pair.b.set(&get(&format!("{name}.b"))?)?;
        for j in [2 * i, 2 * i + 1] {
            opt.m[j] = get(&format!("m.{j:05}"))?;
            opt.v[j] = get(&format!("v.{j:05}"))?;
        }
    }
    opt.step = state.step;
    Ok(state)
}

/// The newest complete checkpoint under `root` (`step-NNNNNN` folders with a state.json).
pub fn latest(root: &Path) -> Option<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.join("state.json").is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-"))
        })
        .collect();
    found.sort();
    found.pop()
}
