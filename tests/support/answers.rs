//! A test backend whose answer depends on the lane and the input, counting calls and runs in flight per lane.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tunebench::engine::{Backend, EngineError, LaneSink, RunRequest, Usage};

type Answerer = dyn Fn(&str, &str) -> Result<String, String> + Send + Sync;

pub struct AnswerBackend {
    answer: Box<Answerer>,
    pub delay: Duration,
    pub calls: AtomicUsize,
    /// Per lane: (in flight now, most in flight at once).
    pub flight: Mutex<HashMap<String, (usize, usize)>>,
}

impl AnswerBackend {
    /// `answer(lane, input)`: the text the lane streams (in 3 pieces), or an error it fails with.
    pub fn new(answer: impl Fn(&str, &str) -> Result<String, String> + Send + Sync + 'static) -> Arc<Self> {
        Self::with_delay(Duration::ZERO, answer)
    }

    pub fn with_delay(
        delay: Duration,
        answer: impl Fn(&str, &str) -> Result<String, String> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self { answer: Box::new(answer), delay, calls: AtomicUsize::new(0), flight: Mutex::default() })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self, lane: &str) -> usize {
        self.flight.lock().unwrap().get(lane).map_or(0, |f| f.1)
    }
}

/// The backend as a registry holds it.
pub struct Handle(pub Arc<AnswerBackend>);

impl Backend for Handle {
    fn run(
        &self,
        req: RunRequest,
        sink: LaneSink,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<Usage, EngineError>> {
        let me = self.0.clone();
        Box::pin(async move {
            me.calls.fetch_add(1, Ordering::SeqCst);
            {
                let mut f = me.flight.lock().unwrap();
                let e = f.entry(req.lane.id.clone()).or_default();
                e.0 += 1;
                e.1 = e.1.max(e.0);
            }
            let result = (me.answer)(&req.lane.id, &req.input);
            let prompt_tokens = (req.system_prompt.len() + req.input.len()) as u64 / 4;
            sink.started(Some(prompt_tokens));
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(me.delay) => {}
            }
            let out = match result {
                Ok(text) => {
                    let chars: Vec<char> = text.chars().collect();
                    for piece in chars.chunks(chars.len().div_ceil(3).max(1)) {
                        sink.token(piece.iter().collect::<String>());
                    }
                    Ok(Usage { prompt_tokens: Some(prompt_tokens), completion_tokens: Some(3), ..Usage::default() })
                }
                Err(e) => {
                    sink.token("partial");
                    Err(EngineError::Backend(e))
                }
            };
            me.flight.lock().unwrap().entry(req.lane.id.clone()).or_default().0 -= 1;
            out
        })
    }
}
