//! Runs lanes concurrently: spawns each run, times it, turns cancellation and panics into `Failed`.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::*;

/// The backends this build can run, by kind.
#[derive(Clone, Default)]
pub struct Registry {
    backends: HashMap<BackendKind, Arc<dyn Backend>>,
}

impl Registry {
    /// The backends compiled into this build, API keys read from the process environment.
    pub fn builtin() -> Self {
        Self::builtin_with_env(super::api::process_env())
    }

    /// The built-in backends with API keys looked up through `env`.
    pub fn builtin_with_env(env: super::api::Env) -> Self {
        Self::default()
            .with(BackendKind::Local, Arc::new(super::local::LocalBackend::new()))
            .with(BackendKind::OpenAi, super::api::ApiBackend::new(BackendKind::OpenAi, env.clone()))
            .with(BackendKind::Anthropic, super::api::ApiBackend::new(BackendKind::Anthropic, env))
    }

    pub fn with(mut self, kind: BackendKind, backend: Arc<dyn Backend>) -> Self {
        self.backends.insert(kind, backend);
        self
    }

    pub fn get(&self, kind: BackendKind) -> Option<Arc<dyn Backend>> {
        self.backends.get(&kind).cloned()
    }
}

/// A backend's handle for streaming one run's events.
#[derive(Clone)]
pub struct LaneSink {
    tx: EventSender,
    lane: LaneIdx,
    run: RunId,
    /// When the run (or, for API lanes, its latest attempt) was sent; timings count from here.
    started: Arc<Mutex<Instant>>,
    first_token: Arc<OnceLock<Instant>>,
    /// When the answer was complete, if the backend said so; work after it (counting a prompt the server did
    /// not count) is not the answer's time.
    answered: Arc<OnceLock<Instant>>,
    tokens: Arc<AtomicU64>,
    /// Nanoseconds of compute this run used, when the backend measures it.
    busy_nanos: Arc<AtomicU64>,
    /// The most runs its device held at once while this one ran (0: not a local run).
    shared: Arc<AtomicU32>,
    prompt_tokens: Arc<OnceLock<u64>>,
    /// Set once the run's last event is sent; a straggling backend thread then talks to no one.
    closed: Arc<AtomicBool>,
}

impl LaneSink {
    fn new(tx: EventSender, lane: LaneIdx, run: RunId) -> Self {
        Self {
            tx,
            lane,
            run,
            started: Arc::new(Mutex::new(Instant::now())),
            first_token: Arc::default(),
            answered: Arc::default(),
            tokens: Arc::default(),
            busy_nanos: Arc::default(),
            shared: Arc::default(),
            prompt_tokens: Arc::default(),
            closed: Arc::default(),
        }
    }

