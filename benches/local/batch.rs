//! Lanes batched on one base (issue 18's targets), through the real engine and worker as the TUI runs them:
//! three lanes together (a ~1,300-token-prompt base, two short-prompt lanes with their own random r=16
//! adapters) against the slowest alone; the short lanes' time to first token beside the long prefill against
//! alone; aggregate decode tok/s of four lanes against one (while all four decode), with mixed adapters and
//! with one adapter on all four (an eval's batch of one lane's cases); peak RSS of 1, 3 and 6 lanes (fresh
//! processes).
//! Greedy answers of at most `DECODE` tokens; medians of the turns, min–max beside them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use candle_core::Device;
use tokio::sync::mpsc;
use tunebench::engine::local::{LocalBackend, load};
use tunebench::engine::{Engine, EventKind, Registry, RunRequest};
use tunebench::workspace::{self, BackendKind, Workspace};

use crate::measure::Stat;

const DECODE: usize = 64;
pub const CHILD: &str = "--batch-rss-child";
const INPUT: &str = "Write a long story about a lighthouse keeper who finds a message in a bottle.";

/// What one lane of a run measured.
#[derive(Clone)]
struct Lane {
    ttft: f64,
    tokens: u64,
    tok_s: f64,
    /// When each streamed token reached the bench, seconds from the run's start.
    stamps: Vec<f64>,
}

/// Decode tokens per second of all `lanes` together while every one of them decodes: from the moment the last
/// one streamed its first token to the moment the first one streamed its last, the tokens streamed between ÷
/// that time (llama-batched-bench likewise times the decode apart from the prompts). Passes where another
/// lane's prompt still prefills, or where a lane has already finished, are outside the window. One lane: its
/// tokens after the first ÷ the time from its first token to its last.
fn decoding_together(lanes: &[Lane]) -> f64 {
    let from = lanes.iter().filter_map(|l| l.stamps.first()).fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let to = lanes.iter().filter_map(|l| l.stamps.last()).fold(f64::INFINITY, |a, &b| a.min(b));
    if lanes.iter().any(|l| l.stamps.is_empty()) || to <= from {
        return f64::NAN;
    }
    let tokens = lanes.iter().map(|l| l.stamps.iter().filter(|&&t| t > from && t <= to).count()).sum::<usize>();
    tokens as f64 / (to - from)
}

/// The workspace: lanes base (long prompt), a and b (short, adapters A and B), c (short, adapter A), d (short,
/// none), e (short, adapter B), f and g (short, adapter A), base16 (base on an f16 KV cache), and a16, b16, c16,
/// d16 (a, b, c and d on an f16 KV cache).
fn workspace(root: &Path, model: &Path) -> Result<()> {
    let m = load(model, &Device::Cpu, None).with_context(|| format!("loading {}", model.display()))?;
    let device = crate::measure::device_spec();
    for a in ["a", "b"] {
        crate::lora::write_random(m.base(), &root.join(a))?;
    }
    // ~1,300 tokens of rules, as a long system prompt carries.
    let rules: String = (1..=52)
        .map(|i| format!("Rule {i}: when a ticket mentions topic number {i}, tag it, name the product, rate the urgency and keep the summary short.\n"))
        .collect();
    let on = |id: &str, model: &str, prompt: &str, adapter: Option<&str>| {
        let adapter = adapter.map_or(String::new(), |a| format!("adapter = \"{}\"\n", root.join(a).display()));
        format!(
            "[[lanes]]\nid = \"{id}\"\nbackend = \"local\"\nmodel = \"{model}\"\nprompt = \"{prompt}\"\nmax_tokens = {DECODE}\ntemperature = 0.0\n{adapter}"
        )
    };
    let lane = |id: &str, prompt: &str, adapter: Option<&str>| on(id, "smol", prompt, adapter);
    let toml = format!(
        "name = \"batch-bench\"\n[prompts.long]\ntext = \"\"\"\n{rules}\"\"\"\n[prompts.short]\ntext = \"Answer briefly.\"\n[models.smol]\npath = \"{}\"\ndevice = \"{device}\"\n[models.smol16]\npath = \"{}\"\ndevice = \"{device}\"\nkv_cache = \"f16\"\n{}{}{}{}{}{}{}{}{}{}{}{}{}",
        model.display(),
        model.display(),
        lane("base", "long", None),
        lane("a", "short", Some("a")),
        lane("b", "short", Some("b")),
        lane("c", "short", Some("a")),
        lane("d", "short", None),
        lane("e", "short", Some("b")),
        lane("f", "short", Some("a")),
        lane("g", "short", Some("a")),
        on("base16", "smol16", "long", None),
        on("a16", "smol16", "short", Some("a")),
        on("b16", "smol16", "short", Some("b")),
        on("c16", "smol16", "short", Some("a")),
        on("d16", "smol16", "short", None),
    );
    std::fs::write(root.join("workspace.toml"), toml).with_context(|| format!("writing {}", root.display()))?;
    Ok(())
}

