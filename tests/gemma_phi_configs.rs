//! Gemma and Phi config.json layouts beyond the fixtures' own, on copies of the family fixtures
//! (tests/fixtures/families/): the older layouts transformers 4 wrote (Gemma 3's `rope_local_base_freq` +
//! `rope_scaling`, Phi's `rope_scaling` of type `su` with a top-level `original_max_position_embeddings`) give the
//! same logits as transformers 5's; transformers' defaults for absent keys (Gemma 2's window pattern, soft-caps
//! and `query_pre_attn_scalar`) and `null` switching a soft-cap off; and what is refused by name.

mod support;

use std::path::Path;

use candle_core::Device;
use candle_core::quantized::gguf_file::Value as GgufValue;
use serde_json::{Value, json};
use support::families::{F32, Fixture, edited_hf, max_diff, teacher_forced};
use tunebench::engine::local::{Cap, LoadedModel, SoftCaps, load};

/// The fixture's hf/ folder copied to `dir` with `edit` applied to config.json, loaded with f32 weights.
fn load_edited(family: &str, dir: &Path, edit: impl Fn(&mut Value)) -> Result<LoadedModel, String> {
    let dir = &edited_hf(family, dir, edit);
    load(dir, &Device::Cpu, Some(F32)).map_err(|e| e.to_string())
}

fn remove(c: &mut Value, keys: &[&str]) {
    for k in keys {
        c.as_object_mut().unwrap().remove(*k);
    }
}

/// transformers 4's Gemma 3 layout: the global rope as `rope_theta` + `rope_scaling`, the local base as
/// `rope_local_base_freq`, the pattern as `sliding_window_pattern`; it must run as transformers 5's layout does.
#[test]
fn gemma3_older_config_layout_gives_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::open("gemma3");
    let m = load_edited("gemma3", dir.path(), |c| {
        remove(c, &["rope_parameters", "layer_types"]);
        c["rope_theta"] = json!(1_000_000.0);
        c["rope_local_base_freq"] = json!(10_000.0);
        c["rope_scaling"] = json!({"rope_type": "linear", "factor": 8.0});
        c["sliding_window_pattern"] = json!(6);
    })
    .unwrap();
    let d = max_diff(&teacher_forced(&m.plain, &fx.ids), fx.tensor("logits"));
    assert!(d <= 1e-3, "older layout differs from transformers by {d}");
    // Without the local base the local layers would rotate at 10,000 anyway (transformers' default) …
    let m = load_edited("gemma3", &dir.path().join("b"), |c| {
        remove(c, &["rope_parameters", "layer_types", "rope_local_base_freq"]);
        c["rope_theta"] = json!(1_000_000.0);
        c["rope_scaling"] = json!({"rope_type": "linear", "factor": 8.0});
    })
    .unwrap();
    assert!(max_diff(&teacher_forced(&m.plain, &fx.ids), fx.tensor("logits")) <= 1e-3);
    // … and a different local base changes the logits, so the local table is really the one read.
    let m = load_edited("gemma3", &dir.path().join("c"), |c| {
        c["rope_parameters"]["sliding_attention"]["rope_theta"] = json!(500.0);
    })
    .unwrap();
    assert!(max_diff(&teacher_forced(&m.plain, &fx.ids), fx.tensor("logits")) > 1e-2);
}

/// Gemma 2 with the keys transformers defaults left out: layers alternate sliding / full from layer 0,
/// the soft-caps are 50 and 30, `query_pre_attn_scalar` 256; `null` switches a cap off.
#[test]
fn gemma2_defaults_follow_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::open("gemma2");
    let m = load_edited("gemma2", dir.path(), |c| remove(c, &["layer_types"])).unwrap();
    let windows: Vec<_> = m.base().cfg.layer_plan.iter().map(|l| l.window).collect();
    assert_eq!(windows, [Some(8), None, Some(8), None]);
    assert!(max_diff(&teacher_forced(&m.plain, &fx.ids), fx.tensor("logits")) <= 1e-3);

    let m = load_edited("gemma2", &dir.path().join("caps"), |c| {
        remove(c, &["attn_logit_softcapping", "final_logit_softcapping", "query_pre_attn_scalar"]);
    })
    .unwrap();
    let caps = SoftCaps::Tanh { attention: Some(Cap(50.0)), logits: Some(Cap(30.0)) };
    assert_eq!(m.base().cfg.family.soft_caps, caps);
    assert!((m.base().cfg.attn_scale - 1.0 / 16.0).abs() < 1e-12, "1/√256");

    let m = load_edited("gemma2", &dir.path().join("off"), |c| {
        c["final_logit_softcapping"] = Value::Null;
        c["sliding_window"] = Value::Null;
    })
    .unwrap();
    let caps = SoftCaps::Tanh { attention: Some(Cap(50.0)), logits: None };
    assert_eq!(m.base().cfg.family.soft_caps, caps);
    assert!(m.base().cfg.layer_plan.iter().all(|l| l.window.is_none()));
}

/// The first Phi-3 128k configs: `rope_scaling` of type `su` and `original_max_position_embeddings` at the top.
#[test]
fn phi3_su_rope_scaling_is_longrope() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::open("phi3");
    let m = load_edited("phi3", dir.path(), |c| {
        let p = c["rope_parameters"].clone();
        remove(c, &["rope_parameters"]);
        c["rope_theta"] = p["rope_theta"].clone();
        c["rope_scaling"] = json!({"type": "su", "short_factor": p["short_factor"], "long_factor": p["long_factor"]});
    })
    .unwrap();
    let d = max_diff(&teacher_forced(&m.plain, &fx.ids), fx.tensor("logits"));
    assert!(d <= 1e-3, "`su` layout differs from transformers by {d}");
}

