//! The second real model, Google's gemma-3-270m (base) in Q4_K_M (scripts/fetch-gemma; Gemma Terms of Use): its
//! tokenizer against llama.cpp on the texts of the transformers fixture (tests/fixtures/gemma3_270m_top1.json,
//! made by scripts/gemma-fixture/make-top1). The fixed-string ids live in tests/tokenizer_ids.rs. CI fetches the
//! model; elsewhere these skip, saying so.

mod support;

use support::{gemma_fixture as fixture, gemma_model as model_path, json_ids as ids};
use tunebench::engine::local::tokenizer::Tokenizer;

/// The fixture's prompts are llama.cpp's ids (BOS, then the text as plain text); tunebench gives the same, so
/// the top-1 comparison runs on the sequence transformers saw.
#[test]
fn prompt_ids_match_llama_tokenize() {
    let Some(p) = model_path() else { return };
    let tok = Tokenizer::open(&p).unwrap();
    assert!(tok.vocab.add_bos, "the GGUF asks for BOS");
    let bos = tok.vocab.bos.unwrap();
    assert_eq!(tok.vocab.tokens[bos as usize], "<bos>");
    let fx = fixture();
    for case in fx["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let prompt_len = case["prompt_len"].as_u64().unwrap() as usize;
        let mut got = vec![bos];
        got.extend(tok.encode(text, false).unwrap());
        assert_eq!(got, ids(&case["ids"])[..prompt_len], "{text:?}");
    }
    let long = fx["cases"].as_array().unwrap().iter().map(|c| c["prompt_len"].as_u64().unwrap()).max().unwrap();
    assert!(long > 512, "one text is longer than the 512-token sliding window ({long} tokens)");
}

/// Generated ids decode to the text llama.cpp printed for them, and the EOS and end-of-turn ids stop a run.
#[test]
fn decoding_and_stops_follow_the_gguf() {
    let Some(p) = model_path() else { return };
    let tok = Tokenizer::open(&p).unwrap();
    let fx = fixture();
    let case = &fx["cases"][0];
    let text = case["text"].as_str().unwrap();
    let prompt_len = case["prompt_len"].as_u64().unwrap() as usize;
    assert_eq!(tok.decode(&ids(&case["ids"])[1..prompt_len]), text, "decode(encode(text)) is the text");
    assert!(tok.is_stop(tok.vocab.eos.unwrap()), "<eos>");
    assert_eq!(tok.vocab.tokens[tok.vocab.eos.unwrap() as usize], "<eos>");
    assert!(tok.is_stop(tok.token_id("<end_of_turn>").unwrap()));
}
