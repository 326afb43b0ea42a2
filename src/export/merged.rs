//! Base + adapter as one model: every adapted weight W + scale · B·A, written as a GGUF (F16, Q8_0, or
//! Q4_K_M with llama.cpp's own type per tensor) from a GGUF base, or as safetensors with the folder's config,
//! tokenizer and chat template from a Hugging Face base — models that load with no adapter support at all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};

use crate::engine::local::gguf_linear_stem;
use crate::lora::Adapter;

/// The merged GGUF's weight type.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// Unrounded: the merge exactly, four bytes a weight.
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
    /// llama.cpp's Q4_K_M mix: Q4_K, Q6_K for the output head and for some layers' attn_v and ffn_down, with
    /// its fallbacks where a row is not a multiple of 256.
    #[value(name = "q4_k_m")]
    Q4KM,
}

impl Quant {
    pub fn label(self) -> &'static str {
        match self {
            Quant::F32 => "F32",
            Quant::F16 => "F16",
            Quant::Q8_0 => "Q8_0",
            Quant::Q4KM => "Q4_K_M",
        }
    }

    /// llama.cpp's `general.file_type` (LLAMA_FTYPE_MOSTLY_*).
    fn file_type(self) -> u32 {
        match self {
            Quant::F32 => 0,
            Quant::F16 => 1,
            Quant::Q8_0 => 7,
            Quant::Q4KM => 15,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MergeError(pub String);

impl From<candle_core::Error> for MergeError {
    fn from(e: candle_core::Error) -> Self {
        MergeError(crate::engine::local::candle_text(&e))
    }
}

/// What a merge wrote.
#[derive(Debug, Clone)]
pub struct Merged {
    pub path: PathBuf,
    /// Weights that took the adapter's delta.
    pub merged: usize,
    pub tensors: usize,
    /// Tensor count by type written.
    pub types: Vec<(String, usize)>,
}

/// `scale · B·A` for each adapted weight, by its tensor name in `scheme`'s names.
fn deltas(adapter: &Adapter, gguf: bool) -> Result<HashMap<String, Tensor>, MergeError> {
    let mut out = HashMap::new();
    for (module, m) in &adapter.modules {
        let name = if gguf {
            let stem = gguf_linear_stem(module)
                .ok_or_else(|| MergeError(format!("`{module}`: no GGUF tensor name for this module")))?;
            format!("{stem}.weight")
        } else {
            format!("{module}.weight")
        };
        let b = m.b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let a = m.a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        out.insert(name, (b.matmul(&a)? * m.scale)?);
    }
    Ok(out)
}

/// Writes `base` (a GGUF) with `adapter` (read against it) merged in, every matrix in `quant`'s types and
/// 1-D tensors as they were; the metadata is the base's (tokenizer and chat template included), with
/// `general.file_type` set and `tunebench.merged_adapter` naming the adapter. No adapter: the base
/// re-quantized alone (what a merge's rounding is measured against).
pub fn gguf(base: &Path, adapter: Option<&Adapter>, quant: Quant, out: &Path) -> Result<Merged, MergeError> {
    let err = |e: &dyn std::fmt::Display| MergeError(format!("{}: {e}", base.display()));
    let mut file = std::fs::File::open(base).map_err(|e| err(&e))?;
    let content = crate::engine::local::read_gguf_content(&mut file, base).map_err(|e| err(&e))?;
    let mut deltas = match adapter {
        Some(a) => deltas(a, true)?,
        None => HashMap::new(),
    };
    let mut names: Vec<(&String, u64)> = content.tensor_infos.iter().map(|(n, i)| (n, i.offset)).collect();
    names.sort_by_key(|(_, offset)| *offset);
    let tied = !content.tensor_infos.contains_key("output.weight");
    let layers = names.iter().filter_map(|(n, _)| layer_of(n)).max().map_or(0, |l| l + 1);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    let mut merged = 0;
    for (name, _) in names {
        let q =
            content.tensor(&mut file, name, &Device::Cpu).map_err(|e| err(&crate::engine::local::candle_text(&e)))?;
        let dims = q.shape().dims().to_vec();
        let delta = deltas.remove(name.as_str());
        if dims.len() < 2 || !name.ends_with("weight") || name.contains("_norm.") {
            if delta.is_some() {
                return Err(MergeError(format!("`{name}` is not a matrix: the adapter cannot be merged into it")));
            }
            tensors.push((name.clone(), q));
            continue;
        }
        let mut w = q.dequantize(&Device::Cpu)?;
        if let Some(d) = delta {
            if d.dims() != w.dims() {
                return Err(MergeError(format!(
                    "`{name}`: the adapter's delta is {:?}, the weight {:?}",
                    d.dims(),
                    w.dims()
                )));
            }
            w = (w + d)?;
            merged += 1;
        }
        let dtype = target_type(quant, name, dims[dims.len() - 1], layers, tied);
        tensors.push((name.clone(), QTensor::quantize(&w, dtype)?));
    }
    if let Some(name) = deltas.keys().next() {
        return Err(MergeError(format!("the adapter adapts `{name}`, which {} does not hold", base.display())));
    }
    let mut meta: Vec<(String, gguf_file::Value)> = content
        .metadata
        .iter()
        // The writer lays tensors out at its own alignment.
        .filter(|(k, _)| k.as_str() != "general.alignment" && k.as_str() != "general.file_type")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    meta.push(("general.file_type".into(), gguf_file::Value::U32(quant.file_type())));
    if let Some(a) = adapter {
        meta.push(("tunebench.merged_adapter".into(), gguf_file::Value::String(a.name.clone())));
    }
    let meta_refs: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut bytes = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut bytes, &meta_refs, &tensor_refs)?;
    crate::workspace::store::write_atomic(out, bytes.get_ref())
        .map_err(|e| MergeError(format!("{}: {e}", out.display())))?;
    let mut types: HashMap<String, usize> = HashMap::new();
    for (_, t) in &tensors {
        *types.entry(format!("{:?}", t.dtype())).or_default() += 1;
    }
    let mut types: Vec<(String, usize)> = types.into_iter().collect();
    types.sort();
    Ok(Merged { path: out.to_path_buf(), merged, tensors: tensors.len(), types })
}

/// `blk.N.…` → N.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// The type llama.cpp's quantizer gives a weight matrix of `cols` columns (llama-quant.cpp's rules for these
/// three file types, dense models).
pub fn target_type(quant: Quant, name: &str, cols: usize, layers: usize, tied: bool) -> GgmlDType {
    let wanted = match quant {
        Quant::F32 => return GgmlDType::F32,
        Quant::F16 => return GgmlDType::F16,
        Quant::Q8_0 => GgmlDType::Q8_0,
        Quant::Q4KM => {
            let more_bits =
                |i: usize| i < layers / 8 || i >= 7 * layers / 8 || (i as i64 - (layers / 8) as i64) % 3 == 2;
            let output = name == "output.weight" || (tied && name == "token_embd.weight");
            if output {
                // The head (or the embedding it shares) is Q6_K, or Q8_0 when its rows do not split into 256s.
                return if !cols.is_multiple_of(256) { GgmlDType::Q8_0 } else { GgmlDType::Q6K };
            }
            let layer = layer_of(name);
            let v_or_down = name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight");
            if v_or_down && layer.is_some_and(more_bits) { GgmlDType::Q6K } else { GgmlDType::Q4K }
        }
    };
    fallback(wanted, cols)
}

/// llama.cpp's fallback for rows its block does not divide: Q4_K → Q5_0, Q6_K → Q8_0, and F16 when even a
/// 32-wide block does not fit.
fn fallback(t: GgmlDType, cols: usize) -> GgmlDType {
    if cols.is_multiple_of(t.block_size()) {
        return t;
    }
    let next = match t {
        GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q6K => GgmlDType::Q8_0,
        other => other,
    };
    if cols.is_multiple_of(next.block_size()) { next } else { GgmlDType::F16 }
}

/// The Hugging Face folder files a merged model keeps as they are (weights aside).
const FOLDER_FILES: [&str; 8] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
];

