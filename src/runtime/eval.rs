//! The eval effects for F9: read the scoreboard from the cache, run what is missing on a task (each answer
//! and the progress back as actions, stopped by a token), and make a lane's answer a test case's expected answer.

use std::collections::HashMap;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::app::{Action, EvalData, EvalMsg};
use crate::dataset::{Dataset, Split};
use crate::engine::{LaneIdx, Registry};
use crate::eval::runner::{self, Progress};
use crate::eval::{Answer, Estimate, Evals, Scoreboard, Setup};
use crate::workspace::Workspace;

fn all_lanes(ws: &Workspace) -> Vec<LaneIdx> {
    (0..ws.lanes.len()).collect()
}

fn assertions_from(evals: &Evals) -> String {
    match &evals.file {
        Some(f) => f.file_name().map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into_owned()),
        None => "no evals.toml: JSON answers field by field, others exactly".into(),
    }
}

fn data(setup: &Setup, board: Scoreboard) -> Box<EvalData> {
    let assertions_from = assertions_from(&setup.evals);
    Box::new(EvalData { cases: setup.cases.clone(), board, lanes: setup.lanes.clone(), assertions_from })
}

pub fn load(ws: &Workspace) -> Action {
    let r = Setup::load(ws, all_lanes(ws), None).map(|s| data(&s, s.cached_board(ws))).map_err(|e| e.to_string());
    Action::Eval(EvalMsg::Loaded(r))
}

/// What the user asked for: which cases (all when None), and what they agreed to: paid calls (`confirmed`), or
/// only the free lanes' runs.
pub struct Consent {
    pub confirmed: bool,
    pub free_only: bool,
    pub cases: Option<std::ops::Range<usize>>,
}

/// Starts a run of the pairs the cache lacks among the cases asked for; paid calls without consent only ask.
/// Every finished answer comes back at once as a fresh scoreboard, so F9 fills in while the run goes on.
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
        if let Some(range) = &consent.cases {
            plan.run.retain(|j| range.contains(&j.case));
        }
        let judged = setup.evals.all.iter().chain(setup.evals.by_case.values().flatten()).any(|a| a.kind.is_judged());
        let mut cached: HashMap<(usize, LaneIdx), Answer> =
            plan.cached.iter().map(|(j, a)| ((j.case, j.lane), a.clone())).collect();
        // Read once: the scoreboard sent after each answer takes the verdicts cached so far from it.
        let judge_cache = crate::eval::judge::JudgeCache::load(&ws.root).unwrap_or_default();
        let judge_missing = if judged {
            crate::eval::judge::cached(&ws, &setup.cases, &setup.evals, &mut cached, &setup.cache, &judge_cache)
        } else {
            0
        };
        if plan.run.is_empty() && judge_missing == 0 {
            let which = match &consent.cases {
                Some(r) if r.len() == 1 => "this case has".to_string(),
                Some(r) => format!("these {} cases have", r.len()),
                None => "every case has".into(),
            };
            return send(EvalMsg::Finished(Ok(format!("{which} an answer from every lane"))));
        }
        let estimate = Estimate::of(&ws, &setup.cases, &plan.run);
        if estimate.calls > 0 && !consent.confirmed {
            let text =
                format!("{}. Run them? y: yes · f: only the free lanes · any other key: no", estimate.describe());
            return send(EvalMsg::NeedsConfirm(text));
        }
        let total = plan.run.len();
        let limits = runner::limits(&ws, &setup.lanes, runner::DEFAULT_API_CONCURRENCY as usize, None);
        let (mut done, mut errors, mut uncached) = (0, 0, 0);
        send(EvalMsg::Progress { done, total, errors });
        let Setup { cases, evals, hashes, lanes, cache } = &mut setup;
        let mut answers: HashMap<(usize, LaneIdx), Answer> =
            plan.cached.into_iter().map(|(j, a)| ((j.case, j.lane), a)).collect();
        let mut on = |p: Progress| {
            if let Progress::Finished(job, answer) = p {
                done += 1;
                errors += usize::from(answer.error.is_some());
                uncached += usize::from(cache.put(&answer).is_err());
                answers.insert((job.case, job.lane), *answer);
                // The scoreboard as it stands, failed runs included (they are never cached, but they happened).
                let mut now = answers.clone();
                if judged {
                    crate::eval::judge::cached(&ws, cases, evals, &mut now, cache, &judge_cache);
                }
                let board = Scoreboard::build(&ws, cases, evals, lanes, now);
                let from = assertions_from(evals);
                send(EvalMsg::Loaded(Ok(Box::new(EvalData {
                    cases: cases.clone(),
                    board,
                    lanes: lanes.clone(),
                    assertions_from: from,
                }))));
                send(EvalMsg::Progress { done, total, errors });
            }
        };
        runner::run(&ws, cases, hashes, plan.run, &limits, registry.clone(), cancel.clone(), &mut on).await;
        let mut msg = if cancel.is_cancelled() {
            format!("eval stopped after {done} of {total} runs ({errors} run error(s)); r runs the rest")
        } else {
            format!("eval ran {total} runs ({errors} run error(s))")
        };
        if judged && !cancel.is_cancelled() {
            // Paid judge calls run only when the user agreed to paid calls for this run.
            let mut agree = |e: &Estimate| e.calls == 0 || consent.confirmed;
            match crate::eval::judge::grade(&ws, cases, evals, &mut answers, cache, registry, &mut agree).await {
                Ok(g) if g.declined > 0 => msg.push_str(&format!(
                    "; the judge's {} paid call(s) were not made (`tunebench eval` asks for them)",
                    g.declined
                )),
                Ok(g) if g.calls > 0 => {
                    msg.push_str(&format!("; judge: {} call(s), {} without a verdict", g.calls, g.errors))
                }
                Ok(_) => {}
                Err(e) => msg.push_str(&format!("; judge not asked: {e}")),
            }
            let board = Scoreboard::build(&ws, cases, evals, lanes, answers);
            send(EvalMsg::Loaded(Ok(Box::new(EvalData {
                cases: cases.clone(),
                board,
                lanes: lanes.clone(),
                assertions_from: assertions_from(evals),
            }))));
        }
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
