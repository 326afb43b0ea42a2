//! The llama.cpp side: which llama-bench builds are the reference (LLAMA_BENCH; else the native and portable
//! OpenMP-free builds `scripts/build-llama-cpp --variants` made, each row taking its faster; else the variant
//! `variants` picked), one measured run of a build, and the pick.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::measure::{Run, Stat};

/// The llama-bench build the bench compares against.
pub struct Reference {
    pub bench: PathBuf,
    /// e.g. "portable-noomp (GGML_NATIVE=OFF GGML_OPENMP=OFF)".
    pub variant: String,
}

/// What llama-bench says about itself.
#[derive(Debug, Default, Clone)]
pub struct Info {
    pub commit: String,
    pub backends: String,
    /// on / off / auto, as llama-bench ran.
    pub flash_attn: String,
    pub repack: String,
}

/// Where scripts/build-llama-cpp builds (LLAMA_DIR, default its own default).
pub fn llama_dir() -> PathBuf {
    std::env::var_os("LLAMA_DIR").map_or_else(|| PathBuf::from("/work/llama-build"), PathBuf::from)
}

/// The file naming the fastest variant, written by `pick`.
fn fastest_file() -> PathBuf {
    llama_dir().join("bench-fastest")
}

impl Reference {
    fn in_dir(dir: &Path, name: &str) -> Reference {
        let flags = std::fs::read_to_string(dir.join("variant.txt")).unwrap_or_default();
        Reference { bench: dir.join("bin/llama-bench"), variant: format!("{name} ({})", flags.trim()) }
    }
}

/// LLAMA_BENCH when set, else the variant `pick` chose; None when neither is there.
pub fn reference() -> Option<Reference> {
    if let Some(bin) = std::env::var_os("LLAMA_BENCH").map(PathBuf::from) {
        return Some(Reference { variant: format!("LLAMA_BENCH={}", bin.display()), bench: bin });
    }
    let name = std::fs::read_to_string(fastest_file()).ok()?;
    let name = name.trim();
    let r = Reference::in_dir(&llama_dir().join(format!("bench-{name}")), name);
    r.bench.is_file().then_some(r)
}

/// The builds each row measures: LLAMA_BENCH alone when set; else the OpenMP-free native and portable builds
/// where both are built (which is faster depends on the format: llama.cpp's repacked Q4_0/Q8_0 kernels gain
/// from this CPU's AVX-512 in the native build, the row kernels of Q4_1 do not), each row taking the faster of
/// them; else the one `pick` chose.
pub fn references() -> Vec<Reference> {
    if std::env::var_os("LLAMA_BENCH").is_some() {
        return reference().into_iter().collect();
    }
    let both: Vec<Reference> = variants()
        .into_iter()
        .filter(|v| v.variant.starts_with("native-noomp ") || v.variant.starts_with("portable-noomp "))
        .collect();
    if both.len() == 2 { both } else { reference().into_iter().collect() }
}

/// The build's short name (`native-noomp`), from its variant label.
pub fn short(r: &Reference) -> &str {
    r.variant.split(' ').next().unwrap_or(&r.variant)
}

/// The variants built, by name, in a fixed order.
pub fn variants() -> Vec<Reference> {
    let Ok(dirs) = std::fs::read_dir(llama_dir()) else { return Vec::new() };
    let mut found: Vec<(String, PathBuf)> = dirs
        .filter_map(|d| d.ok())
        .filter_map(|d| {
            let name = d.file_name().to_string_lossy().strip_prefix("bench-")?.to_string();
            d.path().join("bin/llama-bench").is_file().then(|| (name, d.path()))
        })
        .collect();
    found.sort();
    found.iter().map(|(n, d)| Reference::in_dir(d, n)).collect()
}

