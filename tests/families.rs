//! Every model family against transformers on its tiny random fixture (tests/fixtures/families/, made by
//! scripts/family-fixtures/): logits at every position within 1e-3, greedy continuation identical, the same
//! with a PEFT adapter, from the GGUF and the safetensors folder; and a short training run whose loss falls
//! and whose adapter reloads to the trained logits.

mod support;

use candle_core::Device;
use support::families::{Form, check_parity, check_training, train_out};
use tunebench::engine::local::read_gguf_content;

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
    for form in [Form::Gguf, Form::Safetensors] {
        let t = check_training(family, form, &train_out(dir.path(), family, form));
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

/// Every family's fixture has the shared format the other tests rely on, whatever the decoder supports today:
/// the files, the expected tensors' dtypes and shapes (logits as wide as the model's vocabulary, a sequence
/// longer than any window), an adapter of rank 4 with non-zero B, and a GGUF of the family's architecture.
#[test]
fn every_family_fixture_has_the_shared_format() {
    use candle_core::DType;
    use support::families::Fixture;
    let families = [
        ("llama2", "llama"),
        ("llama3", "llama"),
        ("mistral", "llama"),
        ("qwen2", "qwen2"),
        ("qwen3", "qwen3"),
        ("smollm3", "smollm3"),
        ("gemma2", "gemma2"),
        ("gemma3", "gemma3"),
        ("phi3", "phi3"),
        ("phi4mini", "phi3"),
    ];
    for (name, arch) in families {
        let fx = Fixture::open(name);
        let json = |p: std::path::PathBuf| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
                .unwrap()
        };
        let config = json(fx.dir.join("hf/config.json"));
        let vocab = config["vocab_size"].as_u64().unwrap() as usize;
        for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
            assert!(fx.dir.join("hf").join(f).is_file(), "{name}: hf/{f}");
        }
        let n = fx.ids.len();
        assert!(fx.ids.iter().all(|&i| (i as usize) < vocab), "{name}: ids within the vocabulary");
        // Phi-3.5's window (262144) is kept as the real model has it: longer than any sequence.
        if let Some(w) = config["sliding_window"].as_u64()
            && name != "phi3"
        {
            assert!(n > w as usize, "{name}: the sequence ({n}) is longer than the window ({w})");
        }
        let mut keys = vec!["logits", "logits_adapter"];
        if fx.tensors.contains_key("logits_full") {
            keys.extend(["logits_full", "logits_adapter_full"]);
        }
        for k in &keys {
            let t = fx.tensor(k);
            assert_eq!((t.dtype(), t.dims()), (DType::F32, &[n, vocab][..]), "{name}: {k}");
        }
        for k in ["greedy", "greedy_adapter"] {
            assert_eq!(fx.ids_of(k).len(), 8, "{name}: {k}");
        }
        let moved = support::families::max_diff(fx.tensor("logits"), fx.tensor("logits_adapter"));
        assert!(moved > 1.0, "{name}: the adapter moves the logits clearly ({moved})");

        let ad = json(fx.adapter().join("adapter_config.json"));
        assert_eq!((ad["r"].as_u64(), ad["lora_alpha"].as_f64()), (Some(4), Some(8.0)), "{name}: r, alpha");
        let weights =
            candle_core::safetensors::load(fx.adapter().join("adapter_model.safetensors"), &Device::Cpu).unwrap();
        let b: Vec<_> = weights.iter().filter(|(k, _)| k.contains("lora_B")).collect();
        assert!(!b.is_empty(), "{name}: lora_B tensors");
        for (k, t) in b {
            assert!(t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "{name}: {k} is zero");
        }

        let path = fx.path(Form::Gguf);
        let content = read_gguf_content(&mut std::fs::File::open(&path).unwrap(), &path).unwrap();
        let got = content.metadata["general.architecture"].to_string().unwrap().clone();
        assert_eq!(got, arch, "{name}: GGUF architecture");
        let tokens = content.metadata["tokenizer.ggml.tokens"].to_vec().unwrap().len();
        assert_eq!(tokens, vocab, "{name}: GGUF vocabulary");
    }
}
