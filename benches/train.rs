//! Training speed on the default model (CPU): tokens per second of forward + backward over the example
//! workspace's first training examples — tunebench's host step (what `train` runs on the CPU), one sequence
//! a pass and a whole step's sequences a pass; candle's autograd over the same decoder with the frozen-weight
//! op and with its plain matmul (whose backward also computes every frozen weight's gradient); and PyTorch +
//! PEFT on the same sequences and threads, one at a time (scripts/train-reference, a scratch venv outside the
//! repository) — median of several runs each.
//! Run: `cargo bench --bench train` (`-- --reference` installs the PyTorch reference when missing).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use candle_core::Device;
use tunebench::dataset::{Dataset, Split};
use tunebench::engine::local::load;
use tunebench::lora::train::TrainModel;
use tunebench::lora::train::data::{Sequence, sequences};

const EXAMPLES: usize = 16;
const RANK: usize = 16;
const ALPHA: f64 = 32.0;
const RUNS: usize = 3;

/// One optimizer step's forward + backward over `seqs` (no update): the tokens it ran.
fn step(model: &TrainModel, seqs: &[Sequence]) -> usize {
    let refs: Vec<&Sequence> = seqs.iter().collect();
    let (loss, grads) = model.loss_and_grads(&refs).unwrap();
    assert!(loss.is_finite() && grads.len() == model.vars().len());
    seqs.iter().map(|s| s.ids.len()).sum()
}

/// `step` one sequence at a time (batch 1, as the PyTorch reference runs).
fn step_each(model: &TrainModel, seqs: &[Sequence]) -> usize {
    seqs.chunks(1).map(|one| step(model, one)).sum()
}

/// Median, min and max tokens/s over `RUNS` timed passes (a warm-up outside the clock).
fn rate(model: &TrainModel, seqs: &[Sequence], step: fn(&TrainModel, &[Sequence]) -> usize) -> (f64, f64, f64) {
    step(model, &seqs[..1]);
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            step(model, seqs) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    (rates[RUNS / 2], rates[0], rates[RUNS - 1])
}

/// The sequences as JSON lines (ids, answer positions, targets) for the PyTorch reference.
fn write_seqs(path: &Path, seqs: &[Sequence]) {
    let lines: Vec<String> = seqs
        .iter()
        .map(|s| serde_json::json!({ "ids": s.ids, "positions": s.positions, "targets": s.targets }).to_string())
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// PyTorch + PEFT's tokens/s on the same sequences, or why there is none.
fn reference(
    root: &Path,
    seqs: &Path,
    model: &Path,
    threads: usize,
    install: bool,
) -> Result<serde_json::Value, String> {
    let script = root.join("scripts/train-reference/run");
    let out = Command::new("bash")
        .arg(&script)
        .args([seqs.as_os_str(), model.as_os_str()])
        .args([RANK.to_string(), ALPHA.to_string(), threads.to_string(), RUNS.to_string()])
        .env("TUNEBENCH_TRAIN_REFERENCE_INSTALL", if install { "1" } else { "0" })
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().last().and_then(|l| serde_json::from_str(l).ok()) {
        Some(v) if out.status.success() => Ok(v),
        _ => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        println!("train bench skipped: {} is missing (scripts/fetch-model fetches it)", path.display());
        return;
    }
    let install = std::env::args().any(|a| a == "--reference");
    let m = load(&path, &Device::Cpu, None).expect("model loads");
    let ds = Dataset::load(&root.join("workspaces/ticket-triage/dataset")).unwrap();
    let xs: Vec<_> = ds.examples().filter(|(s, ..)| *s == Split::Train).map(|(_, x, _)| x).take(EXAMPLES).collect();
    let (seqs, _) = sequences(&m.tokenizer, &m.template, &xs, 1024);
    let all: Vec<String> =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec();
    let host = TrainModel::new(m.base().clone(), &all, RANK, ALPHA, 1).unwrap();
    let frozen = TrainModel::new(m.base().clone(), &all, RANK, ALPHA, 1).unwrap().on_candle();
    let plain = TrainModel::new(m.base().clone(), &all, RANK, ALPHA, 1).unwrap().with_plain_matmul().unwrap();
    let tokens: usize = seqs.iter().map(|s| s.ids.len()).sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "LoRA r={RANK} on all linear layers, {} examples ({tokens} tokens), CPU, {threads} threads, median of {RUNS} (min–max)",
        seqs.len()
    );
    let seqs_path = root.join("target/bench/train-seqs.jsonl");
    write_seqs(&seqs_path, &seqs);
    let (r, row) = match reference(root, &seqs_path, &path, threads, install) {
        Ok(v) => {
            let r = v["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
            let what = format!("reference: PyTorch {} + PEFT", v["torch"].as_str().unwrap_or("?"));
            (Some(r), format!("{what:<44} {r:>8.1} tok/s  ({:.1}–{:.1})  1.00×", v["min"], v["max"]))
        }
        Err(why) => (None, format!("PyTorch reference not run: {why}")),
    };
    println!("{row}");
    let each: fn(&TrainModel, &[Sequence]) -> usize = step_each;
    let rows = [
        ("candle autograd, plain matmul backward", &plain, each),
        ("candle autograd, frozen-weight op", &frozen, each),
        ("tunebench host step, one sequence a pass", &host, each),
        ("tunebench host step, a step's rows a pass", &host, step as fn(&TrainModel, &[Sequence]) -> usize),
    ];
    for (name, model, step) in rows {
        let (med, lo, hi) = rate(model, &seqs, step);
        let ratio = r.map_or(String::new(), |r| format!("  {:.2}×", med / r));
        println!("{name:<44} {med:>8.1} tok/s  ({lo:.1}–{hi:.1}){ratio}");
    }
}
