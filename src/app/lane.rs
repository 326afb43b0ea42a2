//! One lane's run state: streamed output, status, metrics; mirrors `ui::lane`.

use crate::engine::{EngineError, EventKind, RunId, Timings, Usage};
use crate::workspace::LaneSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneStatus {
    Idle,
    /// Started, no token yet.
    Waiting,
    Streaming,
    Done,
    Failed,
    Cancelled,
}

impl LaneStatus {
    pub fn is_running(self) -> bool {
        matches!(self, Self::Waiting | Self::Streaming)
    }

    pub fn glyph(self) -> &'static str {
        match self {
            Self::Idle => "·",
            Self::Waiting => "…",
            Self::Streaming => "▸",
            Self::Done => "✓",
            Self::Failed => "✗",
            Self::Cancelled => "⊘",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Waiting => "waiting",
            Self::Streaming => "streaming",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LaneState {
    pub status: LaneStatus,
    /// The current run; events of any other run are stale.
    pub run: Option<RunId>,
    /// The input the current run answers (the editor may have changed since).
    pub input: String,
    pub output: String,
    pub prompt_tokens: Option<u64>,
    pub usage: Option<Usage>,
    pub timings: Option<Timings>,
    pub error: Option<EngineError>,
    /// Lines scrolled up from the bottom; 0 follows the stream.
    pub scroll_back: u16,
    /// The lane's settings when the current run began.
    pub spec: Option<LaneSpec>,
    /// The system prompt text the current run was sent with.
    pub system_prompt: String,
    /// Device and weight formats (and the adapter loaded) as the backend reported them.
    pub detail: Option<String>,
    /// The settings of the run that reported `detail`: it describes them, not whatever F6 has set since.
    pub detail_for: Option<LaneSpec>,
    /// Prompt tokens processed / total, while no token has arrived.
    pub progress: Option<(u64, u64)>,
    pub warnings: Vec<String>,
    /// The prompt's size for the input as typed now (counted live, off the UI thread).
    pub live: Option<Result<crate::metrics::Count, String>>,
}

impl Default for LaneState {
    fn default() -> Self {
        Self {
            status: LaneStatus::Idle,
            run: None,
            input: String::new(),
            output: String::new(),
            prompt_tokens: None,
            usage: None,
            timings: None,
            error: None,
            scroll_back: 0,
            spec: None,
            system_prompt: String::new(),
            detail: None,
            detail_for: None,
            progress: None,
            warnings: Vec::new(),
            live: None,
        }
    }
}

/// What a finished run hands back for recording.
pub enum Finished {
    Done,
    Failed,
}

impl LaneState {
    /// Resets for a new run.
    pub fn begin(&mut self, run: RunId, input: &str, spec: &LaneSpec, system_prompt: &str) {
        *self = Self {
            status: LaneStatus::Waiting,
            run: Some(run),
            input: input.to_string(),
            spec: Some(spec.clone()),
            system_prompt: system_prompt.to_string(),
            // What the backend said about where it runs stays until it says otherwise.
            detail: self.detail.take(),
            detail_for: self.detail_for.take(),
            live: self.live.take(),
            ..Self::default()
        };
    }

    /// Whether the last run sent what a run would send now: same input, same lane settings, same prompt.
    pub fn run_is_current(&self, input: &str, spec: &LaneSpec, system_prompt: &str) -> bool {
        self.status != LaneStatus::Idle
            && self.input == input
            && self.spec.as_ref() == Some(spec)
            && self.system_prompt == system_prompt
    }

    /// The backend's report of where the lane runs, while it describes what `spec` would run: same backend,
    /// model and adapter as the run that reported it.
    pub fn detail_for(&self, spec: &LaneSpec) -> Option<&str> {
        let of = self.detail_for.as_ref()?;
        let same = of.backend == spec.backend && of.model == spec.model && of.adapter == spec.adapter;
        self.detail.as_deref().filter(|_| same)
    }

    /// Prompt tokens to show: the run's own figure while it is current (see `run_is_current`), else the live
    /// count of what a run would send now; with whether it is an estimate.
    pub fn shown_prompt_tokens(&self, current: bool) -> Option<(u64, bool)> {
        if current && let Some(n) = self.prompt_tokens {
            // An unfinished run's usage is estimated for what it streamed; its prompt count is the backend's.
            let estimated = self.status == LaneStatus::Done && self.usage.as_ref().is_some_and(|u| u.estimated);
            return Some((n, estimated));
        }
        match &self.live {
            Some(Ok(c)) => Some((c.tokens, c.estimated)),
            _ => None,
        }
    }

    /// Applies an event of the current run; returns whether the run just ended.
    pub fn apply(&mut self, kind: EventKind) -> Option<Finished> {
        // A run that has ended (cancelled, failed, done) takes no more events, even from a straggling thread.
        if !self.status.is_running() {
            return None;
        }
        match kind {
            EventKind::Started { prompt_tokens } => {
                self.prompt_tokens = prompt_tokens;
                None
            }
            EventKind::Info { detail } => {
                self.detail = Some(detail);
                self.detail_for = self.spec.clone();
                None
            }
            EventKind::Warning { text } => {
                self.warnings.push(text);
                None
            }
            EventKind::Progress { done, total } => {
                self.progress = Some((done, total));
                None
            }
            EventKind::Token { text } => {
                self.status = LaneStatus::Streaming;
                self.output.push_str(&text);
                None
            }
            EventKind::Done { usage, timings } => {
                self.status = LaneStatus::Done;
                if usage.prompt_tokens.is_some() {
                    self.prompt_tokens = usage.prompt_tokens;
                }
                self.usage = Some(usage);
                self.timings = Some(timings);
                Some(Finished::Done)
            }
            EventKind::Measured { timings, chunks } => {
                // What streamed is counted as the engine counts a backend that reports no usage: an estimate.
                self.timings = Some(timings);
                self.usage = Some(Usage {
                    prompt_tokens: self.prompt_tokens,
                    completion_tokens: Some(chunks),
                    estimated: true,
                    ..Usage::default()
                });
                None
            }
            EventKind::Failed { error } => {
                // Partial output stays: a failed lane keeps what it streamed.
                self.status = if error == EngineError::Cancelled { LaneStatus::Cancelled } else { LaneStatus::Failed };
                self.error = Some(error);
                Some(Finished::Failed)
            }
        }
    }
}
