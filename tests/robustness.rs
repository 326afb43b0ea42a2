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

#[allow(dead_code)]
#[path = "fuzz/gguf.rs"]
mod gguf;
#[allow(dead_code)]
#[path = "fuzz/inputs.rs"]
mod inputs;

/// The fuzz harness's tiny GGUF with the bytes after `name` (a key or tensor name) overwritten by `patch`,
/// `skip` bytes past the name's end.
fn gguf_with(name: &str, skip: usize, patch: &[u8]) -> Vec<u8> {
    let mut b = gguf::build().bytes;
    let at = b.windows(name.len()).position(|w| w == name.as_bytes()).unwrap() + name.len() + skip;
    b[at..at + patch.len()].copy_from_slice(patch);
    b
}

fn load_err(bytes: &[u8]) -> String {
    let device = candle_core::Device::Cpu;
    match tunebench::engine::local::load_gguf_from(&mut std::io::Cursor::new(bytes), Path::new("x.gguf"), &device, None)
    {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_seed_gguf_loads() {
    let device = candle_core::Device::Cpu;
    let bytes = gguf::build().bytes;
    assert!(
        tunebench::engine::local::load_gguf_from(&mut std::io::Cursor::new(bytes), Path::new("x.gguf"), &device, None)
            .is_ok()
    );
}

#[test]
fn a_zero_gguf_alignment_is_refused_not_divided_by() {
    // Found by the fuzz harness: candle divides the data offset by general.alignment unchecked.
    let err = load_err(&gguf_with("general.alignment", 4, &0u32.to_le_bytes()));
    assert!(err.contains("general.alignment is 0"), "{err}");
}

#[test]
fn gguf_tensor_dimensions_whose_product_wraps_are_refused() {
    // n_dims (u32) then the dims (u64 each): 2^33 × 2^33 wraps a 64-bit product.
    let mut patch = 2u32.to_le_bytes().to_vec();
    patch.extend((1u64 << 33).to_le_bytes());
    patch.extend((1u64 << 33).to_le_bytes());
    let err = load_err(&gguf_with("blk.0.attn_q.weight", 0, &patch));
    assert!(err.contains("`blk.0.attn_q.weight`") && err.contains("does not fit"), "{err}");
}

#[test]
fn an_empty_gguf_tensor_is_refused() {
    let mut patch = 2u32.to_le_bytes().to_vec();
    patch.extend(0u64.to_le_bytes());
    let err = load_err(&gguf_with("blk.0.attn_q.weight", 0, &patch));
    assert!(err.contains("is empty"), "{err}");
}

#[test]
fn metadata_that_disagrees_with_the_tensors_is_refused_before_tables_are_sized_by_it() {
    // key_length 2^30: the rotary tables alone would have needed hundreds of GB.
    let err = load_err(&gguf_with("llama.attention.key_length", 4, &(1u32 << 30).to_le_bytes()));
    assert!(err.contains("invalid model shape") && err.contains("attn"), "{err}");
}

#[test]
fn a_runaway_chat_template_runs_out_of_fuel() {
    use tunebench::engine::local::template::ChatTemplate;
    let src = "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}";
    let t = ChatTemplate::new(Some(src), |_| false).unwrap();
    let started = Instant::now();
    let err = t.render("", "hi", "", "").unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(err.contains("instructions"), "{err}");
    // Output is capped as well: a template cannot make the prompt grow past 64 MiB.
    let t = ChatTemplate::new(Some("{% for i in range(10) %}{{ 'x' * 99999999 }}{% endfor %}"), |_| false).unwrap();
    let err = t.render("", "hi", "", "").unwrap_err().to_string();
    assert!(err.contains("64 MiB"), "{err}");
}
