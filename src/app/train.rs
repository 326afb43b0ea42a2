//! The F10 train view's state: a training run started from the TUI, its loss curve as it comes in, stop,
//! and — when it ends — the offer to run the adapter lane with the new adapter (a provider's job: train_hosted).
//! Training goes on when the view is closed; the view only shows it.

use ratatui::crossterm::event::{KeyCode, KeyEvent};

pub use super::train_hosted::{Hosted, HostedPlan, Target};
use super::{AppState, Effect, Mode};
use crate::lora::train::{Event, Summary};

/// What the runtime reports about a run.
#[derive(Debug, Clone)]
pub enum TrainMsg {
    /// The model and data are ready: where the adapter goes, for which lane, on how many examples.
    Prepared {
        lane: String,
        adapter_dir: String,
        train: usize,
        valid: usize,
        skipped: Vec<String>,
    },
    Event(Event),
    Finished(Result<Summary, String>),
    /// The curve of the adapter's last run (from its checkpoint), shown when F10 opens with nothing running.
    Last {
        lane: String,
        adapter_dir: String,
        state: Box<crate::lora::train::save::State>,
    },
    /// No checkpoint to show: the view stays as it is.
    NeverTrained,
    /// The sweep's curve from disk and the eval cache (`tunebench sweep` makes it), or why it could not be read.
    Sweep(Result<crate::sweep::Curve, String>),
    /// A hosted target's plan (rules checked, cost estimated), or why there is none (no key, no lane).
    HostedPlan(Result<HostedPlan, String>),
    /// A hosted job is in progress (finetune-job.json): F10 follows it.
    HostedResume {
        provider: &'static str,
        job: Option<String>,
        status: Option<String>,
    },
    /// A hosted job's progress.
    Hosted(crate::finetune::job::Report),
    /// How the hosted job ended (or why following it failed), with workspace.toml as the job left it.
    HostedEnded(Result<crate::finetune::job::Outcome, String>, Option<Box<crate::workspace::Workspace>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainStatus {
    Idle,
    Preparing,
    /// A hosted plan is shown: Enter uploads and starts the job, Esc declines.
    Confirm,
    Running,
    Stopping,
    Done,
    Failed,
}

#[derive(Debug, Clone)]
pub struct TrainState {
    pub status: TrainStatus,
    pub lane: Option<String>,
    pub adapter_dir: Option<String>,
    pub examples: (usize, usize),
    pub skipped: Vec<String>,
    pub steps: usize,
    /// (step, training loss) and (step, validation loss).
    pub train_loss: Vec<(f64, f64)>,
    pub valid_loss: Vec<(f64, f64)>,
    pub last: Option<Event>,
    pub summary: Option<Summary>,
    pub error: Option<String>,
    /// Shown from the adapter's last checkpoint (a run from the CLI or an earlier session).
    pub last_run: bool,
    /// The sweep's pass rate against train examples, when one has points.
    pub sweep: crate::sweep::Curve,
    /// Where Enter trains.
    pub target: Target,
    /// The hosted job, when the target is a provider.
    pub hosted: Option<Hosted>,
}

impl Default for TrainState {
    fn default() -> Self {
        Self {
            status: TrainStatus::Idle,
            lane: None,
            adapter_dir: None,
            examples: (0, 0),
            skipped: Vec::new(),
            steps: 0,
            train_loss: Vec::new(),
            valid_loss: Vec::new(),
            last: None,
            summary: None,
            error: None,
            last_run: false,
            sweep: crate::sweep::Curve::default(),
            target: Target::Local,
            hosted: None,
        }
    }
}

impl TrainState {
    pub fn running(&self) -> bool {
        matches!(self.status, TrainStatus::Preparing | TrainStatus::Running | TrainStatus::Stopping)
    }
}

/// Applies a report from the runtime (whether or not the view is open); the effects it causes.
pub fn on_msg(state: &mut AppState, msg: TrainMsg) -> Vec<Effect> {
    let t = &mut state.train;
    match msg {
        TrainMsg::HostedPlan(_) | TrainMsg::HostedResume { .. } | TrainMsg::Hosted(_) | TrainMsg::HostedEnded(..) => {
            return super::train_hosted::on_msg(state, msg);
        }
        TrainMsg::Prepared { lane, adapter_dir, train, valid, skipped } => {
            t.status = if t.status == TrainStatus::Stopping { TrainStatus::Stopping } else { TrainStatus::Running };
            t.lane = Some(lane);
            t.adapter_dir = Some(adapter_dir);
            t.examples = (train, valid);
            t.skipped = skipped;
        }
        TrainMsg::Event(e) => {
            match &e {
                Event::Started { steps, .. } => t.steps = *steps,
                Event::Step { step, loss, .. } => t.train_loss.push((*step as f64, *loss)),
                Event::Eval { step, valid_loss, .. } => t.valid_loss.push((*step as f64, *valid_loss)),
                Event::Checkpoint { .. } => {}
            }
            if matches!(e, Event::Step { .. }) {
                t.last = Some(e);
            }
        }
        TrainMsg::Finished(Ok(summary)) => {
            // A run stopped with `s` is not a finished one: say where it stopped and how to go on.
            let what = if summary.cancelled {
                format!("training stopped at step {} (`tunebench train --resume` goes on)", summary.steps)
            } else if summary.stopped_early {
                format!("training stopped early at step {} (no gain)", summary.steps)
            } else {
                "training done".to_string()
            };
            let msg = match (summary.valid_before, summary.valid_best) {
                (Some(a), Some(b)) => format!("{what}: valid loss {a:.3} → {b:.3}; F10 shows it"),
                _ => format!("{what}; F10 shows it"),
            };
            t.status = TrainStatus::Done;
            t.summary = Some(summary);
            state.info(msg);
        }
        TrainMsg::NeverTrained => {}
        TrainMsg::Sweep(Ok(curve)) => t.sweep = curve,
        TrainMsg::Sweep(Err(e)) => state.warn(format!("the sweep's curve: {e}")),
        TrainMsg::Last { lane, adapter_dir, state: st } => {
            if t.status == TrainStatus::Idle && t.target == Target::Local {
                *t = TrainState {
                    status: TrainStatus::Done,
                    lane: Some(lane),
                    adapter_dir: Some(adapter_dir),
                    steps: st.step,
                    train_loss: st.train_losses.iter().map(|&(s, l)| (s as f64, l)).collect(),
                    valid_loss: st.valid_losses.iter().map(|&(s, l)| (s as f64, l)).collect(),
                    last_run: true,
                    ..TrainState::default()
                };
            }
        }
        TrainMsg::Finished(Err(e)) => {
            t.status = TrainStatus::Failed;
            t.error = Some(e.clone());
            state.error(format!("training failed: {e}"));
        }
    }
    Vec::new()
}

/// A key in the train view: the effects, and whether the view stays open.
pub fn key(state: &mut AppState, key: KeyEvent) -> (Vec<Effect>, bool) {
    if let Some(handled) = super::train_hosted::key(state, key) {
        return handled;
    }
    match (key.code, state.train.status) {
        (KeyCode::Enter, TrainStatus::Idle | TrainStatus::Failed) => {
            let sweep = std::mem::take(&mut state.train.sweep);
            state.train = TrainState { status: TrainStatus::Preparing, sweep, ..TrainState::default() };
            (vec![Effect::StartTraining], true)
        }
        (KeyCode::Char('s'), TrainStatus::Preparing | TrainStatus::Running) => {
            state.train.status = TrainStatus::Stopping;
            state.info("stopping after this step (a checkpoint is kept: `tunebench train --resume` goes on)");
            (vec![Effect::StopTraining], true)
        }
        // Done: run the adapter lane on the current input, with the adapter just written (a new version beside
        // the lane's own becomes the lane's adapter in memory; saving the workspace keeps it).
        (KeyCode::Enter, TrainStatus::Done) => {
            let lane = state.train.lane.clone().and_then(|id| state.ws.lanes.iter().position(|l| l.id == id));
            let Some(i) = lane else { return (Vec::new(), false) };
            if let Some(dir) = state.train.adapter_dir.clone() {
                use_version(state, i, &dir);
            }
            (super::runs::run(state, vec![i]), false)
        }
        (KeyCode::Char('n'), TrainStatus::Done) => {
            let sweep = std::mem::take(&mut state.train.sweep);
            state.train = TrainState { status: TrainStatus::Preparing, sweep, ..TrainState::default() };
            (vec![Effect::StartTraining], true)
        }
        (KeyCode::Esc | KeyCode::F(10) | KeyCode::Char('q'), _) => (Vec::new(), false),
        _ => (Vec::new(), true),
    }
}

/// Points lane `i` at the adapter folder `dir` when it names another one (training wrote a new version).
fn use_version(state: &mut AppState, i: usize, dir: &str) {
    let lane = &state.ws.lanes[i];
    if lane.adapter.as_deref().is_some_and(|a| state.ws.resolve(a) == std::path::Path::new(dir)) {
        return;
    }
    let rel =
        std::path::Path::new(dir).strip_prefix(&state.ws.root).map_or(dir.to_string(), |p| p.display().to_string());
    let id = lane.id.clone();
    match state.ws.edit_lane(i, crate::workspace::LaneEdit::Adapter(Some(rel.clone()))) {
        Ok(()) => state.info(format!("lane `{id}` now runs {rel} (Ctrl+S writes it to workspace.toml)")),
        Err(e) => state.warn(format!("lane `{id}` keeps its adapter: {e}")),
    }
}

/// F10 opens the view; with nothing running, the last run's curve is read from its checkpoint.
pub fn open(state: &mut AppState) -> Vec<Effect> {
    state.mode = Mode::Train;
    // With no adapter lane, the first provider is the target.
    let all = super::train_hosted::targets(&state.ws);
    let t = &mut state.train;
    if t.status == TrainStatus::Idle
        && !all.contains(&t.target)
        && let Some(&first) = all.first()
    {
        t.target = first;
        if let Target::Hosted(provider) = first {
            t.hosted = Some(Hosted { provider, ..Hosted::default() });
        }
    }
    let mut effects = vec![Effect::LoadSweep];
    if state.train.status == TrainStatus::Idle {
        effects.insert(0, Effect::LoadLastTraining);
    }
    effects
}
