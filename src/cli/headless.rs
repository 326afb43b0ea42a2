//! Headless runs: the TUI's run path without a terminal, for scripts, CI and tests.

use tokio::sync::mpsc;

use crate::engine::{Engine, EventKind, LaneIdx, Registry, RunRequest};
use crate::metrics::{LaneReport, Outcome, RunRecord};
use crate::workspace::{Workspace, store};

/// Picks lanes by id (all when `ids` is empty); an unknown or repeated id is an error naming it.
pub fn select_lanes(ws: &Workspace, ids: &[String]) -> Result<Vec<LaneIdx>, String> {
    if ids.is_empty() {
        return Ok((0..ws.lanes.len()).collect());
    }
    let mut chosen = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(i) = ws.lanes.iter().position(|l| &l.id == id) else {
            let known: Vec<&str> = ws.lanes.iter().map(|l| l.id.as_str()).collect();
            return Err(format!("no lane `{id}` in {} (lanes: {})", ws.file.display(), known.join(", ")));
        };
        if chosen.contains(&i) {
            return Err(format!("lane `{id}` is listed twice in --lanes"));
        }
        chosen.push(i);
    }
    Ok(chosen)
}

/// What a headless run produced.
pub struct Finished {
    /// One report per chosen lane, in the order given.
    pub reports: Vec<LaneReport>,
    /// Problems that did not stop the run (e.g. runs.jsonl could not be appended).
    pub warnings: Vec<String>,
}

/// Runs the chosen lanes concurrently on `input`; each finished run is appended to the workspace's runs.jsonl.
pub async fn run(ws: &Workspace, input: &str, lanes: &[LaneIdx], registry: Registry) -> Finished {
    run_with(ws, input, lanes, registry, &mut |_| {}).await
}

/// `run`, telling `on_warning` of each warning as it happens (a retry's wait should not look like a hang).
pub async fn run_with(
    ws: &Workspace,
    input: &str,
    lanes: &[LaneIdx],
    registry: Registry,
    on_warning: &mut (dyn FnMut(&str) + Send),
) -> Finished {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(registry, tx);
    let n = ws.lanes.len();
    let mut outputs = vec![String::new(); n];
    let mut prompt_tokens = vec![None; n];
    let mut reports: Vec<Option<LaneReport>> = vec![None; n];
    let mut warnings = Vec::new();
    // Held until the end: dropping a token does not cancel, but keeping them makes the intent plain.
    let mut _cancels = Vec::new();
    for &lane in lanes {
        if let Some(req) = RunRequest::for_lane(ws, lane, input) {
            _cancels.push(engine.start(lane, lane as u64, req));
        }
    }
    drop(engine);
    let mut pending = lanes.len();
    while pending > 0 {
        let Some(ev) = rx.recv().await else { break };
        if reports[ev.lane].is_some() {
            continue; // the lane's run already ended
        }
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
            EventKind::Info { .. } | EventKind::Progress { .. } | EventKind::Measured { .. } => continue,
            EventKind::Warning { text } => {
                let w = format!("lane `{}`: {text}", spec.id);
                on_warning(&w);
                warnings.push(w);
                continue;
            }
            EventKind::Done { usage, timings } => Outcome::Done { usage, timings },
            EventKind::Failed { error } => Outcome::Failed { error, prompt_tokens: prompt_tokens[ev.lane] },
        };
        let report = LaneReport::new(ws, spec, &outputs[ev.lane], outcome);
        if let Err(e) = store::append_line(
            &ws.runs_path(),
            &RunRecord::now(ws, input, ws.prompt_text(&spec.prompt).unwrap_or_default(), &spec.sampling, &report)
                .to_json(),
        ) {
            let w = format!("lane `{}` not recorded: {e}", spec.id);
            on_warning(&w);
            warnings.push(w);
        }
        reports[ev.lane] = Some(report);
        pending -= 1;
    }
    Finished { reports: lanes.iter().filter_map(|&l| reports[l].take()).collect(), warnings }
}
