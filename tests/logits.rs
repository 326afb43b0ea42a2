//! `tunebench logits` on the tiny model the tests write: JSON lines and safetensors output agree with the
//! decoder, GGUF with safetensors, the adapter applies, bad input is refused naming the flag; and on the real
//! SmolLM2 GGUF (when present) every position's logits match transformers within 1e-3.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use support::tiny;
use tunebench::engine::local::{WeightPlan, load, logits};

const IDS: [u32; 10] = [5, 77, 104, 200, 31, 260, 12, 99, 150, 3];

fn tunebench(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tunebench")).args(args).output().unwrap()
}

fn csv(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

/// The decoder's own logits at every position (f32 file weights, the plain plan), as the reference.
fn reference(model: &Path, ids: &[u32]) -> Tensor {
    let m = load(model, &Device::Cpu, Some(WeightPlan { decode: None, f32_prefill: true })).unwrap();
    let mut cache = m.plain.new_cache(ids.len()).unwrap();
    m.plain.forward_all(ids, 0, &mut cache).unwrap()
}

fn read_out(path: &Path) -> (Tensor, Vec<i64>) {
    let t = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    assert_eq!(t.len(), 2, "exactly `logits` and `ids`: {:?}", t.keys());
    assert_eq!(t["logits"].dtype(), DType::F32);
    assert_eq!(t["ids"].dtype(), DType::I64);
    (t["logits"].clone(), t["ids"].to_vec1().unwrap())
}

fn tiny_model() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, hf) = tiny::write(dir.path(), None);
    (dir, gguf, hf)
}

#[test]
fn json_lines_list_each_positions_top_k_of_the_decoders_logits() {
    let (_dir, gguf, _) = tiny_model();
    let out =
        tunebench(&["logits", "--model", gguf.to_str().unwrap(), "--ids", &csv(&IDS), "--top", "3", "--device", "cpu"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = reference(&gguf, &IDS).to_vec2::<f32>().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), IDS.len(), "one line per position");
    for (pos, line) in lines.iter().enumerate() {
        assert!(line.starts_with(&format!("{{\"pos\":{pos},\"id\":{},\"top\":[", IDS[pos])), "{line}");
        let v: Value = serde_json::from_str(line).unwrap();
        let top = v["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let mut order: Vec<usize> = (0..want[pos].len()).collect();
        order.sort_by(|&a, &b| want[pos][b].total_cmp(&want[pos][a]));
        for (k, pair) in top.iter().enumerate() {
            let (id, logit) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap() as f32);
            assert_eq!(id, order[k], "position {pos}: rank {k}");
            assert!((logit - want[pos][id]).abs() < 1e-4, "position {pos}: {logit} vs {}", want[pos][id]);
        }
    }
}

