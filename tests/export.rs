//! `tunebench export --to gguf-lora`: the adapter written as llama.cpp's GGUF LoRA and read back by tunebench
//! gives the logits of the PEFT adapter on every family's GGUF fixture (q/k row order, fused modules, the
//! adapters' scales folded into lora_b); the command writes a README and replaces nothing.

mod support;

use std::process::Command;

use support::families::{Fixture, Form, TOLERANCE, lane_workspace, load_form, max_diff, teacher_forced};

const FAMILIES: [&str; 10] =
    ["llama2", "llama3", "mistral", "smollm3", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "phi4mini"];

fn arch(path: &std::path::Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let c = tunebench::engine::local::read_gguf_content(&mut f, path).unwrap();
    c.metadata["general.architecture"].to_string().unwrap().clone()
}

#[test]
fn a_gguf_lora_read_back_gives_the_peft_adapters_logits_on_every_family() {
    let dir = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        let fx = Fixture::open(family);
        let m = load_form(&fx, Form::Gguf);
        let peft = m.with_adapter(&fx.adapter()).unwrap();
        let read = tunebench::lora::Adapter::load(&fx.adapter(), m.base()).unwrap();
        let out = dir.path().join(format!("{family}.gguf"));
        let n = tunebench::lora::gguf::write(&read, &arch(&fx.path(Form::Gguf)), &out).unwrap();
        assert_eq!(n, read.modules.len(), "{family}");
        let gguf = m.with_adapter(&out).unwrap_or_else(|e| panic!("{family}: {e}"));
        assert!(gguf.warnings.is_empty(), "{family}: {:?}", gguf.warnings);
        let (a, b) = (teacher_forced(&peft.model, &fx.ids), teacher_forced(&gguf.model, &fx.ids));
        let scale = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let diff = max_diff(&a, &b);
        assert!(
            diff <= 1e-5 * scale.max(1.0),
            "{family}: GGUF LoRA vs PEFT adapter logits differ by {diff} (max {scale})"
        );
        let want = fx.tensor(&fx.key("logits_adapter", Form::Gguf));
        assert!(max_diff(&b, want) <= TOLERANCE, "{family}: against transformers + PEFT");
    }
}

#[test]
fn the_command_writes_the_adapter_and_a_readme_and_replaces_nothing() {
    let fx = Fixture::open("llama3");
    let dir = tempfile::tempdir().unwrap();
    let ws = lane_workspace(dir.path(), "Short.", &fx.path(Form::Gguf), &fx.adapter(), "");
    let out = dir.path().join("out");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tunebench"))
            .args(["export", ws.to_str().unwrap(), "--to", "gguf-lora", "--out", out.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let gguf = out.join("adapter.gguf");
    assert!(gguf.is_file());
    let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
    assert!(readme.contains("llama-server -m") && readme.contains("--lora adapter.gguf"), "{readme}");
    let bytes = std::fs::read(&gguf).unwrap();
    let again = run();
    assert_eq!(again.status.code(), Some(2), "an existing export is not replaced");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists: choose another --out"));
    assert_eq!(std::fs::read(&gguf).unwrap(), bytes);
    // A safetensors base has no llama.cpp row order to follow: refused with the reason.
    let hf = std::fs::read_to_string(ws.join("workspace.toml"))
        .unwrap()
        .replace(&fx.path(Form::Gguf).display().to_string(), &fx.path(Form::Safetensors).display().to_string());
    std::fs::write(ws.join("workspace.toml"), hf).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(["export", ws.to_str().unwrap(), "--to", "gguf-lora", "--out", dir.path().join("o2").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("a GGUF LoRA goes over a GGUF base"));
}

#[test]
fn the_vllm_export_copies_the_peft_folder_and_writes_the_serve_command_and_a_lane() {
    assert_eq!(tunebench::cli::export::vllm_max_rank(16), Some(16));
    assert_eq!(tunebench::cli::export::vllm_max_rank(17), Some(32));
    assert_eq!(tunebench::cli::export::vllm_max_rank(300), Some(320));
    assert_eq!(tunebench::cli::export::vllm_max_rank(513), None);
    let fx = Fixture::open("qwen2");
    let dir = tempfile::tempdir().unwrap();
    let keys = "max_tokens = 99\ntemperature = 0.0\n";
    let ws = lane_workspace(dir.path(), "Short.", &fx.path(Form::Safetensors), &fx.adapter(), keys);
    let out = dir.path().join("out");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tunebench"))
            .args(["export", ws.to_str().unwrap(), "--to", "vllm", "--out", out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let first = run(&["--base", "tiny/qwen2"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert_eq!(
            std::fs::read(out.join("adapter").join(f)).unwrap(),
            std::fs::read(fx.adapter().join(f)).unwrap(),
            "{f}"
        );
    }
    let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
    let rank = tunebench::lora::AdapterConfig::parse(
        &std::fs::read_to_string(fx.adapter().join("adapter_config.json")).unwrap(),
    )
    .unwrap()
    .r;
    let max = tunebench::cli::export::vllm_max_rank(rank).unwrap();
    assert!(
        readme.contains(&format!("vllm serve tiny/qwen2 --enable-lora --max-lora-rank {max} --lora-modules adapter=")),
        "{readme}"
    );
    // The lane snippet is a lane workspace.toml takes: appended, the workspace loads with it.
    let lane = std::fs::read_to_string(out.join("lane.toml")).unwrap();
    assert!(lane.contains("model = \"adapter\"") && lane.contains("max_tokens = 99"), "{lane}");
    let mut with = std::fs::read_to_string(ws.join("workspace.toml")).unwrap();
    with.push_str(&lane);
    std::fs::write(ws.join("workspace.toml"), with).unwrap();
    let loaded = tunebench::workspace::load(&ws).unwrap();
    assert!(loaded.lanes.iter().any(|l| l.id == "tuned-vllm" && l.backend.is_api()));
    let again = run(&["--base", "tiny/qwen2"]);
    assert_eq!(again.status.code(), Some(2), "nothing is replaced");
}
