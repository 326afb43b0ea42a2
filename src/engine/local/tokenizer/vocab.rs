//! A model's vocabulary as GGUF stores it (tokenizer.ggml.*): tokens, types, scores, merges, special ids.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};

use super::TokenizerError;

/// llama.cpp's token types (tokenizer.ggml.token_type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i32(v: i32) -> Self {
        match v {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// How raw text becomes tokens.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// GPT-2 style byte-level BPE, with the pre-tokenizer regexes of `tokenizer.ggml.pre`.
    Bpe { pre: String, merges: Vec<(String, String)> },
    /// SentencePiece (Llama 2, TinyLlama, Mistral): merges by score, byte fallback.
    Spm { add_space_prefix: bool },
}

/// Whitespace a special token swallows on its left or right when it is split out of text (llama.cpp's
/// LSTRIP / RSTRIP token attributes, tokenizer.json's `lstrip` / `rstrip`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Strip {
    pub left: bool,
    pub right: bool,
}

#[derive(Debug, Clone)]
pub struct Vocab {
    pub tokens: Vec<String>,
    pub types: Vec<TokenType>,
    pub scores: Vec<f32>,
    pub ids: HashMap<String, u32>,
    pub model: Model,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Tokens that end a turn besides EOS (e.g. `<|im_end|>`, `<|eot_id|>`).
    pub stop_ids: Vec<u32>,
    pub add_bos: bool,
    pub chat_template: Option<String>,
    /// The model's context window (GGUF `{arch}.context_length`, config.json `max_position_embeddings`).
    pub context_length: Option<usize>,
    /// Special tokens that swallow neighbouring whitespace, by id.
    pub strip: HashMap<u32, Strip>,
}

