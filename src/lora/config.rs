//! adapter_config.json as PEFT writes it: which modules an adapter targets, its rank and scale.
//! Options that change the maths tunebench applies are refused, never ignored.

use serde::{Deserialize, Deserializer};

use super::LoraError;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Targets {
    List(Vec<String>),
    /// A regex matched against the whole module name, or PEFT's `all-linear`.
    Pattern(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Layers {
    One(usize),
    Many(Vec<usize>),
}

/// The keys tunebench reads; PEFT's many others (task_type, inference_mode…) do not change inference.
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    pub target_modules: Option<Targets>,
    #[serde(default)]
    pub use_rslora: bool,
    /// In file order: PEFT takes the first pattern that matches.
    #[serde(default)]
    pub rank_pattern: Ordered<usize>,
    #[serde(default)]
    pub alpha_pattern: Ordered<f64>,
    pub layers_to_transform: Option<Layers>,
    pub layers_pattern: Option<serde_json::Value>,
    pub target_parameters: Option<serde_json::Value>,
    pub trainable_token_indices: Option<serde_json::Value>,
    pub alora_invocation_tokens: Option<serde_json::Value>,
    #[serde(default)]
    pub use_qalora: bool,
    pub init_lora_weights: Option<serde_json::Value>,
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    pub bias: Option<String>,
    pub modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    pub lora_bias: bool,
    pub layer_replication: Option<serde_json::Value>,
    pub exclude_modules: Option<Targets>,
}

impl AdapterConfig {
    pub fn parse(text: &str) -> Result<Self, LoraError> {
        let c: Self = serde_json::from_str(text).map_err(|e| LoraError::Config(e.to_string()))?;
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), LoraError> {
        let refuse = |what: &str| Err(LoraError::Unsupported(what.to_string()));
        if let Some(t) = self.peft_type.as_deref().filter(|t| !t.eq_ignore_ascii_case("LORA")) {
            return refuse(&format!("peft_type `{t}` (only LORA)"));
        }
        if self.use_dora {
            return refuse("use_dora = true (DoRA)");
        }
        if self.fan_in_fan_out {
            return refuse("fan_in_fan_out = true (Conv1D-style weights)");
        }
        if let Some(b) = self.bias.as_deref().filter(|b| *b != "none") {
            return refuse(&format!("bias = \"{b}\" (only \"none\")"));
        }
        if self.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
            return refuse("modules_to_save (fully trained extra modules)");
        }
        if self.lora_bias {
            return refuse("lora_bias = true");
        }
        if self.layer_replication.as_ref().is_some_and(|v| !v.is_null()) {
            return refuse("layer_replication");
        }
        let set = |v: &Option<serde_json::Value>| {
            v.as_ref().is_some_and(|v| {
                !(v.is_null() || v.as_array().is_some_and(Vec::is_empty) || v.as_object().is_some_and(|o| o.is_empty()))
            })
        };
        for (key, value) in [
            ("target_parameters", &self.target_parameters),
            ("trainable_token_indices", &self.trainable_token_indices),
            ("alora_invocation_tokens", &self.alora_invocation_tokens),
        ] {
            if set(value) {
                return refuse(key);
            }
        }
        if self.use_qalora {
            return refuse("use_qalora = true");
        }
        // These initialisations change the base the adapter expects; unconverted, they mean another model.
        if let Some(init) = self.init_lora_weights.as_ref().and_then(|v| v.as_str()) {
            let lower = init.to_ascii_lowercase();
            if ["pissa", "olora", "corda", "loftq", "eva"].iter().any(|p| lower.starts_with(p)) {
                return refuse(&format!("init_lora_weights = \"{init}\" (the adapter needs its own modified base)"));
            }
        }
        if let Some(p) = &self.layers_pattern {
            let ok = p.as_str() == Some("layers")
                || p.as_array().is_some_and(|a| a.iter().all(|x| x.as_str() == Some("layers")));
            if !ok {
                return refuse(&format!("layers_pattern {p} (llama models name their blocks `layers`)"));
            }
        }
        if matches!(self.target_modules, Some(Targets::Pattern(ref p)) if !p.eq_ignore_ascii_case("all-linear"))
            && (self.layers_to_transform.is_some() || self.layers_pattern.is_some())
        {
            return Err(LoraError::Config(
                "a regex target_modules cannot be combined with layers_to_transform (PEFT refuses it too)".into(),
            ));
        }
        if self.target_modules.is_none() {
            return Err(LoraError::Config("no target_modules: name the modules the adapter applies to".into()));
        }
        if self.r == 0 || self.rank_pattern.0.iter().any(|(_, r)| *r == 0) {
            return Err(LoraError::Config("ranks (r, rank_pattern) must be at least 1".into()));
        }
        Ok(())
    }

    /// Whether PEFT would put a LoRA layer on `module` (e.g. `model.layers.3.self_attn.q_proj`).
    pub fn targets(&self, module: &str) -> Result<bool, LoraError> {
        if let Some(ex) = &self.exclude_modules
            && matches_targets(ex, module, false)?
        {
            return Ok(false);
        }
        let hit = match &self.target_modules {
            None => false,
            Some(t) => matches_targets(t, module, true)?,
        };
        Ok(hit && self.layer_allowed(module))
    }

    fn layer_allowed(&self, module: &str) -> bool {
        let Some(layers) = &self.layers_to_transform else { return true };
        let Some(n) = layer_index(module) else { return false };
        match layers {
            Layers::One(i) => *i == n,
            // PEFT: an empty list means every layer.
            Layers::Many(v) => v.is_empty() || v.contains(&n),
        }
    }

    /// Rank and scale for a module: rank_pattern / alpha_pattern override; rsLoRA divides by √r.
    pub fn rank_and_scale(&self, module: &str) -> Result<(usize, f64), LoraError> {
        let r = pattern_value(&self.rank_pattern.0, module)?.unwrap_or(self.r);
        let alpha = pattern_value(&self.alpha_pattern.0, module)?.unwrap_or(self.lora_alpha);
        let scale = if self.use_rslora { alpha / (r as f64).sqrt() } else { alpha / r as f64 };
        Ok((r, scale))
    }
}

