//! A LoRA lane against its base: decode tok/s of a model and of the model + a random r=16 adapter on every
//! linear layer (unmerged, as lanes run it), after the same prompt, in one process, step by step in turn.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::measure::Stat;
use candle_core::{Device, Tensor};
use tunebench::engine::local::{Llama, load};

use crate::measure;

const DECODE: usize = 128;

/// Turns, each a prefill and a decode of both lanes (the machine's noise moves single runs by 10%).
const TURNS: usize = 11;

/// Writes a random r=16 PEFT adapter (new values every call) on every linear layer of `base` into `dir`;
/// returns how many layers it adapts.
pub fn write_random(base: &tunebench::engine::local::BaseWeights, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cfg = serde_json::json!({"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": "all-linear", "bias": "none"});
    let mut tensors = std::collections::HashMap::new();
    let mut count = 0;
    for layer in &base.layers {
        for lin in &layer.linears {
            let a = Tensor::randn(0f32, 0.02, (16, lin.in_dim), &Device::Cpu)?;
            let b = Tensor::randn(0f32, 0.02, (lin.out_dim, 16), &Device::Cpu)?;
            tensors.insert(format!("base_model.model.{}.lora_A.weight", lin.name), a);
            tensors.insert(format!("base_model.model.{}.lora_B.weight", lin.name), b);
            count += 1;
        }
    }
    std::fs::write(dir.join("adapter_config.json"), cfg.to_string())
        .with_context(|| format!("writing {}", dir.display()))?;
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors"))?;
    Ok(count)
}

/// The LoRA line of the report for the model in `path`, named `label` in it.
pub fn run(path: &Path, label: &str, prompt: usize) -> Result<String> {
    let m = load(path, &crate::measure::device()?, None).with_context(|| format!("loading {}", path.display()))?;
    let base = m.base().clone();
    let dir = std::env::temp_dir().join(format!("tunebench-bench-lora-{}", std::process::id()));
    let count = write_random(&base, &dir)?;
    let written = m.with_adapter(&dir);
    let gguf = dir.with_extension("gguf");
    let exported = export_gguf(path, &base, &dir, &gguf);
    let _ = std::fs::remove_dir_all(&dir);
    let view = written.map_err(anyhow::Error::from).context("the random adapter")?;
    let ids = measure::prompt_ids(prompt, base.cfg.vocab);
    // Both lanes prefill the same prompt, then decode step by step in alternation (base, adapter, base, …),
    // each step timed: the machine's load drifts over seconds here, and a pair of neighbouring steps shares it,
    // where a whole decode of one lane and then of the other does not. Each turn gives each lane its tok/s (its
    // steps' own time) and so a ratio; the median turn's ratio is the figure.
    let turn = |models: [&Llama; 2]| -> Result<(f64, f64)> {
        let size = tunebench::engine::local::prefill_chunk(models[0].device());
        let mut caches = Vec::with_capacity(2);
        for model in models {
            let mut cache = model.new_cache(prompt + DECODE + 1)?;
            for (i, chunk) in ids.chunks(size).enumerate() {
                model.forward_last(chunk, i * size, &mut cache)?;
            }
            caches.push(cache);
        }
        let (mut toks, mut secs) = ([ids[0]; 2], [0f64; 2]);
        for i in 0..DECODE {
            for (l, (model, cache)) in models.iter().zip(caches.iter_mut()).enumerate() {
                let t = std::time::Instant::now();
                toks[l] = model.forward_last(&[toks[l]], prompt + i, cache)?.argmax(0)?.to_scalar::<u32>()?;
                secs[l] += t.elapsed().as_secs_f64();
            }
        }
        Ok((DECODE as f64 / secs[0], DECODE as f64 / secs[1]))
    };
    let mut pairs = Vec::with_capacity(TURNS);
    for _ in 0..TURNS {
        pairs.push(turn([&m.plain, &view.model])?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratios: Vec<f64> = pairs.iter().map(|(b, a)| a / b).collect();
    let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let (b, a) = (median(pairs.iter().map(|p| p.0).collect()), median(pairs.iter().map(|p| p.1).collect()));
    let line = format!(
        "LoRA r=16 on all {count} linear layers of {label} (unmerged, {}), decode of {DECODE} tokens after a {prompt}-token \
         prompt, both lanes decoding step by step in alternation, {TURNS} turns (medians): base lane {b:.1} tok/s, adapter lane {a:.1} \
         tok/s, **{:.3}×** (median of the turns' ratios; {lo:.3}–{hi:.3}; the target is 0.95, so three decimals)\n",
        crate::measure::device_spec(),
        median(ratios)
    );
    let peer = match exported.and_then(|()| peer(path, &gguf)) {
        Ok(p) => p,
        Err(e) => format!("llama.cpp's LoRA lane: not measured ({e:#})\n"),
    };
    let _ = std::fs::remove_file(&gguf);
    Ok(line + "\n" + &peer)
}

/// The same random adapter as a GGUF LoRA for llama.cpp (`tunebench export --to gguf-lora`'s writer).
fn export_gguf(path: &Path, base: &tunebench::engine::local::BaseWeights, dir: &Path, out: &Path) -> Result<()> {
    let arch = tunebench::engine::local::gguf_architecture(path)?;
    let adapter = tunebench::lora::Adapter::load(dir, base).map_err(|e| anyhow::anyhow!("{e}"))?;
    tunebench::lora::gguf::write(&adapter, &arch, out).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// llama.cpp's LoRA lane against its base on the same file, adapter and threads (CPU only): llama-completion
/// with and without `--lora`, greedy, taking turns, medians.
fn peer(path: &Path, lora: &Path) -> Result<String> {
    if crate::measure::device_spec() != "cpu" {
        return Ok(String::new());
    }
    const PEER_TURNS: usize = 5;
    let threads = crate::threads()?;
    let prompt = "Rule: tag the ticket, name the product and rate the urgency. ".repeat(40);
    let (mut base, mut adapted) = (Vec::new(), Vec::new());
    for _ in 0..PEER_TURNS {
        base.push(crate::llama_peers::completion(path, None, &prompt, DECODE, threads)?);
        adapted.push(crate::llama_peers::completion(path, Some(lora), &prompt, DECODE, threads)?);
    }
    let ratios: Vec<f64> = base.iter().zip(&adapted).map(|(b, a)| a / b).collect();
    let (b, a, r) = (Stat::of(base), Stat::of(adapted), Stat::of(ratios));
    let (Some(b), Some(a), Some(r)) = (b, a, r) else { bail!("no timing") };
    Ok(format!(
        "The peer, llama.cpp's `llama-completion` with and without `--lora` (the same adapter as tunebench's GGUF \
         LoRA export writes it, f32 factors; {threads} threads, a ~500-token prompt, {DECODE} tokens, {PEER_TURNS} \
         turns): base {:.1} tok/s, LoRA {:.1} tok/s, **{:.2}×** ({:.2}–{:.2})\n",
        b.median, a.median, r.median, r.min, r.max
    ))
}
