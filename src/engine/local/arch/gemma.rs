//! Gemma 2 and Gemma 3 (text): GGUF `gemma2` / `gemma3` and config.json `Gemma2ForCausalLM` /
//! `Gemma3ForCausalLM`. Four norms per block, each `x / rms(x) · (1 + w)` (safetensors store `w`, so 1 is added
//! as they are read; llama.cpp's converter added it in the GGUF), embeddings × √hidden, GeGLU with tanh-GELU,
//! halves rope (q/k rows not permuted), local (sliding) and global layers, a tied head. Gemma 2 soft-caps
//! attention scores and logits; Gemma 3 adds per-head q/k norms and a separate rope for its local layers.
//! What llama.cpp hardcodes rather than stores in the GGUF is hardcoded here the same way: the attention scale
//! 1/√head_dim (1/√(hidden/heads) for the 27B models), the window patterns (2 and 6), Gemma 2's default
//! window 4096 and caps 50 / 30, and Gemma 3's local rope base 10,000.

use candle_core::quantized::gguf_file::Value;
use candle_core::{DType, Device, Tensor};

use super::super::decoder::{Activation, Cap, Family, LayerPlan, QkNorm, RopePairs, RopeSpec, SoftCaps};
use super::super::weights::Meta;
use super::super::{LocalError, Result};
use super::{Arch, Dims, Json, LayerTensors, Scheme, TensorNames};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Gen {
    Two,
    Three,
}

impl Gen {
    fn name(self) -> &'static str {
        match self {
            Gen::Two => "gemma2",
            Gen::Three => "gemma3",
        }
    }

    /// llama.cpp's default local/global pattern: every `n`-th layer global, the others sliding.
    fn pattern(self) -> usize {
        match self {
            Gen::Two => 2,
            Gen::Three => 6,
        }
    }

    /// The layer count of the 27B model, whose attention scale llama.cpp takes from hidden / heads.
    fn layers_27b(self) -> usize {
        match self {
            Gen::Two => 46,
            Gen::Three => 62,
        }
    }
}

fn family(g: Gen, soft_caps: SoftCaps) -> Family {
    Family {
        name: g.name(),
        activation: Activation::GeluTanh,
        qk_norm: if g == Gen::Three { QkNorm::Rms } else { QkNorm::None },
        soft_caps,
        ..Family::llama(RopePairs::Halves)
    }
}

fn cap(value: Option<f64>, what: &str) -> Result<Option<Cap>> {
    match value {
        None => Ok(None),
        Some(c) if c.is_finite() && c > 0.0 => Ok(Some(Cap(c as f32))),
        Some(c) => Err(LocalError::Model(format!("{what} is {c}: a soft-cap must be positive"))),
    }
}

fn soft_caps(attention: Option<Cap>, logits: Option<Cap>) -> SoftCaps {
    if attention.is_none() && logits.is_none() { SoftCaps::None } else { SoftCaps::Tanh { attention, logits } }
}

/// Gemma's post-attention and pre/post-MLP norms, named as the file names them.
fn gemma_norms(names: &mut TensorNames) {
    for (i, l) in names.layers.iter_mut().enumerate() {
        let LayerTensors { ffn_norm, post_attn_norm, post_ffn_norm, .. } = l;
        match names.scheme {
            Scheme::Gguf => {
                *post_attn_norm = Some(format!("blk.{i}.post_attention_norm.weight"));
                *post_ffn_norm = Some(format!("blk.{i}.post_ffw_norm.weight"));
            }
            Scheme::Hf => {
                *post_attn_norm = Some(format!("model.layers.{i}.post_attention_layernorm.weight"));
                *ffn_norm = format!("model.layers.{i}.pre_feedforward_layernorm.weight");
                *post_ffn_norm = Some(format!("model.layers.{i}.post_feedforward_layernorm.weight"));
            }
        }
    }
}

/// Per layer: `sliding[i]` layers see `window` keys and use rope table `local`; the others every key and table 0.
fn plan(sliding: &[bool], window: Option<usize>, local: usize) -> Vec<LayerPlan> {
    sliding
        .iter()
        .map(|&s| match (s, window) {
            (true, Some(w)) => LayerPlan { window: Some(w), rope: Some(local) },
            _ => LayerPlan::GLOBAL,
        })
        .collect()
}

/// llama.cpp's `set_swa_pattern(n)`: layer i slides unless `i % n == n - 1` (n = 0: every layer slides).
fn pattern_layers(layers: usize, n: usize) -> Vec<bool> {
    (0..layers).map(|i| n == 0 || i % n < n - 1).collect()
}