impl Vocab {
    pub fn from_gguf(ct: &Content) -> Result<Self, TokenizerError> {
        let md = |k: &str| ct.metadata.get(k);
        let need = |k: &str| md(k).ok_or_else(|| TokenizerError::Missing(k.to_string()));
        let kind = need("tokenizer.ggml.model")?.to_string().map_err(|e| bad("tokenizer.ggml.model", e))?.clone();
        let tokens: Vec<String> = strings(need("tokenizer.ggml.tokens")?, "tokenizer.ggml.tokens")?;
        let n = tokens.len();
        let types = match md("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| bad("tokenizer.ggml.token_type", e))?
                .iter()
                .map(|t| t.to_i32().map(TokenType::from_i32).map_err(|e| bad("tokenizer.ggml.token_type", e)))
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![TokenType::Normal; n],
        };
        let scores = match md("tokenizer.ggml.scores") {
            Some(v) => v
                .to_vec()
                .map_err(|e| bad("tokenizer.ggml.scores", e))?
                .iter()
                .map(|s| s.to_f32().map_err(|e| bad("tokenizer.ggml.scores", e)))
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![0.0; n],
        };
        if types.len() != n || scores.len() != n {
            return Err(TokenizerError::Invalid("token_type / scores do not match the token count".into()));
        }
        let mut types = types;
        control_by_text(ct, &tokens, &mut types);
        let model = match kind.as_str() {
            "gpt2" => {
                let pre = match md("tokenizer.ggml.pre") {
                    Some(p) => p.to_string().map_err(|e| bad("tokenizer.ggml.pre", e))?.clone(),
                    None => "default".to_string(),
                };
                let merges = strings(need("tokenizer.ggml.merges")?, "tokenizer.ggml.merges")?
                    .into_iter()
                    .map(|m| {
                        m.split_once(' ')
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                            .ok_or_else(|| TokenizerError::Invalid(format!("merge `{m}` has no space")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Model::Bpe { pre, merges }
            }
            "llama" => Model::Spm { add_space_prefix: flag(ct, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true) },
            other => return Err(TokenizerError::Unsupported(format!("tokenizer model `{other}`"))),
        };
        let id = |k: &str| -> Result<Option<u32>, TokenizerError> {
            md(k).map(|v| v.to_u32().map_err(|e| bad(k, e))).transpose()
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        let add_bos = flag(ct, "tokenizer.ggml.add_bos_token")?.unwrap_or(matches!(model, Model::Spm { .. }));
        let chat_template =
            md("tokenizer.chat_template").and_then(|v| v.to_string().ok()).cloned().filter(|t| !t.trim().is_empty());
        let mut stop_ids: Vec<u32> = eos.into_iter().collect();
        stop_ids.extend(id("tokenizer.ggml.eot_token_id")?);
        let mut vocab = Self::finish(tokens, types, scores, model, bos, eos, stop_ids, add_bos, chat_template);
        let name = md("general.name").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        vocab.strip = gguf_strip(&vocab, &name);
        let arch = md("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        vocab.context_length = md(&format!("{arch}.context_length")).and_then(|v| v.to_u64().ok()).map(|n| n as usize);
        Ok(vocab)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        tokens: Vec<String>,
        types: Vec<TokenType>,
        scores: Vec<f32>,
        model: Model,
        bos: Option<u32>,
        eos: Option<u32>,
        mut stop_ids: Vec<u32>,
        add_bos: bool,
        chat_template: Option<String>,
    ) -> Self {
        let ids: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        // Chat models end turns with these even when EOS says otherwise; llama.cpp treats them as EOG too, by
        // id whatever their type (`<|end|>` and `<|eom_id|>` are not always marked Control).
        for marker in [
            "<|im_end|>",
            "<|eot_id|>",
            "<|eom_id|>",
            "<|end_of_text|>",
            "<|endoftext|>",
            "</s>",
            "<end_of_turn>",
            "<|end|>",
        ] {
            if let Some(&i) = ids.get(marker)
                && !stop_ids.contains(&i)
            {
                stop_ids.push(i);
            }
        }
        Self {
            tokens,
            types,
            scores,
            ids,
            model,
            bos,
            eos,
            stop_ids,
            add_bos,
            chat_template,
            context_length: None,
            strip: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// End-of-generation texts llama.cpp makes control tokens whatever their stored type (llama-vocab.cpp, load:
/// "control-looking token … its type will be overridden"). Gemma and Phi-3 store `</s>` as user-defined and a
/// Qwen2 vocabulary stores it as normal text, yet llama.cpp splits it out only when special tokens are parsed.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle texts llama.cpp makes control tokens when the GGUF names no id for their role
/// (`tokenizer.ggml.fim_*_token_id`, or the older `prefix` / `suffix` / `middle` keys).
const FIM_TEXTS: &[(&[&str], &[&str])] = &[
    (
        &["tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"],
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        &["tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"],
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        &["tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"],
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (&["tokenizer.ggml.fim_pad_token_id"], &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]),
    (&["tokenizer.ggml.fim_rep_token_id"], &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]),
    (&["tokenizer.ggml.fim_sep_token_id"], &["<|file_sep|>"]),
];

/// llama.cpp's load-time retyping of a GGUF vocabulary by token text, so that which text is split out as a
/// special token (always for user-defined, only when parsing specials for control) is the same as there.
/// Where a vocabulary holds two texts of one fill-in-the-middle role, llama.cpp retypes the first its hash map
/// yields; this retypes both (no vocabulary llama.cpp ships has two).
fn control_by_text(ct: &Content, tokens: &[String], types: &mut [TokenType]) {
    let fim: Vec<&str> = FIM_TEXTS
        .iter()
        .filter(|(keys, _)| keys.iter().all(|k| !ct.metadata.contains_key(*k)))
        .flat_map(|(_, texts)| texts.iter().copied())
        .collect();
    for (t, ty) in tokens.iter().zip(types.iter_mut()) {
        if EOG_TEXTS.contains(&t.as_str()) || fim.contains(&t.as_str()) {
            *ty = TokenType::Control;
        }
        // gpt-oss's channel markers are always rendered, so llama.cpp makes them user-defined.
        if matches!(t.as_str(), "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>") {
            *ty = TokenType::UserDefined;
        }
    }
}

/// GGUF stores no strip flags; llama.cpp sets them by model name (llama-vocab.cpp, load): a Phi-3 GGUF's
/// special tokens swallow the whitespace after them (`<|end|>\n<|assistant|>`), except `<unk>`, `<s>` and
/// `<|endoftext|>`; `</s>` does too.
fn gguf_strip(vocab: &Vocab, name: &str) -> HashMap<u32, Strip> {
    let name = name.to_ascii_lowercase();
    if !(name.contains("phi-3") || name.contains("phi3")) {
        return HashMap::new();
    }
    let right = Strip { left: false, right: true };
    let mut strip: HashMap<u32, Strip> = vocab
        .types
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t, TokenType::Control | TokenType::UserDefined | TokenType::Unknown))
        .map(|(i, _)| (i as u32, right))
        .collect();
    if let Some(&id) = vocab.ids.get("</s>") {
        strip.insert(id, right);
    }
    for t in ["<unk>", "<s>", "<|endoftext|>"] {
        if let Some(id) = vocab.ids.get(t) {
            strip.remove(id);
        }
    }
    strip
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, TokenizerError> {
    v.to_vec().map_err(|e| bad(key, e))?.iter().map(|s| s.to_string().cloned().map_err(|e| bad(key, e))).collect()
}

fn flag(ct: &Content, key: &str) -> Result<Option<bool>, TokenizerError> {
    ct.metadata.get(key).map(|v| v.to_bool().map_err(|e| bad(key, e))).transpose()
}

fn bad(key: &str, e: candle_core::Error) -> TokenizerError {
    TokenizerError::Invalid(format!("{key}: {}", crate::engine::local::candle_text(&e)))
}