#[test]
fn out_writes_every_logit_and_the_ids_and_gguf_equals_safetensors() {
    let (dir, gguf, hf) = tiny_model();
    let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
    for (model, out) in [(&gguf, &a), (&hf, &b)] {
        let o = tunebench(&[
            "logits",
            "--model",
            model.to_str().unwrap(),
            "--ids",
            &csv(&IDS),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stdout.is_empty(), "--out prints nothing");
    }
    let (la, ia) = read_out(&a);
    let (lb, ib) = read_out(&b);
    let vocab = tiny::vocab().0.len();
    assert_eq!(la.dims(), [IDS.len(), vocab], "[n, vocab]");
    assert_eq!(ia, IDS.map(i64::from));
    assert_eq!(ia, ib);
    assert!(max_diff(&la, &reference(&gguf, &IDS)) < 1e-4);
    // Same weights, two layouts (llama.cpp's permuted q/k rows vs Hugging Face's halves).
    let d = max_diff(&la, &lb);
    assert!(d < 1e-4, "GGUF and safetensors differ by {d}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "the write is atomic and leaves no temporary file");
}

#[test]
fn text_is_tokenized_without_specials_and_an_adapter_applies() {
    let (dir, gguf, _) = tiny_model();
    let text = "hello<|im_end|> world";
    let tok = tunebench::engine::local::tokenizer::Tokenizer::open(&gguf).unwrap();
    let ids = tok.encode(text, false).unwrap();
    let im_end = tok.token_id("<|im_end|>").unwrap();
    assert!(!ids.contains(&im_end), "the marker is text, not a control token");
    let out = dir.path().join("t.safetensors");
    let o = tunebench(&["logits", "--model", gguf.to_str().unwrap(), "--text", text, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (plain, got_ids) = read_out(&out);
    assert_eq!(got_ids, ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(), "no BOS added");

    let adapter = dir.path().join("adapter");
    write_adapter(&adapter);
    let o = tunebench(&[
        "logits",
        "--model",
        gguf.to_str().unwrap(),
        "--text",
        text,
        "--adapter",
        adapter.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning") && err.contains("match no layer"), "what is not applied is said: {err}");
    let (tuned, _) = read_out(&out);
    let m = logits::load_exact(&gguf, &Device::Cpu).unwrap();
    let view = m.with_adapter(&adapter).unwrap();
    let want = logits::all_positions(&view.model, &ids).unwrap();
    assert!(max_diff(&tuned, &want) < 1e-5, "the adapter's view of the model");
    assert!(max_diff(&tuned, &plain) > 1e-2, "the adapter changes the logits");
}

/// NaN has no JSON form and would mislead any comparison: an adapter that holds it is refused, naming why.
#[test]
fn non_finite_logits_are_refused() {
    let (dir, gguf, _) = tiny_model();
    let adapter = dir.path().join("nan");
    write_adapter(&adapter);
    let file = adapter.join("adapter_model.safetensors");
    let mut t = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let name = "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight";
    let nan = Tensor::full(f32::NAN, t[name].dims(), &Device::Cpu).unwrap();
    t.insert(name.to_string(), nan);
    candle_core::safetensors::save(&t, &file).unwrap();
    let o = tunebench(&[
        "logits",
        "--model",
        gguf.to_str().unwrap(),
        "--ids",
        "1,2,3",
        "--adapter",
        adapter.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && o.stdout.is_empty(), "{err}");
    assert!(err.contains("non-finite logits at position 0"), "{err}");
}

/// A PEFT adapter on the q and down projections, B non-zero.
fn write_adapter(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "bias": "none",
        "target_modules": ["q_proj", "down_proj"], "task_type": "CAUSAL_LM"});
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    let noise = |shape: (usize, usize), seed: f32| {
        let v: Vec<f32> = (0..shape.0 * shape.1).map(|i| (i as f32 * 0.618 + seed).sin() * 0.2).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    let mut st = std::collections::HashMap::new();
    for l in 0..tiny::LAYERS {
        for (m, out, inp) in
            [("self_attn.q_proj", tiny::HIDDEN, tiny::HIDDEN), ("mlp.down_proj", tiny::HIDDEN, tiny::FFN)]
        {
            let name = format!("base_model.model.model.layers.{l}.{m}");
            st.insert(format!("{name}.lora_A.weight"), noise((2, inp), l as f32));
            st.insert(format!("{name}.lora_B.weight"), noise((out, 2), l as f32 + 0.5));
        }
    }
    // A layer this model lacks: not applied, and said.
    let stray = "base_model.model.model.layers.7.self_attn.q_proj";
    st.insert(format!("{stray}.lora_A.weight"), noise((2, tiny::HIDDEN), 0.0));
    st.insert(format!("{stray}.lora_B.weight"), noise((tiny::HIDDEN, 2), 0.0));
    candle_core::safetensors::save(&st, dir.join("adapter_model.safetensors")).unwrap();
}

#[test]
fn bad_input_is_refused_naming_the_flag_and_the_reason() {
    let (dir, gguf, _) = tiny_model();
    let vocab = tiny::vocab().0.len();
    let model = gguf.to_str().unwrap();
    let missing = dir.path().join("nope.gguf");
    let too_big = format!("1,{vocab}");
    let cases: [(Vec<&str>, &[&str]); 9] = [
        (vec!["--model", model, "--ids", "1,x,3"], &["--ids", "`x`", "not a token id"]),
        (vec!["--model", model, "--ids", "1,-2"], &["--ids", "`-2`"]),
        (vec!["--model", model, "--ids", &too_big], &["--ids", &format!("id {vocab}"), "vocabulary size"]),
        (vec!["--model", model, "--ids", ""], &["--ids", "no ids"]),
        (vec!["--model", model, "--text", ""], &["--text", "no tokens"]),
        (vec!["--model", missing.to_str().unwrap(), "--ids", "1"], &["--model", "nope.gguf", "not found"]),
        (vec!["--model", model, "--ids", "1", "--top", "0"], &["--top", "at least 1"]),
        (vec!["--model", model, "--ids", "1", "--top", "3", "--out", "x.safetensors"], &["--top", "--out"]),
        (vec!["--model", model, "--ids", "1", "--device", "tpu"], &["--device", "`tpu`"]),
    ];
    for (args, want) in cases {
        let mut all = vec!["logits"];
        all.extend(&args);
        let o = tunebench(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(o.stdout.is_empty(), "{args:?}: nothing printed on failure");
        for w in want {
            assert!(err.contains(w), "{args:?}: `{w}` missing from: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    if !cfg!(feature = "cuda") {
        let o = tunebench(&["logits", "--model", model, "--ids", "1", "--device", "cuda"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("--device") && err.contains("no cuda support"), "{err}");
    }
    let too_long = csv(&vec![1; tiny::CONTEXT + 1]);
    let o = tunebench(&["logits", "--model", model, "--ids", &too_long]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--ids") && err.contains("context"), "{err}");
}

/// A model whose output matrix has more rows than its tokenizer has tokens (Qwen2.5: 151,936 vs 151,665):
/// the logits are as wide as the matrix, and ids up to the embedding's rows are inputs.
#[test]
fn the_width_is_the_output_matrix_rows_not_the_tokenizers() {
    let (dir, _, hf) = tiny_model();
    let vocab = tiny::vocab().0.len();
    let pad = 5;
    let mut t = candle_core::safetensors::load(hf.join("model.safetensors"), &Device::Cpu).unwrap();
    for name in ["model.embed_tokens.weight", "lm_head.weight"] {
        let w = &t[name];
        let extra = Tensor::ones((pad, tiny::HIDDEN), w.dtype(), &Device::Cpu).unwrap();
        let padded = Tensor::cat(&[w, &extra], 0).unwrap();
        t.insert(name.to_string(), padded);
    }
    candle_core::safetensors::save(&t, hf.join("model.safetensors")).unwrap();
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    config["vocab_size"] = (vocab + pad).into();
    std::fs::write(hf.join("config.json"), config.to_string()).unwrap();

    let out = dir.path().join("wide.safetensors");
    let ids = csv(&[5, 77, (vocab + 2) as u32]);
    let o = tunebench(&["logits", "--model", hf.to_str().unwrap(), "--ids", &ids, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (logits, _) = read_out(&out);
    assert_eq!(logits.dims(), [3, vocab + pad]);
    let too_big = csv(&[(vocab + pad) as u32]);
    let o = tunebench(&["logits", "--model", hf.to_str().unwrap(), "--ids", &too_big]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(&format!("vocabulary size {}", vocab + pad)), "{err}");
}

/// `tunebench logits` on each family fixture (tests/fixtures/families/, made with transformers and llama.cpp's
/// converter): from the GGUF and the safetensors folder, with and without the PEFT adapter, within 1e-3 of
/// transformers at every position (Gemma 2's final soft-cap included).
#[test]
fn every_family_fixture_matches_transformers() {
    use support::families::{Fixture, Form, TOLERANCE};
    let tmp = tempfile::tempdir().unwrap();
    for family in ["llama2", "llama3", "mistral", "qwen2", "qwen3", "smollm3", "gemma2", "gemma3", "phi3", "phi4mini"] {
        let fx = Fixture::open(family);
        for form in [Form::Gguf, Form::Safetensors] {
            for (adapter, key) in [(None, "logits"), (Some(fx.adapter()), "logits_adapter")] {
                let out = tmp.path().join(format!("{family}.safetensors"));
                let (model, out_s) = (fx.path(form), out.to_str().unwrap().to_string());
                let mut args = vec!["logits", "--model", model.to_str().unwrap(), "--out", &out_s, "--device", "cpu"];
                let ids = csv(&fx.ids);
                args.extend(["--ids", &ids]);
                let adapter_s = adapter.as_ref().map(|a| a.to_str().unwrap().to_string());
                if let Some(a) = &adapter_s {
                    args.extend(["--adapter", a]);
                }
                let o = tunebench(&args);
                assert!(o.status.success(), "{family} {form:?}: {}", String::from_utf8_lossy(&o.stderr));
                let (got, _) = read_out(&out);
                let want = fx.tensor(&fx.key(key, form));
                assert_eq!(got.dims(), want.dims(), "{family} {form:?} {key}");
                let d = max_diff(&got, want);
                println!("{family} {form:?} {key}: {d:.1e} from transformers");
                assert!(d < TOLERANCE, "{family} {form:?} {key}: {d} from transformers");
            }
        }
    }
}

/// A real model against transformers (a fixture made by scripts/logits-reference/real_model.py): the 10 largest
/// logits and a spread of ids at every position within 1e-3 for logits of order 10, scaled up with larger ones
/// (f32 rounding grows with the magnitude: gemma-3-270m's reach 136, where the two differ by up to 1.05e-3, a
/// relative 2e-5); the top-1 identical; `--text` gives the ids transformers' tokenizer gave for the first text.
fn real_model_matches_transformers(model: &Path, fixture: &str) {
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture)).unwrap(),
    )
    .unwrap();
    let as_u32 = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
    let dir = tempfile::tempdir().unwrap();
    let (mut worst, mut worst_share) = (0f32, 0f32);
    for (n, case) in fx["cases"].as_array().unwrap().iter().enumerate() {
        let ids = as_u32(&case["ids"]);
        let out = dir.path().join(format!("{n}.safetensors"));
        let (model_s, out_s, ids_s) = (model.to_str().unwrap(), out.to_str().unwrap(), csv(&ids));
        let o = tunebench(&["logits", "--model", model_s, "--ids", &ids_s, "--out", out_s, "--device", "cpu"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (logits, _) = read_out(&out);
        assert_eq!(logits.dim(1).unwrap() as u64, case["width"].as_u64().unwrap(), "width = the output matrix's rows");
        let rows = logits.to_vec2::<f32>().unwrap();
        for (pos, row) in rows.iter().enumerate() {
            for (ids_key, values_key) in [("top_ids", "top_logits"), ("probe_ids", "probe_logits")] {
                let want_ids = as_u32(if ids_key == "probe_ids" { &case[ids_key] } else { &case[ids_key][pos] });
                for (k, id) in want_ids.iter().enumerate() {
                    let want = case[values_key][pos][k].as_f64().unwrap() as f32;
                    let d = (row[*id as usize] - want).abs();
                    worst = worst.max(d);
                    worst_share = worst_share.max(d / (1e-3 * (want.abs() / 10.0).max(1.0)));
                }
            }
            let top1 = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u64;
            assert_eq!(top1, case["top_ids"][pos][0].as_u64().unwrap(), "case {n} position {pos}: top-1");
        }
        if n == 0 {
            let tok = tunebench::engine::local::tokenizer::Tokenizer::open(model).unwrap();
            assert_eq!(tok.encode(case["text"].as_str().unwrap(), false).unwrap(), ids);
        }
    }
    println!("{fixture}: largest difference from transformers {worst:.2e}, {worst_share:.2} of its tolerance");
    assert!(worst_share < 1.0, "logits differ from transformers by up to {worst} ({worst_share} of the tolerance)");
}

/// SmolLM2-135M-Instruct Q4_1, the default model.
#[test]
fn smollm2_logits_match_transformers() {
    let Some(model) = support::default_model() else { return };
    real_model_matches_transformers(&model, "smollm2_transformers_logits.json");
}

/// gemma-3-270m Q4_K_M as llama.cpp quantized it: Q4_K with Q6_K, Q8_0 and Q5_0 (its 640-wide rows are not
/// whole 256-blocks), 262,144 logits wide. CI fetches it (scripts/fetch-gemma); elsewhere this skips, saying so.
#[test]
fn gemma3_270m_q4_k_m_logits_match_transformers() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-Q4_K_M.gguf");
    if !model.is_file() {
        assert!(std::env::var_os("CI").is_none(), "CI must fetch gemma-3-270m first (scripts/fetch-gemma)");
        eprintln!("skipped: {} is absent and CI is unset (run scripts/fetch-gemma)", model.display());
        return;
    }
    real_model_matches_transformers(&model, "gemma3_270m_transformers_logits.json");
}