/// A window shorter than the context (Phi-3-mini-4k's 2047) applies to every layer, and the title says that
/// llama.cpp would ignore it.
#[test]
fn phi3_window_applies_to_every_layer_and_is_noted() {
    let dir = tempfile::tempdir().unwrap();
    let m = load_edited("phi3", dir.path(), |c| c["sliding_window"] = json!(6)).unwrap();
    assert!(m.base().cfg.layer_plan.iter().all(|l| l.window == Some(6)));
    assert!(m.base().format.contains("sliding window 6"), "{}", m.base().format);
}

/// A family, a case name, the config edit, and what the error must say.
type Refusal = (&'static str, &'static str, fn(&mut Value), &'static str);

/// What the decoder does not compute is refused by name, never run as something else.
#[test]
fn unsupported_gemma_and_phi_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [Refusal; 5] = [
        ("gemma3", "mm", |c| c["architectures"] = json!(["Gemma3ForConditionalGeneration"]), "multimodal"),
        ("gemma2", "act", |c| c["hidden_activation"] = json!("gelu"), "activation `gelu`"),
        ("gemma3", "bidi", |c| c["use_bidirectional_attention"] = json!(true), "use_bidirectional_attention"),
        ("phi3", "act", |c| c["hidden_act"] = json!("gelu_new"), "activation `gelu_new`"),
        ("phi3", "mrope", |c| c["rope_parameters"]["rope_type"] = json!("mrope"), "rope type `mrope`"),
    ];
    for (family, sub, edit, want) in cases {
        let err = load_edited(family, &dir.path().join(format!("{family}-{sub}")), edit).err();
        let err = err.unwrap_or_else(|| panic!("{family} {sub}: loaded"));
        assert!(err.contains(want), "{family} {sub}: {err}");
    }
}

/// Longrope picks its table by the length the sequence will reach (the KV cache's capacity): a prompt prefilled
/// in two chunks, the first within the original 16 positions, still matches transformers' one forward over all
/// 24 ids (long factors everywhere).
#[test]
fn phi3_longrope_table_holds_across_prefill_chunks() {
    let fx = Fixture::open("phi3");
    let m = load(&fx.path(support::families::Form::Safetensors), &Device::Cpu, Some(F32)).unwrap();
    let mut cache = m.plain.new_cache(fx.ids.len()).unwrap();
    let first = m.plain.forward_all(&fx.ids[..8], 0, &mut cache).unwrap();
    let rest = m.plain.forward_all(&fx.ids[8..], 8, &mut cache).unwrap();
    let got = candle_core::Tensor::cat(&[first, rest], 0).unwrap();
    let d = max_diff(&got, fx.tensor("logits"));
    assert!(d <= 1e-3, "chunked prefill differs from transformers by {d}");
}

/// The fixture's GGUF rewritten with `edit` applied to its metadata; the loaded model's windows and title.
fn gguf_edited(family: &str, dir: &Path, edit: impl Fn(&mut Vec<(String, GgufValue)>)) -> (Vec<Option<usize>>, String) {
    use candle_core::quantized::gguf_file;
    let src = Fixture::open(family).path(support::families::Form::Gguf);
    let mut f = std::fs::File::open(&src).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut metadata: Vec<(String, GgufValue)> = content.metadata.clone().into_iter().collect();
    edit(&mut metadata);
    let tensors: Vec<(String, _)> = content
        .tensor_infos
        .keys()
        .map(|name| (name.clone(), content.tensor(&mut f, name, &Device::Cpu).unwrap()))
        .collect();
    let out = dir.join(format!("{family}.gguf"));
    let md: Vec<(&str, &GgufValue)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &_)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut std::fs::File::create(&out).unwrap(), &md, &ts).unwrap();
    let m = load(&out, &Device::Cpu, Some(F32)).unwrap();
    (m.base().cfg.layer_plan.iter().map(|l| l.window).collect(), m.base().format.clone())
}

fn set(md: &mut Vec<(String, GgufValue)>, key: &str, value: Option<GgufValue>) {
    md.retain(|(k, _)| k != key);
    if let Some(v) = value {
        md.push((key.to_string(), v));
    }
}

/// GGUF windows as llama.cpp reads them: Gemma 2 defaults to 4096 on alternate layers and takes a pattern key;
/// Gemma 3 without a window key has none; Phi's window (0: none) applies to every layer, noted in the title.
#[test]
fn gguf_windows_follow_llama_cpp_keys_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = gguf_edited("gemma2", dir.path(), |md| set(md, "gemma2.attention.sliding_window", None));
    assert_eq!(w, [Some(4096), None, Some(4096), None]);
    let (w, _) = gguf_edited("gemma2", dir.path(), |md| {
        set(md, "gemma2.attention.sliding_window_pattern", Some(GgufValue::U32(4)));
    });
    assert_eq!(w, [Some(8), Some(8), Some(8), None]);
    let (w, _) = gguf_edited("gemma3", dir.path(), |md| set(md, "gemma3.attention.sliding_window", None));
    assert_eq!(w, [None; 6]);
    let (w, title) = gguf_edited("phi3", dir.path(), |md| {
        set(md, "phi3.attention.sliding_window", Some(GgufValue::U32(6)));
    });
    assert_eq!((w, title.contains("sliding window 6")), (vec![Some(6); 4], true));
    let (w, _) =
        gguf_edited("phi3", dir.path(), |md| set(md, "phi3.attention.sliding_window", Some(GgufValue::U32(0))));
    assert_eq!(w, [None; 4]);
}
