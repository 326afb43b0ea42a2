//! Token ids against llama.cpp's `llama-tokenize` on one fixed string set (digits, long numbers, unicode, code,
//! whitespace runs, every family's chat markers) for each GGUF tokenizer tunebench supports: the fixture
//! tests/fixtures/llama_tokenize_ids.json, made by scripts/llama-tokenize-fixture/make-fixture (the command is in
//! it). The vocabularies come from scripts/fetch-vocabs, fetch-model and fetch-gemma; CI fetches them, elsewhere
//! a missing one is skipped, saying so. No GGUF with `tokenizer.ggml.pre = gpt-4o` ships with llama.cpp, so that
//! rule is checked by its splits alone (tests/tokenizer_parity.rs).

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;
use tunebench::engine::local::tokenizer::{Model, Tokenizer};

fn fixture() -> &'static Value {
    static FX: OnceLock<Value> = OnceLock::new();
    FX.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_tokenize_ids.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Every case, plain (special-token text stays text) and with special tokens parsed, against llama.cpp.
/// Returns the tokenizer (None when skipped) for checks particular to one vocabulary.
fn check(name: &str) -> Option<Tokenizer> {
    let fx = fixture();
    let entry = fx["vocabs"].as_array().unwrap().iter().find(|v| v["name"] == name).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(entry["file"].as_str().unwrap());
    if !path.is_file() {
        assert!(std::env::var_os("CI").is_none(), "CI must fetch {} first (scripts/fetch-*)", path.display());
        eprintln!(
            "skipped: {} is absent and CI is unset (scripts/fetch-vocabs, fetch-model, fetch-gemma)",
            path.display()
        );
        return None;
    }
    let tok = Tokenizer::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cases = fx["cases"].as_array().unwrap();
    let (plain, special) = (entry["plain"].as_array().unwrap(), entry["special"].as_array().unwrap());
    assert_eq!((plain.len(), special.len()), (cases.len(), cases.len()), "{name}: fixture shape");
    let mut bad = Vec::new();
    for ((text, plain), special) in cases.iter().zip(plain).zip(special) {
        let text = text.as_str().unwrap();
        for (parse_special, want) in [(false, ids(plain)), (true, ids(special))] {
            let got = tok.encode(text, parse_special).unwrap();
            if got != want {
                bad.push(format!("{text:?} parse_special={parse_special}\n    want {want:?}\n    got  {got:?}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: {} of {} encodings differ from llama-tokenize:\n{}",
        bad.len(),
        2 * cases.len(),
        bad.join("\n")
    );
    Some(tok)
}

fn pre(tok: &Tokenizer) -> &str {
    match &tok.vocab.model {
        Model::Bpe { pre, .. } => pre,
        Model::Spm { .. } => "(sentencepiece)",
    }
}

#[test]
fn llama_bpe_ids_match_llama_tokenize() {
    if let Some(tok) = check("llama-bpe") {
        assert_eq!(pre(&tok), "llama-bpe");
    }
}

#[test]
fn qwen2_ids_match_llama_tokenize() {
    if let Some(tok) = check("qwen2") {
        assert_eq!(pre(&tok), "qwen2");
    }
}

#[test]
fn qwen35_ids_match_llama_tokenize() {
    if let Some(tok) = check("qwen35") {
        assert_eq!(pre(&tok), "qwen35");
    }
}

#[test]
fn smollm_ids_match_llama_tokenize_on_smollm2() {
    if let Some(tok) = check("smollm") {
        assert_eq!(pre(&tok), "smollm");
    }
}

#[test]
fn starcoder_ids_match_llama_tokenize() {
    if let Some(tok) = check("starcoder") {
        assert_eq!(pre(&tok), "starcoder");
    }
}

#[test]
fn gpt2_ids_match_llama_tokenize() {
    if let Some(tok) = check("gpt-2") {
        assert_eq!(pre(&tok), "gpt-2");
    }
}

/// The sdist ships no gpt-4o vocabulary; the Phi-4-mini fixture's committed GGUF (pre gpt-4o) is always here.
#[test]
fn gpt4o_ids_match_llama_tokenize_on_the_phi4mini_fixture() {
    let tok = check("gpt-4o").expect("the Phi-4-mini fixture is committed");
    assert_eq!(pre(&tok), "gpt-4o");
}

#[test]
fn phi3_sentencepiece_ids_match_llama_tokenize() {
    if let Some(tok) = check("phi-3") {
        assert!(matches!(tok.vocab.model, Model::Spm { add_space_prefix: true }));
    }
}

#[test]
fn llama2_sentencepiece_ids_match_llama_tokenize() {
    if let Some(tok) = check("llama-spm") {
        assert!(matches!(tok.vocab.model, Model::Spm { add_space_prefix: true }));
    }
}

/// Gemma's SentencePiece: no space prefix, and its chat markers are control tokens only when parsed as such.
#[test]
fn gemma3_sentencepiece_ids_match_llama_tokenize_on_gemma_3_270m() {
    let Some(tok) = check("gemma3") else { return };
    assert!(matches!(tok.vocab.model, Model::Spm { add_space_prefix: false }));
    let turn = tok.token_id("<start_of_turn>").unwrap();
    assert!(tok.encode("<start_of_turn>user", true).unwrap().starts_with(&[turn]));
    assert!(!tok.encode("<start_of_turn>user", false).unwrap().contains(&turn), "typed markers stay text");
    assert!(tok.is_stop(tok.token_id("<end_of_turn>").unwrap()), "<end_of_turn> ends a turn");
}

/// The retyping llama.cpp applies on load, without any downloaded vocabulary: an end-of-generation text stored
/// as user-defined or normal becomes a control token (text unless special tokens are parsed); a fill-in-the-middle
/// text does only when the GGUF names no id for its role; gpt-oss's `<|channel|>` is always split out.
#[test]
fn llama_cpp_retypes_control_looking_tokens_of_a_gguf() {
    use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};
    use tunebench::engine::local::tokenizer::{TokenType, Vocab};
    let content = |extra: &[(&str, Value)]| {
        let tokens = ["<unk>", "a", "</s>", "<|fim_prefix|>", "<|channel|>", "<|fim_suffix|>"];
        // Stored types: unknown, normal, user-defined, normal, control, normal.
        let types = [2, 1, 4, 1, 3, 1];
        let mut metadata = std::collections::HashMap::from([
            ("tokenizer.ggml.model".to_string(), Value::String("llama".into())),
            (
                "tokenizer.ggml.tokens".to_string(),
                Value::Array(tokens.iter().map(|t| Value::String(t.to_string())).collect()),
            ),
            ("tokenizer.ggml.token_type".to_string(), Value::Array(types.iter().map(|&t| Value::I32(t)).collect())),
            ("tokenizer.ggml.add_space_prefix".to_string(), Value::Bool(false)),
        ]);
        for (k, v) in extra {
            metadata.insert(k.to_string(), v.clone());
        }
        Content { magic: VersionedMagic::GgufV3, metadata, tensor_infos: Default::default(), tensor_data_offset: 0 }
    };
    let vocab = Vocab::from_gguf(&content(&[])).unwrap();
    assert_eq!(vocab.types[2], TokenType::Control, "</s> stored as user-defined");
    assert_eq!(vocab.types[3], TokenType::Control, "<|fim_prefix|> with no fim_pre_token_id");
    assert_eq!(vocab.types[4], TokenType::UserDefined, "<|channel|>");
    assert_eq!(vocab.types[1], TokenType::Normal);
    let tok = Tokenizer::from_vocab(vocab).unwrap();
    assert!(!tok.encode("a</s>", false).unwrap().contains(&2), "plain text never yields </s>");
    assert_eq!(tok.encode("a</s>", true).unwrap(), [1, 2]);
    assert_eq!(tok.encode("<|channel|>", false).unwrap(), [4], "user-defined: split out even in plain text");
    let named = Vocab::from_gguf(&content(&[("tokenizer.ggml.fim_pre_token_id", Value::U32(1))])).unwrap();
    assert_eq!(named.types[3], TokenType::Normal, "the GGUF names the prefix token: no guessing by text");
    assert_eq!(named.types[5], TokenType::Control, "the suffix role is still unnamed");
}
