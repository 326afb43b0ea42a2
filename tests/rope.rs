//! Rope settings read from config.json, in both layouts transformers writes (`rope_parameters`, and the older
//! `rope_theta` + `rope_scaling`), and from a GGUF's `rope.scaling.*` keys, give transformers' inverse frequencies
//! and attention factor (tests/fixtures/rope/transformers.json) and whole-model logits
//! (tests/fixtures/rope/scaled_logits.safetensors), both written by scripts/rope-reference/; a rope type the
//! decoder does not compute is refused by name.

mod support;

use std::path::Path;

use candle_core::Device;
use candle_core::quantized::{QTensor, gguf_file};
use serde_json::{Value, json};
use support::families::edited_hf;
use tunebench::engine::local::{LoadedModel, RopeSpec, WeightPlan, load};

/// `family`'s fixture folder with `edit` applied to its config.json, loaded with f32 weights.
fn hf_with(family: &str, dir: &Path, edit: impl Fn(&mut Value)) -> Result<LoadedModel, String> {
    let dir = &edited_hf(family, dir, edit);
    load(dir, &Device::Cpu, Some(F32)).map_err(|e| e.to_string())
}

/// The llama3 fixture's folder (16-wide heads, 256 positions, as the reference's) with `edit` applied to its
/// config.json: its first rope spec.
fn rope_of(dir: &Path, edit: impl Fn(&mut Value)) -> Result<RopeSpec, String> {
    Ok(hf_with("llama3", dir, edit)?.base().cfg.ropes[0].clone())
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families")
}

const F32: WeightPlan = WeightPlan { decode: None, f32_prefill: true };