pub fn gguf(m: &Meta, arch: &str) -> Result<Arch> {
    let g = if arch == "gemma2" { Gen::Two } else { Gen::Three };
    let name = g.name();
    let key = |k: &str| format!("{name}.{k}");
    let dims = Dims::gguf(m, name)?;
    let f32_key = |k: &str| Ok::<_, LocalError>(m.opt_f32(&key(k))?.map(f64::from));
    let (attention, logits) = match g {
        // llama.cpp always caps Gemma 2's attention; both caps default to Gemma 2's values.
        Gen::Two => {
            (f32_key("attn_logit_softcapping")?.or(Some(50.0)), f32_key("final_logit_softcapping")?.or(Some(30.0)))
        }
        Gen::Three => {
            if m.0.metadata.contains_key(&key("attn_logit_softcapping")) {
                return Err(LocalError::Unsupported(format!(
                    "attention soft-capping in a Gemma 3 file ({name}.attn_logit_softcapping; llama.cpp does not apply it either)"
                )));
            }
            (None, f32_key("final_logit_softcapping")?.filter(|c| *c != 0.0))
        }
    };
    let caps =
        soft_caps(cap(attention, &key("attn_logit_softcapping"))?, cap(logits, &key("final_logit_softcapping"))?);
    let window = match g {
        Gen::Two => Some(m.opt_u32(&key("attention.sliding_window"))?.unwrap_or(4096) as usize),
        Gen::Three => m.opt_u32(&key("attention.sliding_window"))?.map(|w| w as usize).filter(|w| *w > 0),
    };
    let sliding = match m.0.metadata.get(&key("attention.sliding_window_pattern")) {
        None => pattern_layers(dims.layers, g.pattern()),
        Some(Value::Array(flags)) if flags.len() == dims.layers => {
            flags.iter().map(|f| f.to_bool()).collect::<candle_core::Result<Vec<bool>>>().map_err(|_| {
                LocalError::Model(format!("GGUF `{name}.attention.sliding_window_pattern` holds a non-flag"))
            })?
        }
        Some(v) => match v.to_u32() {
            Ok(n) => pattern_layers(dims.layers, n as usize),
            Err(_) => {
                return Err(LocalError::Model(format!(
                    "GGUF `{name}.attention.sliding_window_pattern`: neither a number nor one flag per layer"
                )));
            }
        },
    };
    let global = super::gguf_rope(m, name, dims.head_dim)?;
    // Gemma 2's local layers rotate as its global ones (scaling included); Gemma 3's use their own base, unscaled.
    let local = match g {
        Gen::Two => RopeSpec { base: m.opt_f32(&key("rope.freq_base_swa"))?.unwrap_or(global.base), ..global.clone() },
        Gen::Three => RopeSpec::plain(m.opt_f32(&key("rope.freq_base_swa"))?.unwrap_or(10_000.0), global.dims),
    };
    let attn_scale = if dims.layers == g.layers_27b() {
        1.0 / ((dims.hidden / dims.heads.max(1)) as f64).sqrt()
    } else {
        1.0 / (dims.head_dim as f64).sqrt()
    };
    let embed_scale = (dims.hidden as f32).sqrt();
    let family = family(g, caps);
    let tied = !m.0.tensor_infos.contains_key("output.weight");
    let mut tensors = TensorNames::standard(Scheme::Gguf, &family, dims.layers, tied);
    gemma_norms(&mut tensors);
    let plan = plan(&sliding, window, 1);
    let mut cfg = dims.config(family, vec![global, local], plan);
    cfg.attn_scale = attn_scale;
    cfg.embed_scale = Some(embed_scale);
    Ok(Arch { cfg, tensors, notes: Vec::new() })
}

