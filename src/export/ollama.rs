//! Ollama's Modelfile for a lane: FROM the base GGUF with ADAPTER the GGUF LoRA (or FROM a merged GGUF where
//! Ollama's adapters fail), the TEMPLATE derived from the model's chat template, PARAMETER stop for its end
//! tokens, SYSTEM the lane's prompt, and the lane's sampling.

use std::path::Path;

use super::template::Derived;
use crate::workspace::Sampling;

/// Architectures whose LoRA adapters Ollama cannot apply (ollama#11376 for Qwen3; Gemma 3's vision-capable
/// runner likewise): their export is a merged GGUF.
pub const MERGE_ONLY: [&str; 3] = ["qwen3", "gemma3", "gemma3n"];

/// What the Modelfile is made of.
pub struct Modelfile<'a> {
    /// The GGUF Ollama loads (the base, or the merged model).
    pub from: &'a Path,
    /// The GGUF LoRA over `from`, when the adapter stays separate.
    pub adapter: Option<&'a Path>,
    pub template: &'a Derived,
    pub system: &'a str,
    /// The model's end-of-turn tokens, as text, then the lane's own stop strings.
    pub stops: Vec<String>,
    pub sampling: &'a Sampling,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ModelfileError(pub String);

impl Modelfile<'_> {
    pub fn text(&self) -> Result<String, ModelfileError> {
        if self.system.contains("\"\"\"") {
            return Err(ModelfileError(
                "the lane's system prompt holds \"\"\", which ends a Modelfile's multi-line value".into(),
            ));
        }
        if self.template.go.contains("\"\"\"") {
            return Err(ModelfileError("the TEMPLATE would hold \"\"\", which ends a Modelfile's value".into()));
        }
        let mut out = format!("FROM {}\n", self.from.display());
        if let Some(a) = self.adapter {
            out.push_str(&format!("ADAPTER {}\n", a.display()));
        }
        out.push_str(&format!("TEMPLATE \"\"\"{}\"\"\"\n", self.template.go));
        if !self.system.is_empty() {
            out.push_str(&format!("SYSTEM \"\"\"{}\"\"\"\n", self.system));
        }
        for s in &self.stops {
            out.push_str(&format!("PARAMETER stop {}\n", quoted(s)));
        }
        let s = self.sampling;
        out.push_str(&format!("PARAMETER temperature {}\n", s.temperature));
        out.push_str(&format!("PARAMETER top_p {}\n", s.top_p));
        if let Some(k) = s.top_k {
            out.push_str(&format!("PARAMETER top_k {k}\n"));
        }
        if s.repetition_penalty != 1.0 {
            out.push_str(&format!("PARAMETER repeat_penalty {}\n", s.repetition_penalty));
        }
        if let Some(seed) = s.seed {
            out.push_str(&format!("PARAMETER seed {seed}\n"));
        }
        out.push_str(&format!("PARAMETER num_predict {}\n", s.max_tokens));
        Ok(out)
    }
}

/// A one-line Modelfile value in double quotes (a stop string with a quote or backslash escaped).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The stop list: each end-of-turn token's text once, then the lane's stops not already there.
pub fn stops(model_tokens: &[String], lane: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in model_tokens.iter().chain(lane) {
        if !s.is_empty() && !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_keep_order_and_drop_repeats() {
        let got = stops(&["<|im_end|>".into(), "<|endoftext|>".into()], &["<|im_end|>".into(), "END".into()]);
        assert_eq!(got, ["<|im_end|>", "<|endoftext|>", "END"]);
        assert_eq!(quoted("a\"b\\"), "\"a\\\"b\\\\\"");
    }
}
