//! One attempt at a hosted call: send, wait with timeouts, decode the event stream into the lane's sink.

use std::time::{Duration, Instant};

use futures::StreamExt;

use super::Step;
use super::fault::{self, ErrorBody, Fault, fmt_wait};
use super::sse::{SseDecoder, SseEvent};
use crate::engine::{LaneSink, Usage};
use crate::workspace::{ApiOptions, BackendKind};

/// A request ready to send (again, on retry).
pub struct Prepared {
    pub url: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    /// Kept to scrub the key from whatever the server sends back.
    pub key: Option<super::Secret>,
}

impl Prepared {
    pub fn new(
        url: String,
        headers: reqwest::header::HeaderMap,
        body: &serde_json::Value,
        key: Option<&super::Secret>,
    ) -> Self {
        Self { url, headers, body: body.to_string().into_bytes(), key: key.cloned() }
    }

    /// Text from the server with the key scrubbed out, before anything is cut, shown or stored.
    pub fn scrub(&self, text: String) -> String {
        super::secret::scrub(self.key.as_ref(), text)
    }
}

/// Largest error body read; error bodies are short, and a misbehaving server must not fill memory.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Sends once and streams the answer; `shown` turns true with the first answer text, after which the
/// caller never retries (the user has seen half an answer).
pub async fn attempt(
    kind: BackendKind,
    client: &reqwest::Client,
    p: &Prepared,
    api: &ApiOptions,
    sink: &LaneSink,
    shown: &mut bool,
) -> Result<Usage, Fault> {
    let deadline = Instant::now() + api.first_byte_timeout;
    let request = client.post(&p.url).headers(p.headers.clone()).body(p.body.clone());
    let first_byte =
        || Fault::transient(format!("no response within {} (first_byte_timeout_s)", fmt_wait(api.first_byte_timeout)));
    let resp = match tokio::time::timeout(api.first_byte_timeout, request.send()).await {
        Err(_) => return Err(first_byte()),
        Ok(Err(e)) => return Err(transport(&e, api, &p.url)),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if !status.is_success() {
        let headers = resp.headers().clone();
        let body = p.scrub(read_capped(resp, api.idle_timeout).await);
        return Err(fault::from_status(status, &headers, &body));
    }
    if let Some(enc) = resp.headers().get(reqwest::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok())
        && !enc.eq_ignore_ascii_case("identity")
    {
        // Nothing asked for compression; a proxy that adds it anyway would otherwise look like garbage.
        return Err(Fault::fatal(format!("the server sent a compressed stream (content-encoding: {enc}) unasked")));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !content_type.is_empty() && !content_type.starts_with("text/event-stream") {
        let body = p.scrub(read_capped(resp, api.idle_timeout).await);
        let detail = ErrorBody::parse(&body).message.unwrap_or_else(|| fault::excerpt(&body));
        return Err(Fault::fatal(format!("expected an event stream, got {content_type}: {detail}")));
    }
    let mut body = resp.bytes_stream();
    let mut sse = SseDecoder::new();
    let mut decoder = Decoder::new(kind);
    let mut usage = Usage::default();
    let mut chars = 0usize;
    let mut got_bytes = false;
    // Why the model stopped, once said: an answer that has it is complete even if the end marker never comes.
    let mut stopped = false;
    loop {
        let wait = if got_bytes { api.idle_timeout } else { deadline.saturating_duration_since(Instant::now()) };
        let next = match tokio::time::timeout(wait, body.next()).await {
            Err(_) if !got_bytes => return Err(first_byte()),
            Err(_) => {
                return Err(Fault::transient(format!(
                    "stream stalled: no data for {} (idle_timeout_s){}",
                    fmt_wait(api.idle_timeout),
                    after(chars)
                )));
            }
            Ok(n) => n,
        };
        let bytes = match next {
            None if stopped => {
                sink.warning("the stream closed without its end marker after a complete answer");
                return Ok(usage);
            }
            None => {
                return Err(Fault::transient(format!("stream ended before the answer was complete{}", after(chars))));
            }
            Some(Err(e)) => return Err(Fault::transient(format!("stream cut: {}{}", chain(&e), after(chars)))),
            Some(Ok(b)) => b,
        };
        got_bytes = true;
        let events = sse.feed(&bytes);
        if sse.overflowed() {
            return Err(Fault::fatal(format!(
                "the server sent an event line over {} MiB{}",
                super::sse::MAX_LINE >> 20,
                after(chars)
            )));
        }
        for ev in events {
            for step in decode(&mut decoder, &ev, p)? {
                match step {
                    Step::Text(t) if t.is_empty() => {}
                    Step::Text(t) => {
                        *shown = true;
                        chars += t.chars().count();
                        sink.token(t);
                    }
                    Step::PromptTokens(n) => sink.started(Some(n)),
                    Step::Usage(u) => merge(&mut usage, u),
                    Step::Stop(reason) => {
                        stopped = true;
                        if let Some(w) = stop_warning(&reason) {
                            sink.warning(w);
                        }
                    }
                    Step::End => return Ok(usage),
                }
            }
        }
    }
}

/// Events are parsed as sent: the answer is the model's own text, and a key inside a chunk is no reason to
/// change what it says. A fault quoting a chunk that holds the key is rebuilt from the scrubbed chunk, since
/// the quote is cut short and could keep half of the key past the caller's scrub.
fn decode(decoder: &mut Decoder, ev: &SseEvent, p: &Prepared) -> Result<Vec<Step>, Fault> {
    let fault = match decoder.event(ev) {
        Ok(steps) => return Ok(steps),
        Err(f) => f,
    };
    let scrubbed = p.scrub(ev.data.clone());
    if scrubbed == ev.data {
        return Err(fault);
    }
    match decoder.event(&SseEvent { event: ev.event.clone(), data: scrubbed }) {
        Err(f) => Err(f),
        Ok(_) => Err(Fault { message: p.scrub(fault.message), ..fault }),
    }
}

enum Decoder {
    OpenAi(crate::engine::api::openai::Decoder),
    Anthropic(crate::engine::api::anthropic::Decoder),
}

impl Decoder {
    fn new(kind: BackendKind) -> Self {
        match kind {
            BackendKind::Anthropic => Self::Anthropic(Default::default()),
            _ => Self::OpenAi(Default::default()),
        }
    }

    fn event(&mut self, ev: &SseEvent) -> Result<Vec<Step>, Fault> {
        match self {
            Self::OpenAi(d) => d.event(ev),
            Self::Anthropic(d) => d.event(ev),
        }
    }
}

fn merge(into: &mut Usage, u: Usage) {
    into.prompt_tokens = u.prompt_tokens.or(into.prompt_tokens);
    into.completion_tokens = u.completion_tokens.or(into.completion_tokens);
    into.cached_prompt_tokens = u.cached_prompt_tokens.or(into.cached_prompt_tokens);
    into.cache_write_tokens = u.cache_write_tokens.or(into.cache_write_tokens);
}

/// Stop reasons worth a line in the pane: the answer is cut or withheld.
fn stop_warning(reason: &str) -> Option<String> {
    match reason {
        "length" | "max_tokens" => Some("the answer hit max_tokens and is cut short".into()),
        "content_filter" => Some("the provider's content filter stopped the answer".into()),
        "refusal" => Some("the model refused to answer".into()),
        _ => None,
    }
}

fn after(chars: usize) -> String {
    if chars == 0 { String::new() } else { format!(" after {chars} characters (partial answer kept)") }
}

/// A transport error with its causes, which say what actually failed (refused, reset, DNS …).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

fn transport(e: &reqwest::Error, api: &ApiOptions, url: &str) -> Fault {
    if e.is_connect() && e.is_timeout() {
        return Fault::transient(format!(
            "connect timeout after {} (connect_timeout_s)",
            fmt_wait(api.connect_timeout)
        ));
    }
    if e.is_builder() {
        return Fault::fatal(format!("bad request URL: {}", chain(e)));
    }
    let detail = chain(e);
    // A certificate the client rejects will be rejected again.
    if detail.to_ascii_lowercase().contains("certificate") {
        return Fault::fatal(format!("TLS: {detail}"));
    }
    if e.is_connect() {
        // The innermost cause says it (refused, unreachable, DNS); the layers above repeat the URL.
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        return Fault::transient(format!("cannot connect to {}: {cause}", crate::workspace::url_host(url)));
    }
    Fault::transient(format!("request failed: {detail}"))
}

/// Reads an error body, at most `MAX_ERROR_BODY` bytes, giving up on a stall; best effort.
async fn read_capped(resp: reqwest::Response, idle: Duration) -> String {
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    while buf.len() < MAX_ERROR_BODY {
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(b))) => buf.extend_from_slice(&b),
            _ => break,
        }
    }
    buf.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&buf).into_owned()
}
