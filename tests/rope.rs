//! Rope settings read from config.json, in both layouts transformers writes (`rope_parameters`, and the older
//! `rope_theta` + `rope_scaling`), give transformers' inverse frequencies and attention factor
//! (tests/fixtures/rope/transformers.json, written by scripts/rope-reference/rope_reference.py); a rope type the
//! decoder does not compute is refused by name.

use std::path::Path;

use candle_core::Device;
use serde_json::{Value, json};
use tunebench::engine::local::{RopeSpec, load};

/// The llama3 fixture's folder with `edit` applied to its config.json, loaded; its first rope spec.
fn rope_of(dir: &Path, edit: impl Fn(&mut Value)) -> Result<RopeSpec, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families/llama3/hf");
    std::fs::create_dir_all(dir).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let m = load(dir, &Device::Cpu, None).map_err(|e| e.to_string())?;
    Ok(m.base().cfg.ropes[0].clone())
}

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
