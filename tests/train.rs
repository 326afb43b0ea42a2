//! LoRA training on the tiny model (written by the tests, quantized): gradients against finite
//! differences, the loss falling, the saved adapter reproducing the trained logits through the inference
//! path, resume continuing the same curve, and the prompt masked out of the loss.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use support::tiny;
use tunebench::dataset::{Example, Meta};
use tunebench::engine::local::LoadedModel;
use tunebench::lora::Provenance;
use tunebench::lora::train::data::{Sequence, sequences};
use tunebench::lora::train::{Event, Output, Schedule, TrainConfig, TrainModel, run, save};

fn model(dir: &Path, quant: Option<GgmlDType>) -> (std::path::PathBuf, LoadedModel) {
    let (gguf, _) = tiny::write(dir, quant);
    let m = tunebench::engine::local::load(&gguf, &Device::Cpu, None).unwrap();
    (gguf, m)
}

const ALL: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

fn config(steps: usize) -> TrainConfig {
    TrainConfig {
        rank: 4,
        alpha: 8.0,
        targets: ALL.iter().map(|s| s.to_string()).collect(),
        lr: 1e-2,
        epochs: 1000,
        max_steps: Some(steps),
        batch: 2,
        grad_accum: 1,
        max_seq_len: 256,
        seed: 7,
        warmup_ratio: 0.1,
        schedule: Schedule::Cosine,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        eval_every: None,
        patience: 0,
        save_every: Some(4),
        base_name: "tiny".into(),
    }
}

fn examples() -> Vec<Example> {
    [("hello world", "or"), ("the world", "hell"), ("say hello", "world world"), ("who", "hello")]
        .iter()
        .map(|(u, a)| Example::chat(format!("ex_{u}"), "be brief", u, a, Meta::default()))
        .collect()
}

fn seqs(m: &LoadedModel) -> Vec<Sequence> {
    let xs = examples();
    let refs: Vec<&Example> = xs.iter().collect();
    let (s, skipped) = sequences(&m.tokenizer, &m.template, &refs, 256);
    assert!(skipped.is_empty(), "{skipped:?}");
    s
}

fn output(dir: &Path, resume: bool) -> Output {
    Output { adapter_dir: dir.to_path_buf(), provenance: Provenance::default(), dataset_sha256: "d".into(), resume }
}

fn train(m: &LoadedModel, cfg: &TrainConfig, dir: &Path, resume: bool, stop_at: Option<usize>) -> Vec<(usize, f64)> {
    let stop = AtomicBool::new(false);
    let mut losses = Vec::new();
    let mut on = |e: Event| {
        if let Event::Step { step, loss, .. } = e {
            losses.push((step, loss));
            if Some(step) == stop_at {
                stop.store(true, Ordering::Relaxed);
            }
        }
    };
    run(m.base().clone(), cfg, &seqs(m), &[], &mut output(dir, resume), &stop, &mut on).unwrap();
    losses
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar::<f32>().unwrap() as f64
}

#[test]
fn every_lora_tensor_of_every_layer_gets_the_finite_difference_gradient_on_a_quantized_model() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = model(dir.path(), Some(GgmlDType::Q8_0));
    let tm = TrainModel::new(m.base().clone(), &ALL.map(String::from), 2, 4.0, 3).unwrap();
    // B starts at zero (so A's gradient would be zero): give it values to test both.
    for (i, p) in tm.lora.values().enumerate() {
        let shape = p.b.as_tensor().shape().clone();
        let n = shape.elem_count();
        let v: Vec<f32> = (0..n).map(|k| ((k as f32 + i as f32 * 13.0) * 0.37).sin() * 0.1).collect();
        p.b.set(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap();
    }
    let s = &seqs(&m)[2];
    let loss = |tm: &TrainModel| tm.loss(&s.ids, &s.positions, &s.targets).unwrap();
    let grads = loss(&tm).backward().unwrap();
    assert_eq!(tm.lora.len(), 7 * tiny::LAYERS);
    let eps = 1e-2f32;
    for (name, p) in &tm.lora {
        for (which, var) in [("A", &p.a), ("B", &p.b)] {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}.{which}: no gradient"));
            let gv: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
            let norm = gv.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(norm > 0.0, "{name}.{which}: zero gradient");
            // The entry with the largest gradient, checked by central differences.
            let (k, &gk) = gv.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap();
            let orig = var.as_tensor().copy().unwrap();
            let mut vals: Vec<f32> = orig.flatten_all().unwrap().to_vec1().unwrap();
            let base = vals[k];
            let mut at = |x: f32| {
                vals[k] = x;
                var.set(&Tensor::from_vec(vals.clone(), orig.shape(), &Device::Cpu).unwrap()).unwrap();
                scalar(&loss(&tm))
            };
            let fd = (at(base + eps) - at(base - eps)) / (2.0 * eps as f64);
            var.set(&orig).unwrap();
            let tol = 0.05 * (gk.abs() as f64) + 2e-3;
            assert!((fd - gk as f64).abs() < tol, "{name}.{which}[{k}]: backward {gk} vs finite difference {fd}");
        }
    }
}