/// Writes `base` (a Hugging Face folder) with `adapter` merged into `dir`: model.safetensors in `dtype` (the
/// base's own when None) and the folder's config, tokenizer and chat template files.
pub fn safetensors(base: &Path, adapter: &Adapter, dtype: Option<DType>, dir: &Path) -> Result<Merged, MergeError> {
    let files = crate::engine::local::safetensors_files(base).map_err(|e| MergeError(e.to_string()))?;
    let mut deltas = deltas(adapter, false)?;
    let mut out: HashMap<String, Tensor> = HashMap::new();
    let mut merged = 0;
    for f in &files {
        let read = candle_core::safetensors::load(f, &Device::Cpu)
            .map_err(|e| MergeError(format!("{}: {}", f.display(), crate::engine::local::candle_text(&e))))?;
        for (name, t) in read {
            let own = t.dtype();
            let t = match deltas.remove(&name) {
                Some(d) => {
                    merged += 1;
                    (t.to_dtype(DType::F32)? + d)?.to_dtype(dtype.unwrap_or(own))?
                }
                None => t.to_dtype(dtype.unwrap_or(own))?,
            };
            out.insert(name, t);
        }
    }
    if let Some(name) = deltas.keys().next() {
        return Err(MergeError(format!("the adapter adapts `{name}`, which {} does not hold", base.display())));
    }
    let weights = dir.join("model.safetensors");
    let bytes = safetensors::serialize(out.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(|e| MergeError(format!("{}: {e}", weights.display())))?;
    crate::workspace::store::write_atomic(&weights, &bytes)
        .map_err(|e| MergeError(format!("{}: {e}", weights.display())))?;
    for f in FOLDER_FILES {
        let from = base.join(f);
        if from.is_file() {
            let bytes = std::fs::read(&from).map_err(|e| MergeError(format!("{}: {e}", from.display())))?;
            crate::workspace::store::write_atomic(&dir.join(f), &bytes)
                .map_err(|e| MergeError(format!("{}: {e}", dir.join(f).display())))?;
        }
    }
    let mut types: HashMap<String, usize> = HashMap::new();
    for t in out.values() {
        *types.entry(format!("{:?}", t.dtype())).or_default() += 1;
    }
    let mut types: Vec<(String, usize)> = types.into_iter().collect();
    types.sort();
    Ok(Merged { path: weights, merged, tensors: out.len(), types })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_follows_llama_cpp_for_smollm2_shapes() {
        // SmolLM2-135M: 30 layers, 576-wide rows (not a multiple of 256), ffn_down rows 1536 wide, tied head.
        let t = |name: &str, cols: usize| target_type(Quant::Q4KM, name, cols, 30, true);
        assert_eq!(t("token_embd.weight", 576), GgmlDType::Q8_0);
        assert_eq!(t("blk.5.attn_q.weight", 576), GgmlDType::Q5_0);
        assert_eq!(t("blk.0.attn_v.weight", 576), GgmlDType::Q8_0);
        assert_eq!(t("blk.0.ffn_down.weight", 1536), GgmlDType::Q6K);
        assert_eq!(t("blk.4.ffn_down.weight", 1536), GgmlDType::Q4K);
        assert_eq!(t("blk.5.ffn_down.weight", 1536), GgmlDType::Q6K);
        assert_eq!(target_type(Quant::Q8_0, "blk.0.attn_q.weight", 20, 30, true), GgmlDType::F16);
    }
}
