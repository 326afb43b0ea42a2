//! Reading config.json: typed look-ups whose errors name the file and the key, and the rope settings in both
//! layouts transformers writes (`rope_parameters`, per layer type or not, and the older `rope_theta` +
//! `rope_scaling`).

use std::path::Path;

use serde_json::Value;

use super::super::decoder::{RopeScaling, RopeSpec};
use super::super::{LocalError, Result};

/// config.json (or an object inside it), with the file named in every error.
#[derive(Clone, Copy)]
pub struct Json<'a> {
    value: &'a Value,
    file: &'a Path,
    /// Where this object sits in the file (`rope_parameters.full_attention.`), for errors.
    at: &'a str,
}

impl<'a> Json<'a> {
    pub fn new(value: &'a Value, file: &'a Path) -> Self {
        Self { value, file, at: "" }
    }

    pub fn file(&self) -> &Path {
        self.file
    }

    fn bad(&self, key: &str, why: &str) -> LocalError {
        LocalError::Model(format!("{}: `{}{key}` {why}", self.file.display(), self.at))
    }

    /// The key's value, None when absent or null.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// `key`'s whole number; `default` when the key is absent (as the transformers config class defaults it), None
    /// when it is null.
    pub fn usize_or_null(&self, key: &str, default: usize) -> Result<Option<usize>> {
        if self.value.get(key).is_none() { Ok(Some(default)) } else { self.opt_usize(key) }
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| self.bad(key, "is not a whole number")),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| self.bad(key, "is missing"))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.bad(key, "is not a number")),
        }
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        self.opt_f64(key)?.ok_or_else(|| self.bad(key, "is missing"))
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(key, "is not true or false")),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| self.bad(key, "is not a string")),
        }
    }

    /// A list of strings (empty when absent).
    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        let Some(v) = self.get(key) else { return Ok(Vec::new()) };
        let list = v.as_array().ok_or_else(|| self.bad(key, "is not a list"))?;
        list.iter().map(|s| s.as_str().map(str::to_string).ok_or_else(|| self.bad(key, "holds a non-string"))).collect()
    }

    /// A list of whole numbers (None when absent).
    pub fn opt_usizes(&self, key: &str) -> Result<Option<Vec<usize>>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let list = v.as_array().ok_or_else(|| self.bad(key, "is not a list"))?;
        let nums =
            list.iter().map(|n| n.as_u64().map(|n| n as usize).ok_or_else(|| self.bad(key, "holds a non-integer")));
        nums.collect::<Result<Vec<_>>>().map(Some)
    }

    /// The object under `key`, whose errors name its path.
    fn object(&self, key: &str, at: &'a str) -> Result<Option<Json<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.is_object() => Ok(Some(Json { value: v, file: self.file, at })),
            Some(_) => Err(self.bad(key, "is not an object")),
        }
    }

    /// The rope of layers of `layer_type` (`full_attention`, `sliding_attention`; None for a model with one
    /// kind), over `head_dim`-sized heads. `rope_parameters` (transformers 5) wins over `rope_theta` +
    /// `rope_scaling`; a scaling this decoder does not compute is refused by its name.
    pub fn rope(&self, layer_type: Option<&str>, head_dim: usize, default_theta: f64) -> Result<RopeSpec> {
        let theta = self.opt_f64("rope_theta")?.unwrap_or(default_theta);
        let partial = self.opt_f64("partial_rotary_factor")?;
        let params = match self.object("rope_parameters", "rope_parameters.")? {
            // Nested by layer type (Gemma 3): the type's own dict.
            Some(p) if layer_type.is_some_and(|t| p.has(t)) => {
                let t = layer_type.unwrap_or_default();
                let at: &'a str = if t == "sliding_attention" {
                    "rope_parameters.sliding_attention."
                } else {
                    "rope_parameters.full_attention."
                };
                p.object(t, at)?
            }
            Some(p) => Some(p),
            None => self.object("rope_scaling", "rope_scaling.")?,
        };
        let Some(p) = params else {
            return Ok(RopeSpec::plain(theta as f32, rotary_dims(head_dim, partial)));
        };
        let base = p.opt_f64("rope_theta")?.unwrap_or(theta) as f32;
        let dims = rotary_dims(head_dim, p.opt_f64("partial_rotary_factor")?.or(partial));
        let kind = match p.opt_str("rope_type")? {
            Some(t) => t,
            None => p.opt_str("type")?.unwrap_or_else(|| "default".into()),
        };
        let factor = || Ok::<f32, LocalError>(p.f64("factor")? as f32);
        let mut attention_factor = 1.0;
        let scaling = match kind.as_str() {
            "default" => RopeScaling::None,
            // transformers rescales only past `max_position_embeddings`, which is where this model's context ends.
            "dynamic" => RopeScaling::None,
            "yarn" => {
                let original_context = p.usize("original_max_position_embeddings")?;
                let factor = match p.opt_f64("factor")? {
                    Some(f) => f,
                    None => self.usize("max_position_embeddings")? as f64 / original_context as f64,
                };
                let mscale = |m: f64| if factor <= 1.0 { 1.0 } else { 0.1 * m * factor.ln() + 1.0 };
                attention_factor =
                    match (p.opt_f64("attention_factor")?, p.opt_f64("mscale")?, p.opt_f64("mscale_all_dim")?) {
                        (Some(a), ..) => a,
                        (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => mscale(m) / mscale(all),
                        _ => mscale(1.0),
                    } as f32;
                RopeScaling::Yarn {
                    factor: factor as f32,
                    original_context,
                    beta_fast: p.opt_f64("beta_fast")?.filter(|b| *b != 0.0).unwrap_or(32.0) as f32,
                    beta_slow: p.opt_f64("beta_slow")?.filter(|b| *b != 0.0).unwrap_or(1.0) as f32,
                    truncate: p.bool_or("truncate", true)?,
                }
            }
            "linear" => RopeScaling::Linear { factor: factor()? },
            "llama3" => RopeScaling::Llama3 {
                factor: factor()?,
                low_freq_factor: p.f64("low_freq_factor")? as f32,
                high_freq_factor: p.f64("high_freq_factor")? as f32,
                original_context: p.usize("original_max_position_embeddings")?,
            },
            other => {
                return Err(LocalError::Unsupported(format!(
                    "rope type `{other}` ({}: {}rope_type; implemented: default, linear, dynamic, llama3, yarn)",
                    self.file.display(),
                    p.at
                )));
            }
        };
        Ok(RopeSpec { base, dims, scaling, attention_factor })
    }
}

/// transformers rotates `int(head_dim · partial_rotary_factor)` dimensions.
fn rotary_dims(head_dim: usize, partial: Option<f64>) -> usize {
    partial.map_or(head_dim, |f| (head_dim as f64 * f) as usize)
}
