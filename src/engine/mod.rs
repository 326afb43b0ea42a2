//! The Backend contract: one event stream per run (Started/Token/Done/Failed), tagged with lane and run ids.

pub mod api;
pub mod local;
mod runner;
pub mod think;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::workspace::{BackendKind, LaneSpec, ModelSpec};

pub use runner::{Engine, LaneSink, Registry};

/// Index of a lane in the workspace's lane list.
pub type LaneIdx = usize;
/// Identifies one run of one lane; events of a superseded run are dropped by the receiver.
pub type RunId = u64;

/// Token counts as the backend reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Prompt tokens served from the provider's prefix cache.
    pub cached_prompt_tokens: Option<u64>,
    /// Completion tokens a reasoning model spent thinking before the answer (within `completion_tokens`).
    pub reasoning_tokens: Option<u64>,
    /// Prompt tokens written into the provider's cache this run (within `prompt_tokens`; Anthropic).
    pub cache_write_tokens: Option<u64>,
    /// True when some count was estimated here rather than reported by the backend.
    pub estimated: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Time to first token.
    pub ttft: Option<Duration>,
    pub total: Duration,
    /// Compute time spent on this run alone (local lanes: their own prefill and decode steps, not the
    /// turns of other lanes sharing the device, nor model loading); what machine time is priced by.
    pub busy: Option<Duration>,
    /// The most lanes that had runs on this run's device at once while it ran (1: it ran alone, so its ttft,
    /// total and tok/s are its own; above 1 they include waiting for the others). None for API lanes.
    pub shared_lanes: Option<u32>,
}

impl Timings {
    /// Decode rate: tokens after the first over the time after the first, as llama.cpp reports eval speed.
    pub fn tokens_per_s(&self, completion_tokens: Option<u64>) -> Option<f64> {
        let n = completion_tokens?;
        let decode = self.total.checked_sub(self.ttft?)?.as_secs_f64();
        (n >= 2 && decode > 0.0).then(|| (n - 1) as f64 / decode)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("cancelled")]
    Cancelled,
    #[error("the `{0}` backend is not available in this build of tunebench yet")]
    Unavailable(BackendKind),
    #[error("backend panicked: {0}")]
    Panicked(String),
    #[error("{0}")]
    Backend(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Started {
        prompt_tokens: Option<u64>,
    },
    /// Where and how the lane runs (device, weight formats), for its pane title.
    Info {
        detail: String,
    },
    /// Something the user should see that does not stop the run (e.g. a fallback chat template).
    Warning {
        text: String,
    },
    /// Prompt tokens processed so far, before the first token (long local prefills).
    Progress {
        done: u64,
        total: u64,
    },
    Token {
        text: String,
    },
    Done {
        usage: Usage,
        timings: Timings,
    },
    /// What a run that ends without `Done` measured before it ended (sent just before its `Failed`, when it
    /// streamed at least one chunk): a cancelled or failed lane still shows its time to first token, its time
    /// and how much it streamed.
    Measured {
        timings: Timings,
        /// Text chunks streamed (tokens for local lanes, deltas for API lanes).
        chunks: u64,
    },
    Failed {
        error: EngineError,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineEvent {
    pub lane: LaneIdx,
    pub run: RunId,
    pub kind: EventKind,
}

/// Everything a backend needs for one run, resolved from the workspace.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub lane: LaneSpec,
    /// The `[models]` entry of a local lane.
    pub model: Option<ModelSpec>,
    pub system_prompt: String,
    pub input: String,
    pub workspace_root: PathBuf,
}

/// A source of answers. Implementations stream through the sink and return the final usage;
/// long CPU/GPU work belongs on its own thread, never on the caller's runtime. `run` itself is called on the
/// thread that starts the run (the future is polled later): keep its synchronous part short, no I/O.
pub trait Backend: Send + Sync + 'static {
    fn run(
        &self,
        req: RunRequest,
        sink: LaneSink,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<Usage, EngineError>>;
}

pub type EventSender = UnboundedSender<EngineEvent>;

impl RunRequest {
    /// Resolves a workspace lane and an input into a request; None for an unknown lane index.
    pub fn for_lane(ws: &crate::workspace::Workspace, lane: LaneIdx, input: &str) -> Option<Self> {
        let spec = ws.lanes.get(lane)?;
        Some(Self {
            lane: spec.clone(),
            model: ws.models.get(&spec.model).filter(|_| spec.backend == BackendKind::Local).cloned(),
            system_prompt: ws.prompt_text(&spec.prompt).unwrap_or_default().to_string(),
            input: input.to_string(),
            workspace_root: ws.root.clone(),
        })
    }
}
