//! The real gemma-3-270m (base, Q4_K_M; scripts/fetch-gemma; Gemma Terms of Use) run by tunebench's decoder:
//! teacher-forced top-1 against transformers on the GGUF dequantized to f32 (tests/fixtures/gemma3_270m_top1.json,
//! made by scripts/gemma-fixture/make-top1), over texts shorter and longer than its 512-token sliding window,
//! and the greedy text against llama.cpp's on the same file. CI fetches the model; elsewhere these skip, saying so.

mod support;

use std::sync::{Arc, OnceLock};

use candle_core::Device;
use support::{gemma_fixture as fixture, gemma_model, json_ids as ids};
use tunebench::engine::local::{LoadedModel, ModelStore};

fn model() -> Option<Arc<LoadedModel>> {
    static M: OnceLock<Option<Arc<LoadedModel>>> = OnceLock::new();
    M.get_or_init(|| {
        let p = gemma_model()?;
        Some(ModelStore::default().get(&p, &Device::Cpu, "cpu").expect("gemma-3-270m loads"))
    })
    .clone()
}

/// tunebench runs the Q4_K_M weights as stored on the host engine (ggml's quantized matmuls: activations
/// quantized to Q8_0 / Q8_K per block, as llama.cpp does); transformers ran them dequantized to f32. So positions
/// whose top two logits lie within the quantization's noise may differ. llama.cpp itself, teacher-forced on the
/// same ids and file (a small program linked against the sdist's libllama, 2 threads), agrees on 137/144
/// (95.1 %); tunebench measured 135/144. The bar is 93 % (134/144), and every position where transformers'
/// margin is wide (> 1.0) must agree.
#[test]
fn teacher_forced_top1_agrees_with_transformers() {
    let Some(m) = model() else { return };
    let (agree, total, wide_misses) = top1(&m);
    let rate = agree as f64 / total as f64;
    println!("gemma-3-270m top-1 agreement with transformers: {agree}/{total} = {:.1}%", rate * 100.0);
    assert!(wide_misses.is_empty(), "clear-cut positions differ:\n{}", wide_misses.join("\n"));
    assert!(rate >= 0.93, "top-1 agreement {agree}/{total}");
}

/// The same file with every weight dequantized to f32 (`tunebench logits`' form, on the same host engine): what
/// transformers computed, so the bar is the one this test held before the host engine (95 %, measured 139/144
/// then), with no quantized activations in the way.
#[test]
fn exact_weights_keep_the_f32_agreement() {
    let Some(p) = gemma_model() else { return };
    let m = tunebench::engine::local::logits::load_exact(&p, &Device::Cpu).expect("gemma-3-270m loads as f32");
    let (agree, total, wide_misses) = top1(&m);
    let rate = agree as f64 / total as f64;
    println!("gemma-3-270m (f32 weights) top-1 agreement with transformers: {agree}/{total} = {:.1}%", rate * 100.0);
    assert!(wide_misses.is_empty(), "clear-cut positions differ:\n{}", wide_misses.join("\n"));
    assert!(rate >= 0.95, "top-1 agreement {agree}/{total}");
}

/// Teacher-forced top-1 of `m` against transformers over the fixture's cases: (agreeing, total, the misses
/// where transformers' margin is wide).
fn top1(m: &LoadedModel) -> (usize, usize, Vec<String>) {
    let fx = fixture();
    let (mut agree, mut total) = (0, 0);
    let mut wide_misses = Vec::new();
    for case in fx["cases"].as_array().unwrap() {
        let seq = ids(&case["ids"]);
        let prompt_len = case["prompt_len"].as_u64().unwrap() as usize;
        let want = ids(&case["top1"]);
        let margin: Vec<f64> = case["margin"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let mut cache = m.plain.new_cache(seq.len()).unwrap();
        let logits = m.plain.forward_all(&seq[..seq.len() - 1], 0, &mut cache).unwrap();
        let got: Vec<u32> = logits.argmax(1).unwrap().to_vec1().unwrap();
        let got = &got[prompt_len - 1..];
        assert_eq!(got.len(), want.len());
        for (i, ((g, w), mg)) in got.iter().zip(&want).zip(&margin).enumerate() {
            if g == w {
                agree += 1;
            } else if *mg > 1.0 {
                wide_misses.push(format!("prompt_len {prompt_len}, step {i}: got {g}, want {w} (margin {mg})"));
            }
        }
        total += want.len();
    }
    (agree, total, wide_misses)
}

/// Greedy decoding with the KV cache, one token at a time, against llama.cpp's greedy text (llama-simple, same
/// GGUF, same prompt ids, 24 tokens) for every text. Both run the quantized weights, yet rounding differs (llama.cpp
/// keeps K/V and the attention weights in f16, tunebench in f32), so a step whose top two logits lie within that
/// noise may go either way: up to the first step where transformers' margin is under 1.0 (the top-1 test's
/// "clear-cut" bound) the text must be llama.cpp's, and at least half of the texts must be llama.cpp's in full.
#[test]
fn greedy_text_matches_llama_cpp() {
    let Some(m) = model() else { return };
    let fx = fixture();
    let n = fx["max_new_tokens"].as_u64().unwrap() as usize;
    let stdout = fx["llama_cpp_greedy"]["stdout"].as_array().unwrap();
    let mut whole = 0;
    for (case, want) in fx["cases"].as_array().unwrap().iter().zip(stdout) {
        let text = case["text"].as_str().unwrap();
        let prompt_len = case["prompt_len"].as_u64().unwrap() as usize;
        let mut seq = ids(&case["ids"])[..prompt_len].to_vec();
        let mut cache = m.plain.new_cache(prompt_len + n).unwrap();
        let mut logits = m.plain.forward_last(&seq, 0, &mut cache).unwrap();
        for _ in 0..n {
            let next: u32 = logits.argmax(0).unwrap().to_scalar().unwrap();
            seq.push(next);
            if m.tokenizer.is_stop(next) {
                break;
            }
            logits = m.plain.forward_last(&[next], seq.len() - 1, &mut cache).unwrap();
        }
        // llama-simple prints every piece, BOS included (`<bos>`), then a newline.
        let want = want.as_str().unwrap().strip_prefix("<bos>").unwrap().strip_suffix('\n').unwrap();
        let want = want.strip_prefix(text).expect("llama.cpp's output starts with the prompt");
        let margin: Vec<f64> = case["margin"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let tie = margin.iter().position(|&x| x < 1.0).unwrap_or(n);
        let sure = m.tokenizer.decode(&seq[prompt_len..(prompt_len + tie).min(seq.len())]);
        let ours = m.tokenizer.decode(&seq[prompt_len..]);
        let head: String = text.chars().take(24).collect();
        println!("{head:?}…: tunebench {ours:?}\n{:29} llama.cpp {want:?}", "");
        assert!(want.starts_with(&sure), "{text:?}: the first {tie} tokens {sure:?} are not llama.cpp's {want:?}");
        if tie == n {
            assert_eq!(ours, want, "{text:?}: no near-tie, so all {n} tokens must be llama.cpp's");
        }
        whole += usize::from(ours == want);
    }
    println!("greedy text identical to llama.cpp's on {whole} of {} texts", stdout.len());
    assert!(2 * whole >= stdout.len(), "greedy text identical to llama.cpp's on only {whole} of {}", stdout.len());
}
