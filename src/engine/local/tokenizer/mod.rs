//! Text ↔ token ids exactly as llama.cpp does for a GGUF (BPE or SentencePiece), or from a tokenizer.json.
//! Special tokens are split out first, as llama.cpp does; text marked plain never yields a control token.

mod bpe;
pub mod spm;
pub mod vocab;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

pub use bpe::pre_split;
pub use vocab::{Model, Strip, TokenType, Vocab};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("the model file has no `{0}`")]
    Missing(String),
    #[error("invalid tokenizer data: {0}")]
    Invalid(String),
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Hf(String),
    #[error("{0}")]
    Open(String),
}

enum Inner {
    Bpe {
        tok: tokenizers::Tokenizer,
        bytes: HashMap<char, u8>,
    },
    Spm {
        add_space_prefix: bool,
    },
    /// A tokenizer.json; its added tokens are matched here, never inside plain text.
    Hf(tokenizers::Tokenizer),
}

pub struct Tokenizer {
    pub vocab: Vocab,
    inner: Inner,
    /// Control, user-defined and unknown tokens, longest text first (llama.cpp's special-token cache).
    specials: Vec<Special>,
}

struct Special {
    text: String,
    id: u32,
    kind: TokenType,
    strip: vocab::Strip,
}

enum Fragment<'a> {
    Text { text: &'a str, parse_special: bool },
    Token(u32),
}

impl Tokenizer {
    pub fn from_vocab(vocab: Vocab) -> Result<Self, TokenizerError> {
        let inner = match &vocab.model {
            Model::Bpe { pre, merges } => {
                Inner::Bpe { tok: bpe::build(&vocab, pre, merges)?, bytes: bpe::char_to_byte() }
            }
            Model::Spm { add_space_prefix } => Inner::Spm { add_space_prefix: *add_space_prefix },
        };
        Ok(Self::with_specials(vocab, inner))
    }

    /// The tokenizer of a GGUF file (read from its metadata, no weights) or of a model folder.
    pub fn open(path: &Path) -> Result<Self, TokenizerError> {
        let path = super::paths::resolve(path).map_err(|e| TokenizerError::Open(e.to_string()))?;
        if path.is_dir() {
            return super::hf::tokenizer(&path).map_err(|e| TokenizerError::Open(e.to_string()));
        }
        let mut f = std::fs::File::open(&path).map_err(|e| TokenizerError::Open(format!("{}: {e}", path.display())))?;
        let ct = super::gguf::read_content(&mut f, &path).map_err(|e| TokenizerError::Open(e.to_string()))?;
        Self::from_vocab(Vocab::from_gguf(&ct)?)
    }

