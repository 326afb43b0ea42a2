//! Training sequences from dataset examples: rendered with the model's chat template, the loss read only
//! at the answer's tokens (the prompt masked by position, so a pad id equal to EOS cannot hide the
//! end-of-turn token, which stays in the loss so the model learns to stop).

use crate::dataset::Example;
use crate::engine::local::prompt::chat_ids;
use crate::engine::local::template::ChatTemplate;
use crate::engine::local::tokenizer::Tokenizer;

/// One example as the model trains on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    pub id: String,
    pub ids: Vec<u32>,
    /// Positions whose next token is an answer token, and those tokens.
    pub positions: Vec<u32>,
    pub targets: Vec<u32>,
}

/// Renders every example; those longer than `max_len` tokens or whose prompt does not prefix the whole
/// conversation are left out, each with the reason.
pub fn sequences(
    tok: &Tokenizer,
    template: &ChatTemplate,
    examples: &[&Example],
    max_len: usize,
) -> (Vec<Sequence>, Vec<String>) {
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for x in examples {
        match sequence(tok, template, x, max_len) {
            Ok(s) => out.push(s),
            Err(why) => skipped.push(format!("{}: {why}", x.id)),
        }
    }
    (out, skipped)
}

fn sequence(tok: &Tokenizer, template: &ChatTemplate, x: &Example, max_len: usize) -> Result<Sequence, String> {
    let all = x.pairs();
    let Some(last) = all.iter().rposition(|(r, _)| *r == "assistant") else {
        return Err("no assistant message to learn".into());
    };
    let prompt = chat_ids(tok, template, &all[..last], true).map_err(|e| e.to_string())?;
    let full = chat_ids(tok, template, &all[..=last], false).map_err(|e| e.to_string())?;
    if !full.starts_with(&prompt) || full.len() <= prompt.len() {
        return Err("the chat template renders the prompt differently inside the whole conversation".into());
    }
    if full.len() > max_len {
        return Err(format!("{} tokens, over --max-seq-len {max_len}", full.len()));
    }
    let start = prompt.len();
    Ok(Sequence {
        id: x.id.clone(),
        positions: (start as u32 - 1..full.len() as u32 - 1).collect(),
        targets: full[start..].to_vec(),
        ids: full,
    })
}

/// A content hash of the examples trained on (recorded beside the adapter; a resume must match it).
pub fn hash(examples: &[&Example]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for x in examples {
        h.update(serde_json::to_string(&x.messages).unwrap_or_default().as_bytes());
        h.update(b"\n");
    }
    crate::metrics::history::hex(&h.finalize())
}