/// Runs `lanes` together; each lane's figures and the wall time until the last finished.
async fn together(ws: &Workspace, backend: &LocalBackend, lanes: &[usize]) -> Result<(Vec<Lane>, f64)> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(Registry::default().with(BackendKind::Local, Arc::new(backend.clone())), tx);
    let began = Instant::now();
    for &l in lanes {
        engine.start(l, l as u64, RunRequest::for_lane(ws, l, INPUT).context("no such lane")?);
    }
    drop(engine);
    let mut out = vec![None; lanes.len()];
    let mut stamps = vec![Vec::new(); lanes.len()];
    while out.iter().any(Option::is_none) {
        let ev = tokio::time::timeout(Duration::from_secs(600), rx.recv()).await?.context("the engine stopped")?;
        let at = lanes.iter().position(|&l| l == ev.lane).context("an event for another lane")?;
        match ev.kind {
            EventKind::Token { .. } => stamps[at].push(began.elapsed().as_secs_f64()),
            EventKind::Done { usage, timings } => {
                let tokens = usage.completion_tokens.unwrap_or(0);
                out[at] = Some(Lane {
                    ttft: timings.ttft.map_or(f64::NAN, |t| t.as_secs_f64()),
                    tokens,
                    tok_s: timings.tokens_per_s(Some(tokens)).unwrap_or(f64::NAN),
                    stamps: std::mem::take(&mut stamps[at]),
                });
            }
            EventKind::Failed { error, .. } => bail!("lane {}: {error}", ev.lane),
            _ => {}
        }
    }
    let wall = began.elapsed().as_secs_f64();
    Ok((out.into_iter().flatten().collect(), wall))
}

