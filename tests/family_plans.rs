//! Per-layer plans read from each family's files: which layers slide (Qwen2's `use_sliding_window`,
//! `max_window_layers` and `layer_types`; Mistral's window, absent from its GGUF), which skip rope (SmolLM3's
//! `no_rope_layers` or `no_rope_layer_interval`), on the family fixtures of tests/fixtures/families/.

mod support;

use std::path::Path;

use candle_core::Device;
use serde_json::Value;
use support::families::{Form, edited_hf};
use tunebench::engine::local::{LayerPlan, load};

/// The fixture's hf/ folder copied with `edit` applied to config.json; the loaded model's layer plan.
fn plan_of(family: &str, dir: &Path, edit: impl Fn(&mut Value)) -> Result<Vec<LayerPlan>, String> {
    let dir = &edited_hf(family, dir, edit);
    let m = load(dir, &Device::Cpu, None).map_err(|e| e.to_string())?;
    Ok(m.base().cfg.layer_plan.clone())
}

fn windows(plan: &[LayerPlan]) -> Vec<Option<usize>> {
    plan.iter().map(|l| l.window).collect()
}

/// Qwen2's `sliding_window` applies only with `use_sliding_window`, from `max_window_layers` on, or where
/// `layer_types` says `sliding_attention`.
#[test]
fn qwen2_slides_only_where_its_config_says() {
    let dir = tempfile::tempdir().unwrap();
    let off = plan_of("qwen2", &dir.path().join("off"), |c| c["sliding_window"] = 4.into()).unwrap();
    assert_eq!(windows(&off), [None; 4]);
    let from = plan_of("qwen2", &dir.path().join("from"), |c| {
        c["use_sliding_window"] = true.into();
        c["sliding_window"] = 4.into();
        c["max_window_layers"] = 2.into();
        c.as_object_mut().unwrap().remove("layer_types");
    })
    .unwrap();
    assert_eq!(windows(&from), [None, None, Some(4), Some(4)]);
    let typed = plan_of("qwen2", &dir.path().join("typed"), |c| {
        c["use_sliding_window"] = true.into();
        c["sliding_window"] = 4.into();
        c["layer_types"] =
            serde_json::json!(["sliding_attention", "full_attention", "sliding_attention", "full_attention"]);
    })
    .unwrap();
    assert_eq!(windows(&typed), [Some(4), None, Some(4), None]);
    let err = plan_of("qwen2", &dir.path().join("bad"), |c| {
        c["use_sliding_window"] = true.into();
        c["sliding_window"] = 4.into();
        c["layer_types"] = serde_json::json!(["full_attention"]);
    })
    .unwrap_err();
    assert!(err.contains("`layer_types` has 1 entries for 4 layers"), "{err}");
}

/// SmolLM3 skips rope where `no_rope_layers` is 0, or every `no_rope_layer_interval`-th layer without it; its
/// GGUF uses llama.cpp's fixed interval of 4.
#[test]
fn smollm3_skips_rope_where_its_files_say() {
    let dir = tempfile::tempdir().unwrap();
    let ropes = |p: &[LayerPlan]| p.iter().map(|l| l.rope.is_some()).collect::<Vec<_>>();
    let listed = plan_of("smollm3", &dir.path().join("listed"), |_| {}).unwrap();
    assert_eq!(ropes(&listed), [true, true, true, false]);
    let every2 = plan_of("smollm3", &dir.path().join("every2"), |c| {
        c.as_object_mut().unwrap().remove("no_rope_layers");
        c["no_rope_layer_interval"] = 2.into();
    })
    .unwrap();
    assert_eq!(ropes(&every2), [true, false, true, false]);
    // With `use_sliding_window`, transformers slides the no-rope layers only (or what `layer_types` says).
    let slid = plan_of("smollm3", &dir.path().join("slid"), |c| {
        c["use_sliding_window"] = true.into();
        c["sliding_window"] = 4.into();
        c.as_object_mut().unwrap().remove("layer_types");
    })
    .unwrap();
    assert_eq!(windows(&slid), [None, None, None, Some(4)]);
    let fx = support::families::Fixture::open("smollm3");
    let gguf = support::families::load_form(&fx, Form::Gguf);
    assert_eq!(ropes(&gguf.base().cfg.layer_plan), [true, true, true, false]);
}

/// A Mistral GGUF records no sliding window, so it runs attending to every token (as llama.cpp does) and the
/// pane title's format says so; its safetensors folder keeps the window.
#[test]
fn a_mistral_gguf_says_it_attends_to_all_tokens() {
    use candle_core::quantized::gguf_file;
    let fx = support::families::Fixture::open("mistral");
    let src = fx.path(Form::Gguf);
    let mut file = std::fs::File::open(&src).unwrap();
    let ct = gguf_file::Content::read(&mut file).unwrap();
    let mut metadata = ct.metadata.clone();
    metadata.insert("general.name".into(), gguf_file::Value::String("Mistral 7B Instruct v0.1".into()));
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = ct
        .tensor_infos
        .keys()
        .map(|n| (n.clone(), ct.tensor(&mut file, n, &candle_core::Device::Cpu).unwrap()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("mistral.gguf");
    let md: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &candle_core::quantized::QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut std::fs::File::create(&renamed).unwrap(), &md, &ts).unwrap();
    let note = "GGUF records no sliding window: attends to all tokens";
    let gguf = load(&renamed, &Device::Cpu, None).unwrap();
    assert!(gguf.base().format.contains(note), "{}", gguf.base().format);
    assert!(gguf.base().cfg.layer_plan.iter().all(|l| l.window.is_none()));
    // MistralConfig's defaults: 4096 when config.json names no window, none when it is null.
    let absent = plan_of("mistral", &dir.path().join("absent"), |c| {
        c.as_object_mut().unwrap().remove("sliding_window");
    })
    .unwrap();
    assert_eq!(windows(&absent), [Some(4096); 4]);
    let null = plan_of("mistral", &dir.path().join("null"), |c| c["sliding_window"] = Value::Null).unwrap();
    assert_eq!(windows(&null), [None; 4]);
    let hf = support::families::load_form(&fx, Form::Safetensors);
    assert!(!hf.base().format.contains(note), "{}", hf.base().format);
    assert!(hf.base().cfg.layer_plan.iter().all(|l| l.window == Some(8)), "{:?}", hf.base().cfg.layer_plan);
}

/// Qwen3Config's head_dim defaults to 128 (not hidden_size / heads) when config.json leaves it out: the fixture's
/// 32-wide heads then no longer fit, and the error names the tensor and both shapes.
#[test]
fn qwen3_head_dim_defaults_as_transformers_does() {
    let dir = tempfile::tempdir().unwrap();
    let err = plan_of("qwen3", dir.path(), |c| {
        c.as_object_mut().unwrap().remove("head_dim");
    })
    .unwrap_err();
    assert!(err.contains("invalid model shape") && err.contains("is [32] but the metadata implies [128]"), "{err}");
}
