//! The real binary with a key in its environment: no file it writes, and nothing it prints, holds the key.

mod support;

use std::path::Path;

use support::http::{MockServer, Reply, openai_stream};

const KEY: &str = "sk-proj-scan-4d9e1b77c0a2f3e5";

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { files(&p, out) } else { out.push(p) }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_reaches_no_file_log_or_output() {
    // Servers that echo the key back, as OpenAI's "Incorrect API key provided: sk-…" does.
    let echo = format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}","code":"invalid_api_key"}}}}"#);
    let refused = MockServer::start(vec![Reply::status(401, &echo)]).await;
    let flaky = MockServer::start(vec![
        Reply::status(503, &echo).header("retry-after-ms", "10"),
        Reply::sse(&openai_stream(&["answer"], Some((5, 1, 0)))),
    ])
    .await;
    let ws = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let lane = |id: &str, url: &str| {
        format!(
            "[[lanes]]\nid = \"{id}\"\nbackend = \"openai\"\nmodel = \"m\"\nprompt = \"p\"\nbase_url = \"{url}/v1\"\n\
             api_key_env = \"TB_SCAN_KEY\"\n"
        )
    };
    let toml = format!(
        "name = \"scan\"\n[prompts.p]\ntext = \"Be brief.\"\n{}{}",
        lane("refused", &refused.url),
        lane("flaky", &flaky.url)
    );
    std::fs::write(ws.path().join("workspace.toml"), toml).unwrap();
    let (ws_path, state_path) = (ws.path().to_path_buf(), state.path().to_path_buf());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
            .args(["run", ws_path.to_str().unwrap(), "--input", "hello", "--json"])
            .env("TB_SCAN_KEY", KEY)
            .env("XDG_STATE_HOME", &state_path)
            .env("TUNEBENCH_LOG", "trace")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "one lane failed: {stderr}");
    assert!(stdout.contains(r#""output":"answer""#) && stdout.contains("401 unauthorized"), "{stdout}");
    assert!(stderr.contains("503 server error") && stderr.contains("retry 1/4"), "{stderr}");
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY), "{stdout}\n{stderr}");

    let mut written = Vec::new();
    files(ws.path(), &mut written);
    files(state.path(), &mut written);
    let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert!(names.contains(&"runs.jsonl".into()) && names.contains(&"tunebench.log".into()), "{names:?}");
    let log = std::fs::read_to_string(state.path().join("tunebench/tunebench.log")).unwrap();
    assert!(log.contains("attempt failed") && log.contains("[redacted]"), "the log saw the echoed key, redacted");
    for f in &written {
        let bytes = std::fs::read(f).unwrap();
        assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "{} holds the key", f.display());
    }
    // Both requests carried the key; only the wire may hold it.
    assert_eq!(refused.requests()[0].header("authorization"), Some(format!("Bearer {KEY}").as_str()));
}

/// Runs one OpenAI lane whose key variable holds `key` against `replies`.
async fn run_with_key(key: &str, replies: Vec<Reply>) -> tunebench::metrics::LaneReport {
    use std::sync::Arc;
    use tunebench::engine::Registry;
    use tunebench::engine::api::ApiBackend;
    use tunebench::workspace::BackendKind;
    let server = MockServer::start(replies).await;
    let dir = tempfile::tempdir().unwrap();
    let lane = support::api::lane("local", "openai", &format!("{}/v1", server.url), "");
    let ws = support::api::workspace(dir.path(), &[lane]);
    let key = key.to_string();
    let env: tunebench::engine::api::Env = Arc::new(move |name| (name == "TB_KEY").then(|| key.clone()));
    let registry = Registry::default().with(BackendKind::OpenAi, ApiBackend::new(BackendKind::OpenAi, env));
    let all = tunebench::cli::headless::select_lanes(&ws, &[]).unwrap();
    tunebench::cli::headless::run(&ws, "hi", &all, registry).await.reports.remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn placeholder_keys_change_neither_answer_nor_usage() {
    // Local servers take any key; these are the ones people type. None is a secret worth hiding.
    for key in ["k", "fake", "tokens", "ollama", "lm-studio", "dummy"] {
        let r = run_with_key(key, vec![Reply::sse(&openai_stream(&["Hello from ", "fake."], Some((7, 4, 0))))]).await;
        assert_eq!(r.error, None, "{key}");
        assert_eq!(r.output, "Hello from fake.", "key {key:?} rewrote the answer");
        assert_eq!((r.prompt_tokens, r.completion_tokens, r.estimated), (Some(7), Some(4), false), "key {key:?}");
        let refused = format!(r#"{{"error":{{"message":"tokens for fake key {key} refused"}}}}"#);
        let r = run_with_key(key, vec![Reply::status(401, &refused)]).await;
        let error = r.error.unwrap();
        assert!(error.contains(&format!("tokens for fake key {key} refused")), "{key:?}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_key_is_redacted_from_errors_but_never_from_the_answer() {
    // A model may repeat what it was shown; its answer is its own and is kept as sent.
    let r = run_with_key(KEY, vec![Reply::sse(&openai_stream(&["your key is ", KEY], Some((7, 4, 0))))]).await;
    assert_eq!((r.output.as_str(), r.prompt_tokens), (format!("your key is {KEY}").as_str(), Some(7)));
    // A malformed chunk quoting the key, past the 200 characters an error quotes: no half of it survives.
    let chunk = format!("data: {{\"pad\":\"{}\",\"key\":\"{KEY}\" oops\n\n", "x".repeat(170));
    let r = run_with_key(KEY, vec![Reply::sse(&[chunk])]).await;
    let error = r.error.unwrap();
    assert!(error.starts_with("malformed chunk") && !error.contains(&KEY[..8]), "{error}");
}