/// The batched lines of the report.
pub fn run(model: &Path, label: &str, turns: usize) -> Result<String> {
    let dir = tempfile::tempdir().context("a temporary workspace")?;
    workspace(dir.path(), model)?;
    let ws = workspace::load(dir.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let backend = LocalBackend::new();
    let (base, a, b) = (0, 1, 2);
    // Warm: the model and both adapters loaded, the worker's buffers grown.
    rt.block_on(together(&ws, &backend, &[base, a, b]))?;
    let (mut ratio_wall, mut ratio_ttft, mut ratio_tok) = (Vec::new(), Vec::new(), Vec::new());
    let mut ratio_ttft3 = Vec::new();
    let (mut one_tok, mut four_tok, mut prompt_note) = (Vec::new(), Vec::new(), String::new());
    let (mut one_window, mut four_window, mut ratio_window) = (Vec::new(), Vec::new(), Vec::new());
    let (mut same_window, mut ratio_same) = (Vec::new(), Vec::new());
    let (mut long_ttft, mut long_tok) = (Vec::new(), Vec::new());
    let (mut half_ttft, mut half_tok, mut ratio_half) = (Vec::new(), Vec::new(), Vec::new());
    let (mut one16_window, mut four16_window, mut ratio16_window) = (Vec::new(), Vec::new(), Vec::new());
    let cpu = crate::measure::device_spec() == "cpu";
    for turn in 0..turns.max(1) {
        let alone: Vec<(Vec<Lane>, f64)> =
            [base, a, b].iter().map(|&l| rt.block_on(together(&ws, &backend, &[l]))).collect::<Result<_>>()?;
        // The long lane on an f16 cache, right after it on f32.
        let (half, _) = rt.block_on(together(&ws, &backend, &[8]))?;
        let (three, wall3) = rt.block_on(together(&ws, &backend, &[base, a, b]))?;
        let (two, _) = rt.block_on(together(&ws, &backend, &[base, a]))?;
        let (four, _) = rt.block_on(together(&ws, &backend, &[a, b, 3, 4]))?;
        // The same four lanes on an f16 KV cache (the CPU engine's setting), against their lane a on f16 alone
        // just before and after.
        let run = |lanes: &[usize]| Ok::<_, anyhow::Error>(rt.block_on(together(&ws, &backend, lanes))?.0);
        // (one lane's rate, the four's), on the CPU only.
        let f16 = cpu
            .then(|| -> Result<(f64, f64)> {
                let (one, four, again) = (run(&[9])?, run(&[9, 10, 11, 12])?, run(&[9])?);
                Ok(((decoding_together(&one) + decoding_together(&again)) / 2.0, decoding_together(&four)))
            })
            .transpose()?;
        let (same, _) = rt.block_on(together(&ws, &backend, &[a, 3, 6, 7]))?;
        let slowest = alone.iter().map(|(_, w)| *w).fold(0.0, f64::max);
        ratio_wall.push(wall3 / slowest);
        // The short lane's ttft beside the long prefill, against alone; and with a second short lane too (the
        // worse of the two: their prompts' prefills then share the device).
        ratio_ttft.push(two[1].ttft / alone[1].0[0].ttft);
        ratio_ttft3.push((three[1].ttft / alone[1].0[0].ttft).max(three[2].ttft / alone[2].0[0].ttft));
        // Lane a alone again right after the four: the one-lane rate is the mean of the runs just before and
        // just after, so that the machine's drift over the turn falls on both sides of the ratio.
        let (again, _) = rt.block_on(together(&ws, &backend, &[a]))?;
        let four_w = decoding_together(&four);
        let one_w = (decoding_together(&alone[1].0) + decoding_together(&again)) / 2.0;
        let one = (alone[1].0[0].tok_s + again[0].tok_s) / 2.0;
        let agg: f64 = four.iter().map(|l| l.tok_s).sum();
        one_tok.push(one);
        long_ttft.push(alone[0].0[0].ttft);
        long_tok.push(alone[0].0[0].tok_s);
        half_ttft.push(half[0].ttft);
        half_tok.push(half[0].tok_s);
        ratio_half.push(half[0].tok_s / alone[0].0[0].tok_s);
        four_tok.push(agg);
        ratio_tok.push(agg / one);
        one_window.push(one_w);
        four_window.push(four_w);
        ratio_window.push(four_w / one_w);
        if let Some((one16_w, four16_w)) = f16 {
            one16_window.push(one16_w);
            four16_window.push(four16_w);
            ratio16_window.push(four16_w / one16_w);
        }
        let same_w = decoding_together(&same);
        same_window.push(same_w);
        ratio_same.push(same_w / one_w);
        eprintln!(
            "  turn {}: 3 lanes {wall3:.2}s vs slowest alone {slowest:.2}s; short ttft beside the long one {:.0} ms, \
             with both short ones {:.0}/{:.0} ms, vs alone {:.0}/{:.0}; the long one's ttft alone {:.0} ms; 4 lanes \
             {four_w:.1} tok/s while all four decode ({agg:.1} as the panes sum), four of adapter A {same_w:.1}, vs 1 lane \
             {one_w:.1} ({one:.1}){}",
            turn + 1,
            two[1].ttft * 1e3,
            three[1].ttft * 1e3,
            three[2].ttft * 1e3,
            alone[1].0[0].ttft * 1e3,
            alone[2].0[0].ttft * 1e3,
            alone[0].0[0].ttft * 1e3,
            f16.map_or(String::new(), |(one, four)| format!("; on an f16 cache 4 lanes {four:.1} vs 1 lane {one:.1}"))
        );
        if prompt_note.is_empty() {
            let tokens: Vec<String> = three.iter().map(|l| l.tokens.to_string()).collect();
            prompt_note = format!("answers of {} tokens (base, a, b)", tokens.join(", "));
        }
    }
    let s = |v: &[f64]| {
        Stat::of(v.iter().copied()).map_or("-".into(), |s| format!("**{:.2}×** ({:.2}–{:.2})", s.median, s.min, s.max))
    };
    let med = |v: &[f64]| Stat::of(v.iter().copied()).map_or(f64::NAN, |s| s.median);
    let rss: Vec<String> = [1, 3, 6]
        .iter()
        .map(|&n| rss_child(dir.path(), n).map(|mb| format!("{n} lane{}: {mb:.0} MB", if n == 1 { "" } else { "s" })))
        .collect::<Result<_>>()?;
    Ok(format!(
        "### Lanes batched on one base ({label} on {}, greedy, ≤ {DECODE} tokens; {prompt_note}; {} turns)\n\n\
         | target | measured (median, min–max) | goal |\n|---|---|---|\n\
         | three lanes (1,300-token base + two adapter lanes) together ÷ slowest alone, wall | {} | ≤ 1.3× |\n\
         | short lane ttft beside the long prefill ÷ alone | {} | ≤ 1.5× |\n\
         | the same with both short lanes beside it (worse of the two; their own prefills share a pass) | {} | — |\n\
         | aggregate decode, 4 lanes ÷ 1 lane, while all four decode ({:.1} vs {:.1} tok/s; the one lane's rate the \
         mean of its runs just before and just after the four) | {} | ≥ 3× |\n\
         | the same as the four panes' tok/s add up ({:.1} vs {:.1}; a pane's decode time includes the passes where \
         the other lanes' prompts still prefill) | {} | — |\n\
         | aggregate decode, 4 lanes of adapter A (an eval's batch of one lane's cases) ÷ 1 lane, while all four \
         decode ({:.1} vs {:.1} tok/s) | {} | — |\n{}\n\
         The long-prompt lane alone: time to first token {:.2} s, decode {:.1} tok/s; on an f16 KV cache \
         (`kv_cache = \"f16\"`) {:.2} s and {:.1} tok/s, decode {}.\n\n\
         Peak RSS (fresh process, model + lanes' KV caches + buffers): {}.\n",
        crate::measure::device_spec(),
        turns.max(1),
        s(&ratio_wall),
        s(&ratio_ttft),
        s(&ratio_ttft3),
        med(&four_window),
        med(&one_window),
        s(&ratio_window),
        med(&four_tok),
        med(&one_tok),
        s(&ratio_tok),
        med(&same_window),
        med(&one_window),
        s(&ratio_same),
        if cpu {
            format!(
                "| aggregate decode, the same 4 lanes ÷ 1 lane on an f16 KV cache (`kv_cache = \"f16\"`; {:.1} vs {:.1} \
                 tok/s) | {} | — |\n",
                med(&four16_window),
                med(&one16_window),
                s(&ratio16_window)
            )
        } else {
            String::new()
        },
        med(&long_ttft),
        med(&long_tok),
        med(&half_ttft),
        med(&half_tok),
        s(&ratio_half),
        rss.join(", ")
    ) + &peer(model, med(&four_window), turns))
}

/// llama.cpp's batched decode on the same file and threads, as the peer of the 4-lane line (CPU only).
fn peer(model: &Path, four: f64, turns: usize) -> String {
    if crate::measure::device_spec() != "cpu" {
        return String::new();
    }
    let threads = match crate::threads() {
        Ok(t) => t,
        Err(e) => return format!("\nllama.cpp's batched decode: not measured ({e:#}).\n"),
    };
    match crate::llama_peers::batched(model, 4, 32, DECODE, threads, turns) {
        Ok((one, many)) => format!(
            "\nThe peer, llama.cpp's `llama-batched-bench` on the same file and {threads} threads (4 sequences of a \
             32-token prompt, {DECODE} tokens each, no adapters; medians of {} runs): 4 sequences ÷ 1 **{:.2}×** \
             ({:.1} vs {:.1} tok/s); tunebench's 4 lanes (three with adapters) {four:.1} tok/s, {:.2}× llama.cpp's \
             4 sequences.\n",
            turns.max(1),
            many.median / one.median,
            many.median,
            one.median,
            four / many.median
        ),
        Err(e) => format!("\nllama.cpp's batched decode: not measured ({e:#}).\n"),
    }
}

/// Peak RSS (MB) of a fresh process running the first `lanes` lanes (1: lane a; 3: base, a, b; 6: all) once.
fn rss_child(root: &Path, lanes: usize) -> Result<f64> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let out = std::process::Command::new(exe)
        .args([CHILD, &root.display().to_string(), &lanes.to_string()])
        .output()
        .context("running the RSS child")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("rss_mb="))
        .with_context(|| format!("the RSS child printed no figure: {}", String::from_utf8_lossy(&out.stderr)))?;
    Ok(line.trim().parse()?)
}

/// The RSS child: runs the lanes once and prints its peak RSS.
pub fn child(args: &[String]) -> Result<()> {
    let [root, n] = args else { bail!("{CHILD} wants ROOT LANES") };
    let lanes: Vec<usize> = match n.as_str() {
        "1" => vec![1],
        "3" => vec![0, 1, 2],
        _ => (0..6).collect(),
    };
    let ws = workspace::load(Path::new(root)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(together(&ws, &LocalBackend::new(), &lanes))?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    println!("rss_mb={}", kb / 1024.0);
    Ok(())
}
