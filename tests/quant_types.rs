//! GGUF weight types people download (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, and a Q4_K_M-like
//! mix with Q6_K, Q5_0 and Q8_0 tensors): each loads through the public loader, its logits equal those of
//! its own values dequantized to f32 and stay near the unquantized model's, and the title names the file's
//! own format and any other form decode runs.

mod support;

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use support::tiny;
use tunebench::engine::local::{WeightPlan, load, logits};

const IDS: [u32; 12] = [5, 77, 104, 200, 31, 260, 12, 99, 150, 3, 41, 250];

/// Rows of whole 256-value blocks, as K-quants need (and real models have).
fn wide() -> tiny::Options {
    tiny::Options { hidden: 256, ffn: 512, ..tiny::Options::default() }
}

/// Rewrites the GGUF at `src` with each matrix in the type `pick` names (vectors stay F32, as llama.cpp keeps
/// them) to `dst`, and the same quantized values dequantized to F32 to `deq`.
fn requantize(src: &Path, dst: &Path, deq: &Path, pick: &dyn Fn(&str) -> GgmlDType) {
    let mut f = std::fs::File::open(src).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    let (mut q, mut d) = (Vec::new(), Vec::new());
    for name in names {
        let t = ct.tensor(&mut f, name, &Device::Cpu).unwrap().dequantize(&Device::Cpu).unwrap();
        let dt = if t.rank() == 2 { pick(name) } else { GgmlDType::F32 };
        let qt = QTensor::quantize(&t, dt).unwrap();
        let back = qt.dequantize(&Device::Cpu).unwrap();
        d.push((name.clone(), QTensor::quantize(&back, GgmlDType::F32).unwrap()));
        q.push((name.clone(), qt));
    }
    let md: Vec<(&str, &Value)> = ct.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    for (path, tensors) in [(dst, &q), (deq, &d)] {
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut std::fs::File::create(path).unwrap(), &md, &refs).unwrap();
    }
}

