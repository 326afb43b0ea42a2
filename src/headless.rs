//! Headless runs: the TUI's run path without a terminal, for scripts, CI and tests.

use tokio::sync::mpsc;

use crate::engine::{Engine, EventKind, LaneIdx, Registry, RunRequest};
use crate::metrics::{LaneReport, Outcome, RunRecord};
use crate::workspace::{Workspace, WorkspaceError, store};

/// Picks lanes by id (all when `ids` is empty); an unknown id is an error naming it and the known ones.
pub fn select_lanes(ws: &Workspace, ids: &[String]) -> Result<Vec<LaneIdx>, String> {
    if ids.is_empty() {
        return Ok((0..ws.lanes.len()).collect());
    }
    ids.iter()
        .map(|id| {
            ws.lanes.iter().position(|l| &l.id == id).ok_or_else(|| {
                let known: Vec<&str> = ws.lanes.iter().map(|l| l.id.as_str()).collect();
                format!("no lane `{id}` in {} (lanes: {})", ws.file.display(), known.join(", "))
            })
        })
        .collect()
}

/// Runs the chosen lanes concurrently on `input` and returns one report per lane, in the order given.
/// Each finished run is appended to the workspace's runs.jsonl.
pub async fn run(
    ws: &Workspace,
    input: &str,
    lanes: &[LaneIdx],
    registry: Registry,
) -> Result<Vec<LaneReport>, WorkspaceError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(registry, tx);
    let mut outputs = vec![String::new(); ws.lanes.len()];
    let mut prompt_tokens = vec![None; ws.lanes.len()];
    let mut reports: Vec<Option<LaneReport>> = vec![None; ws.lanes.len()];
    let mut _tokens = Vec::new();
    for (run, &lane) in lanes.iter().enumerate() {
        if let Some(req) = RunRequest::for_lane(ws, lane, input) {
            _tokens.push(engine.start(lane, run as u64, req));
        }
    }
    drop(engine);
    let mut pending = lanes.len();
    while pending > 0 {
        let Some(ev) = rx.recv().await else { break };
        let spec = &ws.lanes[ev.lane];
        let outcome = match &ev.kind {
            EventKind::Started { prompt_tokens: p } => {
                prompt_tokens[ev.lane] = *p;
                continue;
            }
            EventKind::Token { text } => {
                outputs[ev.lane].push_str(text);
                continue;
            }
            EventKind::Done { usage, timings } => Outcome::Done { usage, timings },
            EventKind::Failed { error } => Outcome::Failed { error, prompt_tokens: prompt_tokens[ev.lane] },
        };
        let report = LaneReport::new(ws, spec, &outputs[ev.lane], outcome);
        let line = serde_json::to_string(&RunRecord::now(input, &report)).unwrap_or_default();
        store::append_line(&ws.runs_path(), &line)?;
        reports[ev.lane] = Some(report);
        pending -= 1;
    }
    Ok(lanes.iter().filter_map(|&l| reports[l].take()).collect())
}
