//! Local-engine speed against llama.cpp on the same files, threads and work (issue 17's table): SmolLM2-135M
//! in Q4_0, Q4_1, Q8_0, Q4_K_M and Qwen2.5-0.5B's shape (random weights) in Q4_0, Q8_0, Q4_K_M; load, pp512,
//! tg128, peak RSS, medians and min–max of BENCH_REPS runs (default 5), each run a fresh process, both engines
//! taking turns; the table is printed and written to target/bench/report.md. Also a LoRA lane against its
//! base (same process, same run). Threads: TUNEBENCH_THREADS, else RAYON_NUM_THREADS, else every core.
//! llama.cpp: LLAMA_BENCH=/path/to/llama-bench, else both OpenMP-free builds (native and portable), each row
//! against its faster (scripts/bench --build-llama builds them; `variants` times all four on the Q4_1 file). Run: `cargo bench --bench local [-- WORDS]` (or scripts/bench): words
//! name sections (smollm2, qwen2, lora; `variants` times the llama.cpp builds and picks the default) and
//! formats (Q4_0 Q4_1 Q8_0 Q4_K_M); no section word: smollm2 qwen2 lora batch (`batch`: lanes batched on one
//! base through the real worker, issue 18's targets). BENCH_REPS=0 only makes the files. `gpu` (with
//! BENCH_DEVICE=cuda:0 and LLAMA_BENCH naming a CUDA build): SmolLM2-135M's and Qwen2.5-0.5B's shapes with
//! random weights, and the LoRA line on the first, tunebench on that device and llama.cpp with every layer
//! offloaded — what a GPU machine sent only the binaries can run.

mod batch;
mod batch_parity;
mod llama;
mod llama_peers;
mod lora;
mod measure;
mod models;
mod random_gguf;
mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

const PROMPT: usize = 512;
const GEN: usize = 128;
const FORMATS: [&str; 4] = ["Q4_0", "Q4_1", "Q8_0", "Q4_K_M"];
const SECTIONS: [&str; 6] = ["smollm2", "qwen2", "lora", "batch", "variants", "gpu"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some(measure::CHILD) => child(&args[1..]),
        Some(batch::CHILD) => batch::child(&args[1..]),
        _ => sections(&args),
    };
    if let Err(e) = result {
        eprintln!("bench: {e:#}");
        std::process::exit(1);
    }
}

/// The re-executed bench: one tunebench run of `path prompt steps`.
fn child(args: &[String]) -> Result<()> {
    let [path, prompt, steps] = args else { anyhow::bail!("{} wants PATH PROMPT GEN", measure::CHILD) };
    measure::child(Path::new(path), prompt.parse().context("prompt length")?, steps.parse().context("decode steps")?)
}

/// A Qwen2.5-shaped Q4_0 file of the LoRA section, with Qwen2's real vocabulary when `scripts/fetch-vocabs`
/// fetched it (llama.cpp's peer lane takes a text prompt), else the byte-level one.
fn qwen_lora(shape: random_gguf::Shape) -> Result<PathBuf> {
    let vocab = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/vocab/ggml-vocab-qwen2.gguf");
    let (dtype, dir) = (candle_core::quantized::GgmlDType::Q4_0, models::cache_dir());
    let (path, _) =
        if vocab.is_file() { shape.cached_with_vocab(dtype, &dir, &vocab)? } else { shape.cached(dtype, &dir)? };
    Ok(path)
}

