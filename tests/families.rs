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
