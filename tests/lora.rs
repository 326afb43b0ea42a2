//! LoRA adapters in PEFT's format on the tiny test model: unmerged equals merged, GGUF equals safetensors,
//! zero adapters change nothing, PEFT's scaling rules, refusals, provenance and runtime switching.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use support::tiny;
use tunebench::engine::local::ModelStore;
use tunebench::lora::AdapterConfig;

const MODULES: [(&str, usize, usize); 7] = [
    ("self_attn.q_proj", tiny::HIDDEN, tiny::HIDDEN),
    ("self_attn.k_proj", tiny::HIDDEN / 2, tiny::HIDDEN),
    ("self_attn.v_proj", tiny::HIDDEN / 2, tiny::HIDDEN),
    ("self_attn.o_proj", tiny::HIDDEN, tiny::HIDDEN),
    ("mlp.gate_proj", tiny::FFN, tiny::HIDDEN),
    ("mlp.up_proj", tiny::FFN, tiny::HIDDEN),
    ("mlp.down_proj", tiny::HIDDEN, tiny::FFN),
];

fn noise(shape: (usize, usize), seed: f32) -> Tensor {
    let n = shape.0 * shape.1;
    let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.618 + seed).sin() * 0.05).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Writes a PEFT adapter folder: config JSON as given, A/B for every module of every layer (PEFT names,
/// HF row order), B zero when asked; returns (dir, tensors by module).
fn write_adapter(
    dir: &Path,
    config: serde_json::Value,
    rank: usize,
    zero_b: bool,
) -> HashMap<String, (Tensor, Tensor)> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    let mut out = HashMap::new();
    let mut st = HashMap::new();
    for l in 0..tiny::LAYERS {
        for (i, (m, o, inp)) in MODULES.iter().enumerate() {
            let name = format!("model.layers.{l}.{m}");
            let a = noise((rank, *inp), (l * 7 + i) as f32);
            let b = if zero_b {
                Tensor::zeros((*o, rank), DType::F32, &Device::Cpu).unwrap()
            } else {
                noise((*o, rank), (l * 11 + i + 3) as f32)
            };
            st.insert(format!("base_model.model.{name}.lora_A.weight"), a.clone());
            st.insert(format!("base_model.model.{name}.lora_B.weight"), b.clone());
            out.insert(name, (a, b));
        }
    }
    candle_core::safetensors::save(&st, dir.join("adapter_model.safetensors")).unwrap();
    out
}

fn config(r: usize, alpha: f64) -> serde_json::Value {
    serde_json::json!({"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": "all-linear",
                       "bias": "none", "task_type": "CAUSAL_LM", "lora_dropout": 0.05, "inference_mode": true})
}

fn logits(m: &tunebench::engine::local::Llama, ids: &[u32]) -> Tensor {
    let mut cache = m.new_cache(ids.len()).unwrap();
    m.forward_all(ids, 0, &mut cache).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

const IDS: [u32; 12] = [5, 77, 104, 200, 31, 260, 12, 99, 150, 3, 41, 250];

struct Models {
    _dir: tempfile::TempDir,
    root: PathBuf,
    gguf: PathBuf,
    hf: PathBuf,
}

fn models() -> Models {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, hf) = tiny::write(dir.path(), None);
    Models { root: dir.path().to_path_buf(), _dir: dir, gguf, hf }
}

