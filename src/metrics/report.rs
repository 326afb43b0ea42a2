//! One lane's finished run as reported by `run --json` and appended to runs.jsonl.

use serde::Serialize;

use super::{RunFigures, nanos_to_usd};
use crate::engine::{EngineError, Timings, Usage};
use crate::workspace::{LaneSpec, Workspace};

/// The `run --json` line of design.md; field names and order are a contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaneReport {
    pub lane: String,
    pub backend: String,
    pub model: String,
    pub adapter: Option<String>,
    pub prompt_variant: String,
    pub output: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub ttft_ms: Option<f64>,
    pub total_ms: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub cost_usd: Option<f64>,
    pub error: Option<String>,
    /// True when a token count was estimated by tunebench, not reported by the backend (an extension).
    pub estimated: bool,
    /// Prompt tokens the provider served from its prefix cache (an extension).
    pub cached_prompt_tokens: Option<u64>,
    /// Completion tokens a reasoning model spent thinking (an extension).
    pub reasoning_tokens: Option<u64>,
    /// The most lanes that shared the device while this one ran: 1 alone, N when ttft/total/tok/s include
    /// waiting for N − 1 others; null for API lanes (an extension).
    pub shared_lanes: Option<u32>,
    /// The compute time of this lane's own steps, in ms, whatever else shared the device (an extension).
    pub own_compute_ms: Option<f64>,
}

/// How a run ended.
pub enum Outcome<'a> {
    Done { usage: &'a Usage, timings: &'a Timings },
    Failed { error: &'a EngineError, prompt_tokens: Option<u64> },
}

impl LaneReport {
    pub fn new(ws: &Workspace, lane: &LaneSpec, output: &str, outcome: Outcome<'_>) -> Self {
        let mut r = Self {
            lane: lane.id.clone(),
            backend: lane.backend.as_str().into(),
            model: lane.model.clone(),
            adapter: lane.adapter.clone(),
            prompt_variant: lane.prompt.clone(),
            output: output.into(),
            prompt_tokens: None,
            completion_tokens: None,
            ttft_ms: None,
            total_ms: None,
            tokens_per_s: None,
            cost_usd: None,
            error: None,
            estimated: false,
            cached_prompt_tokens: None,
            reasoning_tokens: None,
            shared_lanes: None,
            own_compute_ms: None,
        };
        match outcome {
            Outcome::Done { usage, timings } => {
                let f = RunFigures::new(usage, timings, super::prices::rate(ws, lane));
                r.prompt_tokens = usage.prompt_tokens;
                r.completion_tokens = usage.completion_tokens;
                r.ttft_ms = f.ttft_ms;
                r.total_ms = Some(f.total_ms);
                r.tokens_per_s = f.tokens_per_s;
                r.cost_usd = f.cost_nanos.map(nanos_to_usd);
                r.estimated = usage.estimated;
                r.cached_prompt_tokens = usage.cached_prompt_tokens;
                r.reasoning_tokens = usage.reasoning_tokens;
                r.shared_lanes = timings.shared_lanes;
                r.own_compute_ms = timings.busy.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0);
            }
            Outcome::Failed { error, prompt_tokens } => {
                r.prompt_tokens = prompt_tokens;
                r.error = Some(error.to_string());
            }
        }
        r
    }
}

/// A runs.jsonl record: the report plus when, on what input, and what exactly ran (content hashes).
#[derive(Debug, Serialize)]
pub struct RunRecord<'a> {
    pub time_unix_ms: u128,
    pub input: &'a str,
    pub input_sha256: String,
    #[serde(flatten)]
    pub provenance: super::history::Provenance,
    #[serde(flatten)]
    pub report: &'a LaneReport,
    /// The sampling settings the run used (an extension of the record).
    #[serde(flatten)]
    pub sampling: super::history::SamplingRecord,
}

impl LaneReport {
    /// The `run --json` / runs.jsonl line.
    pub fn to_json(&self) -> String {
        // Plain strings, numbers and options: serialising cannot fail, but never write a blank line if it did.
        let line = serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"lane\":{:?},\"error\":\"report not serialisable: {e}\"}}", self.lane));
        crate::visible::json(line)
    }
}

impl<'a> RunRecord<'a> {
    /// A record of a finished run; `system_prompt` and `sampling` are what the run was sent with (not the
    /// workspace's now).
    pub fn now(
        ws: &Workspace,
        input: &'a str,
        system_prompt: &str,
        sampling: &crate::workspace::Sampling,
        report: &'a LaneReport,
    ) -> Self {
        let time_unix_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let provenance = super::history::Provenance::of(ws, system_prompt, report.adapter.as_deref());
        let input_sha256 = super::history::sha256_hex(input.as_bytes());
        Self { time_unix_ms, input, input_sha256, provenance, report, sampling: sampling.into() }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.report.to_json())
    }
}