    /// From a Hugging Face tokenizer.json (plus the special ids and template the caller read beside it).
    pub fn from_hf_json(path: &Path, mut vocab: Vocab) -> Result<Self, TokenizerError> {
        let context_length = vocab.context_length;
        bound_regex_search();
        let mut tok = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::Hf(e.to_string()))?;
        tok.set_encode_special_tokens(true);
        let n = tok.get_vocab_size(true);
        let mut tokens = vec![String::new(); n];
        for (t, id) in tok.get_vocab(true) {
            if let Some(slot) = tokens.get_mut(id as usize) {
                *slot = t;
            }
        }
        let mut types = vec![TokenType::Normal; n];
        let mut strip = HashMap::new();
        for (id, added) in tok.get_added_tokens_decoder() {
            if let Some(slot) = types.get_mut(id as usize) {
                *slot = if added.special { TokenType::Control } else { TokenType::UserDefined };
            }
            // Split out here rather than by the tokenizers crate, so its strip flags must come along.
            if added.lstrip || added.rstrip {
                strip.insert(id, vocab::Strip { left: added.lstrip, right: added.rstrip });
            }
        }
        vocab = Vocab::finish(
            tokens,
            types,
            vec![0.0; n],
            vocab.model,
            vocab.bos,
            vocab.eos,
            vocab.stop_ids,
            vocab.add_bos,
            vocab.chat_template,
        );
        vocab.context_length = context_length;
        vocab.strip = strip;
        Ok(Self::with_specials(vocab, Inner::Hf(tok)))
    }

    fn with_specials(vocab: Vocab, inner: Inner) -> Self {
        let mut specials: Vec<Special> = vocab
            .types
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                matches!(t, TokenType::Control | TokenType::UserDefined | TokenType::Unknown)
                    && !vocab.tokens[*i].is_empty()
            })
            .map(|(i, t)| Special {
                text: vocab.tokens[i].clone(),
                id: i as u32,
                kind: *t,
                strip: vocab.strip.get(&(i as u32)).copied().unwrap_or_default(),
            })
            .collect();
        specials.sort_by_key(|s| std::cmp::Reverse(s.text.len()));
        Self { vocab, inner, specials }
    }

    /// Token ids of `text` without BOS; with `parse_special`, control-token text becomes control tokens.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        // One span covering the whole text (not a list of its indices).
        #[allow(clippy::single_range_in_vec_init)]
        let all = [0..text.len()];
        self.encode_marked(text, if parse_special { &[] } else { &all })
    }

    /// Encodes a rendered prompt: control tokens are recognised everywhere except inside `plain`
    /// (the user's and system's own text), where `<|im_end|>` is just characters.
    pub fn encode_marked(&self, text: &str, plain: &[Range<usize>]) -> Result<Vec<u32>, TokenizerError> {
        let mut frags = Vec::new();
        let mut at = 0;
        for r in plain {
            // llama.cpp never makes an empty fragment: "" is no tokens, not a lone SentencePiece space.
            if r.start < at || r.end > text.len() || r.is_empty() {
                continue;
            }
            if r.start > at {
                frags.push(Fragment::Text { text: &text[at..r.start], parse_special: true });
            }
            frags.push(Fragment::Text { text: &text[r.clone()], parse_special: false });
            at = r.end;
        }
        if at < text.len() {
            frags.push(Fragment::Text { text: &text[at..], parse_special: true });
        }
        for sp in &self.specials {
            frags = frags
                .into_iter()
                .flat_map(|f| match f {
                    Fragment::Text { text, parse_special } if parse_special || sp.kind == TokenType::UserDefined => {
                        split_on(text, sp, parse_special)
                    }
                    other => vec![other],
                })
                .collect();
        }
        // Whether a span is the user's only decides where control tokens may match: the text between two
        // special tokens is tokenized in one pass, as llama.cpp does, so template and message join cleanly.
        let mut out = Vec::new();
        let mut prev_special = true;
        let mut run: Option<(usize, usize)> = None;
        let offset = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;
        for f in frags {
            match f {
                Fragment::Token(id) => {
                    if let Some((a, b)) = run.take() {
                        self.encode_raw(&text[a..b], prev_special, &mut out)?;
                    }
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text { text: t, .. } => {
                    let (a, b) = (offset(t), offset(t) + t.len());
                    run = Some(match run {
                        Some((start, end)) if end == a => (start, b),
                        Some((start, end)) => {
                            self.encode_raw(&text[start..end], prev_special, &mut out)?;
                            prev_special = false;
                            (a, b)
                        }
                        None => (a, b),
                    });
                }
            }
        }
        if let Some((a, b)) = run {
            self.encode_raw(&text[a..b], prev_special, &mut out)?;
        }
        Ok(out)
    }

    fn encode_raw(&self, text: &str, prev_special: bool, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        match &self.inner {
            Inner::Bpe { tok, .. } | Inner::Hf(tok) => {
                // The onig crate panics when a search passes its retry limit (a tokenizer.json pattern that
                // backtracks without end); that is this text's error, not the program's.
                let enc = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tok.encode(text, false)))
                    .map_err(|p| {
                        let why = p.downcast_ref::<String>().cloned().unwrap_or_else(|| "panicked".into());
                        TokenizerError::Hf(format!("the tokenizer's pre-tokenizer pattern gave up on this text: {why}"))
                    })?
                    .map_err(|e| TokenizerError::Hf(e.to_string()))?;
                out.extend_from_slice(enc.get_ids());
            }
            Inner::Spm { add_space_prefix } => {
                let mut s = String::with_capacity(text.len() + 1);
                if *add_space_prefix && prev_special {
                    s.push(' ');
                }
                s.push_str(text);
                spm::tokenize(&self.vocab, &s.replace(' ', "\u{2581}"), out);
            }
        }
        Ok(())
    }

    /// The text of a sequence of generated ids; control tokens print nothing.
    pub fn decode(&self, ids: &[u32]) -> String {
        if let Inner::Hf(tok) = &self.inner {
            return tok.decode(ids, true).unwrap_or_default();
        }
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The raw bytes one GGUF token stands for (empty for control tokens).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(piece) = self.vocab.tokens.get(id as usize) else { return Vec::new() };
        match self.vocab.types[id as usize] {
            TokenType::Control | TokenType::Unknown | TokenType::Unused => Vec::new(),
            // llama.cpp stores user-defined tokens as literal text.
            TokenType::UserDefined => piece.as_bytes().to_vec(),
            TokenType::Normal | TokenType::Byte => match &self.inner {
                Inner::Bpe { bytes, .. } => piece.chars().filter_map(|c| bytes.get(&c).copied()).collect(),
                Inner::Spm { .. } => spm::token_bytes(piece),
                Inner::Hf(tok) => tok.decode(&[id], true).unwrap_or_default().into_bytes(),
            },
        }
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.vocab.stop_ids.contains(&id)
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.ids.get(text).copied()
    }
}

/// Backtracking steps one regex search may take over a whole text.
pub const REGEX_SEARCH_RETRIES: u64 = 100_000_000;

/// tokenizer.json patterns run on Oniguruma, which backtracks. It caps each match attempt (10 M steps)
/// but not a search, which tries every start position: a pattern like `(a|aa)*c` over a long run of `a`
/// would take hours. Bounded once for the process (the setting is Oniguruma's global default).
pub fn bound_regex_search() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: sets a plain global of the C library once, before this process builds a tokenizer.json regex.
    ONCE.call_once(|| unsafe {
        onig_sys::onig_set_retry_limit_in_search(REGEX_SEARCH_RETRIES as std::os::raw::c_ulong);
    });
}

/// GPT-2's byte → printable-character table (the inverse of what byte-level tokens decode through).
pub fn byte_chars() -> HashMap<u8, char> {
    bpe::char_to_byte().into_iter().map(|(c, b)| (b, c)).collect()
}

/// Splits a text fragment at every occurrence of a special token's text, dropping the whitespace its
/// strip flags swallow (C `isspace`, as llama.cpp's tokenizer_st_partition does).
fn split_on<'a>(text: &'a str, sp: &Special, parse_special: bool) -> Vec<Fragment<'a>> {
    let space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r');
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(sp.text.as_str()) {
        let left = if sp.strip.left { rest[..i].trim_end_matches(space) } else { &rest[..i] };
        if !left.is_empty() {
            out.push(Fragment::Text { text: left, parse_special });
        }
        out.push(Fragment::Token(sp.id));
        rest = &rest[i + sp.text.len()..];
        if sp.strip.right {
            rest = rest.trim_start_matches(space);
        }
    }
    if !rest.is_empty() {
        out.push(Fragment::Text { text: rest, parse_special });
    }
    out
}
