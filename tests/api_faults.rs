//! Hosted API lanes when things go wrong: retries, timeouts, cut and malformed streams, refused keys.

mod support;

use std::time::{Duration, Instant};

use support::api::*;
use support::http::{MockServer, Part, Reply, anthropic_stream, named, openai_stream, sse};
use tunebench::engine::{EngineError, EventKind};

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
    // Nothing streamed, so no Measured event comes first: the cancel is the next event.
    let ev = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await.unwrap().unwrap();
    assert_eq!(ev.kind, EventKind::Failed { error: EngineError::Cancelled });
    assert!(at.elapsed() < Duration::from_millis(200));
    assert_eq!(server.requests().len(), 1);
}
