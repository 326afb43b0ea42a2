//! One decoder for inference and training: on the tiny model (GGUF with llama.cpp's interleaved rope, and the
//! safetensors folder with Hugging Face's halves), the training forward (differentiable ops, frozen weights,
//! LoRA vars) gives the inference forward's logits (fused ops, KV cache, adapter read back from disk) within
//! 1e-4 in f32, and each loader describes its family as data.

mod support;

use std::path::Path;

use candle_core::{Device, Tensor};
use support::tiny;
use tunebench::engine::local::{Family, LoadedModel, RopePairs, WeightPlan, load};
use tunebench::lora::Provenance;
use tunebench::lora::train::{Schedule, TrainConfig, TrainModel, save};

const ALL: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
const IDS: [u32; 12] = [3, 71, 200, 5, 258, 17, 99, 140, 2, 33, 250, 64];

fn config() -> TrainConfig {
    TrainConfig {
        rank: 3,
        alpha: 6.0,
        targets: ALL.iter().map(|s| s.to_string()).collect(),
        lr: 1e-2,
        epochs: 1,
        max_steps: None,
        batch: 1,
        grad_accum: 1,
        max_seq_len: 64,
        seed: 11,
        warmup_ratio: 0.0,
        schedule: Schedule::Cosine,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        eval_every: None,
        patience: 0,
        save_every: None,
        base_name: "tiny".into(),
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

/// Training's logits at every position against inference's, before and after giving every LoRA B values
/// (written as a PEFT adapter and read back by the inference path).
fn training_matches_inference(m: &LoadedModel, adapter_dir: &Path) {
    let cfg = config();
    let tm = TrainModel::new(m.base().clone(), &cfg.targets, cfg.rank, cfg.alpha, cfg.seed).unwrap();
    let all: Vec<u32> = (0..IDS.len() as u32).collect();
    let served = m.plain.forward_all(&IDS, 0, &mut m.plain.new_cache(IDS.len()).unwrap()).unwrap();
    let scale = served.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(scale > 0.5, "logits of order 1 at least, so 1e-4 is a real bound (max |logit| {scale})");
    let d = max_diff(&tm.logits(&IDS, &all).unwrap(), &served);
    assert!(d < 1e-4, "base: training vs inference logits differ by {d}");

    for (i, p) in tm.lora.values().enumerate() {
        let shape = p.b.as_tensor().shape().clone();
        let v: Vec<f32> = (0..shape.elem_count()).map(|k| ((k as f32 + i as f32 * 7.0) * 0.61).sin() * 0.2).collect();
        p.b.set(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap();
    }
    save::adapter(&tm, &cfg, adapter_dir, &Provenance::default()).unwrap();
    let view = m.with_adapter(adapter_dir).unwrap();
    let served = view.model.forward_all(&IDS, 0, &mut view.model.new_cache(IDS.len()).unwrap()).unwrap();
    let base = m.plain.forward_all(&IDS, 0, &mut m.plain.new_cache(IDS.len()).unwrap()).unwrap();
    assert!(max_diff(&served, &base) > 1e-2, "the adapter changes the logits (else this compares nothing)");
    let d = max_diff(&tm.logits(&IDS, &all).unwrap(), &served);
    assert!(d < 1e-4, "with LoRA: training vs inference logits differ by {d}");
    // The positions a loss reads are the same rows.
    let picked = tm.logits(&IDS, &[2, 7, 11]).unwrap();
    let rows = served.index_select(&Tensor::new(&[2u32, 7, 11], &Device::Cpu).unwrap(), 0).unwrap();
    assert!(max_diff(&picked, &rows) < 1e-4);
}

#[test]
fn training_and_inference_run_one_forward_pass_on_gguf_and_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, hf) = tiny::write_with(dir.path(), &tiny::Options { head_scale: 8.0, ..tiny::Options::default() });
    // f32 weights in both modes, so the comparison sees the ops, not a quantized decode copy.
    let plan = WeightPlan { decode: None, f32_prefill: true };
    for (path, pairs, adapter) in [(gguf, RopePairs::Interleaved, "a-gguf"), (hf, RopePairs::Halves, "a-hf")] {
        let m = load(&path, &Device::Cpu, Some(plan)).unwrap();
        assert_eq!(m.base().cfg.family, Family::llama(pairs), "{}", path.display());
        assert_eq!(m.plain.family().name, "llama");
        training_matches_inference(&m, &dir.path().join(adapter));
    }
}
