//! LoRA adapters as llama.cpp holds them: one GGUF with `general.type = adapter`, the base's
//! `general.architecture`, `adapter.type = lora`, `adapter.lora.alpha`, and per module
//! `blk.N.<stem>.weight.lora_a` `[r, in]` / `.lora_b` `[out, r]` (PEFT's shapes; q/k rows in the GGUF base's
//! order). Written from an adapter tunebench reads (each module's scale folded into B, since llama.cpp scales
//! every tensor by alpha / rank), and read back as one, so a lane or `logits --adapter` takes either.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};

use super::adapter::{Adapter, ModuleDelta};
use super::{AdapterConfig, LoraError};
use crate::engine::local::{BaseWeights, gguf_linear_stem};

/// Writes `adapter` (read against a GGUF base of architecture `arch`) as a GGUF LoRA at `path`; returns the
/// number of modules written. Tensors are f32, so nothing is lost on the way.
pub fn write(adapter: &Adapter, arch: &str, path: &Path) -> Result<usize, LoraError> {
    let alpha = adapter.rank() as f64;
    let mut names: Vec<&String> = adapter.modules.keys().collect();
    names.sort_by_key(|k| (super::config::layer_index(k), k.to_string()));
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for module in names {
        let m = &adapter.modules[module];
        let stem = gguf_linear_stem(module)
            .ok_or_else(|| LoraError::Unsupported(format!("`{module}`: no llama.cpp tensor name for this module")))?;
        // llama.cpp multiplies by alpha / rank: B carries the rest of the module's own scale.
        let b = (&m.b * (m.scale * m.rank as f64 / alpha))?;
        let q = |t: &Tensor| QTensor::quantize(&t.to_dtype(DType::F32)?.contiguous()?, GgmlDType::F32);
        tensors.push((format!("{stem}.weight.lora_a"), q(&m.a)?));
        tensors.push((format!("{stem}.weight.lora_b"), q(&b)?));
    }
    let meta: Vec<(&str, gguf_file::Value)> = vec![
        ("general.type", gguf_file::Value::String("adapter".into())),
        ("general.architecture", gguf_file::Value::String(arch.into())),
        ("general.name", gguf_file::Value::String(adapter.name.clone())),
        ("adapter.type", gguf_file::Value::String("lora".into())),
        ("adapter.lora.alpha", gguf_file::Value::F32(alpha as f32)),
    ];
    let meta_refs: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut bytes = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut bytes, &meta_refs, &tensor_refs)?;
    crate::workspace::store::write_atomic(path, bytes.get_ref())
        .map_err(|e| LoraError::Load(format!("{}: {e}", path.display())))?;
    Ok(tensors.len() / 2)
}

/// A GGUF LoRA file (see the module) against `base`, a GGUF base whose q/k rows are in the order its B rows
/// are: each module's scale is alpha / rank, as llama.cpp applies it.
pub fn load(path: &Path, base: &BaseWeights) -> Result<Adapter, LoraError> {
    let err = |m: String| LoraError::Load(format!("{}: {m}", path.display()));
    let mut file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let content =
        crate::engine::local::read_gguf_content(&mut file, path).map_err(|e| LoraError::Load(e.to_string()))?;
    let text = |key: &str| content.metadata.get(key).and_then(|v| v.to_string().ok()).cloned();
    if text("general.type").as_deref() != Some("adapter") || text("adapter.type").as_deref() != Some("lora") {
        return Err(err("not a LoRA adapter (general.type = adapter and adapter.type = lora are needed)".into()));
    }
    let alpha = match content.metadata.get("adapter.lora.alpha") {
        Some(v) => f64::from(v.to_f32().map_err(|_| err("adapter.lora.alpha is not an f32".into()))?),
        None => return Err(err("no adapter.lora.alpha".into())),
    };
    let mut tensor = |name: &str| -> Result<Option<Tensor>, LoraError> {
        if !content.tensor_infos.contains_key(name) {
            return Ok(None);
        }
        let q = content.tensor(&mut file, name, &Device::Cpu)?;
        Ok(Some(q.dequantize(&Device::Cpu)?.to_device(&base.device)?))
    };
    let mut modules = HashMap::new();
    let mut used = 0;
    for layer in base.layers.iter().flat_map(|l| l.linears.iter()) {
        let Some(stem) = gguf_linear_stem(&layer.name) else { continue };
        let (a, b) = (tensor(&format!("{stem}.weight.lora_a"))?, tensor(&format!("{stem}.weight.lora_b"))?);
        let (a, b) = match (a, b) {
            (None, None) => continue,
            (Some(a), Some(b)) => (a, b),
            _ => return Err(err(format!("`{stem}.weight` has only one of lora_a / lora_b"))),
        };
        let rank = a.dim(0)?;
        if a.dims() != [rank, layer.in_dim] || b.dims() != [layer.out_dim, rank] {
            return Err(err(format!(
                "`{stem}.weight.lora_a/b` are {:?} and {:?}; the base layer needs [r, {}] and [{}, r]",
                a.dims(),
                b.dims(),
                layer.in_dim,
                layer.out_dim
            )));
        }
        used += 2;
        modules.insert(layer.name.clone(), ModuleDelta { a, b, rank, scale: alpha / rank as f64 });
    }
    let unmatched: Vec<String> = if used < content.tensor_infos.len() {
        vec![format!("{} tensor(s)", content.tensor_infos.len() - used)]
    } else {
        Vec::new()
    };
    if modules.is_empty() {
        return Err(err("no lora_a / lora_b pair matches a layer of this model".into()));
    }
    let rank = modules.values().map(|m| m.rank).max().unwrap_or(0);
    let targets: Vec<String> = {
        let mut t: Vec<String> = modules.keys().filter_map(|k| k.rsplit('.').next().map(String::from)).collect();
        t.sort();
        t.dedup();
        t
    };
    let config = AdapterConfig::parse(
        &serde_json::json!({"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "target_modules": targets})
            .to_string(),
    )?;
    let name = path.file_stem().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Adapter {
        name,
        dir: path.to_path_buf(),
        config,
        modules,
        provenance: None,
        unmatched,
        untargeted: Vec::new(),
        provenance_error: None,
    })
}
