//! Prompt tokens per lane without running it: each lane's own tokenizer and chat format, opened once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer as Encoding, get_tokenizer};

use crate::engine::local::prompt::PromptTokenizer;
use crate::engine::local::template::RenderOptions;
use crate::workspace::{BackendKind, LaneSpec, ModelSpec, Workspace};

/// A lane's prompt size as it would be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub tokens: u64,
    /// Not the lane's own tokenizer (an API without a public one, or a model name tiktoken does not know).
    pub estimated: bool,
    /// What counted it: "model tokenizer", "o200k_base", "≈ cl100k_base" …
    pub how: String,
}

/// One token of a rendered prompt, as F4 shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    /// A control token or the chat format's own framing (not text anyone wrote).
    pub framing: bool,
    /// Tokens this piece stands for: more than one where a character's bytes span tokens (emoji, CJK).
    pub tokens: u32,
}

/// Joins token bytes into displayable pieces: a character split over tokens is shown once, whole.
#[derive(Default)]
struct Pieces {
    out: Vec<Segment>,
    pending: Vec<u8>,
    n: u32,
}

impl Pieces {
    fn bytes(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.n += 1;
        // Up to 3 bytes of an unfinished character may wait for the next token; beyond that it is not UTF-8.
        let valid = std::str::from_utf8(&self.pending).is_ok();
        if valid || self.pending.len() > 3 + bytes.len() {
            self.flush();
        }
    }

    fn framing(&mut self, text: impl Into<String>, tokens: u32) {
        self.flush();
        self.out.push(Segment { text: text.into(), framing: true, tokens });
    }

    fn flush(&mut self) {
        if self.n > 0 {
            let text = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
            self.out.push(Segment { text, framing: false, tokens: std::mem::take(&mut self.n) });
        }
    }
}

/// Tokenizers opened so far, by model file; opening reads a whole vocabulary, so it happens once per model.
#[derive(Default)]
pub struct Counters {
    /// By model path, with the file's modification time: a failure is remembered too, so a broken model is
    /// not re-read on every keystroke, and a fixed or replaced file is read again.
    local: Mutex<HashMap<(PathBuf, Option<String>), Opened>>,
}

/// A model file's tokenizer as opened at a modification time (or why it could not be).
type Opened = (Option<SystemTime>, Result<Arc<PromptTokenizer>, String>);

impl Counters {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts one lane's whole prompt (system prompt + input + chat format).
    pub fn count(
        &self,
        lane: &LaneSpec,
        model: Option<&ModelSpec>,
        system: &str,
        input: &str,
    ) -> Result<Count, String> {
        match lane.backend {
            BackendKind::Local => {
                let model = model.ok_or_else(|| format!("no [models.{}] entry", lane.model))?;
                let tok = self.local(model)?;
                let p = tok.prompt(system, input, render_options(lane)).map_err(|e| e.to_string())?;
                Ok(Count { tokens: p.ids.len() as u64, estimated: false, how: local_how(p.note) })
            }
            BackendKind::OpenAi => {
                let (enc, estimated) = api_encoding(lane);
                let messages: Vec<(&str, &str)> = [("system", system), ("user", input)]
                    .into_iter()
                    .filter(|(r, c)| *r == "user" || !c.is_empty())
                    .collect();
                let tokens = openai_chat_tokens(bpe(enc), &messages, &[]);
                Ok(Count { tokens, estimated, how: label(enc, estimated) })
            }
            BackendKind::Anthropic => {
                let (enc, estimated) = api_encoding(lane);
                let b = bpe(enc);
                let tokens =
                    (b.encode_ordinary(system).len() + b.encode_ordinary(input).len()) as u64 + ANTHROPIC_FRAME;
                Ok(Count { tokens, estimated, how: label(enc, estimated) })
            }
        }
    }

    /// The prompt exactly as the lane sends it, token by token (framing the API adds shown as markers).
    pub fn segments(
        &self,
        lane: &LaneSpec,
        model: Option<&ModelSpec>,
        system: &str,
        input: &str,
    ) -> Result<(Count, Vec<Segment>), String> {
        let mut out = Pieces::default();
        // The count is what the segments add up to: one tokenization, not a second one beside them.
        let (estimated, how) = match lane.backend {
            BackendKind::Local => {
                let model = model.ok_or_else(|| format!("no [models.{}] entry", lane.model))?;
                let tok = self.local(model)?;
                let p = tok.prompt(system, input, render_options(lane)).map_err(|e| e.to_string())?;
                for id in p.ids {
                    let bytes = tok.tokenizer.token_bytes(id);
                    if bytes.is_empty() {
                        out.framing(tok.tokenizer.vocab.tokens.get(id as usize).cloned().unwrap_or_default(), 1);
                    } else {
                        out.bytes(&bytes);
                    }
                }
                (false, local_how(p.note))
            }
            BackendKind::OpenAi | BackendKind::Anthropic => {
                let anthropic = lane.backend == BackendKind::Anthropic;
                let (enc, estimated) = api_encoding(lane);
                let b = bpe(enc);
                for (role, text) in [("system", system), ("user", input)] {
                    if role == "system" && text.is_empty() {
                        continue;
                    }
                    // OpenAI frames each message with 3 tokens plus its role.
                    let frame = if anthropic { 0 } else { 3 + b.encode_ordinary(role).len() as u32 };
                    out.framing(format!("⟨{role}⟩\n"), frame);
                    for bytes in b._decode_native_and_split(b.encode_ordinary(text)) {
                        out.bytes(&bytes);
                    }
                    out.framing("\n", 0);
                }
                if anthropic {
                    out.framing(format!("⟨≈ {ANTHROPIC_FRAME} tokens of Messages framing⟩"), ANTHROPIC_FRAME as u32);
                } else {
                    out.framing("⟨assistant⟩ (the reply is primed with 3 tokens)", 3);
                }
                (estimated, label(enc, estimated))
            }
        };
        out.flush();
        let tokens = out.out.iter().map(|s| u64::from(s.tokens)).sum();
        Ok((Count { tokens, estimated, how }, out.out))
    }

