//! Which models the loader takes: architectures it does not run, mixture-of-experts and multimodal models are
//! refused by name, and a config.json without `architectures` is read by its `model_type` (tiny written models).

mod support;

use candle_core::Device;
use support::tiny;
use tunebench::engine::local::ModelStore;

#[test]
fn other_architectures_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, hf) = tiny::write_with(dir.path(), &tiny::Options { arch: "falcon", ..Default::default() });
    let store = ModelStore::default();
    let err = store.get(&gguf, &Device::Cpu, "cpu").err().unwrap().to_string();
    assert!(err.contains("unsupported model architecture `falcon`"), "{err}");
    let err = store.get(&hf, &Device::Cpu, "cpu").err().unwrap().to_string();
    assert!(err.contains("unsupported model architecture `FalconForCausalLM`"), "{err}");
}

/// Mixture-of-experts and multimodal models are refused by name, whether config.json says so by its class, by
/// `model_type` alone, or by an expert count; a GGUF by its architecture.
#[test]
fn moe_and_multimodal_models_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let moe = dir.path().join("moe");
    std::fs::create_dir_all(&moe).unwrap();
    let (gguf, _) = tiny::write_with(&moe, &tiny::Options { arch: "qwen2moe", ..Default::default() });
    let store = ModelStore::default();
    let err = store.get(&gguf, &Device::Cpu, "cpu").err().unwrap().to_string();
    assert!(err.contains("mixture-of-experts model architecture `qwen2moe`"), "{err}");
    let (_, hf) = tiny::write(dir.path(), None);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: [(&str, Edit); 4] = [
        (
            "mixture-of-experts model `MixtralForCausalLM`",
            Box::new(|c| c["architectures"] = serde_json::json!(["MixtralForCausalLM"])),
        ),
        ("num_local_experts = 8", Box::new(|c| c["num_local_experts"] = 8.into())),
        (
            "multimodal model `LlavaForConditionalGeneration`",
            Box::new(|c| c["architectures"] = serde_json::json!(["LlavaForConditionalGeneration"])),
        ),
        ("has `vision_config`", Box::new(|c| c["vision_config"] = serde_json::json!({"hidden_size": 8}))),
    ];
    for (want, edit) in cases {
        let mut c = config.clone();
        edit(&mut c);
        std::fs::write(hf.join("config.json"), c.to_string()).unwrap();
        let err = ModelStore::default().get(&hf, &Device::Cpu, "cpu").err().unwrap().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// transformers falls back to `model_type` when config.json has no `architectures`; so does the loader.
#[test]
fn config_without_architectures_falls_back_to_model_type() {
    let dir = tempfile::tempdir().unwrap();
    let (_, hf) = tiny::write(dir.path(), None);
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    c.as_object_mut().unwrap().remove("architectures");
    c["model_type"] = "llama".into();
    std::fs::write(hf.join("config.json"), c.to_string()).unwrap();
    let m = ModelStore::default().get(&hf, &Device::Cpu, "cpu").unwrap();
    assert_eq!(m.base().cfg.family.name, "llama");
    c["model_type"] = "gpt_neox".into();
    std::fs::write(hf.join("config.json"), c.to_string()).unwrap();
    let err = ModelStore::default().get(&hf, &Device::Cpu, "cpu").err().unwrap().to_string();
    assert!(err.contains("unsupported model architecture `gpt_neox`") && err.contains("model_type"), "{err}");
}
