//! Anthropic's token counting endpoint (`POST /v1/messages/count_tokens`): the exact prompt size on demand.

use std::time::Duration;

use serde_json::json;

use super::fault::{self, Fault};
use super::{Env, lane_key};
use crate::workspace::LaneSpec;

/// The prompt tokens Anthropic counts for this lane's system prompt and input (free; no answer is generated).
pub async fn anthropic(lane: &LaneSpec, env: &Env, system: &str, input: &str) -> Result<u64, String> {
    let key = lane_key(lane, env)?;
    let url = crate::engine::api::anthropic::endpoint(lane, "messages/count_tokens");
    let mut body = json!({"model": lane.model, "messages": [{"role": "user", "content": input}]});
    if !system.is_empty() {
        body["system"] = json!(system);
    }
    let client = super::http_client(lane, &url)?;
    let mut req = client
        .post(&url)
        .header("anthropic-version", crate::engine::api::anthropic::API_VERSION)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = &key {
        req = req.header("x-api-key", k.header("")?);
    }
    let redact = |s: String| super::secret::scrub(key.as_ref(), s);
    // A short JSON answer: one limit for the whole exchange is right here (no stream to cut).
    let limit = lane.api.first_byte_timeout + lane.api.idle_timeout.min(Duration::from_secs(30));
    let exchange = async {
        let resp = req.send().await.map_err(|e| format!("count_tokens: {e}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| format!("count_tokens: {e}"))?;
        if !status.is_success() {
            let Fault { message, .. } = fault::from_status(status, &headers, &text);
            return Err(format!("count_tokens: {message}"));
        }
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("count_tokens: not JSON ({e}): {}", fault::excerpt(&text)))?;
        v.get("input_tokens")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("count_tokens: no input_tokens in {}", fault::excerpt(&text)))
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(r) => r.map_err(redact),
        Err(_) => Err(format!("count_tokens: no answer within {}", fault::fmt_wait(limit))),
    }
}