#[test]
fn training_lowers_the_loss_below_a_tenth_and_the_saved_adapter_reproduces_its_logits() {
    let dir = tempfile::tempdir().unwrap();
    // All-f32 weights for both paths: a quantized head multiplies quantized activations at inference, a few
    // 1e-2 off by itself, which would hide what this compares.
    let (gguf, _) = tiny::write_with(dir.path(), &tiny::Options { head_scale: 8.0, ..tiny::Options::default() });
    let plan = tunebench::engine::local::WeightPlan { decode: None, f32_prefill: true };
    let m = tunebench::engine::local::load(&gguf, &Device::Cpu, Some(plan)).unwrap();
    let out = dir.path().join("adapters/t");
    let cfg = config(60);
    let losses = train(&m, &cfg, &out, false, None);
    let (first, last) = (losses[0].1, losses.last().unwrap().1);

    // The trained state as training left it (the last checkpoint) against the adapter read back by the
    // inference path: PEFT names, HF row order undone and redone, the scale, over the shared base.
    let tm = TrainModel::new(m.base().clone(), &ALL.map(String::from), cfg.rank, cfg.alpha, cfg.seed).unwrap();
    let mut opt = tunebench::lora::train::AdamW::new(
        tunebench::lora::train::OptimConfig {
            lr: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 0,
            total_steps: 1,
            schedule: Schedule::Cosine,
            max_grad_norm: 1.0,
        },
        &tm.vars(),
    )
    .unwrap();
    let st = save::restore(&tm, &mut opt, &save::latest(&out.join("checkpoints")).unwrap()).unwrap();
    assert_eq!(st.step, 60);
    let s = &seqs(&m)[0];
    let all: Vec<u32> = (0..s.ids.len() as u32).collect();
    let trained = tm.logits(&s.ids, &all).unwrap();
    let view = m.with_adapter(&out).unwrap();
    let mut cache = view.model.new_cache(s.ids.len()).unwrap();
    let served = view.model.forward_all(&s.ids, 0, &mut cache).unwrap();
    let d = (trained - &served).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-3, "trained vs reloaded logits differ by {d}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!((config["peft_type"].as_str(), config["r"].as_u64()), (Some("LORA"), Some(4)));
    let names = candle_core::safetensors::load(out.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let a = &names["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"];
    let b = &names["base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"];
    assert_eq!((a.dims(), b.dims()), (&[4, tiny::FFN][..], &[tiny::HIDDEN / 2, 4][..]));
    assert!(last < first * 0.1, "loss {first} → {last}");
}

#[test]
fn a_resumed_run_continues_the_same_curve() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = model(dir.path(), None);
    let cfg = config(8);
    let whole = train(&m, &cfg, &dir.path().join("a"), false, None);
    let part = train(&m, &cfg, &dir.path().join("b"), false, Some(4));
    assert_eq!(part.len(), 4, "stopped after step 4");
    assert_eq!(&whole[..4], &part[..], "same seed, same steps");
    let rest = train(&m, &cfg, &dir.path().join("b"), true, None);
    assert_eq!(rest.first().map(|s| s.0), Some(5));
    for ((s1, l1), (s2, l2)) in whole[4..].iter().zip(&rest) {
        assert_eq!(s1, s2);
        assert!((l1 - l2).abs() < 1e-6, "step {s1}: {l1} vs resumed {l2}");
    }
    // Other settings cannot resume this run.
    let other = TrainConfig { lr: 5e-3, ..cfg };
    let stop = AtomicBool::new(false);
    let err =
        run(m.base().clone(), &other, &seqs(&m), &[], &mut output(&dir.path().join("b"), true), &stop, &mut |_| {})
            .unwrap_err()
            .to_string();
    assert!(err.contains("other settings"), "{err}");
}

