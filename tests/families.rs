//! Every model family against transformers on its tiny random fixture (tests/fixtures/families/, made by
//! scripts/family-fixtures/): logits at every position within 1e-3, greedy continuation identical, the same
//! with a PEFT adapter, from the GGUF and the safetensors folder; and a short training run whose loss falls
//! and whose adapter reloads to the trained logits.

mod support;

use support::families::{Form, check_parity, check_training};

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
    for (form, sub) in [(Form::Gguf, "gguf"), (Form::Safetensors, "hf")] {
        let t = check_training("llama2", form, &dir.path().join(sub));
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

/// A Mistral GGUF records no sliding window, so it runs attending to every token (as llama.cpp does) and the
/// pane title's format says so; its safetensors folder keeps the window.
#[test]
fn a_mistral_gguf_says_it_attends_to_all_tokens() {
    use candle_core::quantized::gguf_file;
    let fx = support::families::Fixture::open("mistral");
    let src = fx.path(Form::Gguf);
    let mut file = std::fs::File::open(&src).unwrap();
    let ct = gguf_file::Content::read(&mut file).unwrap();
    let mut metadata = ct.metadata.clone();
    metadata.insert("general.name".into(), gguf_file::Value::String("Mistral 7B Instruct v0.1".into()));
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = ct
        .tensor_infos
        .keys()
        .map(|n| (n.clone(), ct.tensor(&mut file, n, &candle_core::Device::Cpu).unwrap()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("mistral.gguf");
    let md: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &candle_core::quantized::QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut std::fs::File::create(&renamed).unwrap(), &md, &ts).unwrap();
    let note = "GGUF records no sliding window: attends to all tokens";
    let gguf = tunebench::engine::local::load(&renamed, &candle_core::Device::Cpu, None).unwrap();
    assert!(gguf.base().format.contains(note), "{}", gguf.base().format);
    assert!(gguf.base().cfg.layer_plan.iter().all(|l| l.window.is_none()));
    let hf = support::families::load_form(&fx, Form::Safetensors);
    assert!(!hf.base().format.contains(note), "{}", hf.base().format);
    assert!(hf.base().cfg.layer_plan.iter().all(|l| l.window == Some(8)), "{:?}", hf.base().cfg.layer_plan);
}