fn exact_logits(path: &Path) -> Tensor {
    let m = logits::load_exact(path, &Device::Cpu).unwrap();
    logits::all_positions(&m.plain, &IDS).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

fn format(path: &Path, plan: Option<WeightPlan>) -> String {
    load(path, &Device::Cpu, plan).unwrap().base().format.clone()
}

struct Wide {
    dir: tempfile::TempDir,
    f32: PathBuf,
    reference: Tensor,
}

fn wide_model() -> Wide {
    let dir = tempfile::tempdir().unwrap();
    let (f32, _) = tiny::write_with(dir.path(), &wide());
    let reference = exact_logits(&f32);
    Wide { dir, f32, reference }
}

#[test]
fn every_type_loads_computes_its_own_values_and_stays_near_f32() {
    let w = wide_model();
    let scale = w.reference.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    // Tolerances relative to the largest logit, about twice what was measured (candle 0.11): the weights are
    // bf16-exact, so F16 and BF16 lose nothing; a block type's error grows as its bits shrink (weight RMS
    // error Q8_0 0.4%, Q6_K 1.4%, Q5_K 2.9%, Q4_K 5.8%, Q4_1 6.1%, Q4_0 6.5%), and two random layers amplify it.
    let types = [
        (GgmlDType::F32, 1e-6),
        (GgmlDType::F16, 1e-6),
        (GgmlDType::BF16, 1e-6),
        (GgmlDType::Q8_0, 2.5e-2),
        (GgmlDType::Q6K, 0.1),
        (GgmlDType::Q5K, 0.15),
        (GgmlDType::Q4K, 0.35),
        (GgmlDType::Q4_1, 0.7),
        (GgmlDType::Q4_0, 0.45),
    ];
    for (dt, tol) in types {
        let name = tunebench::engine::local::type_name(dt);
        let (file, deq) = (w.dir.path().join(format!("{name}.gguf")), w.dir.path().join(format!("{name}-deq.gguf")));
        requantize(&w.f32, &file, &deq, &|_| dt);
        let got = exact_logits(&file);
        assert_eq!(got.dims(), w.reference.dims());
        let own = max_diff(&got, &exact_logits(&deq));
        let off = max_diff(&got, &w.reference) / scale;
        println!("{name}: {own:.1e} from its own values in f32; {off:.2e} of the largest logit ({scale:.1}) from f32");
        assert!(own < 1e-4, "{name}: the logits are not the file's own values: {own}");
        assert!(off < tol, "{name}: {off} of the logit scale from the f32 model (tolerance {tol})");

        assert_eq!(format(&file, Some(WeightPlan::EXACT)), format!("{name} dequantized to f32"));
        // The file's own format, said as such: what a GPU runs, and the CPU default (the host engine runs every
        // one of these types as stored).
        assert_eq!(format(&file, Some(WeightPlan { decode: None, f32_prefill: false })), format!("{name} weights"));
        assert_eq!(format(&file, None), format!("{name} weights"));
        // A requantized form names both the file's format and the one that runs.
        if dt != GgmlDType::Q8_0 {
            let q8 = Some(WeightPlan { decode: Some(GgmlDType::Q8_0), f32_prefill: false });
            assert_eq!(format(&file, q8), format!("{name} file · Q8_0 weights"));
        }
    }
}

/// llama.cpp's Q4_K_M: Q4_K, with Q6_K for attn_v, ffn_down and the output; its quantizer falls back to
/// Q5_0 / Q8_0 for rows that are not whole 256-blocks.
#[test]
fn a_q4_k_m_like_mix_loads_and_its_title_names_the_mix() {
    let w = wide_model();
    let (file, deq) = (w.dir.path().join("mix.gguf"), w.dir.path().join("mix-deq.gguf"));
    requantize(&w.f32, &file, &deq, &|name| match name {
        n if n.contains("attn_v") || n.contains("ffn_down") || n == "output.weight" => GgmlDType::Q6K,
        n if n.contains("attn_k") => GgmlDType::Q5_0,
        n if n.contains("attn_output") => GgmlDType::Q8_0,
        _ => GgmlDType::Q4K,
    });
    let got = exact_logits(&file);
    let own = max_diff(&got, &exact_logits(&deq));
    assert!(own < 1e-4, "the mix's logits are not its own values: {own}");
    // Parameters per type: Q4_K 2·(256·512·2 + 256·256) + embeddings, Q6_K 2·(256·128 + 512·256) + output, …
    assert_eq!(
        format(&w.dir.path().join("mix.gguf"), Some(WeightPlan::EXACT)),
        "Q4_K+Q6_K+Q8_0+Q5_0 dequantized to f32"
    );
    assert_eq!(format(&file, Some(WeightPlan { decode: None, f32_prefill: false })), "Q4_K+Q6_K+Q8_0+Q5_0 weights");
}

/// Lanes run every type: the file's own quantized form (the CPU default: the host engine, prefill and decode
/// alike), and a Q8_0 copy, each agrees with the exact logits up to the rounding of quantized matmul (its
/// activations are quantized too) and of the Q8_0 copy.
#[test]
fn lanes_run_every_type_near_its_exact_logits() {
    let w = wide_model();
    let plans = [
        ("the CPU default: the file's format", None),
        ("a Q8_0 copy", Some(WeightPlan { decode: Some(GgmlDType::Q8_0), f32_prefill: false })),
    ];
    for dt in [
        GgmlDType::F32,
        GgmlDType::F16,
        GgmlDType::BF16,
        GgmlDType::Q8_0,
        GgmlDType::Q6K,
        GgmlDType::Q5K,
        GgmlDType::Q4K,
        GgmlDType::Q4_1,
        GgmlDType::Q4_0,
    ] {
        let name = tunebench::engine::local::type_name(dt);
        let (file, deq) = (w.dir.path().join(format!("{name}.gguf")), w.dir.path().join(format!("{name}-deq.gguf")));
        requantize(&w.f32, &file, &deq, &|_| dt);
        let exact = exact_logits(&file);
        let scale = exact.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        for (what, plan) in plans {
            let m = load(&file, &Device::Cpu, plan).unwrap();
            let mut cache = m.plain.new_cache(IDS.len()).unwrap();
            assert!(m.plain.on_host(), "{name}, {what}: the CPU runs the host engine");
            // A prefill of the first half (multi-row), then one token at a time.
            let half = IDS.len() / 2;
            let prefill = m.plain.forward_all(&IDS[..half], 0, &mut cache).unwrap();
            let mut worst = max_diff(&prefill, &exact.narrow(0, 0, half).unwrap());
            for (pos, id) in IDS.iter().enumerate().skip(half) {
                let row = m.plain.forward_last(&[*id], pos, &mut cache).unwrap();
                worst = worst.max(max_diff(&row, &exact.get(pos).unwrap()));
            }
            println!("{name}, {what}: {:.2e} of the logit scale from exact", worst / scale);
            // Measured 1.1e-2 to 1.8e-2 for the file's quantized forms, 0 for float files run as stored; a Q8_0
            // copy of a 4-bit file rounds twice, prefill included (3.2e-2 measured for Q4_1).
            let tol = if plan.is_some() { 5e-2 } else { 3e-2 };
            assert!(worst / scale < tol, "{name}, {what}: {worst}");
        }
    }
}

/// The committed file holding every type at once (tests/fixtures/quants/), and the type of each matrix in it.
fn every_type_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quants/every-type.gguf")
}

