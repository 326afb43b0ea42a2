//! A training run started from the TUI, on its own thread (it is CPU-bound for minutes): progress goes
//! back to the loop as actions; a shared flag stops it between steps.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::mpsc::UnboundedSender;

use crate::app::{Action, TrainMsg};
use crate::lora::train::job::Job;
use crate::workspace::Workspace;

/// Starts training with the CLI's default settings; without a loop to report to, says so.
pub fn start(ws: &Workspace, tx: Option<UnboundedSender<Action>>, stop: Arc<AtomicBool>) -> Option<Action> {
    let Some(tx) = tx else {
        return Some(Action::Training(TrainMsg::Finished(Err("training reports to the TUI's event loop".into()))));
    };
    let ws = ws.clone();
    let send = move |m: TrainMsg| {
        let _ = tx.send(Action::Training(m));
    };
    let spawned = std::thread::Builder::new().name("tunebench-train".into()).spawn(move || {
        let mut job = match Job::prepare(&ws, &crate::cli::train::default_options()) {
            Ok(j) => j,
            Err(e) => return send(TrainMsg::Finished(Err(e))),
        };
        send(TrainMsg::Prepared {
            lane: job.lane.clone(),
            adapter_dir: job.output.adapter_dir.display().to_string(),
            train: job.train.len(),
            valid: job.valid.len(),
            skipped: job.skipped.clone(),
        });
        let result = job.run(&stop, &mut |e| send(TrainMsg::Event(e)));
        send(TrainMsg::Finished(result.map_err(|e| e.to_string())));
    });
    match spawned {
        Ok(_) => None,
        Err(e) => Some(Action::Training(TrainMsg::Finished(Err(format!("cannot start the training thread: {e}"))))),
    }
}

/// A hosted job in progress, else the adapter lane's last run as its newest checkpoint recorded it (nothing
/// when never trained).
pub fn last(ws: &Workspace) -> Action {
    if let Some(msg) = super::train_hosted::in_progress(ws) {
        return Action::Training(msg);
    }
    let found = (|| {
        let lane = ws.adapter_lane()?;
        let dir = ws.resolve(lane.adapter.as_deref()?);
        let ckpt = crate::lora::train::save::latest(&dir.join("checkpoints"))?;
        let state = serde_json::from_str(&std::fs::read_to_string(ckpt.join("state.json")).ok()?).ok()?;
        Some(TrainMsg::Last { lane: lane.id.clone(), adapter_dir: dir.display().to_string(), state: Box::new(state) })
    })();
    Action::Training(found.unwrap_or(TrainMsg::NeverTrained))
}
