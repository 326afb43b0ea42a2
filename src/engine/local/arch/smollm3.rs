//! SmolLM3: a Llama block that skips rope on some layers (every 4th: config.json `no_rope_layers`, or
//! `no_rope_layer_interval`; GGUF `smollm3`, where llama.cpp hardcodes the interval 4 and its converter
//! permutes q/k rows as for `llama`), and with `use_sliding_window` slides its no-rope layers.

use super::super::decoder::{Family, LayerPlan, RopePairs};
use super::super::weights::Meta;
use super::super::{LocalError, Result};
use super::{Arch, Dims, Json, Scheme, TensorNames};

/// llama.cpp's `n_no_rope_layer_step` for smollm3 (not stored in the file).
const GGUF_NO_ROPE_INTERVAL: usize = 4;

fn family(pairs: RopePairs) -> Family {
    Family { name: "smollm3", ..Family::llama(pairs) }
}

/// Layer i uses rope unless `(i + 1)` is a multiple of the interval.
fn interval_plan(layers: usize, interval: usize) -> Vec<LayerPlan> {
    (0..layers).map(|i| LayerPlan { window: None, rope: (!(i + 1).is_multiple_of(interval)).then_some(0) }).collect()
}

pub fn gguf(m: &Meta) -> Result<Arch> {
    let dims = Dims::gguf(m, "smollm3")?;
    let rope = super::gguf_rope(m, "smollm3", dims.head_dim)?;
    let family = family(RopePairs::Interleaved);
    let tied = !m.0.tensor_infos.contains_key("output.weight");
    let tensors = TensorNames::standard(Scheme::Gguf, &family, dims.layers, tied);
    let plan = interval_plan(dims.layers, GGUF_NO_ROPE_INTERVAL);
    Ok(Arch { cfg: dims.config(family, vec![rope], plan), tensors, notes: Vec::new() })
}

pub fn config_json(j: &Json) -> Result<Arch> {
    for flag in ["attention_bias", "mlp_bias"] {
        if j.bool_or(flag, false)? {
            return Err(LocalError::Unsupported(format!("`{flag}` true ({})", j.file().display())));
        }
    }
    let dims = Dims::config_json(j)?;
    // transformers' SmolLM3 default θ.
    let rope = j.rope(None, dims.head_dim, 2_000_000.0)?;
    let plan = match j.opt_usizes("no_rope_layers")? {
        Some(flags) if flags.len() != dims.layers => {
            return Err(LocalError::Model(format!(
                "{}: `no_rope_layers` has {} entries for {} layers",
                j.file().display(),
                flags.len(),
                dims.layers
            )));
        }
        // 1 marks a layer that uses rope (transformers' meaning, despite the name).
        Some(flags) => flags.iter().map(|&f| LayerPlan { window: None, rope: (f != 0).then_some(0) }).collect(),
        None => {
            let interval = j.opt_usize("no_rope_layer_interval")?.unwrap_or(4);
            if interval == 0 {
                return Err(LocalError::Model(format!("{}: `no_rope_layer_interval` is 0", j.file().display())));
            }
            interval_plan(dims.layers, interval)
        }
    };
    // transformers slides only the no-rope layers, and only with `use_sliding_window` (or where `layer_types`
    // marks a layer `sliding_attention`).
    let window = if j.bool_or("use_sliding_window", false)? { j.opt_usize("sliding_window")? } else { None };
    let types = j.strings("layer_types")?;
    if !types.is_empty() && types.len() != plan.len() {
        return Err(LocalError::Model(format!(
            "{}: `layer_types` has {} entries for {} layers",
            j.file().display(),
            types.len(),
            plan.len()
        )));
    }
    let plan = plan
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let slides = match types.get(i) {
                Some(t) => t == "sliding_attention",
                None => l.rope.is_none(),
            };
            LayerPlan { window: window.filter(|_| slides), ..l }
        })
        .collect();
    let family = family(RopePairs::Halves);
    let tied = j.bool_or("tie_word_embeddings", true)?;
    let tensors = TensorNames::standard(Scheme::Hf, &family, dims.layers, tied);
    Ok(Arch { cfg: dims.config(family, vec![rope], plan), tensors, notes: Vec::new() })
}
