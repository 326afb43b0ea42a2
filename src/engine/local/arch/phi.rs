//! Phi-3, Phi-3.5 and Phi-4-mini: GGUF `phi3` and config.json `Phi3ForCausalLM`. A Llama block whose q|k|v
//! and gate|up projections are each one matrix (`qkv_proj`, `gate_up_proj`; GGUF `attn_qkv`, and `ffn_up`
//! holding gate and up), halves rope over the leading `partial_rotary_factor` of each head (Phi-4-mini: 0.75),
//! and longrope: per-frequency short and long factors (GGUF `rope_factors_short/long.weight`) chosen by the
//! sequence length against `original_max_position_embeddings`, with an attention factor on cos and sin.
//! A sliding window in the file (Phi-3-mini-4k: 2047) applies to every layer, as transformers applies it.

use super::super::decoder::{Family, LayerPlan, Projections, RopePairs, RopeScaling, RopeSpec, RopeSwitch};
use super::super::weights::{Config, Meta};
use super::super::{LocalError, Result};
use super::{Arch, Dims, Json, Scheme, TensorNames};

fn family() -> Family {
    Family { name: "phi3", projections: Projections::Fused, ..Family::llama(RopePairs::Halves) }
}

/// A sliding window on every layer; a note where it is shorter than the context, since llama.cpp (0.3.36)
/// switches Phi's window off and attends to every token.
fn windowed(window: Option<usize>, layers: usize, context: usize, notes: &mut Vec<String>) -> Vec<LayerPlan> {
    if let Some(w) = window
        && w < context
    {
        notes.push(format!("sliding window {w} as transformers applies it (llama.cpp attends to all tokens)"));
    }
    vec![LayerPlan { window, rope: Some(0) }; layers]
}

/// Rope tables 0 (short factors) and 1 (long factors), switched past `original` positions.
fn longrope(cfg: &mut Config, long: RopeSpec, original: usize) {
    cfg.ropes.push(long);
    cfg.rope_switch = Some(RopeSwitch { original_context: original, short: 0, long: 1 });
}

pub fn gguf(m: &Meta) -> Result<Arch> {
    let dims = Dims::gguf(m, "phi3")?;
    let mut rope = super::gguf_rope(m, "phi3", dims.head_dim)?;
    let (short, long) = ("rope_factors_short.weight", "rope_factors_long.weight");
    let has = |n: &str| m.0.tensor_infos.contains_key(n);
    let family = family();
    let tied = !has("output.weight");
    let mut tensors = TensorNames::standard(Scheme::Gguf, &family, dims.layers, tied);
    let mut notes = Vec::new();
    // The converter writes 0 for "no window" (Phi-4).
    let window = m.opt_u32("phi3.attention.sliding_window")?.map(|w| w as usize).filter(|w| *w > 0);
    let plan = windowed(window, dims.layers, dims.context, &mut notes);
    let original = m.opt_u32("phi3.rope.scaling.original_context_length")?.map_or(dims.context, |c| c as usize);
    let cfg = match (has(short), has(long)) {
        (false, false) => dims.config(family, vec![rope], plan),
        (true, true) if rope.scaling != RopeScaling::None => {
            return Err(LocalError::Unsupported(
                "longrope factors (rope_factors_short/long.weight) together with phi3.rope.scaling.type".into(),
            ));
        }
        (true, true) => {
            rope.attention_factor = m.opt_f32("phi3.rope.scaling.attn_factor")?.unwrap_or(1.0);
            let mut cfg = dims.config(family, vec![rope.clone()], plan);
            longrope(&mut cfg, rope, original);
            tensors.table_factors = vec![(0, short.into()), (1, long.into())];
            cfg
        }
        _ => {
            return Err(LocalError::Model(format!(
                "the GGUF has only one of `{short}` and `{long}` (longrope needs both)"
            )));
        }
    };
    Ok(Arch { cfg, tensors, notes })
}

pub fn config_json(j: &Json) -> Result<Arch> {
    let file = j.file().display();
    let act = j.opt_str("hidden_act")?.unwrap_or_else(|| "silu".into());
    if act != "silu" {
        return Err(LocalError::Unsupported(format!(
            "Phi-3 MLP activation `{act}` ({file}: hidden_act; implemented: silu)"
        )));
    }
    let dims = Dims::config_json(j)?;
    let family = family();
    let tied = j.bool_or("tie_word_embeddings", false)?;
    let tensors = TensorNames::standard(Scheme::Hf, &family, dims.layers, tied);
    let mut notes = Vec::new();
    let plan = windowed(j.opt_usize("sliding_window")?, dims.layers, dims.context, &mut notes);
    let params = j.rope_object()?;
    let kind = match &params {
        Some(p) => match p.opt_str("rope_type")? {
            Some(t) => t,
            None => p.opt_str("type")?.unwrap_or_else(|| "default".into()),
        },
        None => "default".into(),
    };
    let cfg = match (kind.as_str(), params) {
        // "su" is longrope's name in the first Phi-3 128k configs.
        ("longrope" | "su", Some(p)) => {
            let theta = p.opt_f64("rope_theta")?.or(j.opt_f64("rope_theta")?).unwrap_or(10_000.0);
            let partial = p.opt_f64("partial_rotary_factor")?.or(j.opt_f64("partial_rotary_factor")?).unwrap_or(1.0);
            let dims_rot = (dims.head_dim as f64 * partial) as usize;
            // transformers gives the top-level key priority over the one inside the rope settings.
            let original = match j.opt_usize("original_max_position_embeddings")? {
                Some(o) => o,
                None => p.opt_usize("original_max_position_embeddings")?.unwrap_or(dims.context),
            };
            let factor = p.opt_f64("factor")?.unwrap_or(dims.context as f64 / original.max(1) as f64);
            let attention_factor = match p.opt_f64("attention_factor")? {
                Some(a) => a,
                None if factor <= 1.0 => 1.0,
                None => (1.0 + factor.ln() / (original as f64).ln()).sqrt(),
            };
            let spec = |key: &str| -> Result<RopeSpec> {
                let f =
                    p.opt_f64s(key)?.ok_or_else(|| LocalError::Model(format!("{file}: longrope without `{key}`")))?;
                Ok(RopeSpec {
                    base: theta as f32,
                    dims: dims_rot,
                    scaling: RopeScaling::FreqFactors(f.into_iter().map(|x| x as f32).collect()),
                    attention_factor: attention_factor as f32,
                })
            };
            let (short, long) = (spec("short_factor")?, spec("long_factor")?);
            let mut cfg = dims.config(family, vec![short], plan);
            longrope(&mut cfg, long, original);
            cfg
        }
        _ => {
            let rope = j.rope(None, dims.head_dim, 10_000.0)?;
            dims.config(family, vec![rope], plan)
        }
    };
    Ok(Arch { cfg, tensors, notes })
}
