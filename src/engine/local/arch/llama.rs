//! Llama 1/2/3.x, SmolLM2 and Mistral: GGUF `llama` (q/k rows permuted by llama.cpp's converter, so rope pairs
//! interleave; Llama 3 scaling baked into `rope_freqs.weight`) and config.json `LlamaForCausalLM` /
//! `MistralForCausalLM` (rope scaling `linear` and `llama3`; Mistral's sliding window).

use super::super::decoder::{Family, LayerPlan, RopePairs, RopeScaling};
use super::super::weights::Meta;
use super::super::{LocalError, Result};
use super::{Arch, Dims, Json, Scheme, TensorNames};

pub fn gguf(m: &Meta) -> Result<Arch> {
    let dims = Dims::gguf(m, "llama")?;
    let rope = super::gguf_rope(m, "llama", dims.head_dim)?;
    let family = Family::llama(RopePairs::Interleaved);
    let tied = !m.0.tensor_infos.contains_key("output.weight");
    let mut tensors = TensorNames::standard(Scheme::Gguf, &family, dims.layers, tied);
    if m.0.tensor_infos.contains_key("rope_freqs.weight") {
        if rope.scaling != RopeScaling::None {
            return Err(LocalError::Unsupported(
                "rope_freqs.weight together with llama.rope.scaling.type (two scalings at once)".into(),
            ));
        }
        tensors.rope_freqs = Some("rope_freqs.weight".into());
    }
    let mut notes = Vec::new();
    // llama.cpp's converter keeps no sliding window for `llama` files: the model attends to every token, as
    // llama.cpp runs it, which differs from transformers past the window of a windowed Mistral.
    let named = |k: &str| m.string(k).is_ok_and(|n| n.to_ascii_lowercase().contains("mistral"));
    if named("general.name") || named("general.basename") {
        notes.push("GGUF records no sliding window: attends to all tokens, as llama.cpp does".into());
    }
    let layers = dims.layers;
    Ok(Arch { cfg: dims.config(family, vec![rope], vec![LayerPlan::GLOBAL; layers]), tensors, notes })
}

/// `name`: `llama` or `mistral` (whose sliding window, when set, applies to every layer).
pub fn config_json(j: &Json, name: &'static str) -> Result<Arch> {
    for flag in ["attention_bias", "mlp_bias"] {
        if j.bool_or(flag, false)? {
            return Err(LocalError::Unsupported(format!("`{flag}` true ({})", j.file().display())));
        }
    }
    let dims = Dims::config_json(j)?;
    let rope = j.rope(None, dims.head_dim, 10_000.0)?;
    // MistralConfig's default window when config.json does not name one (null: none).
    let window = if name == "mistral" { j.usize_or_null("sliding_window", 4096)? } else { None };
    let family = Family { name, ..Family::llama(RopePairs::Halves) };
    let tied = j.bool_or("tie_word_embeddings", false)?;
    let tensors = TensorNames::standard(Scheme::Hf, &family, dims.layers, tied);
    let layers = dims.layers;
    let plan = LayerPlan { window, rope: Some(0) };
    Ok(Arch { cfg: dims.config(family, vec![rope], vec![plan; layers]), tensors, notes: Vec::new() })
}
