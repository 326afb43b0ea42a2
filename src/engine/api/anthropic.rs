//! Anthropic Messages: `POST {base_url}/v1/messages`, streamed as named events.

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::json;

use super::fault::{Fault, excerpt};
use super::{Prepared, Secret, SseEvent, Step};
use crate::engine::{RunRequest, Usage};

/// The API version every Messages request states.
pub const API_VERSION: &str = "2023-06-01";

/// `{base_url}/v1/{path}`; base_url may be given with or without the version segment.
pub fn endpoint(lane: &crate::workspace::LaneSpec, path: &str) -> String {
    let base = lane.base_url().trim_end_matches('/');
    if base.ends_with("/v1") { format!("{base}/{path}") } else { format!("{base}/v1/{path}") }
}

/// Builds the request: `system` top-level, `max_tokens` always, sampling only where it differs from the API default.
pub fn prepare(req: &RunRequest, key: Option<&Secret>, warnings: &mut Vec<String>) -> Result<Prepared, String> {
    let lane = &req.lane;
    let s = &lane.sampling;
    let url = endpoint(lane, "messages");
    let mut body = json!({
        "model": lane.model,
        "max_tokens": s.max_tokens,
        "messages": [{"role": "user", "content": req.input}],
                "stream": true,
    });
    if !req.system_prompt.is_empty() {
        body["system"] = json!(req.system_prompt);
    }
    // Recent models refuse temperature and top_p together: a lane that sets top_p samples by it alone.
    if s.top_p != 1.0 {
        body["top_p"] = json!(s.top_p);
        warnings
            .push(format!("top_p = {} is set, so temperature is not sent (recent Claude models refuse both)", s.top_p));
    } else {
        body["temperature"] = json!(s.temperature);
    }
    if let Some(k) = s.top_k {
        body["top_k"] = json!(k);
    }
    if !s.stop.is_empty() {
        body["stop_sequences"] = json!(s.stop);
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    headers.insert(HeaderName::from_static("anthropic-version"), HeaderValue::from_static(API_VERSION));
    if let Some(k) = key {
        headers.insert(HeaderName::from_static("x-api-key"), k.header("")?);
    }
    Ok(Prepared::new(url, headers, &body, key))
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    message: Option<Message>,
    content_block: Option<Block>,
    delta: Option<Delta>,
    usage: Option<EventUsage>,
}

#[derive(Deserialize)]
struct Message {
    usage: Option<EventUsage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct EventUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl EventUsage {
    /// Anthropic counts cached and cache-writing prompt tokens apart from `input_tokens`; the prompt is all three.
    /// Counts whose sum overflows are no count at all (unknown, never a wrapped or capped number).
    fn prompt(&self) -> Option<u64> {
        let parts = [self.input_tokens, self.cache_creation_input_tokens, self.cache_read_input_tokens];
        if !parts.iter().any(Option::is_some) {
            return None;
        }
        parts.iter().flatten().try_fold(0u64, |sum, &n| sum.checked_add(n))
    }
}

/// Turns message_start / content_block_delta / message_delta / message_stop into steps.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The whole prompt as message_start counted it (input + cache reads + cache writes).
    prompt: Option<u64>,
}

/// Events whose payload carries something tunebench uses; every other name is skipped unread.
const READ: [&str; 5] = ["message_start", "content_block_start", "content_block_delta", "message_delta", "error"];

impl Decoder {
    pub fn event(&mut self, ev: &SseEvent) -> Result<Vec<Step>, Fault> {
        let data = ev.data.trim();
        match ev.event.as_str() {
            "message_stop" => return Ok(vec![Step::End]),
            // A proxy that drops `event:` lines leaves only the payload's `type`, read below.
            "message" => {}
            name if !READ.contains(&name) => return Ok(Vec::new()),
            _ => {}
        }
        let malformed = |e: serde_json::Error| Fault::fatal(format!("malformed event ({e}): {}", excerpt(data)));
        let v: serde_json::Value = serde_json::from_str(data).map_err(malformed)?;
        let name = if ev.event == "message" { v.get("type").and_then(|t| t.as_str()).unwrap_or("") } else { &ev.event };
        if name == "error" {
            return Err(super::openai::mid_stream(&v));
        }
        if !READ.contains(&name) {
            return Ok(if name == "message_stop" { vec![Step::End] } else { Vec::new() });
        }
        let e: Event = serde_json::from_value(v).map_err(malformed)?;
        let mut steps = Vec::new();
        match e.kind.as_str() {
            "message_start" => {
                if let Some(u) = e.message.and_then(|m| m.usage) {
                    if let Some(n) = u.prompt() {
                        self.prompt = Some(n);
                        steps.push(Step::PromptTokens(n));
                    }
                    steps.push(Step::Usage(Usage {
                        prompt_tokens: u.prompt(),
                        cached_prompt_tokens: u.cache_read_input_tokens,
                        cache_write_tokens: u.cache_creation_input_tokens,
                        ..Usage::default()
                    }));
                }
            }
            "content_block_start" => {
                if let Some(Block { kind, text: Some(t) }) = e.content_block
                    && kind == "text"
                {
                    steps.push(Step::Text(t));
                }
            }
            "content_block_delta" => {
                // thinking_delta, signature_delta, input_json_delta and citations are not answer text.
                if let Some(Delta { kind: Some(k), text: Some(t), .. }) = e.delta
                    && k == "text_delta"
                {
                    steps.push(Step::Text(t));
                }
            }
            "message_delta" => {
                if let Some(r) = e.delta.and_then(|d| d.stop_reason) {
                    steps.push(Step::Stop(r));
                }
                if let Some(u) = e.usage {
                    // output_tokens here is cumulative: the final one is the answer's length. A delta that
                    // repeats only some prompt fields must not shrink the count message_start gave.
                    let prompt = match (self.prompt, u.prompt()) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                    steps.push(Step::Usage(Usage {
                        prompt_tokens: prompt,
                        completion_tokens: u.output_tokens,
                        cached_prompt_tokens: u.cache_read_input_tokens,
                        reasoning_tokens: None,
                        cache_write_tokens: u.cache_creation_input_tokens,
                        estimated: false,
                    }));
                }
            }
            _ => {}
        }
        Ok(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, data: &str) -> SseEvent {
        SseEvent { event: name.into(), data: data.into() }
    }

    #[test]
    fn a_whole_stream() {
        let mut d = Decoder::default();
        let start = r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":20,"cache_read_input_tokens":5,"output_tokens":1}}}"#;
        let steps = d.event(&ev("message_start", start)).unwrap();
        assert_eq!(steps[0], Step::PromptTokens(25));
        let delta = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#;
        assert_eq!(d.event(&ev("content_block_delta", delta)).unwrap(), [Step::Text("Hello".into())]);
        let thinking = r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}"#;
        assert_eq!(d.event(&ev("content_block_delta", thinking)).unwrap(), []);
        assert_eq!(d.event(&ev("ping", r#"{"type":"ping"}"#)).unwrap(), []);
        let end = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12}}"#;
        let steps = d.event(&ev("message_delta", end)).unwrap();
        assert_eq!(steps[0], Step::Stop("end_turn".into()));
        let Step::Usage(u) = &steps[1] else { panic!() };
        assert_eq!(u.completion_tokens, Some(12));
        assert_eq!(d.event(&ev("message_stop", r#"{"type":"message_stop"}"#)).unwrap(), [Step::End]);
        assert_eq!(d.event(&ev("message", r#"{"type":"message_stop"}"#)).unwrap(), [Step::End]);
        // Unknown or keep-alive events are skipped unread, whatever their data.
        assert_eq!(d.event(&ev("ping", "")).unwrap(), []);
        assert_eq!(d.event(&ev("vendor_note", "not json")).unwrap(), []);
        // A later delta with only input_tokens keeps the whole prompt message_start counted.
        let partial = r#"{"type":"message_delta","delta":{},"usage":{"input_tokens":20,"output_tokens":13}}"#;
        let Step::Usage(u) = &d.event(&ev("message_delta", partial)).unwrap()[0] else { panic!() };
        assert_eq!((u.prompt_tokens, u.completion_tokens), (Some(25), Some(13)));
    }

    #[test]
    fn usage_that_overflows_is_unknown() {
        // Found by the fuzz harness: the sum of the three prompt counts overflowed (a panic in debug builds).
        let mut d = Decoder::default();
        let start = r#"{"type":"message_start","message":{"usage":{"input_tokens":20,"cache_read_input_tokens":18446744073709551615}}}"#;
        let steps = d.event(&ev("message_start", start)).unwrap();
        let Step::Usage(u) = &steps[0] else { panic!("{steps:?}") };
        assert_eq!((u.prompt_tokens, u.cached_prompt_tokens), (None, Some(u64::MAX)));
    }

    #[test]
    fn error_events() {
        let mut d = Decoder::default();
        let f = d.event(&ev("error", r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#));
        let f = f.unwrap_err();
        assert!(f.transient && f.message.contains("overloaded_error: Overloaded"), "{f:?}");
        assert!(d.event(&ev("content_block_delta", "{not json")).is_err());
        assert!(d.event(&ev("message_delta", r#"{"type":"message_delta","usage":{"output_tokens":"x"}}"#)).is_err());
    }
}
