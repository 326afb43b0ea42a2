//! Local-engine speed. On the default model: load time, prefill and decode tok/s for each weight form, as
//! ratios against the file's own Q4_1 measured in the same run, and a LoRA lane against its base. On a
//! second family at a real size (family_shape.rs): Qwen2.5-0.5B's shapes with random weights, against
//! llama.cpp on the same file. LLAMA_BENCH names a llama-bench binary to run alongside; BENCH_REPS sets the
//! runs per figure of the second family (default 5).
//! Run: `cargo bench --bench local [-- smollm2|lora|qwen2 …]` (or scripts/bench); no names: all sections.

mod family_shape;
mod measure;
mod random_gguf;

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::GgmlDType;
use tunebench::engine::local::{PREFILL_CHUNK, WeightPlan, load, plan_for};

const PROMPT: usize = 512;
const DECODE: usize = 64;

struct Row {
    name: String,
    load_s: f64,
    prefill: f64,
    decode: f64,
}

fn measure(path: &Path, name: &str, plan: WeightPlan) -> Row {
    let s = measure::once(path, Some(plan), PROMPT, DECODE).expect("model runs");
    Row { name: name.into(), load_s: s.load_s.unwrap_or(f64::NAN), prefill: s.prefill, decode: s.decode }
}

/// Decode tok/s of the base and of the base + a random r=16 adapter on every linear layer, same run.
fn lora_decode(path: &Path) -> (f64, f64) {
    let m = load(path, &Device::Cpu, None).expect("model loads");
    let base = m.base().clone();
    let dir = std::env::temp_dir().join(format!("tunebench-bench-lora-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = serde_json::json!({"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": "all-linear", "bias": "none"});
    std::fs::write(dir.join("adapter_config.json"), cfg.to_string()).unwrap();
    let mut tensors = std::collections::HashMap::new();
    for layer in &base.layers {
        for lin in &layer.linears {
            let a = candle_core::Tensor::randn(0f32, 0.02, (16, lin.in_dim), &Device::Cpu).unwrap();
            let b = candle_core::Tensor::randn(0f32, 0.02, (lin.out_dim, 16), &Device::Cpu).unwrap();
            tensors.insert(format!("base_model.model.{}.lora_A.weight", lin.name), a);
            tensors.insert(format!("base_model.model.{}.lora_B.weight", lin.name), b);
        }
    }
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors")).unwrap();
    let view = m.with_adapter(&dir).expect("adapter loads");
    let _ = std::fs::remove_dir_all(&dir);
    let ids = measure::prompt_ids(PROMPT, base.cfg.vocab);
    let decode = |model: &tunebench::engine::local::Llama| measure::prefill_decode(model, &ids, DECODE).unwrap().1;
    // Alternate to share any drift in machine load fairly.
    let (b1, a1, b2, a2) = (decode(&m.plain), decode(&view.model), decode(&m.plain), decode(&view.model));
    ((b1 + b2) / 2.0, (a1 + a2) / 2.0)
}

fn main() {
    // cargo bench passes `--bench`; the other words name sections.
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let run = |section: &str| wanted.is_empty() || wanted.iter().any(|w| w == section);
    let llama_bench = std::env::var_os("LLAMA_BENCH").map(PathBuf::from);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() && (run("smollm2") || run("lora")) {
        eprintln!("bench: {} is absent; run scripts/fetch-model first", path.display());
    } else {
        if run("smollm2") {
            smollm2(&path, llama_bench.as_deref());
        }
        if run("lora") {
            lora(&path);
        }
    }
    if run("qwen2") {
        let reps = match std::env::var("BENCH_REPS") {
            Ok(v) => v.parse().unwrap_or_else(|_| panic!("BENCH_REPS `{v}` is not a count of runs")),
            Err(_) => 5,
        };
        family_shape::run(reps, llama_bench.as_deref()).expect("the qwen2 shape runs");
    }
}

fn smollm2(path: &Path, llama_bench: Option<&Path>) {
    let chosen = plan_for(&Device::Cpu, 0);
    let plans = [
        ("Q4_1 (file's own, reference)", WeightPlan { decode: None, f32_prefill: false }),
        ("Q8_0 requantized", WeightPlan { decode: Some(GgmlDType::Q8_0), f32_prefill: false }),
        ("f32 dequantized", WeightPlan { decode: Some(GgmlDType::F32), f32_prefill: true }),
        ("tunebench's choice", chosen),
    ];
    println!(
        "SmolLM2-135M-Instruct Q4_1 on CPU ({} threads); prompt {PROMPT} tokens in chunks of {PREFILL_CHUNK}, then {DECODE} decode steps",
        candle_core::utils::get_num_threads()
    );
    println!("tunebench's choice = {}", chosen.describe("Q4_1"));
    let rows: Vec<Row> = plans.iter().map(|(n, p)| measure(path, n, *p)).collect();
    let r0 = &rows[0];
    println!("{:<30} {:>8} {:>16} {:>16}", "weights", "load s", "prefill tok/s", "decode tok/s");
    for r in &rows {
        println!(
            "{:<30} {:>8.2} {:>9.1} ({:>4.2}x) {:>9.1} ({:>4.2}x)",
            r.name,
            r.load_s,
            r.prefill,
            r.prefill / r0.prefill,
            r.decode,
            r.decode / r0.decode
        );
    }
    if let Some(bin) = llama_bench {
        let threads = candle_core::utils::get_num_threads().to_string();
        let out = std::process::Command::new(bin)
            .args([
                "-m",
                path.to_str().unwrap(),
                "-p",
                &PROMPT.to_string(),
                "-n",
                &DECODE.to_string(),
                "-t",
                &threads,
                "-o",
                "md",
            ])
            .output();
        match out {
            Ok(o) => println!("\nllama.cpp ({}):\n{}", bin.display(), String::from_utf8_lossy(&o.stdout)),
            Err(e) => eprintln!("bench: cannot run {}: {e}", bin.display()),
        }
    }
}

fn lora(path: &Path) {
    let (base, lora) = lora_decode(path);
    println!("\nLoRA r=16 on all 210 linear layers (unmerged), decode after a {PROMPT}-token prompt:");
    println!(
        "{:<30} {:>9.1} tok/s (1.00x)\n{:<30} {:>9.1} tok/s ({:.2}x)",
        "base lane",
        base,
        "adapter lane",
        lora,
        lora / base
    );
}
