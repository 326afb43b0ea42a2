//! The exact prompt ids a local lane feeds its model: chat template rendered, BOS rule applied, message
//! text never read as control tokens. Runs and live counts share it, so a count is what a run will send.

use std::path::Path;

use super::Result;
use super::template::ChatTemplate;
use super::tokenizer::Tokenizer;

/// A model's tokenizer and chat template without its weights (for counting).
pub struct PromptTokenizer {
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
}

impl PromptTokenizer {
    /// Reads the vocabulary and template from a GGUF file's metadata or a model folder; no weights.
    pub fn open(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::open(path)?;
        let template =
            ChatTemplate::new(tokenizer.vocab.chat_template.as_deref(), |t| tokenizer.token_id(t).is_some())?;
        Ok(Self { tokenizer, template })
    }

    pub fn ids(&self, system: &str, input: &str) -> Result<Vec<u32>> {
        prompt_ids(&self.tokenizer, &self.template, system, input)
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

/// Renders and encodes one system prompt + user input as the model will see it.
pub fn prompt_ids(tok: &Tokenizer, template: &ChatTemplate, system: &str, input: &str) -> Result<Vec<u32>> {
    let (bos, eos) = specials(tok);
    let rendered = template.render(system, input, &bos, &eos)?;
    encode(tok, &bos, &rendered)
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
