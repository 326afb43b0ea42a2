//! `tunebench export --to axolotl`: config.yml with the training `tunebench train` runs (rank, alpha, targets,
//! lr, schedule, epochs, batch, sequence length, seed) over a Hugging Face base, and the splits as data/*.jsonl
//! trained on each example's last answer alone, without meta; refused without a Hugging Face base.

mod support;

use std::process::Command;

fn export(ws: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .arg("export")
        .arg(ws)
        .args(["--to", "axolotl", "--out", out.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_axolotl_export_carries_the_training_settings_and_the_dataset() {
    let model = support::default_model();
    let (_tmp, ws) = match &model {
        Some(m) => support::example_copy_with_model(m),
        None => support::example_copy(),
    };
    let out = ws.join("axolotl");
    // The base lane's model is a GGUF and it has no adapter naming its Hugging Face base: refused.
    let refused = export(&ws, &out, &["--lane", "base"]);
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("axolotl trains a Hugging Face model, not a GGUF"), "{err}");
    // The tuned lane's adapter names its base (base_model_name_or_path).
    let o = export(&ws, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = std::fs::read_to_string(out.join("config.yml")).unwrap();
    for line in [
        "base_model: \"HuggingFaceTB/SmolLM2-135M-Instruct\"",
        "adapter: lora",
        "lora_r: 16",
        "lora_alpha: 32",
        "lora_target_linear: true",
        "type: chat_template",
        "message_field_training: training",
        "num_epochs: 3",
        "learning_rate: 0.0002",
        "lr_scheduler: cosine",
        "micro_batch_size: 8",
        "sequence_len: 1024",
        "seed: 42",
        "test_datasets:",
    ] {
        assert!(config.lines().any(|l| l.trim() == line), "{line} missing:\n{config}");
    }
    // SmolLM2 is named by its hub name: the pad token is its own end token (read from the lane's model),
    // never a new one.
    if model.is_some() {
        assert!(config.contains("special_tokens:\n  pad_token: \"<|im_end|>\""), "{config}");
    }
    let train = std::fs::read_to_string(out.join("data/train.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = train.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 615);
    for r in &rows {
        assert!(r.get("meta").is_none());
        let m = r["messages"].as_array().unwrap();
        let trained: Vec<bool> = m.iter().map(|x| x["training"].as_bool().unwrap()).collect();
        assert_eq!(trained.iter().filter(|t| **t).count(), 1);
        assert!(*trained.last().unwrap() && m.last().unwrap()["role"] == "assistant");
    }
    assert_eq!(std::fs::read_to_string(out.join("data/valid.jsonl")).unwrap().lines().count(), 110);
    assert!(std::fs::read_to_string(out.join("README.txt")).unwrap().contains("axolotl train config.yml"));
    let again = export(&ws, &out, &["--base", "HuggingFaceTB/SmolLM2-135M-Instruct"]);
    assert_eq!(again.status.code(), Some(2), "nothing is replaced");
}