/// One `llama-bench -m F -t N -p prompt -n steps -r 1 -o json` (peak RSS by `/usr/bin/time -f %M` when it is
/// there), and llama.cpp's load time (`load_time`).
pub fn run(r: &Reference, path: &Path, prompt: usize, steps: usize, threads: usize) -> Result<(Run, Info)> {
    let time = Path::new("/usr/bin/time");
    let mut args = vec![
        "-m".to_string(),
        path.display().to_string(),
        "-t".into(),
        threads.to_string(),
        "-p".into(),
        prompt.to_string(),
        "-n".into(),
        steps.to_string(),
        "-r".into(),
        "1".into(),
        "-fa".into(),
        flash_attn(),
        "-o".into(),
        "json".into(),
    ];
    // On a GPU every layer is offloaded, as tunebench's lane runs the whole model there; the CPU rows keep the
    // command they were always measured with.
    if crate::measure::device_spec() != "cpu" {
        args.extend(["-ngl".to_string(), "99".to_string()]);
    }
    let mut cmd = if time.is_file() {
        let mut c = Command::new(time);
        c.args(["-f", "%M"]).arg(&r.bench);
        c
    } else {
        Command::new(&r.bench)
    };
    let out = cmd.args(&args).output().with_context(|| format!("running {}", r.bench.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{} on {} failed ({}): {}", r.bench.display(), path.display(), out.status, last_line(&stderr));
    }
    let (pp, tg, info) = parse_bench(&out.stdout, prompt, steps)
        .with_context(|| format!("{} on {}", r.bench.display(), path.display()))?;
    let rss_mb = time.is_file().then(|| last_line(&stderr).trim().parse::<f64>().ok()).flatten().map(|kb| kb / 1024.0);
    let load_s = Some(load_time(&r.bench, path, threads)?);
    let run = Run { load_s, pp, tg, rss_mb, weights: String::new() };
    Ok((run, info))
}

/// pp and tg tok/s (`avg_ts` of the pp`prompt` and tg`steps` tests) and the build llama-bench reports, from
/// its `-o json` output.
pub fn parse_bench(json: &[u8], prompt: usize, steps: usize) -> Result<(f64, f64, Info)> {
    let tests: Value = serde_json::from_slice(json).context("llama-bench's output is not JSON")?;
    let rate = |n_prompt: usize, n_gen: usize| -> Result<f64> {
        let t = tests
            .as_array()
            .and_then(|a| {
                a.iter().find(|t| {
                    t["n_prompt"].as_u64() == Some(n_prompt as u64) && t["n_gen"].as_u64() == Some(n_gen as u64)
                })
            })
            .with_context(|| format!("llama-bench reported no pp{n_prompt}/tg{n_gen} test"))?;
        t["avg_ts"].as_f64().context("llama-bench's test has no avg_ts")
    };
    let text = |k: &str| match &tests[0][k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    let mut commit = text("build_commit");
    if commit.is_empty() || commit == "unknown" {
        // Built from the sdist, which has no git work tree: scripts/build-llama-cpp recorded the commit.
        let recorded = std::fs::read_to_string(llama_dir().join("llama-commit")).unwrap_or_default();
        commit = if recorded.trim().is_empty() { "unknown".into() } else { format!("{} (sdist)", recorded.trim()) };
    }
    let flash = match text("flash_attn").as_str() {
        "-1" => "auto".to_string(),
        "0" | "false" => "off".to_string(),
        "1" | "true" => "on".to_string(),
        other => other.to_string(),
    };
    let info = Info { commit, backends: text("backends"), flash_attn: flash, repack: text("repack") };
    Ok((rate(prompt, 0)?, rate(0, steps)?, info))
}

/// llama-bench's `-fa`: BENCH_LLAMA_FA, default off, as issue 17 pins it ("no -fa unless you have it too";
/// llama-bench's own default, auto, turns it on for the CPU).
pub fn flash_attn() -> String {
    std::env::var("BENCH_LLAMA_FA").unwrap_or_else(|_| "0".to_string())
}

fn last_line(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
}

/// llama.cpp's load: the wall time of a llama-bench process that loads `path` and runs one 1-token prompt
/// (`-p 1 -n 0 -r 1 --no-warmup`, same threads), less that test's own time: process start, model load (mmap,
/// weight repacking) and context creation. llama-simple's `load time` would include a first eval on its fixed
/// 4 threads, which on a 2-core machine measured seconds of oversubscribed spinning, not loading.
fn load_time(bench: &Path, path: &Path, threads: usize) -> Result<f64> {
    let started = std::time::Instant::now();
    let out = Command::new(bench)
        .args(["-m", &path.display().to_string(), "-t", &threads.to_string()])
        .args(["-p", "1", "-n", "0", "-r", "1", "--no-warmup", "-o", "json"])
        .output()
        .with_context(|| format!("running {}", bench.display()))?;
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{} on {} failed ({}): {}", bench.display(), path.display(), out.status, last_line(&stderr));
    }
    Ok((wall - test_seconds(&out.stdout)?).max(0.0))
}

/// The seconds llama-bench's tests themselves took (every `samples_ns` of its `-o json` output).
pub fn test_seconds(json: &[u8]) -> Result<f64> {
    let tests: Value = serde_json::from_slice(json).context("llama-bench's output is not JSON")?;
    let samples: Vec<f64> = tests
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["samples_ns"].as_array())
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    anyhow::ensure!(!samples.is_empty(), "llama-bench reported no samples_ns");
    Ok(samples.iter().sum::<f64>() / 1e9)
}

