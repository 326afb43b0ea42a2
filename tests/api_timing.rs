//! `total_ms` measures the answer: from the request to the stream's end, not the work tunebench does after it
//! (counting a prompt the server did not count loads a tokenizer, which takes longer than many answers).
//! Runs the binary so that every run starts cold, as `tunebench run` does.

mod support;

use std::time::Duration;

use support::http::{MockServer, Part, Reply, openai_stream};

/// An answer that takes ~200 ms: two pieces with a pause between them.
fn slow_answer(usage: Option<(u64, u64, u64)>) -> Reply {
    let chunks = openai_stream(&["Your order ", "ships today."], usage);
    let (first, rest) = chunks.split_at(2);
    let mut reply = Reply::sse(first).then(Part::Sleep(Duration::from_millis(200)));
    for c in rest {
        reply = reply.then(Part::Bytes(c.clone().into_bytes()));
    }
    reply
}

async fn total_ms(usage: Option<(u64, u64, u64)>) -> (f64, serde_json::Value) {
    let server = MockServer::start(vec![slow_answer(usage)]).await;
    let ws = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let lane = support::api::lane("api", "openai", &format!("{}/v1", server.url), "");
    support::api::workspace(ws.path(), &[lane]);
    let (ws_path, state_path) = (ws.path().to_path_buf(), state.path().to_path_buf());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
            .args(["run", ws_path.to_str().unwrap(), "--input", "Where is my order?", "--json"])
            .env("TB_KEY", support::api::KEY)
            .env("XDG_STATE_HOME", &state_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    (v["total_ms"].as_f64().unwrap(), v)
}

#[tokio::test(flavor = "multi_thread")]
async fn total_time_without_usage_is_the_answer_time() {
    let (with, _) = total_ms(Some((9, 3, 0))).await;
    let (without, v) = total_ms(None).await;
    // The prompt is still counted (estimated), just not on the clock.
    assert_eq!((v["estimated"].as_bool(), v["output"].as_str()), (Some(true), Some("Your order ships today.")));
    assert!(v["prompt_tokens"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!((200.0..2000.0).contains(&with), "with usage: {with} ms");
    assert!(without < with + 100.0, "without usage the stream measured {without} ms, with usage {with} ms");
}
