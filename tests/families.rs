//! Every model family against transformers on its tiny random fixture (tests/fixtures/families/, made by
//! scripts/family-fixtures/): logits at every position within 1e-3, greedy continuation identical, the same
//! with a PEFT adapter, from the GGUF and the safetensors folder; and a short training run whose loss falls
//! and whose adapter reloads to the trained logits.

mod support;

use support::families::{Form, check_parity, check_training, train_out};

#[test]
fn llama2_gguf_matches_transformers() {
    let p = check_parity("llama2", Form::Gguf);
    eprintln!("llama2 gguf: {p:?}");
}

#[test]
fn llama2_safetensors_matches_transformers() {
    let p = check_parity("llama2", Form::Safetensors);
    eprintln!("llama2 safetensors: {p:?}");
}

#[test]
fn llama2_trains_and_its_adapter_reloads() {
    let dir = tempfile::tempdir().unwrap();
    for form in [Form::Gguf, Form::Safetensors] {
        let t = check_training("llama2", form, &train_out(dir.path(), "llama2", form));
        eprintln!("llama2 {form:?} training: {t:?}");
    }
}

/// Parity from both forms and a training run on both, for one family's fixture.
fn family_matches_and_trains(family: &str) {
    for form in [Form::Gguf, Form::Safetensors] {
        let p = check_parity(family, form);
        eprintln!("{family} {form:?}: {p:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    for (form, sub) in [(Form::Gguf, "gguf"), (Form::Safetensors, "hf")] {
        let t = check_training(family, form, &dir.path().join(sub));
        eprintln!("{family} {form:?} training: {t:?}");
    }
}

/// Llama 3.2 style: rope scaling `llama3` from config.json, baked into the GGUF's rope_freqs.weight; tied head.
#[test]
fn llama3_matches_transformers_and_trains() {
    family_matches_and_trains("llama3");
}

/// q/k/v biases, NEOX rope (q/k rows not permuted in the GGUF).
#[test]
fn qwen2_matches_transformers_and_trains() {
    family_matches_and_trains("qwen2");
}

/// Per-head q/k RMSNorm before rope, head_dim larger than hidden / heads.
#[test]
fn qwen3_matches_transformers_and_trains() {
    family_matches_and_trains("qwen3");
}

/// Sliding window shorter than the sequence from config.json; the GGUF records none and attends to all tokens
/// (compared with transformers' window-off logits), and says so in its format note.
#[test]
fn mistral_matches_transformers_and_trains() {
    family_matches_and_trains("mistral");
}

/// No rope on every 4th layer (config.json `no_rope_layers`; llama.cpp's hardcoded interval for the GGUF).
#[test]
fn smollm3_matches_transformers_and_trains() {
    family_matches_and_trains("smollm3");
}
