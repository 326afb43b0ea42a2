//! Hosted API lanes against a scripted server on 127.0.0.1: both dialects, every fault, retries, cancel, keys.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::http::{MockServer, Part, Reply, anthropic_stream, named, openai_stream, sse};
use tunebench::engine::api::{ApiBackend, Env};
use tunebench::engine::{EngineError, EventKind, Registry};
use tunebench::headless;
use tunebench::metrics::LaneReport;
use tunebench::workspace::{self, BackendKind, Workspace};

const KEY: &str = "sk-tunebench-test-7f3a9c0e11";

fn env() -> Env {
    let vars: HashMap<String, String> = [("TB_KEY".to_string(), KEY.to_string())].into();
    Arc::new(move |name| vars.get(name).cloned())
}

fn registry() -> Registry {
    Registry::default()
        .with(BackendKind::OpenAi, ApiBackend::new(BackendKind::OpenAi, env()))
        .with(BackendKind::Anthropic, ApiBackend::new(BackendKind::Anthropic, env()))
}

/// An API lane; `extra` adds keys (timeouts, sampling …).
fn lane(id: &str, backend: &str, base_url: &str, extra: &str) -> String {
    format!(
        "[[lanes]]\nid = \"{id}\"\nbackend = \"{backend}\"\nmodel = \"test-model\"\nprompt = \"p\"\n\
         base_url = \"{base_url}\"\napi_key_env = \"TB_KEY\"\nmax_tokens = 64\nmax_retries = 2\n{extra}\n"
    )
}

fn workspace(dir: &Path, lanes: &[String]) -> Workspace {
    let toml = format!("name = \"api-test\"\n[prompts.p]\ntext = \"Answer briefly.\"\n\n{}", lanes.concat());
    std::fs::write(dir.join("workspace.toml"), toml).unwrap();
    workspace::load(dir).unwrap()
}

/// Runs every lane of a one-off workspace on `input`; returns the reports and warnings.
async fn run(lanes: &[String]) -> (Vec<LaneReport>, Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), lanes);
    let all = headless::select_lanes(&ws, &[]).unwrap();
    let done = headless::run(&ws, "Where is my order #1234?", &all, registry()).await;
    (done.reports, done.warnings, dir)
}