pub fn threads() -> Result<usize> {
    for var in ["TUNEBENCH_THREADS", "RAYON_NUM_THREADS"] {
        if let Ok(v) = std::env::var(var) {
            return v.parse().with_context(|| format!("{var}=`{v}` is not a thread count"));
        }
    }
    Ok(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn sections(args: &[String]) -> Result<()> {
    let started = Instant::now();
    // cargo bench passes `--bench`; the other words name sections and formats.
    let words: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with("--")).collect();
    if let Some(w) = words.iter().find(|w| !SECTIONS.contains(w) && !FORMATS.contains(w)) {
        anyhow::bail!("unknown word `{w}`: sections are {SECTIONS:?}, formats {FORMATS:?}");
    }
    let named = words.iter().any(|w| SECTIONS.contains(w));
    let run = |s: &str| words.contains(&s) || (!named && s != "variants" && s != "gpu");
    let formats: Vec<&'static str> =
        FORMATS.iter().copied().filter(|f| words.contains(f) || !words.iter().any(|w| FORMATS.contains(w))).collect();
    let threads = threads()?;
    let runs: usize = match std::env::var("BENCH_REPS") {
        Ok(v) => v.parse().with_context(|| format!("BENCH_REPS=`{v}` is not a count of runs"))?,
        Err(_) => 5,
    };
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    // A GPU machine is sent the bench only: its batch section runs SmolLM2's shape with random weights.
    let gpu = measure::device_spec() != "cpu";
    let needs_smollm2 = run("smollm2") || run("lora") || (run("batch") && !gpu) || run("variants");
    if needs_smollm2 && !shipped.is_file() {
        anyhow::bail!("{} is absent; run scripts/fetch-model first", shipped.display());
    }
    let mut report = String::new();
    if run("variants") {
        let table = llama::pick(&shipped, PROMPT, GEN, threads, runs)?;
        println!("{table}");
    }
    let mut files = Vec::new();
    if run("smollm2") {
        files.extend(models::smollm2(&shipped, &formats)?);
    }
    if run("qwen2") {
        files.extend(models::qwen2(&formats.iter().copied().filter(|f| *f != "Q4_1").collect::<Vec<_>>())?);
    }
    if run("gpu") {
        // No shipped file on a GPU machine that is sent only the bench: SmolLM2's shape with random weights.
        let smol = random_gguf::SMOLLM2_135M;
        files.extend(models::random(smol, "SmolLM2-135M", &formats)?);
        files.extend(models::qwen2(&formats.iter().copied().filter(|f| *f != "Q4_1").collect::<Vec<_>>())?);
    }
    if runs == 0 {
        // BENCH_REPS=0: only make the files.
        for f in &files {
            let (mix, mb) = models::describe(&f.path)?;
            println!("{} {}: {} ({mix}; {mb:.0} MB)", f.model, f.format, f.path.display());
        }
    } else if !files.is_empty() {
        let device = measure::device_spec();
        if device != "cpu" {
            report.push_str(&format!("tunebench on BENCH_DEVICE={device}; llama-bench -ngl 99.\n\n"));
        }
        report.push_str(&table(&files, threads, runs)?);
    }
    if run("gpu") {
        let (smol, _) =
            random_gguf::SMOLLM2_135M.cached(candle_core::quantized::GgmlDType::Q8_0, &models::cache_dir())?;
        let text = lora::run(&smol, "SmolLM2-135M's shape, random weights (Q8_0)", PROMPT)?;
        println!("{text}");
        report.push_str(&format!("\n{text}"));
    }
    if run("lora") {
        let text = lora::run(&shipped, "SmolLM2-135M-Instruct.Q4_1.gguf", PROMPT)?;
        println!("{text}");
        report.push_str(&format!("\n{text}"));
        // Models of the sizes people fine-tune: an adapter's factors grow with the width, the weights with its
        // square, so SmolLM2 (96 MB against 5.7 MB of 8-bit factors) leaves the adapter the least room.
        for (shape, label) in [
            (random_gguf::QWEN25_05B, "the Qwen2.5-0.5B shape, random weights (Q4_0)"),
            (random_gguf::QWEN25_15B, "the Qwen2.5-1.5B shape, random weights (Q4_0)"),
        ] {
            let text = lora::run(&qwen_lora(shape)?, label, PROMPT)?;
            println!("{text}");
            report.push_str(&format!("\n{text}"));
        }
    }
    if run("batch") {
        let text = if gpu {
            // Prompts are text: random weights at Qwen2.5-0.5B's shape with Qwen2's real vocabulary.
            let vocab = std::env::var_os("BENCH_VOCAB").map(PathBuf::from).context(
                "the batch section on a GPU needs BENCH_VOCAB=models/vocab/ggml-vocab-qwen2.gguf (scripts/fetch-vocabs)",
            )?;
            let (qwen, _) = random_gguf::QWEN25_05B.cached_with_vocab(
                candle_core::quantized::GgmlDType::Q8_0,
                &models::cache_dir(),
                &vocab,
            )?;
            let parity = format!("{}\n{}", batch_parity::run(&qwen)?, batch_parity::chunks(&qwen)?);
            println!("{parity}");
            let label = "Qwen2.5-0.5B's shape, random weights, Qwen2's vocabulary, Q8_0";
            format!("{}\n{parity}", batch::run(&qwen, label, runs)?)
        } else {
            batch::run(&shipped, "SmolLM2 Q4_1", runs)?
        };
        println!("{text}");
        report.push_str(&format!("\n{text}"));
    }
    if let Some(v) = llama::variants_table().filter(|_| !files.is_empty()) {
        report.push_str(&format!("\n### The llama.cpp builds (the reference is the fastest)\n\n{v}"));
    }
    let took = started.elapsed().as_secs_f64();
    if report.is_empty() {
        // Only `variants` ran: a table from an earlier run stays.
        return Ok(());
    }
    report.push_str(&format!("\nThis bench took {:.1} min.\n", took / 60.0));
    write_report(&report)?;
    println!("(written to {}; the bench took {:.1} min)", target_dir().join("bench/report.md").display(), took / 60.0);
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from)
}