fn reference() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rope/transformers.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_matches(name: &str, got: &RopeSpec, want: &Value) {
    let inv: Vec<f32> = want["inv_freq"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let have = got.inv_freq();
    assert_eq!(have.len(), inv.len(), "{name}: frequencies");
    for (i, (h, w)) in have.iter().zip(&inv).enumerate() {
        assert!((h - w).abs() <= 1e-6 * w.abs().max(1e-3), "{name}: inv_freq[{i}] {h} vs transformers {w}");
    }
    let att = want["attention_factor"].as_f64().unwrap() as f32;
    assert!((got.attention_factor - att).abs() < 1e-6, "{name}: attention factor {} vs {att}", got.attention_factor);
}

#[test]
fn rope_parameters_give_transformers_frequencies() {
    let dir = tempfile::tempdir().unwrap();
    let reference = reference();
    let cases = reference["cases"].as_object().unwrap();
    assert!(cases.len() >= 5);
    for (name, case) in cases {
        let params = case["rope_parameters"].clone();
        let got = rope_of(&dir.path().join(name), |c| c["rope_parameters"] = params.clone()).unwrap();
        assert_matches(name, &got, case);
    }
}

/// transformers 4's layout: `rope_theta` beside a `rope_scaling` dict (with `type` or `rope_type`).
#[test]
fn rope_theta_and_rope_scaling_are_read_too() {
    let dir = tempfile::tempdir().unwrap();
    let reference = reference();
    for (name, key) in [("llama3", "rope_type"), ("linear", "type"), ("yarn", "rope_type")] {
        let case = &reference["cases"][name];
        let mut scaling = case["rope_parameters"].clone();
        let theta = scaling.as_object_mut().unwrap().remove("rope_theta").unwrap();
        let kind = scaling.as_object_mut().unwrap().remove("rope_type").unwrap();
        scaling[key] = kind;
        let got = rope_of(&dir.path().join(name), |c| {
            c.as_object_mut().unwrap().remove("rope_parameters");
            c["rope_theta"] = theta.clone();
            c["rope_scaling"] = scaling.clone();
        })
        .unwrap();
        assert_matches(name, &got, case);
    }
}

#[test]
fn unknown_rope_types_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = rope_of(dir.path(), |c| {
        c["rope_parameters"] =
            json!({"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0], "long_factor": [1.0]})
    })
    .unwrap_err();
    assert!(err.contains("unsupported rope type `longrope`") && err.contains("config.json"), "{err}");
    let err = rope_of(&dir.path().join("b"), |c| c["rope_parameters"] = json!({"rope_type": "llama3", "factor": 8.0}))
        .unwrap_err();
    assert!(err.contains("rope_parameters.low_freq_factor") && err.contains("missing"), "{err}");
}

/// `family`'s fixture GGUF with `extra` metadata, loaded with f32 weights.
fn gguf_with(family: &str, dir: &Path, extra: &[(&str, gguf_file::Value)]) -> Result<LoadedModel, String> {
    let src = fixtures().join(family).join("model.gguf");
    let mut file = std::fs::File::open(&src).unwrap();
    let ct = gguf_file::Content::read(&mut file).unwrap();
    let mut metadata = ct.metadata.clone();
    for (k, v) in extra {
        metadata.insert(k.to_string(), v.clone());
    }
    let tensors: Vec<(String, QTensor)> =
        ct.tensor_infos.keys().map(|n| (n.clone(), ct.tensor(&mut file, n, &Device::Cpu).unwrap())).collect();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("model.gguf");
    let md: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut std::fs::File::create(&path).unwrap(), &md, &ts).unwrap();
    load(&path, &Device::Cpu, Some(F32)).map_err(|e| e.to_string())
}

/// The qwen2 fixture's GGUF (rope base 10^6, 16-wide heads: the reference's yarn case) with `extra` metadata.
fn gguf_rope_of(dir: &Path, extra: &[(&str, gguf_file::Value)]) -> Result<RopeSpec, String> {
    Ok(gguf_with("qwen2", dir, extra)?.base().cfg.ropes[0].clone())
}

/// A GGUF's YaRN keys (as llama.cpp's converter writes them) give transformers' frequencies and attention
/// factor for the same settings; an extrapolation factor other than 1 and an unknown scaling are refused.
#[test]
fn gguf_yarn_keys_give_transformers_frequencies() {
    use gguf_file::Value as V;
    let dir = tempfile::tempdir().unwrap();
    let reference = reference();
    let yarn = [
        ("qwen2.rope.scaling.type", V::String("yarn".into())),
        ("qwen2.rope.scaling.factor", V::F32(4.0)),
        ("qwen2.rope.scaling.original_context_length", V::U32(32)),
    ];
    let got = gguf_rope_of(&dir.path().join("yarn"), &yarn).unwrap();
    assert_matches("gguf yarn", &got, &reference["cases"]["yarn"]);
    let mut ext = yarn.to_vec();
    ext.push(("qwen2.rope.scaling.yarn_ext_factor", V::F32(0.5)));
    let err = gguf_rope_of(&dir.path().join("ext"), &ext).unwrap_err();
    assert!(err.contains("qwen2.rope.scaling.yarn_ext_factor"), "{err}");
    let err =
        gguf_rope_of(&dir.path().join("lr"), &[("qwen2.rope.scaling.type", V::String("longrope".into()))]).unwrap_err();
    assert!(err.contains("unsupported rope scaling `longrope` (qwen2.rope.scaling.type"), "{err}");
}

/// Logits of whole models run with a scaling: transformers' (tests/fixtures/rope/scaled_logits.safetensors, by
/// scripts/rope-reference/scaled_logits.py) against tunebench's from config.json and from the GGUF carrying
/// llama.cpp's keys for the same scaling, at every position within 1e-3.
#[test]
fn scaled_models_give_transformers_logits() {
    use gguf_file::Value as V;
    let dir = tempfile::tempdir().unwrap();
    let expected = candle_core::safetensors::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rope/scaled_logits.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    // (case, family fixture, config.json rope_parameters, GGUF keys)
    type Case<'a> = (&'a str, &'a str, Value, Vec<(&'a str, V)>);
    let cases: [Case; 2] = [
        (
            "qwen2_yarn",
            "qwen2",
            json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "rope_theta": 1000000.0}),
            vec![
                ("qwen2.rope.scaling.type", V::String("yarn".into())),
                ("qwen2.rope.scaling.factor", V::F32(4.0)),
                ("qwen2.rope.scaling.original_context_length", V::U32(64)),
            ],
        ),
        (
            "llama2_linear",
            "llama2",
            json!({"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}),
            vec![("llama.rope.scaling.type", V::String("linear".into())), ("llama.rope.scaling.factor", V::F32(4.0))],
        ),
    ];
    for (case, family, params, keys) in cases {
        let fx =
            candle_core::safetensors::load(fixtures().join(family).join("expected.safetensors"), &Device::Cpu).unwrap();
        let ids: Vec<u32> = fx["ids"].to_vec1::<i64>().unwrap().into_iter().map(|i| i as u32).collect();
        let want = &expected[&format!("{case}.logits")];
        let hf = hf_with(family, &dir.path().join(case).join("hf"), |c| c["rope_parameters"] = params.clone()).unwrap();
        let gguf = gguf_with(family, &dir.path().join(case), &keys).unwrap();
        for (form, m) in [("config.json", &hf), ("GGUF", &gguf)] {
            let got = m.plain.forward_all(&ids, 0, &mut m.plain.new_cache(ids.len()).unwrap()).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff <= 1e-3, "{case} from {form}: logits differ from transformers by {diff}");
        }
    }
}