    fn send(&self, kind: EventKind) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        // A closed receiver means nobody is listening any more (quit); the run just ends.
        let _ = self.tx.send(EngineEvent { lane: self.lane, run: self.run, kind });
    }

    /// Sends the run's final event; nothing the backend sends after it goes out.
    fn finish(&self, kind: EventKind) {
        self.send(kind);
        self.closed.store(true, Ordering::Release);
    }

    /// Whether the run has ended (cancelled or finished); backends on their own threads poll it.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The prompt is encoded and generation begins.
    pub fn started(&self, prompt_tokens: Option<u64>) {
        if let Some(n) = prompt_tokens {
            let _ = self.prompt_tokens.set(n);
        }
        self.send(EventKind::Started { prompt_tokens });
    }

    pub fn info(&self, detail: impl Into<String>) {
        self.send(EventKind::Info { detail: detail.into() });
    }

    pub fn progress(&self, done: u64, total: u64) {
        self.send(EventKind::Progress { done, total });
    }

    pub fn warning(&self, text: impl Into<String>) {
        self.send(EventKind::Warning { text: text.into() });
    }

    /// A piece of output text (one token or one streamed chunk).
    pub fn token(&self, text: impl Into<String>) {
        let _ = self.first_token.set(Instant::now());
        self.tokens.fetch_add(1, Ordering::Relaxed);
        self.send(EventKind::Token { text: text.into() });
    }

    /// The answer is complete: `total` stops here, whatever the backend does before it returns.
    pub fn answered(&self) {
        let _ = self.answered.set(Instant::now());
    }

    /// Adds compute time spent on this run (a local job's step).
    pub fn add_busy(&self, d: std::time::Duration) {
        self.busy_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The device this run is on holds `runs` runs now (this one included): the run's figures were shared
    /// when this ever exceeds 1.
    pub fn shared_with(&self, runs: usize) {
        self.shared.fetch_max(u32::try_from(runs).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// A request is on its way (again, after a retry): timings measure this attempt, not the waits before it.
    pub fn request_sent(&self) {
        if self.first_token.get().is_none() {
            *self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        }
    }

    fn timings(&self) -> Timings {
        let started = *self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let busy = self.busy_nanos.load(Ordering::Relaxed);
        Timings {
            ttft: self.first_token.get().map(|t| t.saturating_duration_since(started)),
            total: self.answered.get().map_or_else(|| started.elapsed(), |t| t.saturating_duration_since(started)),
            busy: (busy > 0).then(|| std::time::Duration::from_nanos(busy)),
            shared_lanes: Some(self.shared.load(Ordering::Relaxed)).filter(|&n| n > 0),
        }
    }

    fn chunks(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }
}

/// Starts runs and reports their events on one channel.
#[derive(Clone)]
pub struct Engine {
    registry: Registry,
    tx: EventSender,
}

impl Engine {
    pub fn new(registry: Registry, tx: EventSender) -> Self {
        Self { registry, tx }
    }

    /// Spawns a run on the current tokio runtime; cancel it through the returned token.
    ///
    /// The backend's synchronous part runs here, on the caller's thread, before anything is spawned: runs started
    /// one after another reach their backend in that order and at once, so the local lanes of one Ctrl+R join
    /// their device's first step together (spawned tasks start whenever the runtime gets to them, and a fast lane
    /// could finish before a sibling's task had submitted). It can panic too, so the call itself is guarded.
    pub fn start(&self, lane: LaneIdx, run: RunId, req: RunRequest) -> CancellationToken {
        let cancel = CancellationToken::new();
        let backend = self.registry.get(req.lane.backend);
        let kind = req.lane.backend;
        let sink = LaneSink::new(self.tx.clone(), lane, run);
        let token = cancel.clone();
        let call = backend.map(|b| catch_unwind(AssertUnwindSafe(|| b.run(req, sink.clone(), token.clone()))));
        tokio::spawn(async move {
            let result = match call {
                None => Err(EngineError::Unavailable(kind)),
                Some(Err(p)) => Err(EngineError::Panicked(panic_message(&*p))),
                Some(Ok(fut)) => {
                    let fut = AssertUnwindSafe(fut).catch_unwind();
                    tokio::select! {
                        biased;
                        () = token.cancelled() => Err(EngineError::Cancelled),
                        r = fut => r.unwrap_or_else(|p| Err(EngineError::Panicked(panic_message(&*p)))),
                    }
                }
            };
            let kind = match result {
                Ok(mut usage) => {
                    if usage.prompt_tokens.is_none() {
                        usage.prompt_tokens = sink.prompt_tokens.get().copied();
                    }
                    if usage.completion_tokens.is_none() {
                        usage.completion_tokens = Some(sink.chunks());
                        usage.estimated = true;
                    }
                    EventKind::Done { usage, timings: sink.timings() }
                }
                Err(error) => {
                    // Only a run that streamed something has figures worth showing; one that failed before its
                    // first token (a missing model, no key) would read as a zero-token answer.
                    if sink.chunks() > 0 {
                        sink.send(EventKind::Measured { timings: sink.timings(), chunks: sink.chunks() });
                    }
                    EventKind::Failed { error }
                }
            };
            sink.finish(kind);
        });
        cancel
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}
