//! Lane runs: starting and cancelling them, their engine events, and each input's last results (the panes
//! show the shown input's; the others wait, still taking their runs' events, until the input is shown again).

use super::geometry;
use super::lane::{Finished, LaneState, LaneStatus};
use super::{AppState, Effect, Focus};
use crate::engine::{EngineEvent, EventKind, LaneIdx, RunRequest};
use crate::metrics::{LaneReport, Outcome};

impl AppState {
    /// Shows input slot `to`'s lane results (fresh lanes if none), keeping those of slot `from` for its return.
    pub(crate) fn swap_results(&mut self, from: Option<usize>, to: Option<usize>) {
        if from == to {
            return;
        }
        let mut next = self.results.remove(&to).unwrap_or_else(|| vec![LaneState::default(); self.lanes.len()]);
        for (new, old) in next.iter_mut().zip(&mut self.lanes) {
            // The live count is of the editor's text and the backend's report is of the lane, not of an input.
            new.live = old.live.take();
            if new.detail.is_none() {
                (new.detail, new.detail_for) = (old.detail.clone(), old.detail_for.clone());
            }
        }
        let shown = std::mem::replace(&mut self.lanes, next);
        if shown.iter().any(|l| l.status != LaneStatus::Idle) {
            self.results.insert(from, shown);
        }
    }

    /// Every lane state that can take events: the shown ones, then each hidden input's.
    fn all_lanes(&self) -> impl Iterator<Item = &LaneState> {
        self.lanes.iter().chain(self.results.values().flatten())
    }

    /// Why lane `i`'s shown answer is not what a run would give now (None: it is, or there is none).
    pub fn stale_reason(&self, i: usize) -> Option<&'static str> {
        let lane = self.lanes.get(i)?;
        let input = self.input_text();
        if lane.status == LaneStatus::Idle || self.run_is_current(i, &input) {
            return None;
        }
        Some(if lane.input != input {
            "answer to an earlier text of this input · F5 reruns"
        } else {
            "ran with earlier settings or prompt · F5 reruns"
        })
    }

    /// Prompt tokens lane `i`'s pane shows: its shown run's own when the answer is stale, so that the pane's
    /// figures all describe the answer above them; else as `shown_prompt_tokens`.
    pub fn pane_prompt_tokens(&self, i: usize) -> Option<(u64, bool)> {
        if self.stale_reason(i).is_some() {
            let lane = &self.lanes[i];
            return lane.prompt_tokens.map(|n| (n, false));
        }
        self.shown_prompt_tokens(i, &self.input_text())
    }

    pub fn any_running(&self) -> bool {
        self.all_lanes().any(|l| l.status.is_running())
    }
}

/// Starts `lanes` on the input as typed; a lane's earlier run, on this input or another, is superseded.
pub(super) fn run(state: &mut AppState, lanes: Vec<LaneIdx>) -> Vec<Effect> {
    let input = state.input_text();
    if input.trim().is_empty() {
        state.warn("type or pick an input first (F7/F8 browse saved inputs)");
        return Vec::new();
    }
    let mut effects = Vec::new();
    for lane in lanes {
        let Some(req) = RunRequest::for_lane(&state.ws, lane, &input) else {
            continue;
        };
        if running(state, lane) {
            effects.push(Effect::Cancel { lane });
        }
        let run = state.next_run;
        state.next_run += 1;
        state.lanes[lane].begin(run, &input, &req.lane, &req.system_prompt);
        effects.push(Effect::Start { lane, run, req: Box::new(req) });
    }
    state.status = None;
    effects
}

/// Whether lane `lane` has a run going, shown or on another input (one engine run per lane at a time).
fn running(state: &AppState, lane: LaneIdx) -> bool {
    std::iter::once(&state.lanes)
        .chain(state.results.values())
        .any(|ls| ls.get(lane).is_some_and(|l| l.status.is_running()))
}

/// Esc: cancels every running lane, on the shown input or another; with none running, leaves the lanes.
pub(super) fn cancel(state: &mut AppState) -> Vec<Effect> {
    let going: Vec<LaneIdx> = (0..state.lanes.len()).filter(|&i| running(state, i)).collect();
    if going.is_empty() {
        if state.focus == Focus::Lanes {
            state.focus = Focus::Input;
        }
        return Vec::new();
    }
    state.info(format!("cancelling {} lane(s)", going.len()));
    going.into_iter().map(|lane| Effect::Cancel { lane }).collect()
}

pub(super) fn on_engine(state: &mut AppState, ev: EngineEvent) -> Vec<Effect> {
    let Some(lane) = state.lanes.get(ev.lane) else {
        return Vec::new();
    };
    if lane.run != Some(ev.run) {
        return on_hidden(state, ev);
    }
    let kind = ev.kind;
    let grew = matches!(kind, EventKind::Token { .. }) && lane.scroll_back > 0;
    let before = if grew { geometry::lane_scroll_bounds(state, ev.lane).0 } else { 0 };
    let Some(end) = state.lanes[ev.lane].apply(kind) else {
        if grew {
            // Keep the text being read in place while new lines arrive below it.
            let added = geometry::lane_scroll_bounds(state, ev.lane).0.saturating_sub(before);
            let lane = &mut state.lanes[ev.lane];
            lane.scroll_back = lane.scroll_back.saturating_add(added);
        }
        return Vec::new();
    };
    ended(state, &state.lanes[ev.lane].clone(), end)
}

/// An event of a run on an input not shown now: it goes to that input's results; any other run is superseded.
fn on_hidden(state: &mut AppState, ev: EngineEvent) -> Vec<Effect> {
    let Some(lane) = state.results.values_mut().find_map(|ls| ls.get_mut(ev.lane).filter(|l| l.run == Some(ev.run)))
    else {
        return Vec::new();
    };
    let Some(end) = lane.apply(ev.kind) else { return Vec::new() };
    let lane = lane.clone();
    ended(state, &lane, end)
}

/// A run just ended: it is recorded, and a failure (not a cancel) is said on the status line.
fn ended(state: &mut AppState, lane: &LaneState, end: Finished) -> Vec<Effect> {
    // The lane as it was when the run began: F2/F6 edits since then must not relabel the record.
    let Some(spec) = lane.spec.as_ref() else { return Vec::new() };
    let outcome = match (&end, &lane.usage, &lane.timings, &lane.error) {
        (Finished::Done, Some(usage), Some(timings), _) => Outcome::Done { usage, timings },
        (_, _, _, Some(error)) => Outcome::Failed { error, prompt_tokens: lane.prompt_tokens },
        _ => return Vec::new(),
    };
    let report = LaneReport::new(&state.ws, spec, &lane.output, outcome);
    let sampling = Box::new(spec.sampling.clone());
    if matches!(end, Finished::Failed) && lane.status != LaneStatus::Cancelled {
        state.error(format!("lane `{}` failed: {}", spec.id, report.error.as_deref().unwrap_or("?")));
    }
    let (input, system_prompt) = (lane.input.clone(), lane.system_prompt.clone());
    vec![Effect::Record { input, system_prompt, sampling, report: Box::new(report) }]
}