/// Every file: `runs` runs of each engine taking turns (the order flipped every run, so neither always
/// follows the other), then the table, printed and returned.
fn table(files: &[models::BenchFile], threads: usize, runs: usize) -> Result<String> {
    let references = llama::references();
    if references.is_empty() {
        eprintln!("bench: no llama.cpp build found: its columns stay empty (scripts/bench --build-llama builds it)");
    }
    let mut rows = Vec::new();
    let mut info = llama::Info::default();
    for f in files {
        let (mix, mb) = models::describe(&f.path)?;
        eprintln!("bench: {} {} ({})", f.model, f.format, f.path.display());
        let (model, format) = (f.model.clone(), f.format);
        let mut row =
            report::Row { model, format, mix, mb, tunebench: Vec::new(), llama: Vec::new(), build: String::new() };
        let mut by_build: Vec<Vec<measure::Run>> = vec![Vec::new(); references.len()];
        let mut infos = vec![llama::Info::default(); references.len()];
        for i in 0..runs {
            let tb = |row: &mut report::Row| match measure::tunebench(&f.path, PROMPT, GEN, threads) {
                Ok(r) => {
                    eprintln!("  run {}: tunebench pp {:.1} tg {:.1}", i + 1, r.pp, r.tg);
                    row.tunebench.push(r);
                }
                Err(e) => eprintln!("  run {}: {e:#}", i + 1),
            };
            let mut ll = || {
                for ((reference, runs), got_info) in references.iter().zip(&mut by_build).zip(&mut infos) {
                    match llama::run(reference, &f.path, PROMPT, GEN, threads) {
                        Ok((r, got)) => {
                            eprintln!(
                                "  run {}: llama.cpp {} pp {:.1} tg {:.1}",
                                i + 1,
                                llama::short(reference),
                                r.pp,
                                r.tg
                            );
                            runs.push(r);
                            *got_info = got;
                        }
                        Err(e) => eprintln!("  run {}: {e:#}", i + 1),
                    }
                }
            };
            if i % 2 == 0 {
                tb(&mut row);
                ll();
            } else {
                ll();
                tb(&mut row);
            }
        }
        // The row's reference is its fastest build: the highest geometric mean of the pp and tg medians.
        let score = |runs: &[measure::Run]| {
            let (pp, tg) = (measure::Stat::of(runs.iter().map(|r| r.pp)), measure::Stat::of(runs.iter().map(|r| r.tg)));
            pp.zip(tg).map_or(0.0, |(pp, tg)| (pp.median * tg.median).sqrt())
        };
        let best = (0..references.len()).max_by(|&a, &b| score(&by_build[a]).total_cmp(&score(&by_build[b])));
        if let Some(b) = best {
            row.llama = std::mem::take(&mut by_build[b]);
            row.build = llama::short(&references[b]).to_string();
            info = infos[b].clone();
        }
        rows.push(row);
        // A long run stopped halfway still leaves the rows it measured.
        let partial = format!(
            "{}\n(partial: {} of {} rows so far)\n",
            render(&rows, &info, threads, runs),
            rows.len(),
            files.len()
        );
        write_report(&partial)?;
    }
    let text = render(&rows, &info, threads, runs);
    println!("{text}");
    Ok(text)
}

/// The table of `rows`, its header naming the reference as llama-bench reported it (`info`), `runs` asked for.
fn render(rows: &[report::Row], info: &llama::Info, threads: usize, runs: usize) -> String {
    let references = llama::references();
    let reference = references.first();
    let builds = references.iter().map(|r| r.variant.as_str()).collect::<Vec<_>>().join(" and ");
    let llama = match reference {
        Some(_) => format!(
            "commit {} · {} backend · {} ({}) · flash attention {} (-fa {}) · weight repacking {}",
            info.commit,
            info.backends,
            if references.len() > 1 { "builds" } else { "build" },
            if references.len() > 1 {
                format!("{builds}; each row against its faster, named in the row")
            } else {
                builds
            },
            info.flash_attn,
            llama::flash_attn(),
            info.repack
        ),
        None => "not run (no build: scripts/bench --build-llama)".to_string(),
    };
    let load_note = match reference {
        Some(_) => {
            "llama.cpp's: the wall time of a llama-bench process that loads the file and runs one 1-token prompt \
             (-p 1 -n 0 --no-warmup), less that test's time: process start, load (mmap, weight repacking) and \
             context creation"
        }
        None => "llama.cpp's: — (no llama.cpp build)",
    };
    let header = report::Header { threads, runs, prompt: PROMPT, steps: GEN, llama, load_note: load_note.to_string() };
    report::markdown(&header, rows)
}

fn write_report(text: &str) -> Result<()> {
    let out = target_dir().join("bench/report.md");
    std::fs::create_dir_all(out.parent().context("report folder")?)?;
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))
}
