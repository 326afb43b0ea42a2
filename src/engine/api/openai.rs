//! OpenAI-compatible Chat Completions (OpenAI, OpenRouter, Together, Groq, vLLM, Ollama, llama.cpp server).

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::fault::{ErrorBody, Fault, excerpt};
use super::{Secret, SseEvent, Step};
use crate::engine::{RunRequest, Usage};
use crate::workspace::ResponseFormat;

/// OpenAI's reasoning models take `max_completion_tokens` and only the default sampling.
pub fn is_reasoning_model(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    let family = |p: &str| m == p || m.starts_with(&format!("{p}-"));
    ["o1", "o3", "o4"].iter().any(|p| family(p)) || (m.starts_with("gpt-5") && !m.contains("chat"))
}

/// Builds `POST {base_url}/chat/completions` with streaming and usage reporting turned on.
pub fn prepare(req: &RunRequest, key: Option<&Secret>, warnings: &mut Vec<String>) -> Result<super::Prepared, String> {
    let lane = &req.lane;
    let s = &lane.sampling;
    let base = lane.base_url();
    let url = format!("{}/chat/completions", base.trim_end_matches('/'));
    let mut messages = Vec::with_capacity(2);
    if !req.system_prompt.is_empty() {
        messages.push(json!({"role": "system", "content": req.system_prompt}));
    }
    messages.push(json!({"role": "user", "content": req.input}));
    let mut body = json!({
        "model": lane.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let reasoning = is_reasoning_model(&lane.model);
    if reasoning {
        body["max_completion_tokens"] = json!(s.max_tokens);
        let mut dropped = Vec::new();
        if s.temperature != 1.0 {
            dropped.push("temperature");
        }
        if s.top_p != 1.0 {
            dropped.push("top_p");
        }
        if !s.stop.is_empty() {
            dropped.push("stop");
        }
        if !dropped.is_empty() {
            warnings.push(format!(
                "{} is a reasoning model: {} not sent (the API refuses them); max_tokens also covers its reasoning",
                lane.model,
                dropped.join(", ")
            ));
        }
    } else {
        body["max_tokens"] = json!(s.max_tokens);
        body["temperature"] = json!(s.temperature);
        body["top_p"] = json!(s.top_p);
        if !s.stop.is_empty() {
            body["stop"] = json!(s.stop);
        }
    }
    if let Some(seed) = s.seed {
        body["seed"] = json!(seed);
    }
    match &lane.api.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => body["response_format"] = json!({"type": "json_object"}),
        ResponseFormat::JsonSchema { json_schema, .. } => {
            body["response_format"] = json!({"type": "json_schema", "json_schema": json_schema});
        }
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    if let Some(k) = key {
        headers.insert(AUTHORIZATION, k.header("Bearer ")?);
    }
    Ok(super::Prepared::new(url, headers, &body, key))
}

#[derive(Deserialize)]
struct Chunk {
    /// Absent or null in usage-only chunks, depending on the server.
    choices: Option<Vec<Choice>>,
    usage: Option<ChunkUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

/// Turns `data:` chunks into steps; `[DONE]` ends the answer.
#[derive(Debug, Default)]
pub struct Decoder;

impl Decoder {
    pub fn event(&mut self, ev: &SseEvent) -> Result<Vec<Step>, Fault> {
        let data = ev.data.trim();
        match ev.event.as_str() {
            "message" => {}
            // Some compatible servers name their error events; every other named event is not ours.
            "error" => return Err(mid_stream(&parse(data)?)),
            _ => return Ok(Vec::new()),
        }
        if data == "[DONE]" {
            return Ok(vec![Step::End]);
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let v = parse(data)?;
        if v.get("error").is_some_and(|e| !e.is_null()) {
            return Err(mid_stream(&v));
        }
        let chunk: Chunk =
            serde_json::from_value(v).map_err(|e| Fault::fatal(format!("malformed chunk ({e}): {}", excerpt(data))))?;
        let mut steps = Vec::new();
        // One answer was asked for (n = 1); another index would be a different answer.
        for c in chunk.choices.unwrap_or_default().into_iter().filter(|c| c.index == 0) {
            if let Some(text) = c.delta.and_then(|d| d.content) {
                steps.push(Step::Text(text));
            }
            if let Some(r) = c.finish_reason {
                steps.push(Step::Stop(r));
            }
        }
        if let Some(u) = chunk.usage {
            steps.push(Step::Usage(Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                cached_prompt_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens),
                reasoning_tokens: u.completion_tokens_details.and_then(|d| d.reasoning_tokens),
                cache_write_tokens: None,
                estimated: false,
            }));
        }
        Ok(steps)
    }
}

fn parse(data: &str) -> Result<Value, Fault> {
    serde_json::from_str(data).map_err(|e| Fault::fatal(format!("malformed chunk ({e}): {}", excerpt(data))))
}

/// An error object sent inside a 200 stream; overload and rate errors may be retried while nothing was shown.
pub(super) fn mid_stream(v: &Value) -> Fault {
    let e = ErrorBody::from_value(v.get("error").unwrap_or(v));
    let label = e.kind.clone().or_else(|| e.code.clone()).unwrap_or_else(|| "error".into());
    let message = format!("error in the stream: {label}: {}", e.message.as_deref().unwrap_or("(no message)"));
    let transient_kinds = ["server_error", "rate_limit_exceeded", "rate_limit_error", "overloaded_error", "api_error"];
    let transient =
        !e.quota_exhausted() && [&e.kind, &e.code].into_iter().flatten().any(|k| transient_kinds.contains(&k.as_str()));
    Fault { message, transient, wait: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> SseEvent {
        SseEvent { event: "message".into(), data: data.into() }
    }

    #[test]
    fn chunks_usage_and_done() {
        let mut d = Decoder;
        let role =
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        assert_eq!(d.event(&ev(role)).unwrap(), [Step::Text(String::new())]);
        let text = r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#;
        assert_eq!(d.event(&ev(text)).unwrap(), [Step::Text("Hi".into())]);
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        let Step::Usage(u) = &d.event(&ev(usage)).unwrap()[0] else { panic!() };
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens), (Some(9), Some(2), Some(0)));
        assert_eq!(d.event(&ev("[DONE]")).unwrap(), [Step::End]);
        assert_eq!(d.event(&SseEvent { event: "keepalive".into(), data: "x".into() }).unwrap(), []);
        let null_choices = r#"{"choices":null,"usage":{"prompt_tokens":1,"completion_tokens":90,"completion_tokens_details":{"reasoning_tokens":64}}}"#;
        let Step::Usage(u) = &d.event(&ev(null_choices)).unwrap()[0] else { panic!() };
        assert_eq!((u.completion_tokens, u.reasoning_tokens), (Some(90), Some(64)));
    }

    #[test]
    fn errors_and_malformed_chunks() {
        let mut d = Decoder;
        let f = d.event(&ev(r#"{"error":{"message":"overloaded","type":"server_error"}}"#)).unwrap_err();
        assert!(f.transient && f.message.contains("server_error: overloaded"), "{f:?}");
        let f = d.event(&ev(r#"{"choices":[{"delta":{"content":"#)).unwrap_err();
        assert!(!f.transient && f.message.starts_with("malformed chunk"), "{f:?}");
        assert!(d.event(&ev(r#"{"choices":"no"}"#)).is_err());
    }

    #[test]
    fn reasoning_models() {
        for m in ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "openai/o3"] {
            assert!(is_reasoning_model(m), "{m}");
        }
        for m in ["gpt-4o-mini", "gpt-5-chat-latest", "llama3.1:8b", "omni"] {
            assert!(!is_reasoning_model(m), "{m}");
        }
    }
}
