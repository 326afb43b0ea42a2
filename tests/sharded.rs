//! Sharded safetensors folders: `model.safetensors.index.json` names the files that load (a Mistral repo's
//! consolidated.safetensors beside them is not one), and a shard it names that is missing is an error.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use support::tiny;
use tunebench::engine::local::{WeightPlan, load, logits};

const IDS: [u32; 8] = [5, 77, 104, 200, 31, 260, 12, 99];

/// Splits `dir/model.safetensors` into two shards (layer 0 and the embeddings, then the rest) with an index, as
/// transformers' `save_pretrained` does for a large model; returns the weight_map.
fn shard(dir: &Path) -> BTreeMap<String, String> {
    let all = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let (mut a, mut b): (HashMap<String, Tensor>, HashMap<String, Tensor>) = (HashMap::new(), HashMap::new());
    let mut map = BTreeMap::new();
    for (name, t) in all {
        let file = if name.contains("layers.0.") || name.contains("embed") {
            "model-00001-of-00002.safetensors"
        } else {
            "model-00002-of-00002.safetensors"
        };
        map.insert(name.clone(), file.to_string());
        if file.starts_with("model-00001") {
            a.insert(name, t)
        } else {
            b.insert(name, t)
        };
    }
    candle_core::safetensors::save(&a, dir.join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, dir.join("model-00002-of-00002.safetensors")).unwrap();
    write_index(dir, &map);
    map
}

fn write_index(dir: &Path, map: &BTreeMap<String, String>) {
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

fn exact(dir: &Path) -> Tensor {
    let m = logits::load_exact(dir, &Device::Cpu).unwrap();
    logits::all_positions(&m.plain, &IDS).unwrap()
}

#[test]
fn an_index_loads_its_shards_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, hf) = tiny::write(tmp.path(), None);
    let whole = exact(&hf);
    shard(&hf);
    // Mistral's own format beside the transformers shards: not a safetensors file tunebench may read.
    std::fs::write(hf.join("consolidated.safetensors"), b"Mistral's weights under other names").unwrap();
    let sharded = exact(&hf);
    let d = (&whole - &sharded).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(d, 0.0, "the shards hold the same weights");
    // Lanes load the same files, and the folder's hash (adapter provenance) covers just those.
    let m = load(&hf, &Device::Cpu, Some(WeightPlan { decode: None, f32_prefill: true })).unwrap();
    let before = m.sha256().unwrap();
    std::fs::write(hf.join("consolidated.safetensors"), b"changed").unwrap();
    let again = load(&hf, &Device::Cpu, None).unwrap().sha256().unwrap();
    assert_eq!(before, again, "consolidated.safetensors is not part of the model");
}

/// Without an index (a one-file model), Mistral's consolidated.safetensors still does not load beside
/// model.safetensors; it is what loads only when it is the one weights file (then its names must match).
#[test]
fn without_an_index_consolidated_safetensors_does_not_load_beside_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, hf) = tiny::write(tmp.path(), None);
    let whole = exact(&hf);
    std::fs::write(hf.join("consolidated.safetensors"), b"Mistral's weights under other names").unwrap();
    assert_eq!(tunebench::engine::local::safetensors_files(&hf).unwrap(), [hf.join("model.safetensors")]);
    let d = (&whole - &exact(&hf)).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(d, 0.0);
    std::fs::remove_file(hf.join("model.safetensors")).unwrap();
    let err = load(&hf, &Device::Cpu, None).err().expect("only Mistral's file is left").to_string();
    assert!(err.contains("consolidated.safetensors"), "it is read, and its error names it: {err}");
}

#[test]
fn a_missing_or_outside_shard_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, hf) = tiny::write(tmp.path(), None);
    let mut map = shard(&hf);
    std::fs::rename(hf.join("model-00002-of-00002.safetensors"), tmp.path().join("elsewhere.safetensors")).unwrap();
    let err = load(&hf, &Device::Cpu, None).err().expect("a shard is missing").to_string();
    assert!(
        err.contains("model.safetensors.index.json")
            && err.contains("`model-00002-of-00002.safetensors`")
            && err.contains("missing"),
        "{err}"
    );

    for v in map.values_mut().filter(|v| v.starts_with("model-00002")) {
        *v = "../elsewhere.safetensors".into();
    }
    write_index(&hf, &map);
    let err = load(&hf, &Device::Cpu, None).err().expect("a shard outside the folder").to_string();
    assert!(err.contains("`../elsewhere.safetensors`") && err.contains("not a file name in this folder"), "{err}");

    write_index(&hf, &BTreeMap::new());
    let err = load(&hf, &Device::Cpu, None).err().expect("an empty index").to_string();
    assert!(err.contains("weight_map names no files"), "{err}");
}
