//! Qwen2/2.5 (q/k/v biases) and Qwen3 (per-head q/k RMSNorm before rope, explicit head_dim): GGUF `qwen2` /
//! `qwen3` (NEOX rope: halves, q/k rows not permuted) and config.json `Qwen2ForCausalLM` / `Qwen3ForCausalLM`
//! (whose `sliding_window` applies only with `use_sliding_window`, to the layers `layer_types` marks).

use super::super::decoder::{Bias, Family, LayerPlan, QkNorm, RopePairs};
use super::super::weights::Meta;
use super::super::{LocalError, Result};
use super::{Arch, Dims, Json, Scheme, TensorNames};

fn family(name: &'static str, pairs: RopePairs) -> Family {
    let base = Family { name, rope_pairs: pairs, ..Family::llama(pairs) };
    if name == "qwen2" { Family { bias: Bias::Qkv, ..base } } else { Family { qk_norm: QkNorm::Rms, ..base } }
}

/// `arch`: `qwen2` or `qwen3`.
pub fn gguf(m: &Meta, arch: &str) -> Result<Arch> {
    let name = if arch == "qwen2" { "qwen2" } else { "qwen3" };
    let dims = Dims::gguf(m, name)?;
    let rope = super::gguf_rope(m, name, dims.head_dim)?;
    let family = family(name, RopePairs::Halves);
    let tied = !m.0.tensor_infos.contains_key("output.weight");
    let tensors = TensorNames::standard(Scheme::Gguf, &family, dims.layers, tied);
    let layers = dims.layers;
    Ok(Arch { cfg: dims.config(family, vec![rope], vec![LayerPlan::GLOBAL; layers]), tensors, notes: Vec::new() })
}

/// `name`: `qwen2` or `qwen3`.
pub fn config_json(j: &Json, name: &'static str) -> Result<Arch> {
    if name == "qwen3" && j.bool_or("attention_bias", false)? {
        return Err(LocalError::Unsupported(format!(
            "`attention_bias` true for qwen3 (biases on q, k, v and o; {})",
            j.file().display()
        )));
    }
    let mut dims = Dims::config_json(j)?;
    // Qwen3Config's default head_dim, which is not hidden_size / num_attention_heads.
    if name == "qwen3"
        && let Some(d) = j.usize_or_null("head_dim", 128)?
    {
        dims.head_dim = d;
    }
    let rope = j.rope(None, dims.head_dim, 10_000.0)?;
    // Qwen2Config's and Qwen3Config's default window is 4096 when config.json does not name one.
    let window = if j.bool_or("use_sliding_window", false)? { j.usize_or_null("sliding_window", 4096)? } else { None };
    let plan = window_plan(j, dims.layers, window)?;
    let family = family(name, RopePairs::Halves);
    let tied = j.bool_or("tie_word_embeddings", false)?;
    let tensors = TensorNames::standard(Scheme::Hf, &family, dims.layers, tied);
    Ok(Arch { cfg: dims.config(family, vec![rope], plan), tensors, notes: Vec::new() })
}

/// Which layers slide: `layer_types` when the file has it, else those from `max_window_layers` on (as
/// transformers derives it); none without a window.
fn window_plan(j: &Json, layers: usize, window: Option<usize>) -> Result<Vec<LayerPlan>> {
    let Some(w) = window else { return Ok(vec![LayerPlan::GLOBAL; layers]) };
    let types = j.strings("layer_types")?;
    let sliding: Vec<bool> = if types.is_empty() {
        let from = j.opt_usize("max_window_layers")?.unwrap_or(28);
        (0..layers).map(|i| i >= from).collect()
    } else if types.len() != layers {
        return Err(LocalError::Model(format!(
            "{}: `layer_types` has {} entries for {layers} layers",
            j.file().display(),
            types.len()
        )));
    } else {
        types.iter().map(|t| t == "sliding_attention").collect()
    };
    Ok(sliding.into_iter().map(|s| LayerPlan { window: s.then_some(w), rope: Some(0) }).collect())
}
