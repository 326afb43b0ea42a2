//! An axolotl run of the same training `tunebench train` does: config.yml (LoRA rank, alpha, targets, lr,
//! schedule, epochs, batch, sequence length, seed; a chat_template dataset trained on each example's last
//! answer alone) and the train / valid splits as data/*.jsonl, for a multi-GPU machine.

use serde_json::{Value, json};

use crate::dataset::{Dataset, Example, Split};
use crate::lora::train::{Schedule, TrainConfig};

/// Each message with `training`: true on the last assistant turn only (tunebench's loss), no `meta`.
pub fn record(x: &Example) -> Value {
    let last = x.messages.iter().rposition(|m| m.role == "assistant");
    let messages: Vec<Value> = x
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"role": m.role, "content": m.content, "training": Some(i) == last}))
        .collect();
    json!({ "messages": messages })
}

/// A split as axolotl's JSONL, and how many examples it holds.
pub fn split_file(ds: &Dataset, split: Split) -> (String, usize) {
    let mut out = String::new();
    let mut n = 0;
    for (s, x, _) in ds.examples() {
        if s == split {
            out.push_str(&record(x).to_string());
            out.push('\n');
            n += 1;
        }
    }
    (out, n)
}

/// What the config needs beyond the training settings.
pub struct Setup<'a> {
    /// A Hugging Face model name or folder (axolotl cannot train on a GGUF).
    pub base_model: &'a str,
    /// The PEFT target modules; empty means every linear layer.
    pub targets: &'a [String],
    /// An existing token to pad with when the tokenizer has none (never a new one: adding a token resizes the
    /// embeddings, which then have to be saved beside the adapter).
    pub pad_token: Option<&'a str>,
    pub has_valid: bool,
    pub output_dir: &'a str,
}

/// A YAML scalar: JSON's string syntax is YAML's double-quoted style.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// config.yml for `c` (tunebench's training settings).
pub fn config(c: &TrainConfig, s: &Setup) -> String {
    let mut y = String::new();
    y.push_str("# Written by `tunebench export --to axolotl`: the training `tunebench train` runs, for axolotl.\n");
    y.push_str(&format!("base_model: {}\n", q(s.base_model)));
    y.push_str("chat_template: tokenizer_default\n");
    y.push_str("adapter: lora\n");
    y.push_str(&format!("lora_r: {}\nlora_alpha: {}\nlora_dropout: 0.0\n", c.rank, c.alpha));
    if s.targets.is_empty() {
        y.push_str("lora_target_linear: true\n");
    } else {
        y.push_str("lora_target_modules:\n");
        for t in s.targets {
            y.push_str(&format!("  - {}\n", q(t)));
        }
    }
    let dataset = |path: &str| {
        format!(
            "  - path: {}\n    ds_type: json\n    type: chat_template\n    field_messages: messages\n    \
             message_property_mappings:\n      role: role\n      content: content\n    \
             message_field_training: training\n    train_on_eos: turn\n",
            q(path)
        )
    };
    y.push_str("datasets:\n");
    y.push_str(&dataset("data/train.jsonl"));
    if s.has_valid {
        y.push_str("test_datasets:\n");
        y.push_str(&dataset("data/valid.jsonl"));
        y.push_str("    split: train\n");
    } else {
        y.push_str("val_set_size: 0.0\n");
    }
    y.push_str("dataset_prepared_path: last_run_prepared\n");
    y.push_str(&format!("output_dir: {}\n", q(s.output_dir)));
    y.push_str(&format!("sequence_len: {}\nsample_packing: false\npad_to_sequence_len: false\n", c.max_seq_len));
    y.push_str(&format!(
        "micro_batch_size: {}\ngradient_accumulation_steps: {}\nnum_epochs: {}\n",
        c.batch, c.grad_accum, c.epochs
    ));
    if let Some(m) = c.max_steps {
        y.push_str(&format!("max_steps: {m}\n"));
    }
    let schedule = match c.schedule {
        Schedule::Cosine => "cosine",
        Schedule::Linear => "linear",
    };
    y.push_str(&format!(
        "optimizer: adamw_torch\nlearning_rate: {}\nlr_scheduler: {schedule}\nwarmup_ratio: {}\nweight_decay: {}\n\
         max_grad_norm: {}\nseed: {}\n",
        c.lr, c.warmup_ratio, c.weight_decay, c.max_grad_norm, c.seed
    ));
    y.push_str("bf16: auto\ntf32: false\ngradient_checkpointing: false\nlogging_steps: 1\n");
    y.push_str("save_strategy: epoch\n");
    if s.has_valid {
        y.push_str("eval_strategy: epoch\n");
    }
    if let Some(p) = s.pad_token {
        y.push_str(&format!("special_tokens:\n  pad_token: {}\n", q(p)));
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Message, Meta};

    #[test]
    fn only_the_last_answer_is_trained() {
        let mut x = Example::chat("e".into(), "S", "u1", "a1", Meta::default());
        x.messages.push(Message::new("user", "u2"));
        x.messages.push(Message::new("assistant", "a2"));
        let r = record(&x);
        let t: Vec<bool> = r["messages"].as_array().unwrap().iter().map(|m| m["training"].as_bool().unwrap()).collect();
        assert_eq!(t, [false, false, false, false, true]);
        assert_eq!(q("a \"b\"\n"), "\"a \\\"b\\\"\\n\"");
    }
}
