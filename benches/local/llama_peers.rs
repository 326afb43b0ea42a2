//! llama.cpp as the peer of the batch and LoRA lines, from the tools build of `scripts/build-llama-cpp`
//! (`$LLAMA_DIR/build/bin`): `llama-batched-bench` (decode of N sequences at once against one) and
//! `llama-completion` with and without `--lora` (a LoRA lane against its base). Either line is skipped, saying
//! so, when its tool is not built.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::measure::Stat;

/// A tool of the tools build, when it is there.
pub fn tool(name: &str) -> Option<PathBuf> {
    let bin = crate::llama::llama_dir().join("build/bin").join(name);
    bin.is_file().then_some(bin)
}

/// Decode tok/s of 1 and of `n` sequences (`S_TG` of llama-batched-bench: every sequence's tokens over the
/// decode's wall time), `prompt` tokens each, `decode` generated, over `runs` runs each a fresh process.
pub fn batched(
    path: &Path,
    n: usize,
    prompt: usize,
    decode: usize,
    threads: usize,
    runs: usize,
) -> Result<(Stat, Stat)> {
    let bin = tool("llama-batched-bench").context("llama-batched-bench is not built (scripts/build-llama-cpp)")?;
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let out = Command::new(&bin)
            .arg("-m")
            .arg(path)
            .args(["-c", "4096", "-b", "2048", "-ub", "512", "-fa", &crate::llama::flash_attn()])
            .args(["-npp", &prompt.to_string(), "-ntg", &decode.to_string(), "-npl", &format!("1,{n}")])
            .args(["-t", &threads.to_string()])
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("{} failed ({}): {}", bin.display(), out.status, text.lines().last().unwrap_or(""));
        }
        for (b, s_tg) in parse_batched(&text) {
            if b == 1 {
                one.push(s_tg);
            } else if b == n {
                many.push(s_tg);
            }
        }
    }
    match (Stat::of(one), Stat::of(many)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => bail!("{} printed no S_TG for 1 and {n} sequences", bin.display()),
    }
}

/// `(B, S_TG)` of each row of llama-batched-bench's table (`| PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s |
/// S_TG t/s | …`).
pub fn parse_batched(text: &str) -> Vec<(usize, f64)> {
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
            let b = cells.get(2)?.parse::<usize>().ok()?;
            Some((b, cells.get(7)?.parse::<f64>().ok()?))
        })
        .collect()
}

/// Decode tok/s of llama-completion on `path` (with `lora` when given), greedy, `decode` tokens after `prompt`.
pub fn completion(path: &Path, lora: Option<&Path>, prompt: &str, decode: usize, threads: usize) -> Result<f64> {
    let bin = tool("llama-completion").context("llama-completion is not built (scripts/build-llama-cpp)")?;
    let mut cmd = Command::new(&bin);
    cmd.arg("-m").arg(path).args(["-t", &threads.to_string(), "-n", &decode.to_string()]);
    cmd.args(["--ignore-eos", "--temp", "0", "-no-cnv", "-p", prompt]);
    if let Some(l) = lora {
        cmd.arg("--lora").arg(l);
    }
    let out = cmd.output().with_context(|| format!("running {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{} failed ({}): {}", bin.display(), out.status, text.lines().last().unwrap_or(""));
    }
    parse_eval(&text).with_context(|| format!("{}: no decode timing in its output", bin.display()))
}

/// The decode rate of llama.cpp's timing line `eval time = … ms / N runs ( … ms per token, X tokens per second)`
/// (not the `prompt eval time` line).
pub fn parse_eval(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains(" eval time =") && !l.contains("prompt eval time"))?;
    let before = line.split("tokens per second").next()?;
    before.rsplit([',', '(']).next()?.trim().parse().ok()
}
