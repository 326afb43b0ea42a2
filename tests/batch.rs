//! Lanes batched on one base (issue 18): one host pass over every lane's rows gives each lane the logits it
//! gets alone, whatever the other rows are (adapters, positions, prefill or decode), and a lane cancelled
//! mid-stream leaves the others' answers byte-identical. A tiny random llama the tests write, Q4_0 and f32.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use support::tiny;
use tokio::sync::mpsc;
use tunebench::engine::local::{Batch, BatchRow, Decoder, LocalBackend, ModelStore};
use tunebench::engine::{Engine, EventKind, Registry, RunRequest};
use tunebench::workspace::{self, BackendKind};

/// A PEFT adapter on every linear of the tiny model, rank 8, its values from `seed`.
fn write_adapter(dir: &Path, seed: f32) {
    let modules = [
        ("self_attn.q_proj", tiny::HIDDEN, tiny::HIDDEN),
        ("self_attn.k_proj", tiny::HIDDEN / tiny::HEADS * tiny::KV_HEADS, tiny::HIDDEN),
        ("self_attn.v_proj", tiny::HIDDEN / tiny::HEADS * tiny::KV_HEADS, tiny::HIDDEN),
        ("self_attn.o_proj", tiny::HIDDEN, tiny::HIDDEN),
        ("mlp.gate_proj", tiny::FFN, tiny::HIDDEN),
        ("mlp.up_proj", tiny::FFN, tiny::HIDDEN),
        ("mlp.down_proj", tiny::HIDDEN, tiny::FFN),
    ];
    let noise = |shape: (usize, usize), s: f32| {
        let v: Vec<f32> = (0..shape.0 * shape.1).map(|i| (i as f32 * 0.618 + s).sin() * 0.2).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": "all-linear", "bias": "none"});
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    let mut st = HashMap::new();
    for l in 0..tiny::LAYERS {
        for (i, (m, out, inp)) in modules.iter().enumerate() {
            let name = format!("base_model.model.model.layers.{l}.{m}");
            st.insert(format!("{name}.lora_A.weight"), noise((8, *inp), seed + (l * 7 + i) as f32));
            st.insert(format!("{name}.lora_B.weight"), noise((*out, 8), seed * 3.0 + (l * 11 + i) as f32));
        }
    }
    candle_core::safetensors::save(&st, dir.join("adapter_model.safetensors")).unwrap();
}

fn ids(n: usize, seed: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 37 + seed * 101) % 250 + 3) as u32).collect()
}

#[test]
fn a_batched_pass_gives_each_lane_its_own_logits() {
    for quant in [None, Some(GgmlDType::Q4_0)] {
        batched_equals_alone(quant, false);
    }
}

/// The candle pass (what a GPU runs) on the CPU: the base layers once over every row, each row's adapter update
/// on its own tokens, attention per row. The host kernels under it are batch-invariant and candle's attention
/// sees each row's own shapes, so only the adapter update's f32 products (candle's matmul over a row or over
/// adjacent rows of one adapter) may differ in summation order: within 1e-4, not bit for bit. (Over a quantized
/// base the host holds an adapter in 8 bits and candle's update in f32, so that pairing is not compared.)
#[test]
fn a_candle_pass_gives_each_lane_its_own_logits() {
    batched_equals_alone(None, true);
}

