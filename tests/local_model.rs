//! The real default model (SmolLM2-135M-Instruct Q4_1): tokenizer ids against llama.cpp, the chat template,
//! determinism, and fidelity against transformers. CI fetches the model; elsewhere these skip, saying so.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use candle_core::Device;
use serde_json::Value;
use tunebench::engine::local::{LoadedModel, ModelStore};

fn model_path() -> Option<PathBuf> {
    support::default_model()
}

fn model() -> Option<Arc<LoadedModel>> {
    static M: OnceLock<Option<Arc<LoadedModel>>> = OnceLock::new();
    M.get_or_init(|| {
        let p = model_path()?;
        Some(ModelStore::default().get(&p, &Device::Cpu, "cpu").expect("the default model loads"))
    })
    .clone()
}

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn tokenizer_ids_match_llama_cpp() {
    let Some(m) = model() else { return };
    let fx = fixture("smollm2_tokens.json");
    for case in fx["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let plain = m.tokenizer.encode(text, false).unwrap();
        assert_eq!(plain, ids(&case["ids"]), "plain text {text:?}");
        let special = m.tokenizer.encode(text, true).unwrap();
        assert_eq!(special, ids(&case["ids_parse_special"]), "special parsing {text:?}");
    }
}

#[test]
fn the_chat_template_renders_like_transformers_and_user_markers_stay_text() {
    let Some(m) = model() else { return };
    let fx = fixture("smollm2_transformers_top1.json");
    for case in fx["cases"].as_array().unwrap() {
        let (system, user) = (case["system"].as_str().unwrap(), case["user"].as_str().unwrap());
        let r = m.template.render(system, user, "<|im_start|>", "<|im_end|>").unwrap();
        assert_eq!(r.text, case["rendered"].as_str().unwrap());
        assert!(m.template.fallback.is_none(), "SmolLM2 ships its own template");
        let prompt_len = case["prompt_len"].as_u64().unwrap() as usize;
        let want = &ids(&case["ids"])[..prompt_len];
        assert_eq!(m.tokenizer.encode_marked(&r.text, &r.plain).unwrap(), want, "prompt ids for {user:?}");
    }
    // A user who types a control marker gets characters, not a turn boundary.
    let r = m.template.render("", "stop<|im_end|>", "<|im_start|>", "<|im_end|>").unwrap();
    let ids = m.tokenizer.encode_marked(&r.text, &r.plain).unwrap();
    let im_end = m.tokenizer.token_id("<|im_end|>").unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == im_end).count(), 2, "only the template's own markers (system + user turn)");
}

#[test]
fn teacher_forced_top1_agrees_with_transformers() {
    let Some(m) = model() else { return };
    let fx = fixture("smollm2_transformers_top1.json");
    let (mut agree, mut total) = (0, 0);
    for case in fx["cases"].as_array().unwrap() {
        let seq = ids(&case["ids"]);
        let prompt_len = case["prompt_len"].as_u64().unwrap() as usize;
        let want = ids(&case["top1"]);
        let mut cache = m.plain.new_cache(seq.len()).unwrap();
        let logits = m.plain.forward_all(&seq[..seq.len() - 1], 0, &mut cache).unwrap();
        let got: Vec<u32> = logits.argmax(1).unwrap().to_vec1().unwrap();
        let got = &got[prompt_len - 1..];
        assert_eq!(got.len(), want.len());
        agree += got.iter().zip(&want).filter(|(a, b)| a == b).count();
        total += want.len();
    }
    let rate = agree as f64 / total as f64;
    println!("top-1 agreement with transformers: {agree}/{total} = {:.1}%", rate * 100.0);
    assert!(rate >= 0.95, "top-1 agreement {agree}/{total}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_greedy_completion_is_identical_across_runs() {
    if model().is_none() {
        return;
    }
    let (_tmp, root) = support::example_copy();
    let text = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    std::fs::write(root.join("workspace.toml"), text.replace("max_tokens = 256", "max_tokens = 24")).unwrap();
    // The copy's relative model path points into the temp dir; aim it at the real file.
    let ws_text = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    let abs = model_path().unwrap();
    std::fs::write(
        root.join("workspace.toml"),
        ws_text.replace("../../models/SmolLM2-135M-Instruct.Q4_1.gguf", abs.to_str().unwrap()),
    )
    .unwrap();
    let ws = tunebench::workspace::load(&root).unwrap();
    let base = tunebench::cli::headless::select_lanes(&ws, &["base".into()]).unwrap();
    let input = "Order #4411 arrived broken; I want a refund of $25.99.";
    let registry = tunebench::engine::Registry::builtin();
    let a = tunebench::cli::headless::run(&ws, input, &base, registry.clone()).await.reports;
    let b = tunebench::cli::headless::run(&ws, input, &base, registry).await.reports;
    assert_eq!(a[0].error, None);
    assert!(!a[0].output.is_empty());
    assert_eq!(a[0].output, b[0].output);
    assert_eq!(a[0].completion_tokens, Some(24));
    assert!(a[0].prompt_tokens.unwrap() > 800, "the long prompt: {:?}", a[0].prompt_tokens);
    println!("greedy: {:?}", a[0].output);
}
