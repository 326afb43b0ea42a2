//! One timed pass of a model (load, prompt prefill in tunebench's chunks, greedy decode after it), the median
//! of several, and llama.cpp's `llama-bench` on the same file with the same prompt, decode depth and threads.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use tunebench::engine::local::{Llama, PREFILL_CHUNK, WeightPlan, load};

/// Seconds to load, prompt tokens per second, decoded tokens per second.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// None where the engine reports no load time (llama-bench).
    pub load_s: Option<f64>,
    pub prefill: f64,
    pub decode: f64,
}

/// The prompt: fixed ids spread over the vocabulary.
pub fn prompt_ids(len: usize, vocab: usize) -> Vec<u32> {
    (0..len as u64).map(|i| ((i * 7919 + 13) % vocab as u64) as u32).collect()
}

/// Prefills `prompt` from position 0 in PREFILL_CHUNK pieces, as lanes do, then decodes `decode` greedy
/// steps after it; returns (prompt tok/s, decode tok/s).
pub fn prefill_decode(model: &Llama, prompt: &[u32], decode: usize) -> Result<(f64, f64)> {
    let mut cache = model.new_cache(prompt.len() + decode + 1)?;
    let t = Instant::now();
    let mut pos = 0;
    while pos < prompt.len() {
        let end = (pos + PREFILL_CHUNK).min(prompt.len());
        model.forward_last(&prompt[pos..end], pos, &mut cache)?;
        pos = end;
    }
    let prefill = prompt.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut tok = prompt[0];
    for i in 0..decode {
        let logits = model.forward_last(&[tok], prompt.len() + i, &mut cache)?;
        tok = logits.argmax(0)?.to_scalar::<u32>()?;
    }
    Ok((prefill, decode as f64 / t.elapsed().as_secs_f64()))
}

/// Loads `path` with `plan` (None: what tunebench picks) and times one prefill of `prompt` tokens and
/// `decode` greedy steps after it.
pub fn once(path: &Path, plan: Option<WeightPlan>, prompt: usize, decode: usize) -> Result<Sample> {
    let m = load(path, &Device::Cpu, plan).with_context(|| format!("loading {}", path.display()))?;
    let ids = prompt_ids(prompt, m.base().cfg.vocab);
    // Warm-up outside the clock: first calls allocate.
    m.plain.forward_last(&ids[..8.min(prompt)], 0, &mut m.plain.new_cache(16)?)?;
    let (prefill, decode) = prefill_decode(&m.plain, &ids, decode)?;
    Ok(Sample { load_s: Some(m.load_secs), prefill, decode })
}

/// Each figure's median over `samples` (each figure on its own: a slow load need not come with a slow decode).
pub fn median(samples: &[Sample]) -> Sample {
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let loads: Vec<f64> = samples.iter().filter_map(|s| s.load_s).collect();
    Sample {
        load_s: (!loads.is_empty()).then(|| mid(loads)),
        prefill: mid(samples.iter().map(|s| s.prefill).collect()),
        decode: mid(samples.iter().map(|s| s.decode).collect()),
    }
}

/// (max − min) / median of prefill and of decode over `samples`, as fractions: how far one run is from
/// another, so that a figure from a busy machine says so. None under two runs.
pub fn spread(samples: &[Sample]) -> Option<(f64, f64)> {
    if samples.len() < 2 {
        return None;
    }
    let m = median(samples);
    let range = |f: fn(&Sample) -> f64| {
        let v = samples.iter().map(f);
        v.clone().fold(f64::MIN, f64::max) - v.fold(f64::MAX, f64::min)
    };
    Some((range(|s| s.prefill) / m.prefill, range(|s| s.decode) / m.decode))
}

/// What llama-bench ran, beside its figures.
pub struct LlamaBench {
    pub sample: Sample,
    /// Build commit, backends, flash attention, weight repacking, as llama-bench reports them.
    pub setup: String,
}

/// llama-bench on `path`: pp`prompt` from an empty cache, and tg`decode` after `prompt` tokens (`-d`), as
/// `once` decodes; `reps` runs each (after llama-bench's own warm-up), medians of its per-run samples.
pub fn llama_bench(bin: &Path, path: &Path, prompt: usize, decode: usize, reps: usize) -> Result<LlamaBench> {
    let threads = candle_core::utils::get_num_threads().to_string();
    let run = |args: &[String]| -> Result<serde_json::Value> {
        let out = Command::new(bin)
            .args(["-m", &path.display().to_string(), "-t", &threads, "-r", &reps.to_string(), "-o", "json"])
            .args(args)
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !out.status.success() {
            bail!(
                "{} {} failed ({}): {}",
                bin.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| format!("{}: output is not JSON", bin.display()))
    };
    let pp = run(&["-p".into(), prompt.to_string(), "-n".into(), "0".into()])?;
    let tg = run(&["-p".into(), "0".into(), "-n".into(), decode.to_string(), "-d".into(), prompt.to_string()])?;
    let test = |v: &serde_json::Value, what: &str| -> Result<(f64, serde_json::Value)> {
        let t = v.get(0).with_context(|| format!("llama-bench reported no {what} test"))?;
        let samples: Vec<f64> = t
            .get("samples_ts")
            .and_then(|s| s.as_array())
            .with_context(|| format!("llama-bench's {what} test has no samples_ts"))?
            .iter()
            .filter_map(|x| x.as_f64())
            .collect();
        let s: Vec<Sample> = samples.iter().map(|&x| Sample { load_s: None, prefill: x, decode: x }).collect();
        Ok((median(&s).prefill, t.clone()))
    };
    let (prefill, info) = test(&pp, "prompt")?;
    let (decode, _) = test(&tg, "generation")?;
    let field = |k: &str| info.get(k).map(|v| v.to_string().trim_matches('"').to_string()).unwrap_or_default();
    let flash = match field("flash_attn").as_str() {
        "-1" => "auto".to_string(),
        "0" | "false" => "off".to_string(),
        "1" | "true" => "on".to_string(),
        other => other.to_string(),
    };
    let setup = format!(
        "build {} · {} · {} threads · flash_attn {flash} · repack {} · ubatch {}",
        field("build_commit"),
        field("backends"),
        field("n_threads"),
        field("repack"),
        field("n_ubatch")
    );
    Ok(LlamaBench { sample: Sample { load_s: None, prefill, decode }, setup })
}
