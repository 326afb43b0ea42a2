//! The eval effects for F9: read the scoreboard from the cache, run what is missing on a task (progress back
//! as actions, stopped by a token), and make a lane's answer a test case's expected answer.

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::app::{Action, EvalData, EvalMsg};
use crate::dataset::{Dataset, Split};
use crate::engine::{LaneIdx, Registry};
use crate::eval::runner::{self, Progress};
use crate::eval::{Estimate, Scoreboard, Setup};
use crate::workspace::Workspace;

fn all_lanes(ws: &Workspace) -> Vec<LaneIdx> {
    (0..ws.lanes.len()).collect()
}

fn data(setup: &Setup, board: Scoreboard) -> Box<EvalData> {
    let assertions_from = match &setup.evals.file {
        Some(f) => f.file_name().map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into_owned()),
        None => "no evals.toml: JSON answers field by field, others exactly".into(),
    };
    Box::new(EvalData { cases: setup.cases.clone(), board, lanes: setup.lanes.clone(), assertions_from })
}

pub fn load(ws: &Workspace) -> Action {
    let r = Setup::load(ws, all_lanes(ws), None).map(|s| data(&s, s.cached_board(ws))).map_err(|e| e.to_string());
    Action::Eval(EvalMsg::Loaded(r))
}

/// What the user agreed to: paid calls (`confirmed`), or only the free lanes' runs.
pub struct Consent {
    pub confirmed: bool,
    pub free_only: bool,
}

/// Starts a run of every pair the cache lacks; paid calls without consent only ask.
pub fn start(
    ws: &Workspace,
    registry: Registry,
    tx: Option<UnboundedSender<Action>>,
    consent: Consent,
    cancel: CancellationToken,
) -> Option<Action> {
    let Some(tx) = tx else {
        return Some(Action::Eval(EvalMsg::Finished(Err("eval runs report to the TUI's event loop".into()))));
    };
    let ws = ws.clone();
    tokio::spawn(async move {
        let send = |m: EvalMsg| {
            let _ = tx.send(Action::Eval(m));
        };
        let ws2 = ws.clone();
        let setup = match tokio::task::spawn_blocking(move || Setup::load(&ws2, all_lanes(&ws2), None)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return send(EvalMsg::Finished(Err(e.to_string()))),
            Err(e) => return send(EvalMsg::Finished(Err(format!("the eval could not start: {e}")))),
        };
        let mut setup = setup;
        let mut plan = setup.plan(false);
        if consent.free_only {
            plan.run.retain(|j| !crate::eval::is_paid(&ws.lanes[j.lane]));
        }
        if plan.run.is_empty() {
            return send(EvalMsg::Finished(Ok(format!(
                "every case has an answer from every lane ({} cached)",
                plan.cached.len()
            ))));
        }
        let estimate = Estimate::of(&ws, &setup.cases, &plan.run);
        if estimate.calls > 0 && !consent.confirmed {
            let text =
                format!("{}. Run them? y: yes · f: only the free lanes · any other key: no", estimate.describe());
            return send(EvalMsg::NeedsConfirm(text));
        }
        let total = plan.run.len();
        let limits = runner::limits(&ws, &setup.lanes, runner::DEFAULT_API_CONCURRENCY as usize);
        let (mut done, mut failed, mut uncached) = (0, 0, 0);
        send(EvalMsg::Progress { done, total, failed });
        let cache = &mut setup.cache;
        let mut on = |p: Progress| {
            if let Progress::Finished(_, answer) = p {
                done += 1;
                failed += usize::from(answer.error.is_some());
                uncached += usize::from(cache.put(&answer).is_err());
                send(EvalMsg::Progress { done, total, failed });
            }
        };
        runner::run(&ws, &setup.cases, &setup.hashes, plan.run, &limits, registry, cancel.clone(), &mut on).await;
        let mut msg = if cancel.is_cancelled() {
            format!("eval stopped after {done} of {total} runs ({failed} failed); r runs the rest")
        } else {
            format!("eval ran {total} runs ({failed} failed)")
        };
        if uncached > 0 {
            msg.push_str(&format!("; {uncached} answer(s) could not be cached"));
        }
        send(EvalMsg::Finished(Ok(msg)));
    });
    None
}

/// Replaces the test case's assistant turn with the lane's answer (id and other fields kept). A test input
/// is never added to train: that would leak the test set into training.
pub fn promote(ws: &Workspace, case_id: &str, lane: LaneIdx, answer: &str) -> Action {
    let _guard = super::dataset::writing();
    let r = (|| {
        let ds = Dataset::load(&ws.dataset_dir()).map_err(|e| e.to_string())?;
        let (split, ex, _) = ds.find(case_id).ok_or_else(|| {
            format!("no example with id `{case_id}` in the dataset (moved or deleted? an example without an id cannot be promoted)")
        })?;
        if split != Split::Test {
            return Err(format!("`{case_id}` is in {} now, not test", split.file_name()));
        }
        let mut ex = ex.clone();
        let spec = ws.lanes.get(lane).ok_or("no such lane")?;
        ex.set_turn("assistant", answer.to_string());
        ex.meta.source_lane = Some(spec.id.clone());
        ex.meta.model = Some(spec.model.clone());
        ex.meta.adapter = spec.adapter.clone();
        ex.meta.prompt_variant = Some(spec.prompt.clone());
        ex.meta.edited = false;
        ds.replace(ex).map_err(|e| e.to_string())?;
        Ok(format!("case {case_id} now expects lane `{}`'s answer", spec.id))
    })();
    Action::Eval(EvalMsg::Promoted(r))
}
