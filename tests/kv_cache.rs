//! The CPU engine's KV cache element (`kv_cache` under `[models.NAME]`): an f16 cache is half the bytes and
//! keeps the logits near the f32 cache's, and a lane on such a model runs and names it.

mod support;

use std::sync::Arc;
use std::time::Duration;

use candle_core::{D, Device};
use support::tiny;
use tokio::sync::mpsc;
use tunebench::engine::local::{LocalBackend, ModelStore};
use tunebench::engine::{Engine, EventKind, Registry, RunRequest};
use tunebench::workspace::{self, BackendKind, KvCacheType};

#[test]
fn an_f16_cache_is_half_the_bytes_and_keeps_the_logits_near_the_f32_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = tiny::write(dir.path(), None);
    let m = ModelStore::default().get(&gguf, &Device::Cpu, "cpu").unwrap();
    let d = &m.plain;
    assert!(d.holds_kv(KvCacheType::F16), "the host engine holds an f16 cache");
    let mut c32 = d.new_cache_of(80, KvCacheType::F32).unwrap();
    let mut c16 = d.new_cache_of(80, KvCacheType::F16).unwrap();
    assert_eq!(2 * c16.bytes(), c32.bytes());
    // A prompt, then tokens one at a time: the logits after each, both caches.
    let prompt: Vec<u32> = (3..43).collect();
    let mut l32 = d.forward_last(&prompt, 0, &mut c32).unwrap();
    let mut l16 = d.forward_last(&prompt, 0, &mut c16).unwrap();
    for (step, next) in (50..60u32).enumerate() {
        let (a, b): (Vec<f32>, Vec<f32>) = (l32.to_vec1().unwrap(), l16.to_vec1().unwrap());
        let range = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst <= 1e-2 * range, "step {step}: logits {worst} apart (range {range})");
        assert!(worst > 0.0 || step == 0, "step {step}: an f16 cache rounds keys and values");
        let top = |l: &candle_core::Tensor| l.argmax(D::Minus1).unwrap().to_scalar::<u32>().unwrap();
        assert_eq!(top(&l32), top(&l16), "step {step}");
        let pos = prompt.len() + step;
        l32 = d.forward_last(&[next], pos, &mut c32).unwrap();
        l16 = d.forward_last(&[next], pos, &mut c16).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lane_on_an_f16_cache_runs_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = tiny::write(dir.path(), None);
    let root = dir.path().join("ws");
    std::fs::create_dir_all(&root).unwrap();
    let toml = format!(
        "name = \"kv\"\n[prompts.p]\ntext = \"Be brief.\"\n[models.tiny]\npath = \"{}\"\ndevice = \"cpu\"\nkv_cache = \"f16\"\n\
         [[lanes]]\nid = \"a\"\nbackend = \"local\"\nmodel = \"tiny\"\nprompt = \"p\"\nmax_tokens = 12\n",
        gguf.display()
    );
    std::fs::write(root.join("workspace.toml"), toml).unwrap();
    let ws = workspace::load(&root).unwrap();
    assert_eq!(ws.models["tiny"].kv_cache, KvCacheType::F16);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(Registry::default().with(BackendKind::Local, Arc::new(LocalBackend::new())), tx);
    engine.start(0, 1, RunRequest::for_lane(&ws, 0, "hello world").unwrap());
    drop(engine);
    let (mut info, mut done) = (None, false);
    while !done {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.unwrap().unwrap();
        match ev.kind {
            EventKind::Info { detail } => info = Some(detail),
            EventKind::Done { usage, .. } => {
                assert!(usage.completion_tokens.is_some_and(|n| n > 0), "{usage:?}");
                done = true;
            }
            EventKind::Failed { error, .. } => panic!("the lane failed: {error}"),
            EventKind::Warning { text } => panic!("no warning on the CPU engine: {text}"),
            _ => {}
        }
    }
    let info = info.expect("an info line");
    assert!(info.contains("KV f16"), "{info}");
}
