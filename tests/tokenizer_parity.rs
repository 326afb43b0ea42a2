//! Tokenizer parity with llama.cpp: every case of llama.cpp's own test-tokenizer-0 (`.inp` strings, `.out` ids,
//! shipped with its ggml-vocab-*.gguf files) through tunebench's tokenizer. scripts/fetch-vocabs puts them in
//! models/vocab/; CI fetches them, elsewhere these tests skip, saying so.

use std::path::{Path, PathBuf};

use tunebench::engine::local::tokenizer::Tokenizer;

/// The vocabulary and its test files, or None (skipped) outside CI when scripts/fetch-vocabs has not run.
fn vocab(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/vocab").join(format!("ggml-vocab-{name}.gguf"));
    if p.is_file() {
        return Some(p);
    }
    assert!(std::env::var_os("CI").is_none(), "CI must fetch the test vocabularies first (scripts/fetch-vocabs)");
    eprintln!("skipped: {} is absent and CI is unset (run scripts/fetch-vocabs)", p.display());
    None
}

/// llama.cpp's test-tokenizer-0 format: strings separated by `\n__ggml_vocab_test__\n`, one line of ids each.
fn cases(gguf: &Path) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(gguf.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(gguf.with_extension("gguf.out")).unwrap();
    // The file ends with a separator: like read_tests, no empty case follows it.
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if texts.last() == Some(&"") {
        texts.pop();
    }
    let ids: Vec<Vec<u32>> = out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(texts.len(), ids.len(), "{}: .inp and .out disagree on the case count", gguf.display());
    texts.into_iter().map(str::to_string).zip(ids).collect()
}

