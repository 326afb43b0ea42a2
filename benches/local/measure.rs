//! One measured run of tunebench in a fresh process (the bench binary re-executing itself), what a run
//! reports (load, pp512, tg128, peak RSS), and the median / min–max of several runs.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use tunebench::engine::local::{Llama, load, prefill_chunk};

/// The argument that makes the bench binary measure one run and print it instead of running sections.
pub const CHILD: &str = "--one-run";
/// The line prefix a child prints its result after (stdout may carry other lines).
const RESULT: &str = "bench-result ";

/// One run's figures, either engine's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Run {
    /// Seconds; None where the engine's load could not be measured.
    pub load_s: Option<f64>,
    /// Prompt tokens per second, the prompt from an empty cache.
    pub pp: f64,
    /// Generated tokens per second, from an empty context.
    pub tg: f64,
    /// Peak resident set of the process, MB (VmHWM / `time -f %M`); None where not measurable.
    pub rss_mb: Option<f64>,
    /// How the engine holds the weights (tunebench's pane title words; llama.cpp: empty).
    pub weights: String,
}

/// The prompt: fixed ids spread over the vocabulary (llama-bench draws random ones; the work is the same).
pub fn prompt_ids(len: usize, vocab: usize) -> Vec<u32> {
    (0..len as u64).map(|i| ((i * 7919 + 13) % vocab as u64) as u32).collect()
}

/// Prefills `prompt` from position 0 of a fresh cache in the device's prefill chunks, as lanes do; tok/s.
pub fn prefill(model: &Llama, prompt: &[u32]) -> Result<f64> {
    prefill_in(model, prompt, prefill_chunk(model.device()))
}

/// `prefill` in chunks of `chunk` tokens.
pub fn prefill_in(model: &Llama, prompt: &[u32], chunk: usize) -> Result<f64> {
    let mut cache = model.new_cache(prompt.len() + 1)?;
    let t = Instant::now();
    let mut pos = 0;
    let mut last = None;
    while pos < prompt.len() {
        let end = (pos + chunk).min(prompt.len());
        last = Some(model.forward_last(&prompt[pos..end], pos, &mut cache)?);
        pos = end;
    }
    // A GPU queues its work: reading one value back waits for the whole prefill.
    if let Some(logits) = last {
        logits.argmax(0)?.to_scalar::<u32>()?;
    }
    Ok(prompt.len() as f64 / t.elapsed().as_secs_f64())
}

/// `n` greedy single-token steps from position 0 of a fresh cache, the first fed `first`; tok/s.
pub fn decode(model: &Llama, first: u32, n: usize) -> Result<f64> {
    let mut cache = model.new_cache(n + 1)?;
    let t = Instant::now();
    let mut tok = first;
    for i in 0..n {
        let logits = model.forward_last(&[tok], i, &mut cache)?;
        tok = logits.argmax(0)?.to_scalar::<u32>()?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// The child's work: one run, printed for the parent.
pub fn child(path: &Path, prompt: usize, steps: usize) -> Result<()> {
    let run = once(path, prompt, steps)?;
    println!("{RESULT}{}", serde_json::to_string(&run)?);
    Ok(())
}

/// Loads `path` as lanes do (tunebench's own weight plan), warms up as llama-bench does (one full prompt, one
/// decode step), then times a `prompt`-token prefill and `steps` decode steps from an empty context, each on
/// a fresh cache. Peak RSS is the calling process's.
pub fn once(path: &Path, prompt: usize, steps: usize) -> Result<Run> {
    if prompt == 0 {
        bail!("a run needs a prompt of at least one token");
    }
    let device = device()?;
    let t = Instant::now();
    let m = load(path, &device, None).with_context(|| format!("loading {}", path.display()))?;
    let load_s = t.elapsed().as_secs_f64();
    let ids = prompt_ids(prompt, m.base().cfg.vocab);
    prefill(&m.plain, &ids)?;
    decode(&m.plain, ids[0], 1)?;
    let pp = prefill(&m.plain, &ids)?;
    let tg = decode(&m.plain, ids[0], steps)?;
    Ok(Run { load_s: Some(load_s), pp, tg, rss_mb: peak_rss_mb(), weights: m.base().format.clone() })
}

/// BENCH_DEVICE (`cpu`, `cuda:N`, `metal`, `auto`; default `cpu`): where tunebench's side runs, as a
/// lane's `device` says it; llama-bench then offloads every layer (`-ngl 99`) when it is not the CPU.
pub fn device() -> Result<Device> {
    let spec = device_spec();
    Ok(tunebench::engine::local::pick_device(&spec).with_context(|| format!("BENCH_DEVICE={spec}"))?.1)
}

pub fn device_spec() -> String {
    std::env::var("BENCH_DEVICE").unwrap_or_else(|_| "cpu".to_string())
}

/// This process's peak resident set (VmHWM), MB; None off Linux.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// One tunebench run on `path` in a fresh process with `threads` threads.
pub fn tunebench(path: &Path, prompt: usize, steps: usize, threads: usize) -> Result<Run> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let out = Command::new(&exe)
        .args([CHILD, &path.display().to_string(), &prompt.to_string(), &steps.to_string()])
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("TUNEBENCH_THREADS", threads.to_string())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find_map(|l| l.strip_prefix(RESULT));
    match (out.status.success(), line) {
        (true, Some(json)) => serde_json::from_str(json).context("reading the child's result"),
        _ => bail!(
            "tunebench run on {} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ),
    }
}

/// A figure over several runs: median and range.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// None when no value was measured.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Stat> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Stat { median, min: v[0], max: v[n - 1] })
    }
}
