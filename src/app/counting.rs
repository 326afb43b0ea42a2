//! Live prompt counts while typing: a worker thread counts the latest text, never the UI thread.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::{Action, AppState};
use crate::metrics::{Count, Counters};
use crate::workspace::{BackendKind, LaneSpec, ModelSpec};

/// Keystrokes closer together than this are counted once, after the last.
const DEBOUNCE: Duration = Duration::from_millis(40);

/// What one count covers: every lane's prompt with the input as typed.
struct Job {
    lanes: Vec<(LaneSpec, Option<ModelSpec>, String)>,
    input: String,
}

/// Sends count jobs to the counting thread when the input or the lanes change.
pub struct LiveCounts {
    tx: std_mpsc::Sender<Job>,
    last: Option<u64>,
}

impl LiveCounts {
    /// Starts the counting thread; its results arrive as `Action::Counted` on `results`.
    pub fn start(counters: Arc<Counters>, results: UnboundedSender<Action>) -> Self {
        let (tx, rx) = std_mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("tunebench-count".into()).spawn(move || {
            while let Ok(mut job) = rx.recv() {
                // Let a burst of keystrokes settle, then count only the newest text.
                let settle = Instant::now() + DEBOUNCE;
                loop {
                    match rx.recv_timeout(settle.saturating_duration_since(Instant::now())) {
                        Ok(newer) => job = newer,
                        Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                        Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                let counts: Vec<Result<Count, String>> = job
                    .lanes
                    .iter()
                    .map(|(lane, model, system)| counters.count(lane, model.as_ref(), system, &job.input))
                    .collect();
                if results.send(Action::Counted(counts)).is_err() {
                    return;
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the counting thread: {e}");
        }
        Self { tx, last: None }
    }

    /// Queues a count when what it depends on changed since the last one. Called after every batch of
    /// events, so it only hashes borrowed text; the job is built when something changed.
    pub fn refresh(&mut self, state: &AppState) {
        let ws = &state.ws;
        let model = |l: &LaneSpec| ws.models.get(&l.model).filter(|_| l.backend == BackendKind::Local);
        let system = |l: &LaneSpec| ws.prompt_text(&l.prompt).unwrap_or_default();
        let mut h = DefaultHasher::new();
        for line in state.editor.lines() {
            line.hash(&mut h);
        }
        for l in &ws.lanes {
            (l.backend, &l.model, system(l), model(l).map(|m| (&m.path, &m.chat_template)), l.enable_thinking)
                .hash(&mut h);
        }
        let key = h.finish();
        if self.last == Some(key) {
            return;
        }
        self.last = Some(key);
        let lanes = ws.lanes.iter().map(|l| (l.clone(), model(l).cloned(), system(l).to_string())).collect();
        let _ = self.tx.send(Job { lanes, input: state.input_text() });
    }
}
