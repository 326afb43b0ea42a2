//! Regressions found by the fuzz harness (tests/fuzz/): each input that made a parser panic, hang or
//! allocate without bound, now refused with an error in bounded time.

use std::path::Path;
use std::time::{Duration, Instant};

use tunebench::engine::local::tokenizer::{Model, Tokenizer, Vocab};

fn hf_tokenizer(dir: &Path, pattern: &str) -> Tokenizer {
    let path = dir.join("tokenizer.json");
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"a": 0, "c": 1, "[UNK]": 2}, "unk_token": "[UNK]"}
    });
    std::fs::write(&path, json.to_string()).unwrap();
    let spm = Model::Spm { add_space_prefix: false };
    let seed = Vocab::finish(Vec::new(), Vec::new(), Vec::new(), spm, None, None, Vec::new(), false, None);
    Tokenizer::from_hf_json(&path, seed).unwrap()
}

#[test]
fn a_backtracking_tokenizer_json_pattern_gives_up_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    // Each run of 22 `a` costs every start position some 30 000 steps, under Oniguruma's per-match cap;
    // one search over the whole text (no digit anywhere) tried them all, for tens of seconds.
    let tok = hf_tokenizer(dir.path(), r"(a|aa)*\d");
    let text = format!("{} ", "a".repeat(22)).repeat(5000);
    let started = Instant::now();
    let r = tok.encode(&text, false);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let err = r.unwrap_err().to_string();
    assert!(err.contains("gave up"), "{err}");
    assert_eq!(tok.encode("aa1", false).unwrap().len(), 1);
    // Past the per-match cap the onig crate panics; that is this text's error, not a crash.
    let tok = hf_tokenizer(dir.path(), r"(a+)+\d");
    let err = tok.encode(&"a".repeat(40), false).unwrap_err().to_string();
    assert!(err.contains("retry-limit"), "{err}");
}
