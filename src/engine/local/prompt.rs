//! The exact prompt ids a local lane feeds its model: chat template rendered, BOS rule applied, message
//! text never read as control tokens. Runs and live counts share it, so a count is what a run will send.

use std::path::Path;

use super::Result;
use super::template::{ChatTemplate, FOLD_NOTE, RenderOptions};
use super::tokenizer::Tokenizer;

/// A prompt's ids, with the note a lane shows about how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptIds {
    pub ids: Vec<u32>,
    /// Set when the system prompt was folded into the user turn (the ids are what is sent, fold included).
    pub note: Option<&'static str>,
}

/// A model's tokenizer and chat template without its weights (for counting).
pub struct PromptTokenizer {
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
}

impl PromptTokenizer {
    /// Reads the vocabulary and template from a GGUF file's metadata or a model folder; no weights.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, None)
    }

    /// [`Self::open`] with the workspace's template for this model (`chat_template` in `[models.NAME]`)
    /// in place of the file's own.
    pub fn open_with(path: &Path, chat_template: Option<&str>) -> Result<Self> {
        let tokenizer = Tokenizer::open(path)?;
        let template = template_for(&tokenizer, chat_template)?;
        Ok(Self { tokenizer, template })
    }

    pub fn ids(&self, system: &str, input: &str) -> Result<Vec<u32>> {
        prompt_ids(&self.tokenizer, &self.template, system, input)
    }

    /// The prompt a lane with these options sends, with its note.
    pub fn prompt(&self, system: &str, input: &str, opts: RenderOptions) -> Result<PromptIds> {
        prompt(&self.tokenizer, &self.template, system, input, opts)
    }

    /// A whole conversation (e.g. a training example, answer included) as the model sees it.
    pub fn chat_ids(&self, messages: &[(&str, &str)]) -> Result<Vec<u32>> {
        chat_ids(&self.tokenizer, &self.template, messages, false)
    }

    /// The model's context window in tokens, where its files say.
    pub fn context_length(&self) -> Option<usize> {
        self.tokenizer.vocab.context_length
    }
}

fn specials(tok: &Tokenizer) -> (String, String) {
    let piece = |id: Option<u32>| id.and_then(|i| tok.vocab.tokens.get(i as usize)).cloned().unwrap_or_default();
    (piece(tok.vocab.bos), piece(tok.vocab.eos))
}

/// Renders and encodes `(role, content)` messages; `generation` appends the assistant's opening.
pub fn chat_ids(
    tok: &Tokenizer,
    template: &ChatTemplate,
    messages: &[(&str, &str)],
    generation: bool,
) -> Result<Vec<u32>> {
    let (bos, eos) = specials(tok);
    let rendered = template.render_chat(messages, generation, &bos, &eos)?;
    encode(tok, &bos, &rendered)
}

/// The model's chat template, or the workspace's override of it.
pub fn template_for(tok: &Tokenizer, chat_template: Option<&str>) -> Result<ChatTemplate> {
    let own = chat_template.or(tok.vocab.chat_template.as_deref());
    Ok(ChatTemplate::new(own, |t| tok.token_id(t).is_some())?)
}

/// Renders and encodes one system prompt + user input as the model will see it.
pub fn prompt_ids(tok: &Tokenizer, template: &ChatTemplate, system: &str, input: &str) -> Result<Vec<u32>> {
    Ok(prompt(tok, template, system, input, RenderOptions::default())?.ids)
}

/// [`prompt_ids`] with a lane's options, and the note to show with the count.
pub fn prompt(
    tok: &Tokenizer,
    template: &ChatTemplate,
    system: &str,
    input: &str,
    opts: RenderOptions,
) -> Result<PromptIds> {
    let (bos, eos) = specials(tok);
    let rendered = template.render_with(system, input, &bos, &eos, opts)?;
    Ok(PromptIds { ids: encode(tok, &bos, &rendered)?, note: rendered.folded.then_some(FOLD_NOTE) })
}

fn encode(tok: &Tokenizer, bos: &str, rendered: &super::template::Rendered) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    // The model's BOS goes first unless the template already wrote it (no double BOS).
    if tok.vocab.add_bos && !(bos.is_empty() || rendered.text.starts_with(bos)) {
        ids.extend(tok.vocab.bos);
    }
    ids.extend(tok.encode_marked(&rendered.text, &rendered.plain)?);
    Ok(ids)
}