#[test]
fn unmerged_logits_equal_an_independently_merged_model() {
    let m = models();
    let ad = m.root.join("ad");
    let (r, alpha) = (4, 8.0);
    let deltas = write_adapter(&ad, config(r, alpha), r, false);
    // Independent path: W' = W + (alpha / r) · B · A, written as a plain f32 model folder.
    let merged = m.root.join("merged");
    std::fs::create_dir_all(&merged).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(m.hf.join(f), merged.join(f)).unwrap();
    }
    let mut ws = candle_core::safetensors::load(m.hf.join("model.safetensors"), &Device::Cpu).unwrap();
    for (module, (a, b)) in &deltas {
        let w = ws[&format!("{module}.weight")].to_dtype(DType::F32).unwrap();
        let delta = (b.matmul(a).unwrap() * (alpha / r as f64)).unwrap();
        ws.insert(format!("{module}.weight"), (w + delta).unwrap());
    }
    let ws: HashMap<String, Tensor> = ws.into_iter().map(|(k, v)| (k, v.to_dtype(DType::F32).unwrap())).collect();
    candle_core::safetensors::save(&ws, merged.join("model.safetensors")).unwrap();

    let store = ModelStore::default();
    let base = store.get(&m.hf, &Device::Cpu, "cpu").unwrap();
    let view = base.with_adapter(&ad).unwrap();
    let want = logits(&store.get(&merged, &Device::Cpu, "cpu").unwrap().plain, &IDS);
    let got = logits(&view.model, &IDS);
    let d = max_diff(&got, &want);
    assert!(d < 1e-4, "unmerged vs merged: {d}");
    assert!(max_diff(&got, &logits(&base.plain, &IDS)) > 1e-3, "the adapter changes the output");
    assert!(Arc::ptr_eq(&view.model.base, base.base()), "the adapter lane shares the base");
    assert_eq!((view.rank, view.modules), (r, 7 * tiny::LAYERS));
}

#[test]
fn gguf_and_safetensors_bases_agree_with_the_same_adapter() {
    let m = models();
    let ad = m.root.join("ad");
    write_adapter(&ad, config(4, 8.0), 4, false);
    let store = ModelStore::default();
    let g = store.get(&m.gguf, &Device::Cpu, "cpu").unwrap().with_adapter(&ad).unwrap();
    let h = store.get(&m.hf, &Device::Cpu, "cpu").unwrap().with_adapter(&ad).unwrap();
    let d = max_diff(&logits(&g.model, &IDS), &logits(&h.model, &IDS));
    assert!(d < 1e-3, "llama.cpp's q/k row order must apply to lora_B too: {d}");
}

#[test]
fn permuting_rows_for_gguf_and_back_is_the_identity() {
    let w = noise((16, 3), 1.0);
    let there = tunebench::lora::adapter::permute_rows(&w, 2).unwrap();
    assert!(max_diff(&there, &w) > 0.0);
    let back = tunebench::lora::adapter::unpermute_rows(&there, 2).unwrap();
    assert_eq!(max_diff(&back, &w), 0.0);
}

#[test]
fn a_zero_adapter_reproduces_the_base_exactly() {
    let m = models();
    let ad = m.root.join("zero");
    write_adapter(&ad, config(8, 16.0), 8, true);
    let store = ModelStore::default();
    for path in [&m.gguf, &m.hf] {
        let base = store.get(path, &Device::Cpu, "cpu").unwrap();
        let view = base.with_adapter(&ad).unwrap();
        assert_eq!(max_diff(&logits(&view.model, &IDS), &logits(&base.plain, &IDS)), 0.0);
        // Decode steps too (the Q8_0 path).
        let mut c1 = base.plain.new_cache(4).unwrap();
        let mut c2 = view.model.new_cache(4).unwrap();
        let a = base.plain.forward_last(&IDS[..1], 0, &mut c1).unwrap();
        let b = view.model.forward_last(&IDS[..1], 0, &mut c2).unwrap();
        assert_eq!(max_diff(&a, &b), 0.0);
    }
}