/// Runs every case as test-tokenizer-0 does (no BOS, special tokens not parsed) and lists each mismatch.
fn check(name: &str, pre: Option<&str>) {
    let Some(p) = vocab(name) else { return };
    let tok = Tokenizer::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    if let Some(pre) = pre {
        assert!(
            matches!(&tok.vocab.model, tunebench::engine::local::tokenizer::Model::Bpe { pre: p, .. } if p == pre),
            "{name}: expected pre-tokenizer {pre}, got {:?}",
            match &tok.vocab.model {
                tunebench::engine::local::tokenizer::Model::Bpe { pre, .. } => pre.as_str(),
                _ => "(spm)",
            }
        );
    }
    let all = cases(&p);
    assert!(all.len() > 30, "{name}: only {} cases", all.len());
    let mut bad = Vec::new();
    for (text, want) in &all {
        let got = tok.encode(text, false).unwrap();
        if &got != want {
            bad.push(format!("{text:?}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    assert!(bad.is_empty(), "{name}: {} of {} cases differ from llama.cpp:\n{}", bad.len(), all.len(), bad.join("\n"));
}

#[test]
fn llama3_bpe_matches_llama_cpp() {
    check("llama-bpe", Some("llama-bpe"));
}

#[test]
fn qwen2_matches_llama_cpp() {
    check("qwen2", Some("qwen2"));
}

#[test]
fn qwen35_matches_llama_cpp() {
    check("qwen35", Some("qwen35"));
}

#[test]
fn starcoder_rules_shared_with_smollm_match_llama_cpp() {
    check("starcoder", Some("starcoder"));
}

#[test]
fn gpt2_matches_llama_cpp() {
    check("gpt-2", Some("gpt-2"));
}

#[test]
fn phi3_spm_matches_llama_cpp() {
    check("phi-3", None);
}

#[test]
fn llama_spm_matches_llama_cpp() {
    check("llama-spm", None);
}

/// The pre-tokenizer rules alone, for the rules no shipped vocabulary covers (gpt-4o, smollm, qwen35) and for
/// each one on tunebench's own strings (digits, unicode, code, whitespace runs, chat markers as text). The
/// expected pieces are llama.cpp's own unicode_regex_split output, made by scripts/pretok-reference/make-fixture
/// (split.cpp built against llama.cpp's unicode.cpp); BPE merging within a piece is what the vocabularies check.
#[test]
fn pre_tokenizer_splits_match_llama_cpp_on_fixed_strings() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pretokenizer_splits.json");
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let cases: Vec<&str> = fx["cases"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let rules = fx["splits"].as_object().unwrap();
    for pre in ["llama-bpe", "qwen2", "qwen35", "smollm", "gpt-4o", "gpt-2", "default"] {
        let want = rules[pre].as_array().unwrap();
        assert_eq!(want.len(), cases.len(), "{pre}");
        for (text, want) in cases.iter().zip(want) {
            let want: Vec<&str> = want.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
            let got = tunebench::engine::local::tokenizer::pre_split(pre, text).unwrap();
            assert_eq!(got, want, "{pre}: {text:?}");
        }
    }
}

#[test]
fn an_unknown_pre_tokenizer_is_refused_by_name() {
    let err = tunebench::engine::local::tokenizer::pre_split("no-such-pre", "x").unwrap_err().to_string();
    assert!(err.contains("no-such-pre") && err.contains("tokenizer.ggml.pre"), "{err}");
}

/// llama.cpp gives a Phi-3 GGUF's special tokens RSTRIP (by model name, llama-vocab.cpp): the newline after
/// `<|user|>` and `<|end|>` in its chat prompt is swallowed, not tokenized; `<s>` keeps what follows.
#[test]
fn phi3_special_tokens_swallow_the_whitespace_after_them_as_llama_cpp_does() {
    let Some(p) = vocab("phi-3") else { return };
    let tok = Tokenizer::open(&p).unwrap();
    let id = |t: &str| tok.token_id(t).unwrap();
    let got = tok.encode("<|user|>\nHi<|end|>\n<|assistant|>", true).unwrap();
    let mut want = vec![id("<|user|>")];
    want.extend(tok.encode("Hi", false).unwrap());
    want.extend([id("<|end|>"), id("<|assistant|>")]);
    assert_eq!(got, want);
    let mut want = vec![id("<s>")];
    want.extend(tok.encode("\nHi", false).unwrap());
    assert_eq!(tok.encode("<s>\nHi", true).unwrap(), want, "<s> strips nothing");
    assert_eq!(tok.encode("", false).unwrap(), Vec::<u32>::new(), "no text, no tokens");
}

/// tunebench splits a tokenizer.json's added tokens out itself, so their `lstrip` / `rstrip` must come along
/// (the tokenizers crate would apply them had it split them): the whitespace beside them is no token. No
/// pre-tokenizer here, so whitespace left in would make the rest one unknown word.
#[test]
fn tokenizer_json_added_tokens_keep_their_strip_flags() {
    use tunebench::engine::local::tokenizer::{Model, Vocab};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let added = |id: u32, content: &str, lstrip: bool, rstrip: bool| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": lstrip,
                           "rstrip": rstrip, "normalized": false, "special": true})
    };
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "normalizer": null, "post_processor": null,
        "decoder": null, "pre_tokenizer": null,
        "added_tokens": [added(3, "<|end|>", false, true), added(4, "<|x|>", true, false)],
        "model": {"type": "WordLevel", "vocab": {"a": 0, "\n": 1, "[UNK]": 2, "<|end|>": 3, "<|x|>": 4},
                  "unk_token": "[UNK]"}
    });
    std::fs::write(&path, json.to_string()).unwrap();
    let spm = Model::Spm { add_space_prefix: false };
    let seed = Vocab::finish(Vec::new(), Vec::new(), Vec::new(), spm, None, None, Vec::new(), false, None);
    let tok = Tokenizer::from_hf_json(&path, seed).unwrap();
    assert_eq!(tok.encode("a<|end|> \n a", true).unwrap(), [0, 3, 0], "rstrip");
    assert_eq!(tok.encode("a \n<|x|>a", true).unwrap(), [0, 4, 0], "lstrip");
}