    /// The tokenizer and chat template of a local model (the workspace's template when it names one),
    /// opened once per file version.
    pub fn local(&self, model: &ModelSpec) -> Result<Arc<PromptTokenizer>, String> {
        let mtime = std::fs::metadata(&model.path).and_then(|m| m.modified()).ok();
        let key = (model.path.clone(), model.chat_template.clone());
        if let Some((at, t)) = self.local.lock().map_err(|_| "counter lock poisoned")?.get(&key)
            && *at == mtime
        {
            return t.clone();
        }
        let t = PromptTokenizer::open_with(&model.path, model.chat_template.as_deref())
            .map(Arc::new)
            .map_err(|e| e.to_string());
        self.local.lock().map_err(|_| "counter lock poisoned")?.insert(key, (mtime, t.clone()));
        t
    }

    /// Every lane of a workspace on one input, in lane order.
    pub fn count_all(&self, ws: &Workspace, input: &str) -> Vec<Result<Count, String>> {
        ws.lanes
            .iter()
            .map(|l| {
                let system = ws.prompt_text(&l.prompt).unwrap_or_default();
                self.count(l, ws.models.get(&l.model).filter(|_| l.backend == BackendKind::Local), system, input)
            })
            .collect()
    }
}

fn render_options(lane: &LaneSpec) -> RenderOptions {
    RenderOptions { enable_thinking: lane.enable_thinking }
}

/// How a local count was made; a folded system prompt is said beside it, as the lane says it in its run.
fn local_how(note: Option<&str>) -> String {
    match note {
        Some(_) => "model tokenizer · system prompt folded into the user turn".into(),
        None => "model tokenizer".into(),
    }
}

/// The Messages API's own framing around system and user text, as an estimate.
const ANTHROPIC_FRAME: u64 = 7;

/// The encoding an API lane is counted in, and whether that is only an estimate: an OpenAI model's own,
/// o200k_base for a name tiktoken does not know, cl100k_base for Claude (whose tokenizer is not public).
fn api_encoding(lane: &LaneSpec) -> (Encoding, bool) {
    match lane.backend {
        BackendKind::Anthropic => (Encoding::Cl100kBase, true),
        _ => encoding_for(&lane.model).map_or((Encoding::O200kBase, true), |e| (e, false)),
    }
}

/// The tiktoken encoding of an OpenAI model name (provider prefixes like `openai/` dropped).
pub fn encoding_for(model: &str) -> Option<Encoding> {
    let name = model.rsplit('/').next().unwrap_or(model);
    get_tokenizer(name).filter(|e| matches!(e, Encoding::O200kBase | Encoding::Cl100kBase | Encoding::O200kHarmony))
}

/// The encoder, built once per process (building o200k_base parses 200k ranks).
pub fn bpe(enc: Encoding) -> &'static CoreBPE {
    match enc {
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        Encoding::O200kHarmony => tiktoken_rs::o200k_harmony_singleton(),
        _ => tiktoken_rs::o200k_base_singleton(),
    }
}

fn label(enc: Encoding, estimated: bool) -> String {
    let name = match enc {
        Encoding::Cl100kBase => "cl100k_base",
        Encoding::O200kHarmony => "o200k_harmony",
        _ => "o200k_base",
    };
    if estimated { format!("≈ {name}") } else { name.to_string() }
}

/// Chat Completions prompt tokens: each message costs its role and content plus 3 tokens of framing, a
/// `name` one more, and every reply is primed with 3 (OpenAI's published accounting for gpt-4o and gpt-4).
pub fn openai_chat_tokens(bpe: &CoreBPE, messages: &[(&str, &str)], names: &[Option<&str>]) -> u64 {
    let mut n = 3;
    for (i, (role, content)) in messages.iter().enumerate() {
        n += 3 + bpe.encode_ordinary(role).len() + bpe.encode_ordinary(content).len();
        if let Some(Some(name)) = names.get(i) {
            n += 1 + bpe.encode_ordinary(name).len();
        }
    }
    n as u64
}
