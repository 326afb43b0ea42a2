//! The host engine (the CPU's forward over raw buffers) against the candle decoder on the same weights, for
//! every family fixture, from the GGUF and the safetensors folder, with and without the fixture's PEFT adapter:
//! a prompt prefilled in uneven chunks, then decoded token by token on the lane's KV cache, every step's logits
//! within 5e-5 of the largest logit (f32 weights and activations on both sides; only the order of the sums
//! differs: measured up to 1.7e-5 of it).

mod support;

use std::sync::Arc;

use candle_core::Tensor;
use support::families::{Fixture, Form, load_form, max_diff};
use tunebench::engine::local::{Decoder, LinearFactory};

/// Relative to the largest logit.
const TOLERANCE: f32 = 5e-5;

const FAMILIES: [&str; 10] =
    ["llama2", "llama3", "qwen2", "qwen3", "mistral", "smollm3", "gemma2", "gemma3", "phi3", "phi4mini"];

/// Each step's logits: chunks of 5, 1 and 3 tokens of the prompt (every position's logits, `forward_all`), then
/// the rest one token at a time (`forward_last`, the decode step).
fn steps(m: &Decoder, ids: &[u32]) -> Vec<Tensor> {
    let mut cache = m.new_cache(ids.len()).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    for len in [5, 1, 3] {
        out.push(m.forward_all(&ids[pos..pos + len], pos, &mut cache).unwrap());
        pos += len;
    }
    for (i, id) in ids.iter().enumerate().skip(pos) {
        out.push(m.forward_last(&[*id], i, &mut cache).unwrap().unsqueeze(0).unwrap());
    }
    out
}

fn compare(family: &str, what: &str, host: &Decoder, candle: &Decoder, ids: &[u32]) -> f32 {
    assert!(host.on_host() && !candle.on_host(), "{family} {what}: host and candle paths");
    let (a, b) = (steps(host, ids), steps(candle, ids));
    let scale = b.iter().map(|t| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()).fold(0f32, f32::max);
    assert!(scale > 1.0, "{family} {what}: logits of order 1 or more, so the bound means something ({scale})");
    let worst = a.iter().zip(&b).map(|(x, y)| max_diff(x, y)).fold(0f32, f32::max);
    assert!(worst <= TOLERANCE * scale, "{family} {what}: host and candle logits differ by {worst} (largest {scale})");
    worst / scale
}

#[test]
fn the_host_engine_computes_the_candle_decoders_logits_for_every_family() {
    for family in FAMILIES {
        let fx = Fixture::open(family);
        for form in [Form::Gguf, Form::Safetensors] {
            let m = load_form(&fx, form);
            let base = m.base().clone();
            let plain: &LinearFactory<'_> = &tunebench::engine::local::plain;
            let candle = Decoder::new(base.clone(), plain).unwrap().on_candle();
            let base_diff = compare(family, &format!("{form:?}"), &m.plain, &candle, &fx.ids);

            let view = m.with_adapter(&fx.adapter()).unwrap();
            let adapter = tunebench::lora::Adapter::load(&fx.adapter(), &base).unwrap();
            let candle = adapter.view(&base).unwrap().on_candle();
            let host: &Arc<Decoder> = &view.model;
            let adapter_diff = compare(family, &format!("{form:?} + adapter"), host, &candle, &fx.ids);
            eprintln!("{family} {form:?}: base {base_diff:.1e}, adapter {adapter_diff:.1e}");
        }
    }
}
