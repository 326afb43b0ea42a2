//! Model-file errors are one clean line wherever they are shown — the `run --json` error, the `count` table,
//! stderr — even with RUST_BACKTRACE=1 (candle then attaches a backtrace to its errors), and name their cause
//! once.

mod support;

use std::path::Path;

use support::tiny;

fn tunebench(args: &[&str], state: &Path) -> (String, String, Option<i32>) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env("XDG_STATE_HOME", state)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

fn workspace(dir: &Path, model: &Path) -> String {
    let ws = dir.join(format!("ws-{}", model.file_name().unwrap().to_string_lossy()));
    std::fs::create_dir_all(&ws).unwrap();
    let toml = format!(
        "name = \"t\"\n[prompts.p]\ntext = \"Be brief.\"\n[models.m]\npath = \"{}\"\ndevice = \"cpu\"\n\
         [[lanes]]\nid = \"a\"\nbackend = \"local\"\nmodel = \"m\"\nprompt = \"p\"\nmax_tokens = 4\n",
        model.display()
    );
    std::fs::write(ws.join("workspace.toml"), toml).unwrap();
    ws.to_string_lossy().into_owned()
}

/// One line, and no clause of it said twice.
fn assert_clean(what: &str, text: &str) {
    let text = text.trim_end();
    assert!(!text.contains('\n') && !text.contains("stack backtrace") && !text.contains(" at /"), "{what}: {text}");
    let parts: Vec<&str> = text.split(": ").filter(|p| p.len() > 8).collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(p), "{what} says {p:?} twice: {text}");
    }
}

#[test]
fn model_file_errors_are_one_clean_line() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = tiny::write(dir.path(), None);
    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model file at all").unwrap();
    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(&gguf).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let state = dir.path().join("state");
    for model in [&garbage, &truncated] {
        let ws = workspace(dir.path(), model);
        let (out, err, code) = tunebench(&["run", &ws, "--input", "hi", "--json"], &state);
        assert_eq!(code, Some(1), "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(&model.display().to_string()), "the error names the file: {error}");
        assert_clean("run --json error", error);
        for line in err.lines() {
            assert!(line.starts_with("tunebench: "), "stderr holds more than messages: {err}");
        }
        let (out, _, _) = tunebench(&["count", &ws, "--input", "hi"], &state);
        assert_clean("count table", &out);
    }
    // The tokenizer is read from the file's header, which the truncated copy still has whole.
    let (_, err, code) = tunebench(&["tokenize", "--model", garbage.to_str().unwrap(), "hi"], &state);
    assert_eq!(code, Some(2));
    assert_clean("tokenize on stderr", &err);
    // An error that quotes its source (`{path}: {source}`) once said the cause twice on stderr.
    let nowhere = dir.path().join("no-workspace-here");
    let (_, err, code) = tunebench(&["run", nowhere.to_str().unwrap(), "--input", "hi"], &state);
    assert_eq!(code, Some(2));
    assert_clean("a missing workspace on stderr", &err);
    let missing = dir.path().join("missing.gguf");
    let (_, err, code) = tunebench(&["tokenize", "--model", missing.to_str().unwrap(), "hi"], &state);
    assert_eq!(code, Some(2));
    assert_clean("a missing model on stderr", &err);
}
