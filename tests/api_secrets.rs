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
