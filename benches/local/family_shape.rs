//! A second family at a real size: Qwen2.5-0.5B's shapes with random weights (random_gguf.rs), in Q8_0 and
//! Q4_0, timed in tunebench (its own weight plan, and the file's form as is) and in llama.cpp's llama-bench
//! on the same file in the same run; ratios against llama.cpp.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use candle_core::quantized::GgmlDType;
use tunebench::engine::local::{WeightPlan, plan_for};

use crate::measure::{self, Sample};
use crate::random_gguf::{QWEN25_05B, Shape};

pub const PROMPT: usize = 512;
pub const DECODE: usize = 128;

/// Where the generated files are cached: the build's target folder, never the repository.
fn cache_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
    .join("bench-models")
}

struct Row {
    engine: String,
    /// Medians.
    figures: Sample,
    /// Prefill's and decode's (max − min) / median over the runs (None: a single run).
    spread: Option<(f64, f64)>,
}

pub fn run(reps: usize, llama_bench: Option<&Path>) -> Result<()> {
    let shape = QWEN25_05B;
    let s = &shape;
    println!(
        "\n{} with random weights: hidden {}, {} layers, {} heads / {} kv heads, ffn {}, vocab {}, q/k/v biases, tied \
         head, rope theta {:e} ({:.0}M weights); every matrix in the file's type (the tied embedding too), norms \
         and biases f32",
        s.name,
        s.hidden,
        s.layers,
        s.heads,
        s.kv_heads,
        s.ffn,
        s.vocab,
        s.rope_theta,
        s.params() as f64 / 1e6
    );
    println!(
        "CPU, {} thread(s); prompt {PROMPT} tokens (tunebench in chunks of {}), then {DECODE} greedy decode steps \
         after it; median of {reps} runs, load included in each",
        candle_core::utils::get_num_threads(),
        tunebench::engine::local::PREFILL_CHUNK
    );
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
        let path = file(s, dtype)?;
        let size = std::fs::metadata(&path)?.len() as f64 / 1e6;
        println!("\n{dtype:?} file: {} ({size:.0} MB)", path.display());
        let rows = measure_file(&path, dtype, reps, llama_bench)?;
        print_rows(&rows);
    }
    Ok(())
}

fn file(s: &Shape, dtype: GgmlDType) -> Result<PathBuf> {
    let t = Instant::now();
    let (path, wrote) = s.cached(dtype, &cache_dir())?;
    if wrote {
        println!("(wrote {} in {:.1} s; later runs reuse it)", path.display(), t.elapsed().as_secs_f64());
    }
    Ok(path)
}

fn measure_file(path: &Path, dtype: GgmlDType, reps: usize, llama_bench: Option<&Path>) -> Result<Vec<Row>> {
    let chosen = plan_for(&candle_core::Device::Cpu, QWEN25_05B.params() * 4);
    let own = WeightPlan { decode: None, f32_prefill: false };
    let name = format!("{dtype:?}");
    let plans = [
        (format!("tunebench: its choice ({})", chosen.describe(&name)), chosen),
        (format!("tunebench: the file's {name} as is"), own),
    ];
    // Engines and plans take turns run by run, so drift in the machine's load is shared between them.
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); plans.len()];
    let mut llama: Vec<Sample> = Vec::new();
    let mut setup = None;
    for _ in 0..reps {
        for (i, (_, plan)) in plans.iter().enumerate() {
            samples[i].push(measure::once(path, Some(*plan), PROMPT, DECODE)?);
        }
        if let Some(bin) = llama_bench {
            match measure::llama_bench(bin, path, PROMPT, DECODE, 1) {
                Ok(l) => {
                    llama.push(l.sample);
                    setup = Some(l.setup);
                }
                Err(e) => println!("llama.cpp: {e:#}"),
            }
        }
    }
    let mut rows: Vec<Row> = plans
        .iter()
        .zip(&samples)
        .map(|((engine, _), s)| Row { engine: engine.clone(), figures: measure::median(s), spread: measure::spread(s) })
        .collect();
    if let Some(setup) = setup {
        println!("llama.cpp: {setup}; {} of {reps} runs succeeded", llama.len());
        rows.push(Row {
            engine: "llama.cpp llama-bench (reference)".into(),
            figures: measure::median(&llama),
            spread: measure::spread(&llama),
        });
    }
    Ok(rows)
}

/// Ratios against llama.cpp's row when it ran, else against the file's own form in tunebench.
fn print_rows(rows: &[Row]) {
    let Some(reference) = rows.iter().find(|r| r.engine.starts_with("llama.cpp")).or(rows.get(1)) else { return };
    let r0 = reference.figures;
    println!("{:<52} {:>7} {:>26} {:>26}", "engine / weights", "load s", "prefill tok/s", "decode tok/s");
    let pm = |x: Option<f64>| x.map_or("      ".to_string(), |x| format!("±{:>4.0}%", x * 50.0));
    for r in rows {
        let f = r.figures;
        let load = f.load_s.map_or("-".to_string(), |l| format!("{l:.2}"));
        println!(
            "{:<52} {:>7} {:>10.1} ({:>5.2}x) {} {:>10.2} ({:>5.2}x) {}",
            r.engine,
            load,
            f.prefill,
            f.prefill / r0.prefill,
            pm(r.spread.map(|s| s.0)),
            f.decode,
            f.decode / r0.decode,
            pm(r.spread.map(|s| s.1))
        );
    }
    if rows.iter().any(|r| r.spread.is_some()) {
        println!("(± is half the range between the slowest and the fastest run, against the median)");
    }
}