/// PEFT: a list entry matches the module name or its dotted suffix; a string is a full-match regex;
/// `all-linear` is every linear layer but the output head.
fn matches_targets(t: &Targets, module: &str, all_linear_allowed: bool) -> Result<bool, LoraError> {
    Ok(match t {
        Targets::List(names) => names.iter().any(|n| module == n || module.ends_with(&format!(".{n}"))),
        Targets::Pattern(p) if p.eq_ignore_ascii_case("all-linear") && all_linear_allowed => module != "lm_head",
        Targets::Pattern(p) => regex(&format!(r"\A(?:{p})\Z"))?.is_match(module),
    })
}

/// PEFT's get_pattern_key: the first pattern `p` with `(.*\.)?(p)$` matching the module name.
fn pattern_value<T: Copy>(map: &[(String, T)], module: &str) -> Result<Option<T>, LoraError> {
    for (p, v) in map {
        if regex(&format!(r"\A(?:.*\.)?(?:{p})\Z"))?.is_match(module) {
            return Ok(Some(*v));
        }
    }
    Ok(None)
}

/// Python's regex dialect (PEFT's patterns are Python `re`).
fn regex(p: &str) -> Result<onig::Regex, LoraError> {
    onig::Regex::with_options(p, onig::RegexOptions::REGEX_OPTION_NONE, onig::Syntax::python())
        .map_err(|e| LoraError::Config(format!("pattern `{p}`: {e}")))
}

/// A JSON object read in file order.
#[derive(Debug, Clone)]
pub struct Ordered<T>(pub Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of pattern: value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The N of `…layers.N.…`.
pub fn layer_index(module: &str) -> Option<usize> {
    let rest = module.split("layers.").nth(1)?;
    rest.split('.').next()?.parse().ok()
}
