//! Hosted API lanes: key lookup, the per-lane HTTP client and the retry loop shared by both dialects.

pub mod anthropic;
pub mod count_tokens;
pub mod fault;
pub mod openai;
pub mod secret;
pub mod sse;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{Backend, EngineError, LaneSink, RunRequest, Usage};
use crate::workspace::{BackendKind, LaneSpec};
use fault::{MAX_WAIT, backoff, fmt_wait};
pub use secret::Secret;
pub use sse::{SseDecoder, SseEvent};
pub use stream::Prepared;

/// Reads an environment variable. Injected so tests never mutate the process environment.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> Env {
    Arc::new(|name| std::env::var(name).ok())
}

/// What one SSE event of a dialect meant.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Answer text (may be empty: role-only and keep-alive chunks).
    Text(String),
    /// The prompt's size, known before the answer (Anthropic's message_start).
    PromptTokens(u64),
    /// Counts as reported; fields left None keep what earlier steps said.
    Usage(Usage),
    /// Why the model stopped (stop, length, max_tokens, content_filter …).
    Stop(String),
    /// The stream's own end marker (`[DONE]`, message_stop): the answer is complete.
    End,
}

/// An OpenAI-compatible or Anthropic lane.
pub struct ApiBackend {
    inner: Arc<Inner>,
}

struct Inner {
    kind: BackendKind,
    env: Env,
    /// One client per (connect timeout, loopback) so connections are pooled across runs.
    clients: Mutex<HashMap<(u128, bool), reqwest::Client>>,
}

impl ApiBackend {
    pub fn new(kind: BackendKind, env: Env) -> Arc<Self> {
        assert!(kind.is_api(), "ApiBackend serves API lanes only");
        Arc::new(Self { inner: Arc::new(Inner { kind, env, clients: Mutex::default() }) })
    }
}

impl Inner {
    fn key(&self, lane: &LaneSpec) -> Result<Option<Secret>, String> {
        lane_key(lane, &self.env)
    }
}

/// The key a lane names (None when it names none, `api_key_env = ""`); a missing one says what to do.
pub fn lane_key(lane: &LaneSpec, env: &Env) -> Result<Option<Secret>, String> {
    let default = lane.backend.default_key_env().unwrap_or_default();
    let var = lane.api_key_env.as_deref().unwrap_or(default);
    if var.is_empty() {
        return Ok(None);
    }
    match env(var) {
        Some(k) if !k.trim().is_empty() => Ok(Some(Secret::new(k.trim()))),
        Some(_) => Err(format!("no API key: {var} is set but empty")),
        None => Err(format!(
            "no API key: {var} is not set (export it, name another variable with api_key_env, \
             or set api_key_env = \"\" for a server that needs none)"
        )),
    }
}

impl Inner {
    fn client(&self, lane: &LaneSpec, url: &str) -> Result<reqwest::Client, String> {
        let loopback = is_loopback(url);
        let slot = (lane.api.connect_timeout.as_millis(), loopback);
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&slot) {
            return Ok(c.clone());
        }
        let c = http_client(lane, url)?;
        clients.insert(slot, c.clone());
        Ok(c)
    }

    async fn call(self: Arc<Self>, req: RunRequest, sink: LaneSink) -> Result<Usage, String> {
        let key = self.key(&req.lane)?;
        let redact = |s: String| secret::scrub(key.as_ref(), s);
        let mut warnings = Vec::new();
        let prepared = match self.kind {
            BackendKind::Anthropic => anthropic::prepare(&req, key.as_ref(), &mut warnings),
            _ => openai::prepare(&req, key.as_ref(), &mut warnings),
        }
        .map_err(redact)?;
        for w in warnings {
            sink.warning(redact(w));
        }
        let client = self.client(&req.lane, &prepared.url).map_err(redact)?;
        let api = &req.lane.api;
        let mut retry = 0;
        let lane = &req.lane.id;
        loop {
            tracing::info!(lane, url = %redact(prepared.url.clone()), retry, "sending");
            sink.request_sent();
            let mut shown = false;
            let fault = match stream::attempt(self.kind, &client, &prepared, api, &sink, &mut shown).await {
                Ok(usage) => {
                    sink.answered();
                    tracing::info!(lane, ?usage, "answered");
                    return Ok(finish_usage(usage, &req));
                }
                Err(f) => f,
            };
            tracing::warn!(lane, fault = %redact(fault.message.clone()), shown, "attempt failed");
            let may_retry = fault.transient && !shown;
            if !may_retry || retry >= api.max_retries {
                let gave_up =
                    if may_retry && retry > 0 { format!(" (gave up after {retry} retries)") } else { String::new() };
                return Err(redact(format!("{}{gave_up}", fault.message)));
            }
            retry += 1;
            let wait = match fault.wait {
                Some(w) if w > MAX_WAIT => {
                    return Err(redact(format!(
                        "{} — the server asks to wait {} before retrying; not retried",
                        fault.message,
                        fmt_wait(w)
                    )));
                }
                Some(w) => w,
                None => backoff(retry, rand::random::<f64>()),
            };
            sink.warning(redact(format!(
                "{} — retry {retry}/{} in {}",
                fault.message,
                api.max_retries,
                fmt_wait(wait)
            )));
            tokio::time::sleep(wait).await;
        }
    }
}

impl Backend for ApiBackend {
    fn run(
        &self,
        req: RunRequest,
        sink: LaneSink,
        _cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<Usage, EngineError>> {
        // The engine drops this future on cancel, which closes the connection at once.
        self.inner.clone().call(req, sink).map(|r| r.map_err(EngineError::Backend)).boxed()
    }
}

/// A prompt count the server did not report is taken from tunebench's own count (tiktoken and the chat
/// framing; needs no files for API lanes) and marked estimated.
fn finish_usage(mut usage: Usage, req: &RunRequest) -> Usage {
    if usage.prompt_tokens.is_none() {
        let counted = crate::metrics::Counters::default().count(&req.lane, None, &req.system_prompt, &req.input);
        let chars = req.system_prompt.chars().count() + req.input.chars().count();
        usage.prompt_tokens = Some(counted.map_or(chars.div_ceil(4) as u64, |c| c.tokens));
        usage.estimated = true;
    }
    usage
}

/// A client for one lane's server. No overall `timeout`: it would cap the whole stream and cut long
/// answers; callers time each phase themselves.
pub fn http_client(lane: &LaneSpec, url: &str) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(lane.api.connect_timeout)
        .user_agent(concat!("tunebench/", env!("CARGO_PKG_VERSION")));
    if is_loopback(url) {
        // A local server (llama.cpp, Ollama, vLLM) is never reached through a proxy.
        b = b.no_proxy();
    }
    b.build().map_err(|e| format!("cannot set up HTTP: {e}"))
}

/// Whether a URL's host is this machine.
pub fn is_loopback(url: &str) -> bool {
    let host_port = crate::workspace::url_host(url);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_hosts() {
        for u in ["http://127.0.0.1:8080/v1", "http://localhost:11434/v1", "http://[::1]:9/v1", "http://u:p@127.0.0.2"]
        {
            assert!(super::is_loopback(u), "{u}");
        }
        for u in ["https://api.openai.com/v1", "http://10.0.0.1/v1", "http://localhost.example.com"] {
            assert!(!super::is_loopback(u), "{u}");
        }
    }
}