#[test]
fn the_loss_reads_only_the_answer_and_its_end_of_turn() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = model(dir.path(), None);
    let s = &seqs(&m)[0];
    let prompt_len = s.ids.len() - s.targets.len();
    assert_eq!(s.positions.first().copied(), Some(prompt_len as u32 - 1), "the first target follows the prompt");
    assert_eq!(s.positions.len(), s.targets.len());
    assert_eq!(&s.ids[prompt_len..], &s.targets[..]);
    let end = m.tokenizer.token_id("<|im_end|>").unwrap();
    assert_eq!(m.tokenizer.decode(&s.targets), "or\n", "the answer and what ends its turn, nothing of the prompt");
    assert!(s.targets.contains(&end), "the end-of-turn token is learned (so the model stops)");
    let prompt = m.tokenizer.decode(&s.ids[..prompt_len]);
    assert!(prompt.ends_with("assistant\n") && prompt.contains("hello world"), "{prompt:?}");
    // Changing only the targets' logits moves the loss; the prompt positions do not enter it.
    let tm = TrainModel::new(m.base().clone(), &ALL.map(String::from), 2, 4.0, 1).unwrap();
    let full = tm.logits(&s.ids, &s.positions).unwrap();
    let want =
        candle_nn::loss::cross_entropy(&full, &Tensor::new(s.targets.as_slice(), &Device::Cpu).unwrap()).unwrap();
    let got = tm.loss(&s.ids, &s.positions, &s.targets).unwrap();
    assert!((scalar(&want) - scalar(&got)).abs() < 1e-6);
}

/// A workspace on the tiny model: a base lane and a tuned lane whose adapter training writes.
fn tiny_workspace(dir: &Path) -> std::path::PathBuf {
    let (gguf, _) = tiny::write_with(dir, &tiny::Options { head_scale: 8.0, ..tiny::Options::default() });
    let root = dir.join("ws");
    std::fs::create_dir_all(root.join("dataset")).unwrap();
    let toml = format!(
        "name = \"tiny\"\n[prompts.p]\ntext = \"be brief\"\n[models.tiny]\npath = \"{}\"\ndevice = \"cpu\"\n\
         [[lanes]]\nid = \"base\"\nbackend = \"local\"\nmodel = \"tiny\"\nprompt = \"p\"\nmax_tokens = 4\n\
         [[lanes]]\nid = \"tuned\"\nbackend = \"local\"\nmodel = \"tiny\"\nprompt = \"p\"\nadapter = \"adapters/t\"\nmax_tokens = 4\n",
        gguf.display()
    );
    std::fs::write(root.join("workspace.toml"), toml).unwrap();
    let xs = examples();
    let lines = |xs: &[Example]| xs.iter().map(|x| x.to_line() + "\n").collect::<String>();
    std::fs::write(root.join("dataset/train.jsonl"), lines(&xs[..3])).unwrap();
    std::fs::write(root.join("dataset/valid.jsonl"), lines(&xs[3..])).unwrap();
    root
}