/// Times every built variant on `path` (`runs` runs each, variants taking turns), writes the fastest's name
/// (highest geometric mean of the pp and tg medians) to LLAMA_DIR/bench-fastest and returns the table.
pub fn pick(path: &Path, prompt: usize, steps: usize, threads: usize, runs: usize) -> Result<String> {
    let all = variants();
    if all.is_empty() {
        bail!("no llama.cpp variant under {}: run scripts/bench --build-llama", llama_dir().display());
    }
    let mut samples: Vec<Vec<Run>> = vec![Vec::new(); all.len()];
    for _ in 0..runs {
        for (v, s) in all.iter().zip(&mut samples) {
            match run(v, path, prompt, steps, threads) {
                Ok((r, _)) => s.push(r),
                Err(e) => eprintln!("bench: {}: {e:#}", v.variant),
            }
        }
    }
    let cell =
        |s: Option<Stat>| s.map_or("—".to_string(), |s| format!("{:.1} ({:.1}–{:.1})", s.median, s.min, s.max));
    let mut table = format!(
        "llama.cpp builds on {}, {threads} threads, -fa {}, {runs} runs each (median (min–max), tok/s):\n\n\
         | variant | pp{prompt} | tg{steps} |\n|---|---|---|\n",
        path.file_name().map(|f| f.to_string_lossy()).unwrap_or_default(),
        flash_attn()
    );
    let mut best: Option<(f64, &Reference)> = None;
    for (v, s) in all.iter().zip(&samples) {
        let (pp, tg) = (Stat::of(s.iter().map(|r| r.pp)), Stat::of(s.iter().map(|r| r.tg)));
        table.push_str(&format!("| {} | {} | {} |\n", v.variant, cell(pp), cell(tg)));
        if let (Some(pp), Some(tg)) = (pp, tg) {
            let score = (pp.median * tg.median).sqrt();
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, v));
            }
        }
    }
    let Some((_, best)) = best else { bail!("no llama.cpp variant ran on {}", path.display()) };
    let name = best.bench.parent().and_then(|b| b.parent()).and_then(|d| d.file_name()).map(|n| n.to_string_lossy());
    let name = name.as_deref().and_then(|n| n.strip_prefix("bench-")).context("variant folder name")?.to_string();
    table.push_str(&format!("\nfastest: {} (the bench's default reference)\n", best.variant));
    std::fs::write(fastest_file(), format!("{name}\n"))
        .with_context(|| format!("writing {}", fastest_file().display()))?;
    std::fs::write(llama_dir().join("bench-variants.md"), &table).context("writing bench-variants.md")?;
    Ok(table)
}

/// The variants table `pick` last wrote, if any.
pub fn variants_table() -> Option<String> {
    std::fs::read_to_string(llama_dir().join("bench-variants.md")).ok()
}
