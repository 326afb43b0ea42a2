//! The local bench's random-weights GGUF writer (benches/local/random_gguf.rs), at a tiny shape: the files it
//! writes load as qwen2 models with the shape asked for and run, and its cache reuses a file only for the
//! same content. Compiled with the bench's own source, so the bench cannot rot unseen.

#[path = "../benches/local/random_gguf.rs"]
mod random_gguf;

use candle_core::Device;
use candle_core::quantized::{GgmlDType, gguf_file};
use random_gguf::{QWEN25_05B, Shape, TINY};
use tunebench::engine::local::{WeightPlan, load};

#[test]
fn the_bench_shape_is_qwen2_5_0_5b() {
    // Qwen2.5-0.5B: 0.49B parameters on its model card; its config.json shapes give 494,032,768.
    assert_eq!(QWEN25_05B.params(), 494_032_768);
    assert_eq!(QWEN25_05B.head_dim(), 64);
}

#[test]
fn written_files_load_as_the_shape_and_run() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
        let (path, wrote) = TINY.cached(dtype, dir.path()).unwrap();
        assert!(wrote);
        let mut f = std::fs::File::open(&path).unwrap();
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let count: usize = ct.tensor_infos.values().map(|t| t.shape.elem_count()).sum();
        assert_eq!(count, TINY.params(), "{dtype:?}: weights in the file");
        assert_eq!(ct.tensor_infos["blk.1.ffn_down.weight"].ggml_dtype, dtype);
        assert_eq!(ct.tensor_infos["token_embd.weight"].ggml_dtype, dtype);
        assert_eq!(ct.tensor_infos["blk.0.attn_k.bias"].ggml_dtype, GgmlDType::F32);
        assert!(!ct.tensor_infos.contains_key("output.weight"), "the head is tied");

        for plan in [None, Some(WeightPlan { decode: None, f32_prefill: false })] {
            let m = load(&path, &Device::Cpu, plan).unwrap_or_else(|e| panic!("{dtype:?} {plan:?}: {e}"));
            let base = m.base();
            let c = &base.cfg;
            assert_eq!(c.family.name, "qwen2");
            assert_eq!(
                (c.vocab, c.hidden, c.layers, c.heads, c.kv_heads, c.head_dim),
                (TINY.vocab, TINY.hidden, TINY.layers, TINY.heads, TINY.kv_heads, TINY.hidden / TINY.heads)
            );
            assert_eq!(c.ropes[0].base, TINY.rope_theta);
            assert!(base.tied_head);
            let biased: Vec<bool> = base.layers[0].linears.iter().map(|l| l.bias.is_some()).collect();
            assert_eq!(biased, [true, true, true, false, false, false, false], "q, k, v carry biases");
            assert_eq!(m.tokenizer.token_id("<|im_end|>"), Some(TINY.first_special as u32 + 2));
            assert_eq!(m.tokenizer.vocab.eos, Some(TINY.first_special as u32 + 2));

            let ids: Vec<u32> = (0..12).map(|i| i * 23 % TINY.vocab as u32).collect();
            let mut cache = m.plain.new_cache(16).unwrap();
            let logits = m.plain.forward_last(&ids, 0, &mut cache).unwrap();
            let v: Vec<f32> = logits.to_vec1().unwrap();
            assert_eq!(v.len(), TINY.vocab);
            assert!(v.iter().all(|x| x.is_finite()));
            let spread = v.iter().cloned().fold(f32::MIN, f32::max) - v.iter().cloned().fold(f32::MAX, f32::min);
            assert!(spread > 1e-3, "random weights give distinct logits (spread {spread})");
        }
    }
}

#[test]
fn the_cache_reuses_a_file_only_for_the_same_content() {
    let dir = tempfile::tempdir().unwrap();
    let (q8, wrote) = TINY.cached(GgmlDType::Q8_0, dir.path()).unwrap();
    assert!(wrote, "an empty cache writes the file");
    let written = std::fs::metadata(&q8).unwrap().modified().unwrap();
    let bytes = std::fs::read(&q8).unwrap();
    assert_eq!(TINY.cached(GgmlDType::Q8_0, dir.path()).unwrap(), (q8.clone(), false), "the second call reads it");
    assert_eq!(std::fs::metadata(&q8).unwrap().modified().unwrap(), written);

    // Deterministic: a fresh write is the same file, byte for byte.
    let again = dir.path().join("again.gguf");
    TINY.write(GgmlDType::Q8_0, &again).unwrap();
    assert!(std::fs::read(&again).unwrap() == bytes, "the generator is deterministic");

    let (q4, _) = TINY.cached(GgmlDType::Q4_0, dir.path()).unwrap();
    let (wider, _) = Shape { ffn: 256, ..TINY }.cached(GgmlDType::Q8_0, dir.path()).unwrap();
    assert_ne!(q4, q8);
    assert_ne!(wider, q8);
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    assert!(names.iter().all(|n| n.ends_with(".gguf")), "no temporary file left: {names:?}");
    assert_eq!(names.len(), 4);
}