#[tokio::test(flavor = "multi_thread")]
async fn f10_trains_shows_the_curve_and_then_runs_the_lane_with_the_new_adapter() {
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use tunebench::app::{Action, AppState, LaneStatus, Mode, TrainStatus};
    let dir = tempfile::tempdir().unwrap();
    let root = tiny_workspace(dir.path());
    let ws = tunebench::workspace::load(&root).unwrap();
    let mut state = AppState::new(ws, Vec::new(), tunebench::theme::Theme::default());
    state.size = (100, 30);
    state.editor.insert_str("hello world");
    let (etx, mut erx) = tokio::sync::mpsc::unbounded_channel();
    let (atx, mut arx) = tokio::sync::mpsc::unbounded_channel();
    let mut rt = tunebench::runtime::Runtime::new(tunebench::engine::Registry::builtin(), etx);
    rt.actions = Some(atx);
    let key = |c: KeyCode| Action::Key(KeyEvent::new(c, KeyModifiers::NONE));
    rt.dispatch(&mut state, key(KeyCode::F(10)));
    assert!(matches!(state.mode, Mode::Train));
    rt.dispatch(&mut state, key(KeyCode::Enter));
    while state.train.running() {
        let a = tokio::time::timeout(std::time::Duration::from_secs(120), arx.recv()).await.unwrap().unwrap();
        rt.dispatch(&mut state, a);
    }
    assert_eq!(state.train.status, TrainStatus::Done, "{:?}", state.train.error);
    let steps = state.train.steps;
    assert_eq!(state.train.train_loss.len(), steps, "a point per step");
    assert!(state.train.valid_loss.len() >= 2, "before training and after each epoch");
    assert!(root.join("adapters/t/adapter_model.safetensors").is_file());
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(100, 30)).unwrap();
    term.draw(|f| tunebench::ui::render(&state, f)).unwrap();
    let screen = term.backend().to_string();
    assert!(screen.contains("train loss") && screen.contains(&format!("step {steps}/{steps}")), "{screen}");
    // Enter runs the tuned lane, which loads the adapter just written.
    rt.dispatch(&mut state, key(KeyCode::Enter));
    while state.lanes[1].status.is_running() {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(60), erx.recv()).await.unwrap().unwrap();
        rt.dispatch(&mut state, Action::Engine(ev));
    }
    assert_eq!(state.lanes[1].status, LaneStatus::Done, "{:?}", state.lanes[1].error);
    // A later session (or a run from the CLI) shows the curve the checkpoint recorded.
    let curve = state.train.train_loss.clone();
    state.train = Default::default();
    rt.dispatch(&mut state, key(KeyCode::F(10)));
    // Two reads answer F10: the last run's checkpoint and the sweep's curve (none here), in either order.
    for _ in 0..2 {
        let a = tokio::time::timeout(std::time::Duration::from_secs(10), arx.recv()).await.unwrap().unwrap();
        rt.dispatch(&mut state, a);
    }
    assert!(state.train.last_run && state.train.sweep.points.is_empty());
    assert_eq!(state.train.train_loss.len(), curve.len());
    assert!(state.train.train_loss.iter().zip(&curve).all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() < 1e-9));
    // Training again writes a new version beside the first (never over it); Enter points the lane at it, in
    // memory until the workspace is saved.
    let first = std::fs::read(root.join("adapters/t/adapter_model.safetensors")).unwrap();
    rt.dispatch(&mut state, key(KeyCode::Char('n')));
    while state.train.running() {
        let a = tokio::time::timeout(std::time::Duration::from_secs(120), arx.recv()).await.unwrap().unwrap();
        rt.dispatch(&mut state, a);
    }
    assert_eq!(state.train.status, TrainStatus::Done, "{:?}", state.train.error);
    assert!(state.train.adapter_dir.as_deref().is_some_and(|d| d.ends_with("adapters/t-v2")));
    assert_eq!(std::fs::read(root.join("adapters/t/adapter_model.safetensors")).unwrap(), first);
    rt.dispatch(&mut state, key(KeyCode::Enter));
    assert_eq!(state.ws.lanes[1].adapter.as_deref(), Some("adapters/t-v2"));
    assert!(state.has_unsaved());
    while state.lanes[1].status.is_running() {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(60), erx.recv()).await.unwrap().unwrap();
        rt.dispatch(&mut state, Action::Engine(ev));
    }
    assert_eq!(state.lanes[1].status, LaneStatus::Done, "{:?}", state.lanes[1].error);
}

