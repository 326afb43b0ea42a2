//! Reading an adapter folder (adapter_config.json + adapter_model.safetensors [+ tunebench.json]) against
//! the base it will wrap: names mapped, shapes checked, GGUF's q/k row order followed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::{AdapterConfig, LoraError, LoraLinear};
use crate::engine::local::{BaseLinear, BaseWeights, Lin, Llama};

/// What tunebench records beside an adapter it trains (adapters/NAME/tunebench.json).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// sha256 of the base model file the adapter was trained on.
    pub base_sha256: Option<String>,
    pub dataset_sha256: Option<String>,
    #[serde(default)]
    pub hyperparameters: serde_json::Map<String, serde_json::Value>,
    /// Training loss at the saved step, and validation loss there (when there was a validation set).
    #[serde(default)]
    pub train_loss: Option<f64>,
    #[serde(default)]
    pub valid_loss: Option<f64>,
}

/// One adapted module: A `[r, in]`, B `[out, r]` (rows already in the base's order), and its scale.
pub struct ModuleDelta {
    pub a: Tensor,
    pub b: Tensor,
    pub rank: usize,
    pub scale: f64,
}

pub struct Adapter {
    pub name: String,
    pub dir: PathBuf,
    pub config: AdapterConfig,
    pub modules: HashMap<String, ModuleDelta>,
    pub provenance: Option<Provenance>,
    /// Tensors that match no layer of the base (reported, not applied).
    pub unmatched: Vec<String>,
    /// Tensors of layers adapter_config.json does not target (reported, not applied, as PEFT would).
    pub untargeted: Vec<String>,
    /// tunebench.json was there but could not be read.
    pub provenance_error: Option<String>,
}

/// What PEFT puts before a module's name in adapter_model.safetensors.
pub const PREFIX: &str = "base_model.model.";