fn batched_equals_alone(quant: Option<GgmlDType>, candle: bool) {
    {
        let dir = tempfile::tempdir().unwrap();
        let (gguf, _) = tiny::write(dir.path(), quant);
        let (a1, a2) = (dir.path().join("a1"), dir.path().join("a2"));
        write_adapter(&a1, 0.3);
        write_adapter(&a2, 1.7);
        let m = ModelStore::default().get(&gguf, &Device::Cpu, "cpu").unwrap();
        let (v1, v2) = (m.with_adapter(&a1).unwrap(), m.with_adapter(&a2).unwrap());
        let run = |d: &Decoder| if candle { d.clone().on_candle() } else { d.clone() };
        let owned = [run(&m.plain), run(&v1.model), run(&v2.model)];
        let lanes: [&Decoder; 3] = [&owned[0], &owned[1], &owned[2]];
        assert!(lanes.iter().all(|d| d.on_host() != candle && lanes[0].batches_with(d)));
        // Lanes run two ways never share a pass.
        let other = if candle { (*m.plain).clone() } else { (*m.plain).clone().on_candle() };
        assert!(!lanes[0].batches_with(&other));
        // Each lane's tokens, and the steps: (lane, tokens from, to) per pass. Prompts of 5, 23 and 70 tokens;
        // passes mix prefill chunks and decode rows at different positions, and lanes join and leave.
        let seqs = [ids(12, 1), ids(30, 2), ids(76, 3)];
        let passes: [&[(usize, usize, usize)]; 5] = [
            &[(2, 0, 40)],
            &[(0, 0, 5), (2, 40, 70), (1, 0, 23)],
            &[(1, 23, 24), (0, 5, 6), (2, 70, 71)],
            &[(2, 71, 72), (1, 24, 25)],
            &[(0, 6, 7), (2, 72, 73), (1, 25, 26)],
        ];
        let mut alone: Vec<_> = lanes.iter().map(|d| d.new_cache(80).unwrap()).collect();
        let mut together: Vec<_> = lanes.iter().map(|d| d.new_cache(80).unwrap()).collect();
        let mut batch = Batch::default();
        let (mut worst, mut exact, mut rows) = (0f32, 0, 0);
        for pass in passes {
            let want: Vec<Tensor> = pass
                .iter()
                .map(|&(l, from, to)| lanes[l].forward_last(&seqs[l][from..to], from, &mut alone[l]).unwrap())
                .collect();
            let mut caches: Vec<_> = together.iter_mut().map(Some).collect();
            let mut batch_rows: Vec<BatchRow<'_>> = pass
                .iter()
                .map(|&(l, from, to)| BatchRow {
                    decoder: lanes[l],
                    ids: &seqs[l][from..to],
                    pos: from,
                    cache: caches[l].take().unwrap(),
                })
                .collect();
            let got = Decoder::forward_batch(&mut batch, &mut batch_rows).unwrap();
            for (g, w) in got.into_iter().zip(&want) {
                let g = g.unwrap();
                let d = (&g - w).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                worst = worst.max(d);
                exact += usize::from(g.to_vec1::<f32>().unwrap() == w.to_vec1::<f32>().unwrap());
                rows += 1;
            }
        }
        assert!(worst <= 1e-4, "{quant:?}: batched logits differ from one lane's by {worst}");
        // The host kernels are batch-invariant: not close, the very same bits.
        if !candle {
            assert_eq!(exact, rows, "{quant:?}: {exact} of {rows} rows bit-identical");
        }
        // The adapters do change the answer (the test would pass vacuously otherwise).
        let mut c = lanes[0].new_cache(8).unwrap();
        let base = lanes[0].forward_last(&seqs[0][..5], 0, &mut c).unwrap();
        let mut c = lanes[1].new_cache(8).unwrap();
        let tuned = lanes[1].forward_last(&seqs[0][..5], 0, &mut c).unwrap();
        let moved = (base - tuned).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(moved > 1e-3, "{quant:?}: the adapter moved the logits by only {moved}");
    }
}

#[test]
fn a_pass_over_two_bases_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, hf) = tiny::write(dir.path(), None);
    let store = ModelStore::default();
    let (g, h) = (store.get(&gguf, &Device::Cpu, "cpu").unwrap(), store.get(&hf, &Device::Cpu, "cpu").unwrap());
    assert!(!g.plain.batches_with(&h.plain));
    let (mut cg, mut ch) = (g.plain.new_cache(4).unwrap(), h.plain.new_cache(4).unwrap());
    let mut rows = vec![
        BatchRow { decoder: &g.plain, ids: &[5], pos: 0, cache: &mut cg },
        BatchRow { decoder: &h.plain, ids: &[5], pos: 0, cache: &mut ch },
    ];
    let err = Decoder::forward_batch(&mut Batch::default(), &mut rows).err().unwrap().to_string();
    assert!(err.contains("another base model"), "{err}");
}

