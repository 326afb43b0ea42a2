//! Adapters trained by tunebench on each family, kept for PEFT: a short training run per family and form (the
//! harness's checks: the loss falls, the written adapter reloads to the trained logits), then the served logits
//! of the fixture's ids with that adapter are written beside it (`tunebench_logits.safetensors`). With
//! `TUNEBENCH_PEFT_DIR` set, the adapters stay there for scripts/peft-reload/peft_reload.py, which loads each
//! into PEFT on the family's hf/ model and compares PEFT's logits with tunebench's.

mod support;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use support::families::{Fixture, Form, check_training, load_form, teacher_forced};

const FAMILIES: [&str; 6] = ["llama2", "llama3", "mistral", "qwen2", "qwen3", "smollm3"];

#[test]
fn trained_adapters_are_written_in_peft_form_with_their_logits() {
    let temp = tempfile::tempdir().unwrap();
    let root = std::env::var_os("TUNEBENCH_PEFT_DIR").map_or_else(|| temp.path().to_path_buf(), PathBuf::from);
    for family in FAMILIES {
        let fx = Fixture::open(family);
        for (form, sub) in [(Form::Gguf, "gguf"), (Form::Safetensors, "hf")] {
            let out = root.join(family).join(sub);
            check_training(family, form, &out);
            let m = load_form(&fx, form);
            let view = m.with_adapter(&out).unwrap();
            let logits = teacher_forced(&view.model, &fx.ids);
            let ids: Vec<i64> = fx.ids.iter().map(|&i| i64::from(i)).collect();
            let ids = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap();
            let file = out.join("tunebench_logits.safetensors");
            candle_core::safetensors::save(&[("ids", ids), ("logits", logits)].into_iter().collect(), &file).unwrap();
            // What PEFT will read: the family's module names, in Hugging Face's q/k row order.
            let config: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap()).unwrap();
            let mut targets: Vec<String> =
                config["target_modules"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
            targets.sort();
            assert_eq!(targets, fx.modules(), "{family} {form:?}: target modules");
        }
    }
}