impl Adapter {
    pub fn load(dir: &Path, base: &BaseWeights) -> Result<Self, LoraError> {
        if dir.is_file() && dir.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
            return super::gguf::load(dir, base);
        }
        if !dir.is_dir() {
            // The caller names the folder; say what is wrong with it.
            return Err(LoraError::Load(
                "no such folder: no adapter has been trained or copied there yet (remove `adapter` to run the base)"
                    .into(),
            ));
        }
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f)).map_err(|e| LoraError::Load(format!("{}: {e}", dir.join(f).display())))
        };
        let config = AdapterConfig::parse(&read("adapter_config.json")?)?;
        let weights = dir.join("adapter_model.safetensors");
        if !weights.is_file() {
            let hint = if dir.join("adapter_model.bin").is_file() {
                " (adapter_model.bin is pickle: save with safetensors)"
            } else {
                ""
            };
            return Err(LoraError::Load(format!("{}: missing{hint}", weights.display())));
        }
        let tensors = candle_core::safetensors::load(&weights, &base.device).map_err(|e| {
            LoraError::Load(format!("{}: {}", weights.display(), crate::engine::local::candle_text(&e)))
        })?;
        let layers: HashMap<&str, &Arc<BaseLinear>> = base
            .layers
            .iter()
            .flat_map(|l| l.linears.iter())
            .chain(std::iter::once(&base.lm_head))
            .map(|l| (l.name.as_str(), l))
            .collect();
        let mut pairs: HashMap<String, (Option<Tensor>, Option<Tensor>)> = HashMap::new();
        let mut unmatched = Vec::new();
        let mut untargeted = Vec::new();
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        for name in names {
            let parsed = name.strip_prefix(PREFIX).and_then(|n| {
                n.strip_suffix(".lora_A.weight")
                    .map(|m| (m, true))
                    .or_else(|| n.strip_suffix(".lora_B.weight").map(|m| (m, false)))
            });
            let Some((module, is_a)) = parsed.filter(|(m, _)| layers.contains_key(m)) else {
                unmatched.push(name.clone());
                continue;
            };
            if module == "lm_head" && base.tied_head {
                return Err(LoraError::Unsupported(format!(
                    "`{name}`: this model ties lm_head to the token embeddings, so lm_head cannot carry its own adapter"
                )));
            }
            if !config.targets(module)? {
                untargeted.push(name.clone());
                continue;
            }
            let t = &tensors[name];
            if !matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16) {
                return Err(LoraError::Shape(format!("`{name}` is {:?}; adapters hold f32, f16 or bf16", t.dtype())));
            }
            let t = t.to_dtype(DType::F32)?;
            let slot = pairs.entry(module.to_string()).or_default();
            if is_a { slot.0 = Some(t) } else { slot.1 = Some(t) }
        }
        let mut keys: Vec<String> = pairs.keys().cloned().collect();
        keys.sort_by_key(|k| (crate::lora::config::layer_index(k), k.clone()));
        let mut modules = HashMap::new();
        for module in keys {
            let (a, b) = pairs.remove(&module).unwrap_or_default();
            let (Some(a), Some(b)) = (a, b) else {
                return Err(LoraError::Shape(format!("`{PREFIX}{module}` has only one of lora_A / lora_B")));
            };
            let base_layer = layers[module.as_str()];
            let (rank, scale) = config.rank_and_scale(&module)?;
            if a.dim(0)? != rank {
                return Err(LoraError::Shape(format!(
                    "`{PREFIX}{module}.lora_A.weight` has rank {} but adapter_config.json gives this module rank {rank} (r or rank_pattern)",
                    a.dim(0)?
                )));
            }
            let want_a = [rank, base_layer.in_dim];
            let want_b = [base_layer.out_dim, rank];
            for (t, want, which) in [(&a, want_a, "lora_A"), (&b, want_b, "lora_B")] {
                if t.dims() != want {
                    return Err(LoraError::Shape(format!(
                        "`{PREFIX}{module}.{which}.weight` has shape {:?} but the base layer needs {want:?}",
                        t.dims()
                    )));
                }
            }
            let b = gguf_row_order(&module, b, base)?;
            modules.insert(module, ModuleDelta { a, b, rank, scale });
        }
        if modules.is_empty() {
            return Err(LoraError::Load(format!(
                "{}: no lora_A/lora_B pair applies to this model (names must look like {PREFIX}model.layers.0.self_attn.q_proj.lora_A.weight)",
                weights.display()
            )));
        }
        // Provenance only feeds a warning, so a bad tunebench.json is one too.
        let (provenance, provenance_error) = match std::fs::read_to_string(dir.join("tunebench.json")) {
            Ok(t) => match serde_json::from_str(&t) {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(format!("{}: {e}", dir.join("tunebench.json").display()))),
            },
            Err(_) => (None, None),
        };
        let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Self { name, dir: dir.to_path_buf(), config, modules, provenance, unmatched, untargeted, provenance_error })
    }

    /// The largest rank used (for the pane title).
    pub fn rank(&self) -> usize {
        self.modules.values().map(|m| m.rank).max().unwrap_or(0)
    }

    /// A lane's view of the base with this adapter's layers in place; the base is shared, not copied.
    pub fn view(&self, base: &Arc<BaseWeights>) -> Result<Llama, LoraError> {
        let factory = |name: &str, layer: &Arc<BaseLinear>| -> candle_core::Result<Arc<dyn Lin>> {
            Ok(match self.modules.get(name) {
                Some(m) => Arc::new(LoraLinear::new(layer.clone(), &m.a, &m.b, m.scale)?),
                None => layer.clone(),
            })
        };
        Llama::new(base.clone(), &factory).map_err(|e| LoraError::Load(e.to_string()))
    }
}

/// llama.cpp's converter permutes q/k weight rows per head (pairs interleaved for its rotary layout);
/// B's rows are outputs of those projections, so on a GGUF base they are permuted the same way.
fn gguf_row_order(module: &str, b: Tensor, base: &BaseWeights) -> Result<Tensor, LoraError> {
    match permuted_heads(module, &base.cfg) {
        Some(heads) => Ok(permute_rows(&b, heads)?),
        None => Ok(b),
    }
}

/// The head count a module's output rows are permuted by on a GGUF base (q and k projections), if any.
pub fn permuted_heads(module: &str, cfg: &crate::engine::local::Config) -> Option<usize> {
    if cfg.family.rope_pairs != crate::engine::local::RopePairs::Interleaved {
        None
    } else if module.ends_with("self_attn.q_proj") {
        Some(cfg.heads)
    } else if module.ends_with("self_attn.k_proj") {
        Some(cfg.kv_heads)
    } else {
        None
    }
}

/// Rows of each head `[h0 half0 | h0 half1 | …]` → pairs interleaved, as convert_hf_to_gguf.py permutes.
pub fn permute_rows(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (out, cols) = w.dims2()?;
    w.reshape((heads, 2, out / heads / 2, cols))?.transpose(1, 2)?.reshape((out, cols))?.contiguous()
}

/// The inverse of `permute_rows`, for writing an adapter trained on a GGUF base back in PEFT's order.
pub fn unpermute_rows(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (out, cols) = w.dims2()?;
    w.reshape((heads, out / heads / 2, 2, cols))?.transpose(1, 2)?.reshape((out, cols))?.contiguous()
}
