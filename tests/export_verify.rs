//! `tunebench export --verify`, the round trip: the shipped adapter exported for llama.cpp, served by a real
//! llama-server (scripts/build-llama-cpp --server; .ci/run builds it) beside the in-process tuned lane on the
//! example's test cases, verified; and a merged model whose chat template was swapped for another family's —
//! the mistake exported models are known for — refused. Needs the default model and llama-server: CI has both;
//! elsewhere, without them, the test says "skipped".

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::quantized::gguf_file;
use tunebench::export::verify::Verdict;

fn server() -> Option<PathBuf> {
    let p = std::env::var_os("TUNEBENCH_LLAMA_SERVER")
        .map(PathBuf::from)
        .or_else(tunebench::export::verify::default_server)?;
    if p.is_file() {
        return Some(p);
    }
    assert!(std::env::var_os("CI").is_none(), "CI must build llama-server first (scripts/build-llama-cpp --server)");
    eprintln!("skipped: no llama-server at {} and CI is unset (scripts/build-llama-cpp --server)", p.display());
    None
}

fn export(ws: &Path, server: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .arg("export")
        .arg(ws)
        .args(args)
        .args(["--verify", "--limit", "8", "--server", server.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// `path`'s GGUF rewritten with `key` set to `value` (the tensors as they were).
fn with_metadata(path: &Path, key: &str, value: gguf_file::Value) {
    let mut f = std::fs::File::open(path).unwrap();
    let c = gguf_file::Content::read(&mut f).unwrap();
    let mut names: Vec<(&String, u64)> = c.tensor_infos.iter().map(|(n, i)| (n, i.offset)).collect();
    names.sort_by_key(|(_, o)| *o);
    let tensors: Vec<(String, candle_core::quantized::QTensor)> =
        names.iter().map(|(n, _)| ((*n).clone(), c.tensor(&mut f, n, &candle_core::Device::Cpu).unwrap())).collect();
    let mut meta: Vec<(String, gguf_file::Value)> =
        c.metadata.iter().filter(|(k, _)| k.as_str() != key).map(|(k, v)| (k.clone(), v.clone())).collect();
    meta.push((key.to_string(), value));
    let m: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t: Vec<(&str, &candle_core::quantized::QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &m, &t).unwrap();
    std::fs::write(path, out.into_inner()).unwrap();
}

#[test]
fn the_served_adapter_is_verified_and_a_swapped_chat_template_is_not() {
    let (Some(model), Some(server)) = (support::default_model(), server()) else { return };
    let (_tmp, ws) = support::example_copy_with_model(&model);
    let out = ws.join("export-lora");
    let (code, text) = export(&ws, &server, &["--to", "gguf-lora", "--out", out.to_str().unwrap()]);
    eprintln!("{text}");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("verified: the served export answers as the adapter lane does"), "{text}");
    assert!(text.contains("round trip over 8 test case(s)"), "{text}");
    // A merged model whose template is Llama 2's: the deployed model is asked in a format it never saw.
    let merged = ws.join("export-merged");
    let (code, text) = export(&ws, &server, &["--to", "merged", "--out", merged.to_str().unwrap()]);
    assert_eq!(code, 0, "the merged export verifies as it is written: {text}");
    let file = merged.join("ticket-lora-v2-merged-Q8_0.gguf");
    let llama2 = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% elif m['role'] == 'system' %}<<SYS>>\n{{ m['content'] }}\n<</SYS>>\n\n{% else %}{{ m['content'] }}{% endif %}{% endfor %}";
    with_metadata(&file, "tokenizer.chat_template", gguf_file::Value::String(llama2.into()));
    let (code, text) = export(&ws, &server, &["--to", "merged", "--out", merged.to_str().unwrap()]);
    eprintln!("{text}");
    assert_eq!(code, 1, "a swapped template must fail the round trip: {text}");
    assert!(text.contains("verifying the export already in") && text.contains("NOT verified"), "{text}");
}

#[test]
fn the_verdict_fails_on_disagreement_a_pass_rate_drop_or_a_failed_run() {
    let v = Verdict {
        cases: 10,
        in_process_pass: 0.6,
        served_pass: 0.6,
        identical: 4,
        agree: 9,
        mismatches: Vec::new(),
        errors: Vec::new(),
    };
    assert!(v.failures(0.9, 0.05).is_empty());
    assert_eq!(v.failures(0.95, 0.05).len(), 1, "9 of 10 agree: below 95%");
    let drop = Verdict { served_pass: 0.5, ..v.clone() };
    assert!(drop.failures(0.9, 0.05)[0].contains("more than --max-drop"));
    let failed = Verdict { errors: vec!["case x: refused".into()], ..v };
    assert!(failed.failures(0.9, 0.05)[0].contains("1 run(s) failed"));
}