#[test]
fn tunebench_train_on_the_example_writes_an_adapter_the_tuned_lane_runs() {
    use tunebench::lora::train::job::{target, versions_name};
    let Some(model) = support::default_model() else { return };
    let (_tmp, root) = support::example_copy_with_model(&model);
    // A dozen validation examples are enough to see the loss computed, at a fraction of the time.
    let valid = std::fs::read_to_string(root.join("dataset/valid.jsonl")).unwrap();
    std::fs::write(
        root.join("dataset/valid.jsonl"),
        valid.lines().take(12).map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_tunebench");
    let ws = root.to_str().unwrap();
    // The tuned lane runs a version of its adapter; a run writes the next version of the same name.
    let lane_adapter = tunebench::workspace::load(&root).unwrap().adapter_lane().unwrap().adapter.clone().unwrap();
    let shipped_dir = root.join(&lane_adapter);
    let next = target(&root.join("adapters"), &versions_name(&shipped_dir), false, false).unwrap();
    assert_ne!(next, shipped_dir);
    let shipped = std::fs::read(shipped_dir.join("adapter_model.safetensors")).unwrap();
    let out = std::process::Command::new(bin)
        .args(["train", ws, "--max-steps", "1", "--batch", "2", "--eval-every", "1", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["steps"], 1);
    assert!(summary["valid_loss_before"].as_f64().is_some_and(f64::is_finite), "{summary}");
    assert!(summary["valid_loss_best"].as_f64().is_some_and(f64::is_finite), "{summary}");
    // The shipped adapter is untouched: the run wrote a new version beside it.
    assert_eq!(std::fs::read(shipped_dir.join("adapter_model.safetensors")).unwrap(), shipped);
    assert!(
        summary["adapter"].as_str().is_some_and(|a| Path::new(a).ends_with(next.strip_prefix(&root).unwrap())),
        "{summary}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(next.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["base_model_name_or_path"], "HuggingFaceTB/SmolLM2-135M-Instruct");
    // 30 layers × 7 modules × (A, B).
    let t = candle_core::safetensors::load(next.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(t.len(), 420);
    let run = std::process::Command::new(bin)
        .args(["run", ws, "--lanes", "tuned", "--input", "lumen lamp buzzing. refund", "--json"])
        .output()
        .unwrap();
    let line: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(line["adapter"], lane_adapter.as_str());
    assert!(line["error"].is_null() && run.status.success(), "{line}");
    // Only --overwrite trains into the lane's own folder, and then writes no other version.
    let after = target(&root.join("adapters"), &versions_name(&shipped_dir), false, false).unwrap();
    let out = std::process::Command::new(bin)
        .args(["train", ws, "--max-steps", "1", "--batch", "2", "--overwrite", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(std::fs::read(shipped_dir.join("adapter_model.safetensors")).unwrap(), shipped);
    assert!(next.join("adapter_model.safetensors").is_file() && !after.exists());
}

#[test]
fn a_trained_adapter_is_never_replaced_without_overwrite() {
    use tunebench::lora::train::job::target;
    let dir = tempfile::tempdir().unwrap();
    let adapters = dir.path().join("adapters");
    // Nothing there yet (or an empty folder): the run writes adapters/NAME.
    assert_eq!(target(&adapters, "t", false, false).unwrap(), adapters.join("t"));
    std::fs::create_dir_all(adapters.join("t")).unwrap();
    assert_eq!(target(&adapters, "t", false, false).unwrap(), adapters.join("t"));
    // Anything in it (an adapter, a checkpoint, a stray file): a new version beside it, then the next one.
    std::fs::write(adapters.join("t/adapter_model.safetensors"), b"trained").unwrap();
    assert_eq!(target(&adapters, "t", false, false).unwrap(), adapters.join("t-v2"));
    std::fs::create_dir_all(adapters.join("t-v2/checkpoints/step-000004")).unwrap();
    std::fs::write(adapters.join("t-v2/checkpoints/step-000004/state.json"), b"{}").unwrap();
    assert_eq!(target(&adapters, "t", false, false).unwrap(), adapters.join("t-v3"));
    // --overwrite names the folder itself; --resume the newest version with a checkpoint.
    assert_eq!(target(&adapters, "t", true, false).unwrap(), adapters.join("t"));
    assert_eq!(target(&adapters, "t", false, true).unwrap(), adapters.join("t-v2"));
    let err = target(&adapters, "u", false, true).unwrap_err();
    assert!(err.contains("no checkpoint"), "{err}");
    assert_eq!(std::fs::read(adapters.join("t/adapter_model.safetensors")).unwrap(), b"trained");
    // A version's folder names the versions' name, so a lane on t-v2 trains t-v3.
    use tunebench::lora::train::job::versions_name;
    let names = ["adapters/t-v2", "adapters/t", "t-v10", "my-v1", "a-vb", "-v2"].map(|p| versions_name(Path::new(p)));
    assert_eq!(names, ["t", "t", "t", "my-v1", "a-vb", "-v2"]);
}

#[test]
fn tunebench_train_refuses_settings_out_of_range_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let root = tiny_workspace(dir.path());
    let bin = env!("CARGO_BIN_EXE_tunebench");
    for (flag, value, says) in [
        ("--warmup-ratio", "2", "from 0 to 1"),
        ("--warmup-ratio", "-0.1", "from 0 to 1"),
        ("--weight-decay", "-1", "≥ 0"),
        ("--alpha", "0", "> 0"),
        ("--lr", "NaN", "> 0"),
        ("--max-steps", "0", "at least 1"),
        ("--eval-every", "0", "at least 1"),
        ("--max-seq-len", "0", "at least 1"),
    ] {
        let out = std::process::Command::new(bin)
            .args(["train", root.to_str().unwrap(), &format!("{flag}={value}")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value} was accepted: {stderr}");
        assert!(stderr.contains(&format!("{flag} {value}")) && stderr.contains(says), "{flag} {value}: {stderr}");
        assert!(!root.join("adapters").exists(), "{flag} {value} wrote an adapter");
    }
}
