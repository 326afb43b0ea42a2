//! Hosted API lanes against a scripted server on 127.0.0.1: both dialects, request shapes, keys, cancel.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::api::*;
use support::http::{MockServer, Part, Reply, anthropic_stream, named, openai_stream};
use tunebench::cli::headless;
use tunebench::engine::{EngineError, EventKind};

#[tokio::test(flavor = "multi_thread")]
async fn openai_streams_the_answer_and_reports_the_servers_usage() {
    let mut chunks = openai_stream(&["Your order ", "ships ", "today."], Some((42, 5, 16)));
    chunks.insert(1, ": keep-alive comment\n\n".into());
    chunks.insert(2, named("vendor.note", "{}"));
    let extra = "temperature = 0.2\ntop_p = 0.9\nseed = 7\nstop = [\"END\"]\nresponse_format = \"json_object\"";
    let (r, warnings, server) = openai_one(vec![Reply::sse(&chunks)], extra).await;
    assert_eq!(r.error, None);
    assert_eq!(r.output, "Your order ships today.");
    assert_eq!((r.prompt_tokens, r.completion_tokens, r.estimated), (Some(42), Some(5), false));
    assert_eq!(r.cost_usd, None, "a model with no known price costs null, never 0");
    let (ttft, total) = (r.ttft_ms.unwrap(), r.total_ms.unwrap());
    assert!(ttft > 0.0 && ttft <= total, "ttft {ttft} total {total}");
    assert!(warnings.is_empty(), "{warnings:?}");

    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    let b = &req.body;
    assert_eq!(b["model"], "test-model");
    assert_eq!(b["stream"], true);
    assert_eq!(b["stream_options"]["include_usage"], true);
    assert_eq!(b["messages"][0], serde_json::json!({"role": "system", "content": "Answer briefly."}));
    assert_eq!(b["messages"][1], serde_json::json!({"role": "user", "content": "Where is my order #1234?"}));
    assert_eq!(
        (b["max_tokens"].as_u64(), b["temperature"].as_f64(), b["top_p"].as_f64()),
        (Some(64), Some(0.2), Some(0.9))
    );
    assert_eq!((b["seed"].as_u64(), &b["stop"]), (Some(7), &serde_json::json!(["END"])));
    assert_eq!(b["response_format"], serde_json::json!({"type": "json_object"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_without_usage_still_works_with_counts_marked_estimated() {
    let (r, _, _) = openai_one(vec![Reply::sse(&openai_stream(&["a", "b", "c"], None))], "").await;
    assert_eq!((r.output.as_str(), r.error.as_deref()), ("abc", None));
    assert!(r.estimated);
    assert_eq!(r.completion_tokens, Some(3), "one token per streamed piece");
    // The prompt the server did not count is tunebench's own count of it (o200k_base + chat framing).
    let bpe = tunebench::metrics::count::bpe(tiktoken_rs::tokenizer::Tokenizer::O200kBase);
    let want = tunebench::metrics::count::openai_chat_tokens(
        bpe,
        &[("system", "Answer briefly."), ("user", "Where is my order #1234?")],
        &[],
    );
    assert_eq!(r.prompt_tokens, Some(want));
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_streams_with_usage_from_message_start_and_message_delta() {
    let server = MockServer::start(vec![Reply::sse(&anthropic_stream(&["Hello", " there"], 20, 5, 3))]).await;
    let extra = "temperature = 0.5\ntop_k = 40\nstop = [\"\\n\\n\"]";
    let (reports, _, _dir) = run(&[lane("claude", "anthropic", &server.url, extra)]).await;
    let r = &reports[0];
    assert_eq!((r.output.as_str(), r.error.as_deref()), ("Hello there", None));
    assert_eq!((r.prompt_tokens, r.completion_tokens, r.estimated), (Some(25), Some(3), false));
    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("authorization"), None);
    let b = &req.body;
    assert_eq!((b["system"].as_str(), b["max_tokens"].as_u64()), (Some("Answer briefly."), Some(64)));
    assert_eq!(b["messages"], serde_json::json!([{"role": "user", "content": "Where is my order #1234?"}]));
    assert_eq!((b["temperature"].as_f64(), b["top_k"].as_u64(), b.get("top_p")), (Some(0.5), Some(40), None));
    assert_eq!(b["stop_sequences"], serde_json::json!(["\n\n"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_key_fails_that_lane_while_the_others_run() {
    let server = MockServer::start(vec![Reply::sse(&openai_stream(&["fine"], Some((2, 1, 0))))]).await;
    let url = format!("{}/v1", server.url);
    let keyless = lane("nokey", "openai", &url, "").replace("api_key_env = \"TB_KEY\"", "api_key_env = \"TB_MISSING\"");
    let (reports, _, _dir) = run(&[lane("api", "openai", &url, ""), keyless]).await;
    assert_eq!((reports[0].output.as_str(), reports[0].error.as_deref()), ("fine", None));
    let err = reports[1].error.as_deref().unwrap();
    assert!(err.starts_with("no API key: TB_MISSING is not set"), "{err}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_needs_no_key_gets_no_authorization_header() {
    let server = MockServer::start(vec![Reply::sse(&openai_stream(&["local"], None))]).await;
    let l = lane("llamacpp", "openai", &format!("{}/v1", server.url), "").replace("\"TB_KEY\"", "\"\"");
    let (reports, _, _dir) = run(&[l]).await;
    assert_eq!(reports[0].error, None);
    assert_eq!(server.requests()[0].header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_aborts_the_request_at_once() {
    let chunks = openai_stream(&["Thinking "], None);
    let server = MockServer::start(vec![Reply::sse(&chunks[..2]).then(Part::Hang)]).await;
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), &[lane("api", "openai", &format!("{}/v1", server.url), "")]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = tunebench::engine::Engine::new(registry(), tx);
    let req = tunebench::engine::RunRequest::for_lane(&ws, 0, "hi").unwrap();
    let cancel = engine.start(0, 1, req);
    loop {
        if let EventKind::Token { .. } = rx.recv().await.unwrap().kind {
            break;
        }
    }
    let at = Instant::now();
    cancel.cancel();
    loop {
        match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await.unwrap().unwrap().kind {
            EventKind::Failed { error } => {
                assert_eq!(error, EngineError::Cancelled);
                break;
            }
            other => assert!(
                matches!(other, EventKind::Token { .. } | EventKind::Warning { .. } | EventKind::Measured { .. }),
                "{other:?}"
            ),
        }
    }
    assert!(at.elapsed() < Duration::from_millis(200), "{:?}", at.elapsed());
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.hangups().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let closed = server.hangups();
    assert_eq!(closed.len(), 1, "the server saw the connection close");
    assert!(closed[0].duration_since(at) < Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_llamacpp_stream_decodes_the_same_in_any_chunking() {
    let raw = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llamacpp_0c1e570_stream.sse"),
    )
    .unwrap();
    let expected: String = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()))
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(String::from))
        .collect();
    assert!(expected.contains("commande"), "{expected}");
    for size in [1, 3, 7, 64, raw.len()] {
        // Chunks may end inside a multi-byte character, as TCP segments do.
        let parts = raw.as_bytes().chunks(size).map(|c| Part::Bytes(c.to_vec())).collect();
        let reply = Reply { parts, ..Reply::sse::<&str>(&[]) };
        let (r, _, _) = openai_one(vec![reply], "").await;
        assert_eq!((r.output.as_str(), r.error.as_deref()), (expected.as_str(), None), "chunks of {size}");
        assert_eq!((r.prompt_tokens, r.completion_tokens, r.estimated), (Some(31), Some(17), false));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_schema_and_reasoning_models_shape_the_request() {
    let server = MockServer::start(vec![
        Reply::sse(&openai_stream(&["{}"], None)),
        Reply::sse(&openai_stream(&["thought"], None)),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let schema = r#"{"type":"object","properties":{"intent":{"type":"string"}},"required":["intent"]}"#;
    std::fs::write(dir.path().join("ticket.json"), schema).unwrap();
    let url = format!("{}/v1", server.url);
    let structured = lane("structured", "openai", &url, "json_schema = \"ticket.json\"");
    let reasoning = lane("reasoning", "openai", &url, "stop = [\"END\"]").replace("test-model", "o3-mini");
    let ws = workspace(dir.path(), &[structured]);
    let done = headless::run(&ws, "hi", &[0], registry()).await;
    assert_eq!(done.reports[0].error, None);
    let ws = workspace(dir.path(), &[reasoning]);
    let done = headless::run(&ws, "hi", &[0], registry()).await;
    assert_eq!(done.reports[0].error, None);
    assert_eq!(
        done.warnings,
        ["lane `reasoning`: o3-mini is a reasoning model: temperature, stop not sent (the API refuses them); \
          max_tokens also covers its reasoning"]
    );
    let reqs = server.requests();
    let rf = &reqs[0].body["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(
        (rf["json_schema"]["name"].as_str(), rf["json_schema"]["strict"].as_bool()),
        (Some("ticket"), Some(true))
    );
    assert_eq!(rf["json_schema"]["schema"]["required"][0], "intent");
    let b = &reqs[1].body;
    assert_eq!(b["max_completion_tokens"], 64);
    for absent in ["max_tokens", "temperature", "top_p", "stop"] {
        assert!(b.get(absent).is_none(), "{absent} sent to a reasoning model");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn count_exact_asks_anthropics_count_tokens_endpoint() {
    let server = MockServer::start(vec![Reply::status(200, r#"{"input_tokens": 1234}"#)]).await;
    let dir = tempfile::tempdir().unwrap();
    workspace(dir.path(), &[lane("claude", "anthropic", &server.url, "")]);
    let out = count_exact(dir.path()).await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim(), r#"{"lane":"claude","prompt_tokens":1234,"estimated":false,"error":null}"#);
    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1/messages/count_tokens");
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert_eq!(req.body["system"], "Answer briefly.");
    assert_eq!(req.body["messages"], serde_json::json!([{"role": "user", "content": "hello"}]));
}

#[tokio::test(flavor = "multi_thread")]
async fn count_exact_keeps_the_estimate_when_the_endpoint_fails() {
    let server = MockServer::start(vec![Reply::status(
        529,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    workspace(dir.path(), &[lane("claude", "anthropic", &server.url, "")]);
    let out = count_exact(dir.path()).await;
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(stdout.contains(r#""estimated":true"#) && stdout.contains(r#""error":null"#), "{stdout}");
    assert!(stderr.contains("529 overloaded") && stderr.contains("showing the estimate"), "{stderr}");
    assert_eq!(out.status.code(), Some(0));
}

/// `tunebench count WS --input hello --json --exact` with the test key in its environment.
async fn count_exact(ws: &Path) -> std::process::Output {
    let ws = ws.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
            .args(["count", ws.to_str().unwrap(), "--input", "hello", "--json", "--exact"])
            .env("TB_KEY", KEY)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}