/// Runs `lanes` of the workspace at `root` together (greedy), cancelling `cancel` after its third token;
/// returns each lane's streamed text.
async fn stream(root: &Path, lanes: &[usize], cancel: Option<usize>) -> HashMap<usize, (String, bool)> {
    let ws = workspace::load(root).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let backend = LocalBackend::new();
    let engine = Engine::new(Registry::default().with(BackendKind::Local, Arc::new(backend)), tx);
    let tokens: HashMap<usize, _> = lanes
        .iter()
        .map(|&l| (l, engine.start(l, l as u64, RunRequest::for_lane(&ws, l, "tell me a story").unwrap())))
        .collect();
    drop(engine);
    let mut out: HashMap<usize, (String, bool)> = HashMap::new();
    let mut open = lanes.len();
    while open > 0 {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.unwrap().unwrap();
        let entry = out.entry(ev.lane).or_default();
        match &ev.kind {
            EventKind::Token { text } => {
                entry.0.push_str(text);
                if Some(ev.lane) == cancel && entry.0.chars().count() >= 3 {
                    tokens[&ev.lane].cancel();
                }
            }
            EventKind::Done { .. } => {
                entry.1 = true;
                open -= 1;
            }
            EventKind::Failed { .. } => open -= 1,
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lane_cancelled_mid_batch_leaves_the_others_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = tiny::write(dir.path(), Some(GgmlDType::Q4_0));
    write_adapter(&dir.path().join("a1"), 0.3);
    write_adapter(&dir.path().join("a2"), 1.7);
    // Lane one may write 200 tokens, so that it is still running when the test's cancel reaches it (40 tokens of
    // this tiny model take a few milliseconds in a release build, less than that round trip can).
    let lane = |id: &str, adapter: &str| {
        let max = if id == "one" { 200 } else { 40 };
        format!(
            "[[lanes]]\nid = \"{id}\"\nbackend = \"local\"\nmodel = \"tiny\"\nprompt = \"p\"\nmax_tokens = {max}\ntemperature = 0.0\n{adapter}\n"
        )
    };
    let toml = format!(
        "name = \"tiny\"\n[prompts.p]\ntext = \"Be brief.\"\n[models.tiny]\npath = \"{}\"\ndevice = \"cpu\"\n{}{}{}",
        gguf.display(),
        lane("base", ""),
        lane("one", &format!("adapter = \"{}\"", dir.path().join("a1").display())),
        lane("two", &format!("adapter = \"{}\"", dir.path().join("a2").display())),
    );
    std::fs::write(dir.path().join("workspace.toml"), toml).unwrap();
    let all = stream(dir.path(), &[0, 1, 2], Some(1)).await;
    let without = stream(dir.path(), &[0, 2], None).await;
    assert!(!all[&1].1, "lane one was cancelled");
    for l in [0, 2] {
        assert!(all[&l].1 && without[&l].1, "lane {l} finished both times");
        assert!(all[&l].0.len() > 10, "lane {l} wrote something: {:?}", all[&l].0);
        assert_eq!(all[&l].0, without[&l].0, "lane {l}: the cancelled lane changed its answer");
    }
    assert_ne!(all[&0].0, all[&2].0, "the adapter lane answers differently from the base");
}

/// A lane whose numbers go non-finite (NaN in its adapter) fails alone: the other lanes of the pass get the
/// logits they get alone, on the host engine and on the candle pass.
#[test]
fn a_row_with_non_finite_numbers_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = tiny::write(dir.path(), None);
    let bad = dir.path().join("bad");
    write_adapter(&bad, 0.9);
    let file = bad.join("adapter_model.safetensors");
    let mut st = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let name = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
    let mut values = st[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    values[3] = f32::NAN;
    let shape = st[name].shape().clone();
    st.insert(name.to_string(), Tensor::from_vec(values, shape, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&st, &file).unwrap();
    let m = ModelStore::default().get(&gguf, &Device::Cpu, "cpu").unwrap();
    let poisoned = m.with_adapter(&bad).unwrap();
    for candle in [false, true] {
        let run = |d: &Decoder| if candle { d.clone().on_candle() } else { d.clone() };
        let (good, bad) = (run(&m.plain), run(&poisoned.model));
        let seq = ids(9, 4);
        let mut c = good.new_cache(16).unwrap();
        let want = good.forward_last(&seq, 0, &mut c).unwrap();
        let (mut cg, mut cb) = (good.new_cache(16).unwrap(), bad.new_cache(16).unwrap());
        let mut rows = vec![
            BatchRow { decoder: &good, ids: &seq, pos: 0, cache: &mut cg },
            BatchRow { decoder: &bad, ids: &seq, pos: 0, cache: &mut cb },
        ];
        let mut got = Decoder::forward_batch(&mut Batch::default(), &mut rows).unwrap().into_iter();
        let g = got.next().unwrap().unwrap();
        let d = (&g - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d <= 1e-4, "candle={candle}: the good lane moved by {d}");
        let err = got.next().unwrap().err().unwrap().to_string();
        assert!(err.contains("non-finite values in its hidden state at position 8"), "candle={candle}: {err}");
    }
}
