//! F10's hosted fine-tuning: the target (this machine, or a provider whose lane the workspace has), the plan
//! shown and confirmed before anything is uploaded, the job followed (its losses in the chart, its events
//! in the log), `x x` to cancel it, a job in progress resumed when F10 opens, and on success the new lane
//! taken into the open workspace (Enter runs it).

use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::{AppState, Effect, TrainMsg, TrainState, TrainStatus};
use crate::finetune::job::{Outcome, Report};
use crate::workspace::Workspace;

/// Where F10 trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The adapter lane's LoRA, on this machine.
    Local,
    /// A provider's fine-tuning API (its name: openai, together).
    Hosted(&'static str),
}

/// The targets this workspace offers: this machine when a lane has an adapter, and each provider a lane
/// points at. Fireworks needs an account and a deployment F10 does not ask for: `tunebench train --on
/// fireworks` starts it, and F10 follows it.
pub fn targets(ws: &Workspace) -> Vec<Target> {
    let mut t = Vec::new();
    if ws.adapter_lane().is_some() {
        t.push(Target::Local);
    }
    for p in [crate::finetune::OPENAI, crate::finetune::TOGETHER] {
        if crate::finetune::provider_lane(ws, &p, None).is_ok() {
            t.push(Target::Hosted(p.name));
        }
    }
    t
}

/// The plan the provider's rules and prices give, before anything is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct HostedPlan {
    pub provider: &'static str,
    /// What is uploaded and its cost (`Plan::headline`), and notes said before it.
    pub headline: String,
    pub notes: Vec<String>,
    /// The files' sha256: the job starts only on the dataset the user confirmed.
    pub sha256: String,
    /// Why the dataset does not meet the rules (file:line each); nothing can be sent while any remain.
    pub problems: Vec<String>,
}

/// A hosted job as F10 shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hosted {
    pub provider: &'static str,
    pub plan: Option<HostedPlan>,
    pub job: Option<String>,
    pub status: Option<String>,
    /// The job's messages and tunebench's own, newest last (the last `LOG` kept).
    pub log: Vec<String>,
    /// `x` was pressed once: a second press cancels the job.
    pub cancel_armed: bool,
    /// On success, the lane that asks the fine-tuned model.
    pub lane: Option<String>,
}

const LOG: usize = 50;

impl Hosted {
    fn say(&mut self, line: impl Into<String>) {
        self.log.push(line.into());
        let over = self.log.len().saturating_sub(LOG);
        self.log.drain(..over);
    }
}

/// A key F10 handles differently for a hosted target; None leaves it to the local view.
pub fn key(state: &mut AppState, key: KeyEvent) -> Option<(Vec<Effect>, bool)> {
    let t = &mut state.train;
    let idle = matches!(t.status, TrainStatus::Idle | TrainStatus::Failed | TrainStatus::Done);
    if key.code == KeyCode::Char('t') && idle {
        let all = targets(&state.ws);
        let at = all.iter().position(|x| *x == t.target).map_or(0, |i| (i + 1) % all.len().max(1));
        let target = all.get(at).copied().unwrap_or(Target::Local);
        let sweep = std::mem::take(&mut t.sweep);
        *t = TrainState { target, sweep, ..TrainState::default() };
        return Some(match target {
            Target::Local => (vec![Effect::LoadLastTraining], true),
            Target::Hosted(p) => {
                t.hosted = Some(Hosted { provider: p, ..Hosted::default() });
                (Vec::new(), true)
            }
        });
    }
    let Target::Hosted(provider) = t.target else { return None };
    let h = t.hosted.get_or_insert_with(|| Hosted { provider, ..Hosted::default() });
    Some(match (key.code, t.status) {
        (KeyCode::Enter, TrainStatus::Idle | TrainStatus::Failed) => {
            t.status = TrainStatus::Preparing;
            *h = Hosted { provider, ..Hosted::default() };
            (vec![Effect::PlanHosted { provider }], true)
        }
        (KeyCode::Enter, TrainStatus::Confirm) => {
            let Some(plan) = h.plan.clone() else { return Some((Vec::new(), true)) };
            t.status = TrainStatus::Running;
            h.say("uploading …");
            (vec![Effect::StartHosted { provider, sha256: plan.sha256 }], true)
        }
        (KeyCode::Esc, TrainStatus::Confirm) => {
            t.status = TrainStatus::Idle;
            h.plan = None;
            state.info("not confirmed: nothing was uploaded");
            (Vec::new(), true)
        }
        (KeyCode::Char('x'), TrainStatus::Running) if h.job.is_some() => {
            if !h.cancel_armed {
                h.cancel_armed = true;
                let job = h.job.clone().unwrap_or_default();
                state.warn(format!("x again asks {provider} to cancel job {job}"));
                return Some((Vec::new(), true));
            }
            h.cancel_armed = false;
            h.say("asking the provider to cancel …");
            (vec![Effect::CancelHosted { provider }], true)
        }
        (KeyCode::Enter, TrainStatus::Done) => {
            let lane = h.lane.clone().and_then(|id| state.ws.lanes.iter().position(|l| l.id == id));
            match lane {
                Some(i) => (super::runs::run(state, vec![i]), false),
                None => (Vec::new(), true),
            }
        }
        (KeyCode::Char('n') | KeyCode::Char('s'), _) => (Vec::new(), true),
        _ => return None,
    })
}

