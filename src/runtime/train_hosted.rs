//! F10's hosted jobs: the plan read off the loop, and the job uploaded, created and followed on a task whose
//! reports come back as actions; the same `finetune::job` session `tunebench train --on` drives.

use tokio::sync::mpsc::UnboundedSender;

use crate::app::{Action, HostedPlan, TrainMsg};
use crate::engine::api::Env;
use crate::finetune::job::{Options, Report, Session};
use crate::finetune::{self, state};
use crate::workspace::Workspace;

fn options(provider: &str, poll: f64) -> Result<Options, String> {
    let p = finetune::provider(provider).ok_or_else(|| format!("no provider `{provider}`"))?;
    Ok(Options { poll, ..Options::new(p) })
}

/// The plan for `provider` (rules and cost; nothing sent).
pub fn plan(ws: &Workspace, provider: &'static str, env: &Env) -> Action {
    let result = (|| {
        let o = options(provider, 0.0)?;
        let session = Session::open(&ws.root, &o, env, false)?;
        if let Some(s) = &session.saved {
            return Err(format!("a {} job is already in progress ({}): F10 follows it", s.provider, s.started_at));
        }
        Ok(match session.plan(&o) {
            Ok(p) => HostedPlan {
                provider,
                headline: p.headline(),
                notes: p.notes,
                sha256: p.data.sha256,
                problems: Vec::new(),
            },
            Err(problems) => {
                HostedPlan { provider, headline: String::new(), notes: Vec::new(), sha256: String::new(), problems }
            }
        })
    })();
    Action::Training(TrainMsg::HostedPlan(result))
}

/// What a hosted task does once its session is open.
#[derive(Debug, Clone)]
pub enum Work {
    /// Upload and create (if the dataset is still `sha256`), then follow.
    Start {
        sha256: String,
    },
    Follow,
    Cancel,
}

/// Runs `work` on a task; its reports and its end come back on `tx`.
pub fn spawn(ws: &Workspace, provider: &'static str, work: Work, env: Env, poll: f64, tx: UnboundedSender<Action>) {
    let root = ws.root.clone();
    tokio::spawn(async move {
        let send = |m: TrainMsg| {
            let _ = tx.send(Action::Training(m));
        };
        let mut report = |r: Report| send(TrainMsg::Hosted(r));
        match run(&root, provider, work, &env, poll, &mut report).await {
            Ok(Some(outcome)) => {
                // Success wrote the lane: the loop takes workspace.toml as it now is.
                let disk = matches!(outcome, finetune::job::Outcome::Succeeded { .. })
                    .then(|| crate::workspace::load(&root).ok().map(Box::new))
                    .flatten();
                send(TrainMsg::HostedEnded(Ok(outcome), disk));
            }
            Ok(None) => {}
            Err(e) => send(TrainMsg::HostedEnded(Err(e), None)),
        }
    });
}

async fn run(
    root: &std::path::Path,
    provider: &'static str,
    work: Work,
    env: &Env,
    poll: f64,
    report: &mut (dyn FnMut(Report) + Send),
) -> Result<Option<finetune::job::Outcome>, String> {
    let o = options(provider, poll)?;
    let mut session = Session::open(root, &o, env, matches!(work, Work::Cancel))?;
    let mut st = match (session.saved.take(), work) {
        (Some(s), Work::Cancel) => {
            let id = s.job_id.ok_or("the job was not created yet: nothing to cancel")?;
            report(Report::Say(session.cancel(&id).await?));
            return Ok(None);
        }
        (None, Work::Cancel | Work::Follow) => return Err(format!("no job in progress in {}", root.display())),
        (Some(s), Work::Follow) => s,
        (Some(s), Work::Start { .. }) => {
            return Err(format!("a {} job is already in progress ({}): F10 follows it", s.provider, s.started_at));
        }
        (None, Work::Start { sha256 }) => {
            let plan = session.plan(&o).map_err(|p| p.join("; "))?;
            if plan.data.sha256 != sha256 {
                return Err(
                    "the dataset changed since the estimate: nothing was uploaded — Enter shows the new one".into()
                );
            }
            session.upload(&plan, &o, report).await?
        }
    };
    if st.job_id.is_none() {
        session.create(&o, &mut st, report).await?;
    }
    session.follow(&mut st, poll, report).await.map(Some)
}

/// The hosted job in progress, as F10's opening message (None: none).
pub fn in_progress(ws: &Workspace) -> Option<TrainMsg> {
    let s = state::load(&ws.root).ok()??;
    let provider = finetune::provider(&s.provider)?.name;
    Some(TrainMsg::HostedResume { provider, job: s.job_id, status: s.status })
}
