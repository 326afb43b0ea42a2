//! The family parity harness: loads a fixture of tests/fixtures/families/<fam>/ (made by
//! scripts/family-fixtures/make_fixtures.py with transformers, PEFT and llama.cpp's converter) through the crate's
//! public API as lanes do, and holds its logits and greedy continuations to transformers'; also drives a short
//! training run on the family and reloads the adapter it wrote.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use tunebench::engine::local::{Llama, LoadedModel, WeightPlan, load};
use tunebench::lora::Provenance;
use tunebench::lora::train::{
    AdamW, Event, OptimConfig, Output, Schedule, Sequence, TrainConfig, TrainModel, run, save,
};

/// Largest |logit difference| allowed against transformers (f32 on both sides, logits of order 10).
pub const TOLERANCE: f32 = 1e-3;

/// The two forms of every fixture model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// model.gguf: llama.cpp's convert_hf_to_gguf.py --outtype f32 of hf/.
    Gguf,
    /// hf/: transformers' save_pretrained (config.json, model.safetensors, tokenizer).
    Safetensors,
}

/// A family's fixture: where it lives and what transformers computed (expected.safetensors).
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    pub ids: Vec<u32>,
    pub tensors: HashMap<String, Tensor>,
}

impl Fixture {
    pub fn open(family: &str) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families").join(family);
        let file = dir.join("expected.safetensors");
        let tensors = candle_core::safetensors::load(&file, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e} (made by scripts/family-fixtures/make_fixtures.py)", file.display()));
        let fx = Self { name: family.to_string(), dir, ids: Vec::new(), tensors };
        let ids = fx.ids_of("ids");
        Self { ids, ..fx }
    }

    pub fn path(&self, form: Form) -> PathBuf {
        match form {
            Form::Gguf => self.dir.join("model.gguf"),
            Form::Safetensors => self.dir.join("hf"),
        }
    }

    pub fn adapter(&self) -> PathBuf {
        self.dir.join("adapter")
    }

    pub fn tensor(&self, key: &str) -> &Tensor {
        self.tensors.get(key).unwrap_or_else(|| panic!("{}: expected.safetensors has no `{key}`", self.name))
    }

    pub fn ids_of(&self, key: &str) -> Vec<u32> {
        self.tensor(key).to_vec1::<i64>().unwrap().into_iter().map(|i| u32::try_from(i).unwrap()).collect()
    }

    /// The expected key for `form`: a GGUF has no sliding-window key, so llama.cpp (and tunebench) attend to
    /// every token with it; the fixture of a windowed family whose GGUF drops the window (mistral) holds
    /// transformers' window-off results under `<key>_full`.
    pub fn key(&self, key: &str, form: Form) -> String {
        let full = format!("{key}_full");
        if form == Form::Gguf && self.tensors.contains_key(&full) { full } else { key.to_string() }
    }

    /// PEFT target modules of the fixture's adapter: every linear module the family has.
    pub fn modules(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.adapter().join("adapter_config.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut m: Vec<String> =
            v["target_modules"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        m.sort();
        m
    }
}

/// f32 weights for prefill and decode alike, so the comparison sees the decoder's maths, not a quantized copy.
/// A copy of `family`'s hf/ folder in `dir` with `edit` applied to its config.json (config-layout tests).
pub fn edited_hf(family: &str, dir: &Path, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let src = Fixture::open(family).dir.join("hf");
    std::fs::create_dir_all(dir).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir.to_path_buf()
}

pub const F32: WeightPlan = WeightPlan { decode: None, f32_prefill: true };

pub fn load_form(fx: &Fixture, form: Form) -> LoadedModel {
    let path = fx.path(form);
    // The crate's errors name the file already.
    load(&path, &Device::Cpu, Some(F32)).unwrap_or_else(|e| panic!("{e}"))
}

pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

/// Logits `[n, vocab]` at every position of `ids`, teacher forced from position 0.
pub fn teacher_forced(m: &Llama, ids: &[u32]) -> Tensor {
    m.forward_all(ids, 0, &mut m.new_cache(ids.len()).unwrap()).unwrap()
}

/// `n` greedy tokens after `ids`: one prefill, then single-token decode steps on the lane's KV cache.
pub fn greedy(m: &Llama, ids: &[u32], n: usize) -> Vec<u32> {
    let mut cache = m.new_cache(ids.len() + n).unwrap();
    let mut logits = m.forward_last(ids, 0, &mut cache).unwrap();
    let mut out = Vec::with_capacity(n);
    for step in 0..n {
        let next = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        out.push(next);
        if step + 1 < n {
            logits = m.forward_last(&[next], ids.len() + step, &mut cache).unwrap();
        }
    }
    out
}

/// What one parity check measured.
#[derive(Debug)]
pub struct Parity {
    pub base_diff: f32,
    pub adapter_diff: f32,
    pub max_logit: f32,
}

/// `family`'s `form` against transformers: logits at every position within [`TOLERANCE`], the greedy
/// continuation identical, and the same with the fixture's PEFT adapter applied.
pub fn check_parity(family: &str, form: Form) -> Parity {
    let fx = Fixture::open(family);
    let m = load_form(&fx, form);
    let what = format!("{family} ({form:?})");
    let want = fx.tensor(&fx.key("logits", form));
    let got = teacher_forced(&m.plain, &fx.ids);
    let base_diff = max_diff(&got, want);
    let max_logit = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(max_logit > 1.0, "{what}: expected logits of order 10 so 1e-3 is a real bound, max {max_logit}");
    assert!(base_diff <= TOLERANCE, "{what}: logits differ from transformers by {base_diff}");
    let want_greedy = fx.ids_of(&fx.key("greedy", form));
    assert_eq!(greedy(&m.plain, &fx.ids, want_greedy.len()), want_greedy, "{what}: greedy continuation");

    let view = m.with_adapter(&fx.adapter()).unwrap_or_else(|e| panic!("{what}: adapter: {e}"));
    assert!(view.warnings.is_empty(), "{what}: adapter warnings {:?}", view.warnings);
    let want = fx.tensor(&fx.key("logits_adapter", form));
    let got = teacher_forced(&view.model, &fx.ids);
    let adapter_diff = max_diff(&got, want);
    assert!(adapter_diff <= TOLERANCE, "{what} + adapter: logits differ from PEFT by {adapter_diff}");
    let want_greedy = fx.ids_of(&fx.key("greedy_adapter", form));
    assert_eq!(greedy(&view.model, &fx.ids, want_greedy.len()), want_greedy, "{what} + adapter: greedy");
    Parity { base_diff, adapter_diff, max_logit }
}

/// What a short training run measured.
#[derive(Debug)]
pub struct Trained {
    pub losses: Vec<f64>,
    pub reload_diff: f32,
    pub adapter_dir: PathBuf,
    /// `ids` and the adapted model's `logits` (tunebench's inference path), for
    /// scripts/family-fixtures/check_adapter.py to hold PEFT's to.
    pub logits_file: PathBuf,
}

/// Where a training check writes: `$TUNEBENCH_FAMILY_TRAIN_OUT/<family>-<form>` when that is set (so the adapter
/// and logits outlive the test, for check_adapter.py), else `<tmp>/<family>-<form>`.
pub fn train_out(tmp: &Path, family: &str, form: Form) -> PathBuf {
    let root = std::env::var_os("TUNEBENCH_FAMILY_TRAIN_OUT").map_or_else(|| tmp.to_path_buf(), PathBuf::from);
    root.join(format!("{family}-{}", if form == Form::Gguf { "gguf" } else { "hf" }))
}

/// Writes `ids` (I64) and `logits` (F32 `[n, vocab]`) as check_adapter.py reads them.
pub fn save_logits(path: &Path, ids: &[u32], logits: &Tensor) {
    let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    let n = ids.len();
    let t = HashMap::from([
        ("ids".to_string(), Tensor::from_vec(ids, n, &Device::Cpu).unwrap()),
        ("logits".to_string(), logits.clone()),
    ]);
    candle_core::safetensors::save(&t, path).unwrap();
}

/// A short LoRA run on `family`'s `form` over every linear module the family has (the fixture adapter's
/// targets), on sequences cut from the fixture's ids (no tokenizer or template involved): the loss falls, and
/// the adapter written to `out` reloads through the inference path to the trained model's logits (1e-4).
pub fn check_training(family: &str, form: Form, out: &Path) -> Trained {
    let fx = Fixture::open(family);
    let m = load_form(&fx, form);
    let what = format!("{family} ({form:?})");
    let ids = &fx.ids;
    // Two sequences; the loss reads the second half of each.
    let seq = |id: &str, ids: &[u32]| {
        let half = ids.len() / 2;
        let positions: Vec<u32> = (half as u32 - 1..ids.len() as u32 - 1).collect();
        Sequence { id: id.into(), ids: ids.to_vec(), positions, targets: ids[half..].to_vec() }
    };
    let train = [seq("a", &ids[..16]), seq("b", &ids[8..])];
    let steps = 12;
    let cfg = TrainConfig {
        rank: 4,
        alpha: 8.0,
        targets: fx.modules(),
        lr: 2e-2,
        epochs: 1000,
        max_steps: Some(steps),
        batch: 2,
        grad_accum: 1,
        max_seq_len: 64,
        seed: 5,
        warmup_ratio: 0.0,
        schedule: Schedule::Cosine,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        eval_every: None,
        patience: 0,
        save_every: Some(steps),
        base_name: family.into(),
    };
    let mut output = Output {
        adapter_dir: out.to_path_buf(),
        provenance: Provenance::default(),
        dataset_sha256: "d".into(),
        resume: false,
    };
    let mut losses = Vec::new();
    let mut on = |e: Event| {
        if let Event::Step { loss, .. } = e {
            losses.push(loss);
        }
    };
    run(m.base().clone(), &cfg, &train, &[], &mut output, &AtomicBool::new(false), &mut on)
        .unwrap_or_else(|e| panic!("{what}: training: {e}"));
    assert_eq!(losses.len(), steps, "{what}: steps run");
    let (first, last) = (losses[0], losses[steps - 1]);
    assert!(last < 0.8 * first, "{what}: loss did not fall: {losses:?}");

    // The trained LoRA tensors, from the final checkpoint (the same step the adapter was written at).
    let tm = TrainModel::new(m.base().clone(), &cfg.targets, cfg.rank, cfg.alpha, cfg.seed).unwrap();
    let ocfg = OptimConfig {
        lr: cfg.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        warmup_steps: 0,
        total_steps: steps,
        schedule: cfg.schedule,
        max_grad_norm: cfg.max_grad_norm,
    };
    let mut opt = AdamW::new(ocfg, &tm.vars()).unwrap();
    let ckpt = save::latest(&out.join("checkpoints")).unwrap_or_else(|| panic!("{what}: no checkpoint"));
    save::restore(&tm, &mut opt, &ckpt).unwrap();
    let all: Vec<u32> = (0..ids.len() as u32).collect();
    let trained = tm.logits(ids, &all).unwrap();
    let view = m.with_adapter(out).unwrap_or_else(|e| panic!("{what}: written adapter: {e}"));
    let served = teacher_forced(&view.model, ids);
    assert!(max_diff(&served, &teacher_forced(&m.plain, ids)) > 1e-2, "{what}: training changed nothing");
    let reload_diff = max_diff(&trained, &served);
    // f32 through two paths (training's decoder, the serving engine): relative to the logits' size.
    let size = served.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
    assert!(
        reload_diff < 1e-5 * size,
        "{what}: the written adapter reloads to other logits ({reload_diff}, logits up to {size})"
    );
    let logits_file = out.with_extension("logits.safetensors");
    save_logits(&logits_file, ids, &served);
    Trained { losses, reload_diff, adapter_dir: out.to_path_buf(), logits_file }
}

/// `dir/ws`: a workspace with one local lane `tuned` on `model` with `adapter`, prompt variant `short` holding
/// `prompt`, and `lane_keys` (TOML lines) added to the lane — what the export tests run their commands on.
pub fn lane_workspace(dir: &Path, prompt: &str, model: &Path, adapter: &Path, lane_keys: &str) -> PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let toml = format!(
        "name = \"x\"\n[prompts.short]\ntext = {prompt:?}\n[models.m]\npath = {:?}\ndevice = \"cpu\"\n[[lanes]]\nid = \"tuned\"\nbackend = \"local\"\nmodel = \"m\"\nprompt = \"short\"\n{lane_keys}adapter = {:?}\n",
        model.display().to_string(),
        adapter.display().to_string()
    );
    std::fs::write(ws.join("workspace.toml"), toml).unwrap();
    ws
}