#[test]
fn scaling_follows_peft_rslora_and_patterns() {
    let c = AdapterConfig::parse(r#"{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}"#).unwrap();
    assert_eq!(c.rank_and_scale("model.layers.0.self_attn.q_proj").unwrap(), (8, 2.0));
    assert!(c.targets("model.layers.3.self_attn.v_proj").unwrap());
    assert!(!c.targets("model.layers.3.self_attn.k_proj").unwrap());
    let c = AdapterConfig::parse(r#"{"r": 8, "lora_alpha": 16, "use_rslora": true, "target_modules": "all-linear"}"#)
        .unwrap();
    assert_eq!(c.rank_and_scale("model.layers.0.mlp.up_proj").unwrap(), (8, 16.0 / 8f64.sqrt()));
    assert!(c.targets("model.layers.0.mlp.up_proj").unwrap() && !c.targets("lm_head").unwrap());
    let c = AdapterConfig::parse(
        r#"{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "k_proj"], "rank_pattern": {"q_proj": 4},
            "alpha_pattern": {"layers\\.1\\.self_attn\\.k_proj": 64}, "layers_to_transform": [1]}"#,
    )
    .unwrap();
    assert_eq!(c.rank_and_scale("model.layers.1.self_attn.q_proj").unwrap(), (4, 4.0));
    assert_eq!(c.rank_and_scale("model.layers.1.self_attn.k_proj").unwrap(), (8, 8.0));
    assert!(c.targets("model.layers.1.self_attn.k_proj").unwrap());
    assert!(!c.targets("model.layers.0.self_attn.k_proj").unwrap(), "layers_to_transform");
    // A regex target is a full match (Python syntax); with layers_to_transform it is refused, as in PEFT.
    let c = AdapterConfig::parse(r#"{"r": 4, "lora_alpha": 8, "target_modules": ".*\\.(?P<m>q|v)_proj"}"#).unwrap();
    assert!(
        c.targets("model.layers.2.self_attn.v_proj").unwrap()
            && !c.targets("model.layers.2.self_attn.v_proj_x").unwrap()
    );
    let err =
        AdapterConfig::parse(r#"{"r": 4, "lora_alpha": 8, "target_modules": ".*q_proj", "layers_to_transform": [0]}"#)
            .unwrap_err();
    assert!(err.to_string().contains("cannot be combined"), "{err}");
    // Patterns are tried in the order written: the first match wins.
    let c = AdapterConfig::parse(r#"{"r": 8, "lora_alpha": 8, "target_modules": "all-linear", "rank_pattern": {"q_proj": 4, "layers.0.self_attn.q_proj": 16}}"#).unwrap();
    assert_eq!(c.rank_and_scale("model.layers.0.self_attn.q_proj").unwrap().0, 4);
    let c = AdapterConfig::parse(r#"{"r": 8, "lora_alpha": 8, "target_modules": "all-linear", "rank_pattern": {"layers.0.self_attn.q_proj": 16, "q_proj": 4}}"#).unwrap();
    assert_eq!(c.rank_and_scale("model.layers.0.self_attn.q_proj").unwrap().0, 16);
    for (json, words) in [
        (
            r#"{"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "init_lora_weights": "pissa"}"#,
            "init_lora_weights",
        ),
        (
            r#"{"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "target_parameters": ["w"]}"#,
            "target_parameters",
        ),
        (r#"{"r": 4, "lora_alpha": 8}"#, "no target_modules"),
        (r#"{"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "rank_pattern": {"q_proj": 0}}"#, "at least 1"),
    ] {
        let err = AdapterConfig::parse(json).unwrap_err().to_string();
        assert!(err.contains(words), "{json}: {err}");
    }
    // End to end: a rank_pattern rank must match the tensors.
    let m = models();
    let ad = m.root.join("rp");
    write_adapter(
        &ad,
        serde_json::json!({"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "rank_pattern": {"o_proj": 2}}),
        4,
        false,
    );
    let err =
        ModelStore::default().get(&m.hf, &Device::Cpu, "cpu").unwrap().with_adapter(&ad).err().unwrap().to_string();
    assert!(
        err.contains("self_attn.o_proj.lora_A.weight` has rank 4 but adapter_config.json gives this module rank 2"),
        "{err}"
    );
}

#[test]
fn unsupported_options_and_misfits_are_refused_with_a_reason() {
    let m = models();
    let store = ModelStore::default();
    let base = store.get(&m.hf, &Device::Cpu, "cpu").unwrap();
    let cases = [
        (serde_json::json!({"use_dora": true}), "use_dora"),
        (serde_json::json!({"fan_in_fan_out": true}), "fan_in_fan_out"),
        (serde_json::json!({"bias": "all"}), "bias = \"all\""),
        (serde_json::json!({"modules_to_save": ["lm_head"]}), "modules_to_save"),
    ];
    for (i, (extra, words)) in cases.iter().enumerate() {
        let mut c = config(4, 8.0);
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let ad = m.root.join(format!("bad{i}"));
        write_adapter(&ad, c, 4, false);
        let err = base.with_adapter(&ad).err().unwrap().to_string();
        assert!(err.contains("unsupported adapter option") && err.contains(words), "{err}");
    }
    // A tensor whose shape does not fit names the tensor and both shapes.
    let ad = m.root.join("shape");
    write_adapter(&ad, config(4, 8.0), 4, false);
    let mut st = candle_core::safetensors::load(ad.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    st.insert("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight".into(), noise((4, 100), 0.0));
    candle_core::safetensors::save(&st, ad.join("adapter_model.safetensors")).unwrap();
    let err = base.with_adapter(&ad).err().unwrap().to_string();
    assert!(err.contains("`base_model.model.model.layers.0.mlp.down_proj.lora_A.weight` has shape [4, 100] but the base layer needs [4, 128]"), "{err}");
    // lm_head on a model whose head is its embeddings.
    let tied = m.root.join("tied");
    std::fs::create_dir_all(&tied).unwrap();
    let (tied_gguf, _) = tiny::write_with(&tied, &tiny::Options { tied: true, ..Default::default() });
    let ad = m.root.join("head");
    write_adapter(&ad, config(4, 8.0), 4, false);
    let mut st = candle_core::safetensors::load(ad.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let vocab = tiny::vocab().0.len();
    st.insert("base_model.model.lm_head.lora_A.weight".into(), noise((4, tiny::HIDDEN), 1.0));
    st.insert("base_model.model.lm_head.lora_B.weight".into(), noise((vocab, 4), 2.0));
    candle_core::safetensors::save(&st, ad.join("adapter_model.safetensors")).unwrap();
    let err = store.get(&tied_gguf, &Device::Cpu, "cpu").unwrap().with_adapter(&ad).err().unwrap().to_string();
    assert!(err.contains("ties lm_head to the token embeddings"), "{err}");
}

#[test]
fn stray_tensors_and_a_foreign_base_are_visible_warnings() {
    let m = models();
    let ad = m.root.join("warn");
    write_adapter(&ad, config(4, 8.0), 4, false);
    let mut st = candle_core::safetensors::load(ad.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    st.insert("base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight".into(), noise((4, 64), 0.0));
    candle_core::safetensors::save(&st, ad.join("adapter_model.safetensors")).unwrap();
    std::fs::write(
        ad.join("tunebench.json"),
        r#"{"base_sha256": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}"#,
    )
    .unwrap();
    let view = ModelStore::default().get(&m.gguf, &Device::Cpu, "cpu").unwrap().with_adapter(&ad).unwrap();
    assert!(
        view.warnings.iter().any(|w| w.contains("1 tensor(s) match no layer") && w.contains("layers.9")),
        "{:?}",
        view.warnings
    );
    assert!(
        view.warnings.iter().any(|w| w.contains("trained on another base (sha256 001122334455…)")),
        "{:?}",
        view.warnings
    );
    // A folder base is hashed too (its safetensors in name order): a mismatch is a warning, never a failure.
    let view = ModelStore::default().get(&m.hf, &Device::Cpu, "cpu").unwrap().with_adapter(&ad).unwrap();
    assert!(view.warnings.iter().any(|w| w.contains("trained on another base")), "{:?}", view.warnings);
    // The matching base: no warning.
    let sha = tunebench::engine::local::file_sha256(&m.gguf).unwrap();
    std::fs::write(ad.join("tunebench.json"), format!(r#"{{"base_sha256": "{sha}"}}"#)).unwrap();
    let ad2 = m.root.join("warn2");
    std::fs::rename(&ad, &ad2).unwrap();
    let view = ModelStore::default().get(&m.gguf, &Device::Cpu, "cpu").unwrap().with_adapter(&ad2).unwrap();
    assert!(!view.warnings.iter().any(|w| w.contains("another base")));
}

#[test]
fn tensors_the_config_does_not_target_are_left_out_and_said() {
    let m = models();
    let ad = m.root.join("q-only");
    write_adapter(&ad, serde_json::json!({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}), 4, false);
    let view = ModelStore::default().get(&m.hf, &Device::Cpu, "cpu").unwrap().with_adapter(&ad).unwrap();
    assert_eq!(view.modules, tiny::LAYERS, "only q_proj of each layer");
    assert!(view.warnings.iter().any(|w| w.contains("does not target")), "{:?}", view.warnings);
    // A missing folder is named once, with what to do.
    let absent = m.root.join("absent");
    let err =
        ModelStore::default().get(&m.hf, &Device::Cpu, "cpu").unwrap().with_adapter(&absent).err().unwrap().to_string();
    assert!(err.contains("no such folder: no adapter has been trained or copied there yet"), "{err}");
    assert_eq!(err.matches(absent.to_str().unwrap()).count(), 1, "{err}");
    // Nothing that applies at all is an error, not a lane that silently runs the base.
    let ad = m.root.join("none");
    write_adapter(&ad, serde_json::json!({"r": 4, "lora_alpha": 8, "target_modules": ["nothing_proj"]}), 4, false);
    let err =
        ModelStore::default().get(&m.hf, &Device::Cpu, "cpu").unwrap().with_adapter(&ad).err().unwrap().to_string();
    assert!(err.contains("no lora_A/lora_B pair applies"), "{err}");
}

#[test]
fn switching_adapters_rereads_the_adapter_never_the_base() {
    let m = models();
    let ad = m.root.join("switch");
    write_adapter(&ad, config(4, 8.0), 4, true);
    let store = ModelStore::default();
    let base = store.get(&m.hf, &Device::Cpu, "cpu").unwrap();
    let first = base.with_adapter(&ad).unwrap();
    assert!(Arc::ptr_eq(&first, &base.with_adapter(&ad).unwrap()), "unchanged files: the same view");
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_adapter(&ad, config(4, 8.0), 4, false);
    let second = base.with_adapter(&ad).unwrap();
    assert!(!Arc::ptr_eq(&first, &second), "new weights are read on the next run");
    assert!(Arc::ptr_eq(&second.model.base, &first.model.base));
    assert!(Arc::ptr_eq(&store.get(&m.hf, &Device::Cpu, "cpu").unwrap(), &base), "the base is loaded once");
}

/// `tunebench run --json` on an adapter lane: the line it prints and the exit status.
fn run_adapter_lane(m: &Models, adapter: &Path) -> (serde_json::Value, Option<i32>) {
    let ws = m.root.join(format!("ws-{}", adapter.file_name().unwrap().to_string_lossy()));
    std::fs::create_dir_all(&ws).unwrap();
    let toml = format!(
        "name = \"t\"\n[prompts.p]\ntext = \"Be brief.\"\n[models.tiny]\npath = \"{}\"\ndevice = \"cpu\"\n\
         [[lanes]]\nid = \"tuned\"\nbackend = \"local\"\nmodel = \"tiny\"\nprompt = \"p\"\nmax_tokens = 8\nadapter = \"{}\"\n",
        m.gguf.display(),
        adapter.display()
    );
    std::fs::write(ws.join("workspace.toml"), toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(["run", ws.to_str().unwrap(), "--input", "hello", "--json"])
        .env("XDG_STATE_HOME", m.root.join("state"))
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    (serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}")), out.status.code())
}

#[test]
fn an_adapter_that_makes_logits_non_finite_fails_its_lane() {
    let m = models();
    let nan = m.root.join("nan");
    write_adapter(&nan, config(4, 8.0), 4, false);
    let mut st = candle_core::safetensors::load(nan.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let name = "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight";
    let b = st[name].to_vec2::<f32>().unwrap();
    let mut flat: Vec<f32> = b.concat();
    flat[0] = f32::NAN;
    st.insert(name.into(), Tensor::from_vec(flat, (b.len(), b[0].len()), &Device::Cpu).unwrap());
    candle_core::safetensors::save(&st, nan.join("adapter_model.safetensors")).unwrap();
    let huge = m.root.join("huge");
    write_adapter(&huge, config(4, -1e30), 4, false);
    for ad in [&nan, &huge] {
        let (v, code) = run_adapter_lane(&m, ad);
        let error = v["error"].as_str().unwrap_or_else(|| panic!("{}: no error: {v}", ad.display()));
        assert!(error.contains("the model computed non-finite values"), "{error}");
        assert_eq!((v["output"].as_str(), code), (Some(""), Some(1)), "{v}");
    }
}