/// `g`: from `Gemma2ForCausalLM` / `gemma2`, or `Gemma3ForCausalLM` / `gemma3_text`.
pub fn config_json(j: &Json, gemma3: bool) -> Result<Arch> {
    let g = if gemma3 { Gen::Three } else { Gen::Two };
    let file = j.file().display();
    let activation = match j.opt_str("hidden_activation")? {
        Some(a) => a,
        None => j.opt_str("hidden_act")?.unwrap_or_else(|| "gelu_pytorch_tanh".into()),
    };
    if activation != "gelu_pytorch_tanh" {
        return Err(LocalError::Unsupported(format!(
            "Gemma MLP activation `{activation}` ({file}: hidden_activation; implemented: gelu_pytorch_tanh)"
        )));
    }
    for flag in ["attention_bias", "use_bidirectional_attention"] {
        if j.bool_or(flag, false)? {
            return Err(LocalError::Unsupported(format!("`{flag}` true ({file})")));
        }
    }
    let mut dims = Dims::config_json(j)?;
    // transformers' Gemma configs default head_dim to 256, not hidden / heads.
    dims.head_dim = j.opt_usize("head_dim")?.unwrap_or(256);
    let (attention, logits) = match g {
        Gen::Two => (j.f64_or_null("attn_logit_softcapping", 50.0)?, j.f64_or_null("final_logit_softcapping", 30.0)?),
        Gen::Three => (j.opt_f64("attn_logit_softcapping")?, j.opt_f64("final_logit_softcapping")?),
    };
    let caps = soft_caps(
        cap(attention, &format!("{file}: attn_logit_softcapping"))?,
        cap(logits, &format!("{file}: final_logit_softcapping"))?,
    );
    let window = if j.present("sliding_window") { j.opt_usize("sliding_window")? } else { Some(4096) };
    let types = j.strings("layer_types")?;
    let sliding: Vec<bool> = if types.is_empty() {
        let n = match j.opt_usize("sliding_window_pattern")? {
            Some(n) => n,
            None => j.opt_usize("_sliding_window_pattern")?.unwrap_or(g.pattern()),
        };
        // transformers: layer i slides unless (i + 1) is a multiple of the pattern.
        (0..dims.layers).map(|i| n == 0 || !(i + 1).is_multiple_of(n)).collect()
    } else if types.len() != dims.layers {
        return Err(LocalError::Model(format!(
            "{file}: `layer_types` has {} entries for {} layers",
            types.len(),
            dims.layers
        )));
    } else {
        types
            .iter()
            .map(|t| match t.as_str() {
                "sliding_attention" => Ok(true),
                "full_attention" => Ok(false),
                other => Err(LocalError::Unsupported(format!("layer type `{other}` ({file}: layer_types)"))),
            })
            .collect::<Result<_>>()?
    };
    let (global, local) = match g {
        Gen::Two => {
            let rope = j.rope(None, dims.head_dim, 10_000.0)?;
            (rope.clone(), rope)
        }
        // transformers 5 nests rope_parameters by layer type; older files give the global rope as
        // rope_theta + rope_scaling and the local base as rope_local_base_freq.
        Gen::Three if j.nested_rope() => (
            j.rope(Some("full_attention"), dims.head_dim, 1_000_000.0)?,
            j.rope(Some("sliding_attention"), dims.head_dim, 10_000.0)?,
        ),
        Gen::Three => (
            j.rope(None, dims.head_dim, 1_000_000.0)?,
            RopeSpec::plain(j.opt_f64("rope_local_base_freq")?.unwrap_or(10_000.0) as f32, dims.head_dim),
        ),
    };
    let attn_scale = 1.0 / j.opt_f64("query_pre_attn_scalar")?.unwrap_or(256.0).sqrt();
    let embed_scale = in_dtype((dims.hidden as f32).sqrt(), &j.dtype()?)?;
    let family = family(g, caps);
    let tied = j.bool_or("tie_word_embeddings", true)?;
    let mut tensors = TensorNames::standard(Scheme::Hf, &family, dims.layers, tied);
    gemma_norms(&mut tensors);
    tensors.norm_shift = 1.0;
    let plan = plan(&sliding, window, 1);
    let mut cfg = dims.config(family, vec![global, local], plan);
    cfg.attn_scale = attn_scale;
    cfg.embed_scale = Some(embed_scale);
    Ok(Arch { cfg, tensors, notes: Vec::new() })
}

/// `x` rounded to the dtype the weights are stored in: transformers casts Gemma's √hidden normalizer to the
/// dtype the model runs in, which by default is the checkpoint's.
fn in_dtype(x: f32, dtype: &str) -> Result<f32> {
    let dt = match dtype {
        "bfloat16" => DType::BF16,
        "float16" => DType::F16,
        _ => return Ok(x),
    };
    Ok(Tensor::new(x, &Device::Cpu)?.to_dtype(dt)?.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::in_dtype;

    /// gemma-3-270m's √640 as transformers computes it in each checkpoint dtype (torch's own rounding).
    #[test]
    fn the_normalizer_is_rounded_as_torch_rounds_it() {
        let x = 640f32.sqrt();
        assert_eq!(in_dtype(x, "bfloat16").unwrap(), 25.25);
        assert_eq!(in_dtype(x, "float16").unwrap(), 25.296875);
        assert_eq!(in_dtype(x, "float32").unwrap(), x);
    }
}