async fn openai_one(replies: Vec<Reply>, extra: &str) -> (LaneReport, Vec<String>, MockServer) {
    let server = MockServer::start(replies).await;
    let (mut reports, warnings, _dir) = run(&[lane("api", "openai", &format!("{}/v1", server.url), extra)]).await;
    (reports.remove(0), warnings, server)
}

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
    assert!(r.prompt_tokens.is_some_and(|n| n > 0));
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
async fn a_429_is_retried_after_the_servers_retry_after() {
    let limited = Reply::status(
        429,
        r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
    )
    .header("retry-after-ms", "300");
    let (r, warnings, server) =
        openai_one(vec![limited, Reply::sse(&openai_stream(&["ok"], Some((3, 1, 0))))], "").await;
    assert_eq!((r.output.as_str(), r.error.as_deref()), ("ok", None));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(waited >= Duration::from_millis(300), "retried after {waited:?}");
    assert_eq!(warnings, ["lane `api`: 429 rate limited: Rate limit reached — retry 1/2 in 0.3s"]);
    // Timings measure the attempt that answered, not the wait before it.
    assert!(r.total_ms.unwrap() < 300.0, "{:?}", r.total_ms);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_529_overload_is_retried_with_backoff() {
    let overloaded =
        Reply::status(529, r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#);
    let server = MockServer::start(vec![overloaded, Reply::sse(&anthropic_stream(&["fine"], 4, 0, 1))]).await;
    let (reports, warnings, _dir) = run(&[lane("claude", "anthropic", &server.url, "")]).await;
    assert_eq!((reports[0].output.as_str(), reports[0].error.as_deref()), ("fine", None));
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].starts_with("lane `claude`: 529 overloaded: Overloaded — retry 1/2 in 0."), "{warnings:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_500s_give_up_after_max_retries() {
    let e = || Reply::status(500, r#"{"error":{"message":"The server had an error","type":"server_error"}}"#);
    let (r, warnings, server) = openai_one(vec![e(), e(), e(), e()], "").await;
    assert_eq!(server.requests().len(), 3, "one try and max_retries = 2 retries");
    assert_eq!(warnings.len(), 2);
    assert_eq!(r.error.as_deref(), Some("500 server error: The server had an error (gave up after 2 retries)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_is_not_retried_and_never_echoed() {
    let body = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}.","type":"invalid_request_error","code":"invalid_api_key"}}}}"#
    );
    let (r, _, server) = openai_one(vec![Reply::status(401, &body)], "").await;
    assert_eq!(server.requests().len(), 1);
    let err = r.error.unwrap();
    assert!(err.starts_with("401 unauthorized"), "{err}");
    assert!(err.contains("[redacted]") && !err.contains(KEY), "{err}");
    for status in [400, 403, 404] {
        let (r, _, server) = openai_one(vec![Reply::status(status, r#"{"error":{"message":"no"}}"#)], "").await;
        assert_eq!(server.requests().len(), 1, "{status}");
        assert!(r.error.unwrap().starts_with(&status.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_quota_is_not_retried() {
    let body = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","code":"insufficient_quota"}}"#;
    let (r, warnings, server) = openai_one(vec![Reply::status(429, body)], "").await;
    assert_eq!(server.requests().len(), 1);
    assert!(warnings.is_empty());
    assert!(r.error.unwrap().contains("quota exhausted: not retried"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_mid_answer_keeps_the_partial_output_and_is_not_retried() {
    let chunks = openai_stream(&["The order ", "was "], None);
    let cut = Reply::sse(&chunks[..3]).then(Part::Cut);
    let (r, _, server) = openai_one(vec![cut, Reply::sse(&openai_stream(&["never"], None))], "").await;
    assert_eq!(server.requests().len(), 1, "half an answer was shown: no second request");
    assert_eq!(r.output, "The order was ");
    let err = r.error.unwrap();
    assert!(err.starts_with("stream cut") && err.contains("after 14 characters (partial answer kept)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_before_any_text_is_retried() {
    let chunks = openai_stream(&[], None);
    let cut = Reply::sse(&chunks[..1]).then(Part::Cut);
    let (r, warnings, server) = openai_one(vec![cut, Reply::sse(&openai_stream(&["second try"], None))], "").await;
    assert_eq!(server.requests().len(), 2);
    assert_eq!((r.output.as_str(), r.error.as_deref()), ("second try", None));
    assert!(warnings[0].contains("stream cut") && warnings[0].contains("retry 1/2"), "{warnings:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stall_past_the_idle_timeout_fails_with_the_partial_output() {
    let chunks = openai_stream(&["Checking "], None);
    let stall = Reply::sse(&chunks[..2]).then(Part::Hang);
    let started = Instant::now();
    let (r, _, server) = openai_one(vec![stall], "idle_timeout_s = 0.4").await;
    let took = started.elapsed();
    assert_eq!(r.output, "Checking ");
    let err = r.error.unwrap();
    assert!(err.starts_with("stream stalled: no data for 0.4s (idle_timeout_s)"), "{err}");
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "{took:?}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_response_within_the_first_byte_timeout_is_retried_then_reported() {
    let slow = || Reply::sse(&openai_stream(&["late"], None)).head_delay(Duration::from_secs(5));
    let (r, warnings, server) = openai_one(vec![slow(), slow(), slow()], "first_byte_timeout_s = 0.3").await;
    assert_eq!(server.requests().len(), 3);
    assert_eq!(warnings.len(), 2);
    assert_eq!(r.error.as_deref(), Some("no response within 0.3s (first_byte_timeout_s) (gave up after 2 retries)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_chunk_is_an_error_not_a_panic() {
    let mut chunks = openai_stream(&["Good "], None);
    chunks.insert(2, sse(r#"{"choices":[{"index":0,"delta":{"content":"tru"#));
    let (r, _, _) = openai_one(vec![Reply::sse(&chunks)], "").await;
    assert_eq!(r.output, "Good ");
    assert!(r.error.unwrap().starts_with("malformed chunk (EOF while parsing"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_object_mid_stream_fails_the_lane_after_text_and_is_retried_before() {
    let mut chunks = openai_stream(&["Half "], None);
    chunks.insert(2, sse(r#"{"error":{"message":"The model is overloaded","type":"server_error"}}"#));
    let (r, _, server) = openai_one(vec![Reply::sse(&chunks[..3])], "").await;
    assert_eq!(server.requests().len(), 1);
    assert_eq!(r.output, "Half ");
    assert_eq!(r.error.as_deref(), Some("error in the stream: server_error: The model is overloaded"));

    let early = Reply::sse(&[sse(r#"{"error":{"message":"busy","type":"server_error"}}"#)]);
    let (r, _, server) = openai_one(vec![early, Reply::sse(&openai_stream(&["ok"], None))], "").await;
    assert_eq!((server.requests().len(), r.output.as_str(), r.error), (2, "ok", None));

    let server = MockServer::start(vec![Reply::sse(&[
        anthropic_stream(&["x"], 1, 0, 1)[0].clone(),
        named("error", r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#),
    ])])
    .await;
    let (reports, _, _dir) = run(&[lane("claude", "anthropic", &server.url, "")]).await;
    assert_eq!(reports[0].error.as_deref(), Some("error in the stream: invalid_request_error: bad"));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_retried_then_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let l =
        lane("api", "openai", &format!("http://127.0.0.1:{port}/v1"), "").replace("max_retries = 2", "max_retries = 1");
    let (reports, warnings, _dir) = run(&[l]).await;
    let err = reports[0].error.as_deref().unwrap();
    assert!(err.starts_with("cannot connect") && err.contains("gave up after 1 retries"), "{err}");
    assert_eq!(warnings.len(), 1);
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
            other => assert!(matches!(other, EventKind::Token { .. } | EventKind::Warning { .. }), "{other:?}"),
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
async fn a_server_that_never_accepts_hits_the_connect_timeout() {
    // A listener with a backlog of 0 whose queue is filled: the kernel drops further SYNs, so connecting hangs.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = sock.local_addr().unwrap();
    let _listener = sock.listen(0).unwrap();
    let mut held = Vec::new();
    let full = loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) if held.len() < 16 => held.push(s),
            Ok(_) => break false,
            Err(_) => break true,
        }
    };
    assert!(full, "the accept queue never filled; cannot stage a connect timeout here");
    let l = lane("api", "openai", &format!("http://{addr}/v1"), "connect_timeout_s = 0.3")
        .replace("max_retries = 2", "max_retries = 0");
    let started = Instant::now();
    let (reports, _, _dir) = run(&[l]).await;
    assert_eq!(reports[0].error.as_deref(), Some("connect timeout after 0.3s (connect_timeout_s)"));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
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
async fn retry_after_forms_and_waits_too_long_to_honour() {
    let long = Reply::status(429, r#"{"error":{"message":"slow down"}}"#).header("retry-after", "120");
    let (r, warnings, server) = openai_one(vec![long], "").await;
    assert_eq!(server.requests().len(), 1);
    assert!(warnings.is_empty());
    assert_eq!(
        r.error.as_deref(),
        Some("429 rate limited: slow down — the server asks to wait 2m 0s before retrying; not retried")
    );
    let dated = Reply::status(503, "").header("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT");
    let (r, warnings, _) = openai_one(vec![dated, Reply::sse(&openai_stream(&["ok"], None))], "").await;
    assert_eq!(r.error, None);
    assert!(warnings[0].ends_with("— retry 1/2 in 0s"), "{warnings:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_echoed_anywhere_in_a_reply_is_scrubbed_before_it_is_cut_or_shown() {
    let padding = "x".repeat(190);
    let body = format!(r#"{{"error":{{"message":"{padding} {KEY} more"}}}}"#);
    let bad_chunk = sse(&format!(r#"{{"choices":[{{"delta":{{"content":"{padding}{KEY}"#));
    let (r, warnings, _) = openai_one(
        vec![Reply::status(500, &body), Reply::status(502, &format!("<html>{KEY}</html>")), Reply::sse(&[bad_chunk])],
        "",
    )
    .await;
    let all = format!("{:?} {warnings:?}", r.error);
    assert!(r.error.as_deref().unwrap().starts_with("malformed chunk"), "{all}");
    assert_eq!(warnings.len(), 2, "{all}");
    // Not the key, and not a cut-off start of it either.
    assert!(!all.contains(&KEY[..12]), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_then_silence_is_a_first_byte_timeout() {
    let silent = || Reply::sse::<&str>(&[]).then(Part::Hang);
    let l = "first_byte_timeout_s = 0.3\nidle_timeout_s = 30";
    let (r, _, server) = openai_one(vec![silent(), silent(), silent()], l).await;
    assert_eq!(server.requests().len(), 3);
    assert_eq!(r.error.as_deref(), Some("no response within 0.3s (first_byte_timeout_s) (gave up after 2 retries)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_error_event_and_a_compressed_stream_are_clear_errors() {
    let (r, _, _) = openai_one(
        vec![Reply::sse(&[named("error", r#"{"error":{"message":"bad input","type":"invalid_request_error"}}"#)])],
        "",
    )
    .await;
    assert_eq!(r.error.as_deref(), Some("error in the stream: invalid_request_error: bad input"));
    let gz = Reply::sse(&openai_stream(&["x"], None)).header("content-encoding", "gzip");
    let (r, _, _) = openai_one(vec![gz], "").await;
    assert_eq!(r.error.as_deref(), Some("the server sent a compressed stream (content-encoding: gzip) unasked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complete_answer_without_its_end_marker_is_kept_with_a_warning() {
    let chunks = anthropic_stream(&["All ", "done"], 7, 0, 2);
    let server = MockServer::start(vec![Reply::sse(&chunks[..chunks.len() - 1])]).await;
    let (reports, warnings, _dir) = run(&[lane("claude", "anthropic", &server.url, "")]).await;
    assert_eq!((reports[0].output.as_str(), reports[0].error.as_deref()), ("All done", None));
    assert_eq!((reports[0].prompt_tokens, reports[0].completion_tokens), (Some(7), Some(2)));
    assert_eq!(warnings, ["lane `claude`: the stream closed without its end marker after a complete answer"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_during_a_retry_wait_ends_the_run_at_once() {
    let limited = Reply::status(429, "{}").header("retry-after", "30");
    let server = MockServer::start(vec![limited]).await;
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path(), &[lane("api", "openai", &format!("{}/v1", server.url), "")]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = tunebench::engine::Engine::new(registry(), tx);
    let cancel = engine.start(0, 1, tunebench::engine::RunRequest::for_lane(&ws, 0, "hi").unwrap());
    loop {
        if let EventKind::Warning { text } = rx.recv().await.unwrap().kind {
            assert!(text.contains("retry 1/2 in 30s"), "{text}");
            break;
        }
    }
    let at = Instant::now();
    cancel.cancel();
    let ev = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await.unwrap().unwrap();
    assert_eq!(ev.kind, EventKind::Failed { error: EngineError::Cancelled });
    assert!(at.elapsed() < Duration::from_millis(200));
    assert_eq!(server.requests().len(), 1);
}