fn every_type(name: &str) -> GgmlDType {
    use GgmlDType::*;
    let table = [
        ("token_embd", Q4K),
        ("output", Q6K),
        ("blk.0.attn_q", Q4_0),
        ("blk.0.attn_k", F16),
        ("blk.0.attn_v", BF16),
        ("blk.0.attn_output", Q8_0),
        ("blk.0.ffn_gate", Q4_1),
        ("blk.0.ffn_up", Q5K),
        ("blk.0.ffn_down", Q6K),
        ("blk.1.attn_q", Q5_0),
        ("blk.1.attn_k", Q5_1),
        ("blk.1.attn_v", F32),
        ("blk.1.attn_output", Q4K),
        ("blk.1.ffn_gate", Q8_0),
        ("blk.1.ffn_up", Q4K),
        ("blk.1.ffn_down", Q5K),
    ];
    table.iter().find(|(n, _)| format!("{n}.weight") == name).map_or(F32, |(_, t)| *t)
}

/// Regenerates tests/fixtures/quants/every-type.gguf (candle's quantizers; run once by a person, then
/// `scripts/logits-reference/quants.py` records transformers' logits for it).
#[test]
#[ignore = "regenerates a committed fixture"]
fn write_every_type_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let (f32, _) = tiny::write_with(dir.path(), &tiny::Options { hidden: 256, ffn: 256, ..tiny::Options::default() });
    let out = every_type_path();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    requantize(&f32, &out, &dir.path().join("deq.gguf"), &every_type);
    let ct = gguf_file::Content::read(&mut std::fs::File::open(&out).unwrap()).unwrap();
    for (name, info) in &ct.tensor_infos {
        let want = if info.shape.rank() == 2 { every_type(name) } else { GgmlDType::F32 };
        assert_eq!(info.ggml_dtype, want, "{name}");
    }
}

/// The committed every-type file against transformers' logits for it (GGUF dequantized by gguf-py, f32 eager).
#[test]
fn a_file_of_every_type_matches_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quants");
    let want = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let ids: Vec<u32> = want["ids"].to_vec1::<i64>().unwrap().into_iter().map(|i| i as u32).collect();
    let m = logits::load_exact(&every_type_path(), &Device::Cpu).unwrap();
    let got = logits::all_positions(&m.plain, &ids).unwrap();
    let d = max_diff(&got, &want["logits"]);
    println!("every-type GGUF: {d:.1e} from transformers");
    assert!(d < 1e-3, "{d}");
    assert_eq!(m.base().format, "Q4_K+Q6_K+Q5_K+Q8_0+Q4_0+Q4_1+Q5_0+BF16+F16+F32+Q5_1 dequantized to f32");
}