/// Applies a hosted report; the effects it causes.
pub fn on_msg(state: &mut AppState, msg: TrainMsg) -> Vec<Effect> {
    let t = &mut state.train;
    match msg {
        TrainMsg::HostedPlan(Ok(plan)) => {
            let h = t.hosted.get_or_insert_with(Hosted::default);
            if plan.problems.is_empty() {
                t.status = TrainStatus::Confirm;
            } else {
                t.status = TrainStatus::Failed;
                t.error = Some(format!("the dataset does not meet {}'s rules; nothing was uploaded", plan.provider));
            }
            h.provider = plan.provider;
            h.plan = Some(plan);
        }
        TrainMsg::HostedPlan(Err(e)) | TrainMsg::HostedEnded(Err(e), _) => {
            t.status = TrainStatus::Failed;
            t.error = Some(e.clone());
            state.error(format!("fine-tuning: {e}"));
        }
        TrainMsg::HostedResume { provider, job, status } => {
            if t.status != TrainStatus::Idle {
                return Vec::new();
            }
            let sweep = std::mem::take(&mut t.sweep);
            *t = TrainState {
                target: Target::Hosted(provider),
                status: TrainStatus::Running,
                sweep,
                ..TrainState::default()
            };
            let mut h = Hosted { provider, job: job.clone(), status, ..Hosted::default() };
            h.say(format!("following the job in progress ({})", job.as_deref().unwrap_or("not created yet")));
            t.hosted = Some(h);
            return vec![Effect::FollowHosted { provider }];
        }
        TrainMsg::Hosted(report) => {
            let h = t.hosted.get_or_insert_with(Hosted::default);
            if let Some(line) = report.line() {
                h.say(line);
            }
            match report {
                Report::Say(_) => {}
                Report::Created { job, status } | Report::Status { job, status } => {
                    h.job = Some(job);
                    h.status = Some(status);
                }
                Report::Events(events) => {
                    for e in events {
                        if let Some(total) = e.total_steps {
                            t.steps = usize::try_from(total).unwrap_or(usize::MAX);
                        }
                        match (e.step, e.train_loss) {
                            (Some(step), Some(loss)) => {
                                t.train_loss.push((step as f64, loss));
                                if let Some(v) = e.valid_loss {
                                    t.valid_loss.push((step as f64, v));
                                }
                            }
                            _ => h.say(crate::visible::escape_line(&e.message)),
                        }
                    }
                }
            }
        }
        TrainMsg::HostedEnded(Ok(outcome), disk) => {
            let h = t.hosted.get_or_insert_with(Hosted::default);
            h.say(outcome.line());
            match &outcome {
                Outcome::Succeeded { lane, .. } => {
                    t.status = TrainStatus::Done;
                    h.lane = Some(lane.clone());
                    let lane = lane.clone();
                    match disk.map(|d| adopt(state, *d)) {
                        Some(Ok(())) => state.info(format!("{} — Enter runs lane `{lane}`", outcome.line())),
                        Some(Err(e)) => state.warn(format!("{}; {e}", outcome.line())),
                        None => state.info(outcome.line()),
                    }
                }
                Outcome::Ended { why, .. } => {
                    t.status = TrainStatus::Failed;
                    t.error = Some(why.clone());
                    state.warn(outcome.line());
                }
            }
        }
        _ => {}
    }
    Vec::new()
}

/// Takes the lanes the job wrote into workspace.toml into the open workspace (and a pane for each).
fn adopt(state: &mut AppState, disk: Workspace) -> Result<(), String> {
    state.ws.adopt(disk)?;
    let n = state.ws.lanes.len();
    state.lanes.resize(n, super::LaneState::default());
    for v in state.results.values_mut() {
        v.resize(n, super::LaneState::default());
    }
    Ok(())
}
