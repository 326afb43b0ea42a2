//! The training files a provider takes, made from the workspace's dataset: checked against the provider's
//! rules before anything is uploaded, counted in the provider's tokens, and priced.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::dataset::{Dataset, Example, Split};
use crate::metrics::count::{bpe, openai_chat_tokens};
use crate::workspace::Workspace;

/// What a provider accepts.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub min_examples: usize,
    /// Tokens one example may hold (messages and framing).
    pub max_example_tokens: u64,
    /// Earlier assistant turns get `weight: 0` (OpenAI's way to train on the last answer alone).
    pub weights: bool,
}

/// OpenAI's fine-tuning rules (at least 10 examples; 65,536 tokens an example for the gpt-4o and gpt-4.1
/// families).
pub const OPENAI: Rules = Rules { min_examples: 10, max_example_tokens: 65_536, weights: true };

/// Together's: it checks each file on upload against the model's own context (reported when it refuses);
/// messages carry no per-turn weight.
/// Fireworks': at least 3 examples, per-message weights 0 or 1, examples past 32,768 tokens cut (refused here:
/// a cut example loses its answer).
pub const FIREWORKS: Rules = Rules { min_examples: 3, max_example_tokens: 32_768, weights: true };

pub const TOGETHER: Rules = Rules { min_examples: 1, max_example_tokens: u64::MAX, weights: false };

/// The files to upload and what they hold.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub train: String,
    pub valid: Option<String>,
    pub train_examples: usize,
    pub valid_examples: usize,
    /// Tokens of one pass over the training file (what an epoch is billed).
    pub train_tokens: u64,
    /// sha256 of the training and validation files, as uploaded.
    pub sha256: String,
}

/// One example as the chat fine-tuning APIs read it: the messages, with `weights` every assistant turn but
/// the last at `weight: 0` (tunebench trains on the last answer alone), no `meta` (trainers read only the
/// messages).
pub fn record(x: &Example, weights: bool) -> Value {
    let last = x.messages.iter().rposition(|m| m.role == "assistant");
    let messages: Vec<Value> = x
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if weights && m.role == "assistant" && Some(i) != last {
                json!({"role": m.role, "content": m.content, "weight": 0})
            } else {
                json!({"role": m.role, "content": m.content})
            }
        })
        .collect();
    json!({ "messages": messages })
}

/// The example's tokens in the o200k encoding (gpt-4o's and gpt-4.1's), with the chat framing.
pub fn tokens(x: &Example) -> u64 {
    let msgs: Vec<(&str, &str)> = x.messages.iter().map(|m| (m.role.as_str(), m.content.as_str())).collect();
    openai_chat_tokens(bpe(tiktoken_rs::tokenizer::Tokenizer::O200kBase), &msgs, &[])
}

/// The train and valid splits as upload files, or every reason the provider would refuse them (each naming
/// the example), before anything is sent.
pub fn prepare(ws: &Workspace, rules: Rules) -> Result<Prepared, Vec<String>> {
    let ds = Dataset::load(&ws.dataset_dir()).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    let out = |split: Split, problems: &mut Vec<String>| -> (String, usize, u64) {
        let (mut text, mut n, mut total) = (String::new(), 0, 0);
        for (s, x, line) in ds.examples() {
            if s != split {
                continue;
            }
            let file = ds.path(split);
            if let Some((_, why)) = crate::dataset::shape_problems(x).into_iter().next() {
                problems.push(format!("{}:{line}: example {}: {why}", file.display(), x.id));
                continue;
            }
            if x.messages.last().is_none_or(|m| m.role != "assistant") {
                problems.push(format!(
                    "{}:{line}: example {}: the last message must be the assistant's",
                    file.display(),
                    x.id
                ));
                continue;
            }
            let t = tokens(x);
            if t > rules.max_example_tokens {
                problems.push(format!(
                    "{}:{line}: example {}: {t} tokens, above the provider's {} an example",
                    file.display(),
                    x.id,
                    rules.max_example_tokens
                ));
                continue;
            }
            text.push_str(&record(x, rules.weights).to_string());
            text.push('\n');
            n += 1;
            total += t;
        }
        (text, n, total)
    };
    let (train, train_examples, train_tokens) = out(Split::Train, &mut problems);
    let (valid, valid_examples, _) = out(Split::Valid, &mut problems);
    if train_examples < rules.min_examples {
        problems.push(format!(
            "{}: {train_examples} usable training example(s); the provider needs at least {}",
            ds.path(Split::Train).display(),
            rules.min_examples
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut h = Sha256::new();
    h.update(train.as_bytes());
    h.update(valid.as_bytes());
    let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let valid = (valid_examples > 0).then_some(valid);
    Ok(Prepared { train, valid, train_examples, valid_examples, train_tokens, sha256 })
}

/// The training bill for `tokens` a pass over `epochs` (a range when the provider picks them), at
/// `per_mtok` dollars per million training tokens.
pub fn cost(tokens: u64, epochs: (u32, u32), per_mtok: f64) -> (f64, f64) {
    let one = tokens as f64 / 1e6 * per_mtok;
    (one * f64::from(epochs.0), one * f64::from(epochs.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Message, Meta};

    #[test]
    fn earlier_answers_carry_no_weight() {
        let mut x = Example::chat("ex_1".into(), "S", "u1", "a1", Meta::default());
        x.messages.push(Message::new("user", "u2"));
        x.messages.push(Message::new("assistant", "a2"));
        let r = record(&x, true);
        let m = r["messages"].as_array().unwrap();
        assert_eq!(m[2]["weight"], 0);
        assert!(record(&x, false)["messages"][2].get("weight").is_none());
        assert!(m[4].get("weight").is_none());
        assert!(r.get("meta").is_none());
        assert_eq!(cost(2_000_000, (1, 3), 3.0), (6.0, 18.0));
    }
}
