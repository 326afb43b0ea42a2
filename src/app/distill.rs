//! The distill view (F3, then D): pick the teacher lane, the inputs (the workspace's saved inputs by
//! default) and the filter, run `tunebench distill` from the TUI, and watch its progress, kept / rejected
//! counts and cost. The run goes on when the view is closed; paid calls are confirmed here first.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{AppState, Effect, Mode};
use crate::distill::Filter;

/// What the runtime reports about a distill run.
#[derive(Debug, Clone, PartialEq)]
pub enum DistillMsg {
    /// A progress line (replaces the last) or a line of the summary.
    Line { progress: bool, text: String },
    /// Paid calls: the estimate, waiting for `y`.
    NeedsConfirm(String),
    /// Exit code (0, or 1 with failed teacher runs), or why it stopped.
    Finished(Result<u8, String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistillStatus {
    Setup,
    Confirm(String),
    Running,
    Done,
    Failed(String),
}

/// Which setting the keys change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistillField {
    Teacher,
    Inputs,
    Filter,
}

#[derive(Debug, Clone)]
pub struct DistillState {
    pub teacher: usize,
    /// A path relative to the workspace (or absolute): a folder of .txt, a text file or a .jsonl.
    pub inputs: String,
    pub filter: Filter,
    pub field: DistillField,
    pub status: DistillStatus,
    pub progress: Option<String>,
    pub lines: Vec<String>,
}

impl DistillState {
    /// The reference lane (usually the long prompt) teaches by default, on the saved inputs.
    pub fn new(ws: &crate::workspace::Workspace) -> Self {
        let teacher = ws.savings.reference.as_ref().and_then(|r| ws.lanes.iter().position(|l| &l.id == r)).unwrap_or(0);
        Self {
            teacher,
            inputs: "inputs".into(),
            filter: Filter::Evals,
            field: DistillField::Teacher,
            status: DistillStatus::Setup,
            progress: None,
            lines: Vec::new(),
        }
    }

    pub fn running(&self) -> bool {
        self.status == DistillStatus::Running
    }
}

const FILTERS: [Filter; 3] = [Filter::Evals, Filter::Judge, Filter::None];

pub fn filter_name(f: Filter) -> &'static str {
    match f {
        Filter::Evals => "evals (assertions that need no expected answer)",
        Filter::Judge => "judge (llm-rubric, g-eval)",
        Filter::None => "none (keep every answer)",
    }
}

/// F3's `D`: the view, set up anew unless a run is going or has a result to show.
pub fn open(state: &mut AppState) {
    let keep = state.distill.as_ref().is_some_and(|d| d.status != DistillStatus::Setup);
    if !keep {
        state.distill = Some(DistillState::new(&state.ws));
    }
    state.mode = Mode::Distill;
}

fn start(d: &mut DistillState, ws: &crate::workspace::Workspace, yes: bool) -> Vec<Effect> {
    d.status = DistillStatus::Running;
    d.progress = None;
    d.lines.clear();
    let teacher = ws.lanes.get(d.teacher).map(|l| l.id.clone()).unwrap_or_default();
    vec![Effect::StartDistill { teacher, inputs: d.inputs.clone(), filter: d.filter, yes }]
}

/// A key in the view; false closes it (back to F3, read afresh).
pub fn key(state: &mut AppState, key: KeyEvent) -> (Vec<Effect>, bool) {
    let lanes = state.ws.lanes.len().max(1);
    let Some(d) = state.distill.as_mut() else { return (Vec::new(), false) };
    match (&d.status, key.code) {
        (DistillStatus::Running, KeyCode::Char('s')) => return (vec![Effect::StopDistill], true),
        (DistillStatus::Running, KeyCode::Esc) => return (Vec::new(), false),
        (DistillStatus::Running, _) => return (Vec::new(), true),
        (DistillStatus::Confirm(_), KeyCode::Char('y')) => {
            let ws = state.ws.clone();
            return (start(d, &ws, true), true);
        }
        (DistillStatus::Confirm(_), _) => {
            d.status = DistillStatus::Setup;
            return (Vec::new(), true);
        }
        (DistillStatus::Done | DistillStatus::Failed(_), KeyCode::Char('n')) => {
            d.status = DistillStatus::Setup;
            return (Vec::new(), true);
        }
        _ => {}
    }
    let typed = key.modifiers.difference(KeyModifiers::SHIFT).is_empty();
    match key.code {
        KeyCode::Esc => return (Vec::new(), false),
        KeyCode::Enter => {
            let ws = state.ws.clone();
            return (start(d, &ws, false), true);
        }
        KeyCode::Up | KeyCode::BackTab => {
            d.field = match d.field {
                DistillField::Teacher => DistillField::Filter,
                DistillField::Inputs => DistillField::Teacher,
                DistillField::Filter => DistillField::Inputs,
            }
        }
        KeyCode::Down | KeyCode::Tab => {
            d.field = match d.field {
                DistillField::Teacher => DistillField::Inputs,
                DistillField::Inputs => DistillField::Filter,
                DistillField::Filter => DistillField::Teacher,
            }
        }
        KeyCode::Left | KeyCode::Right => {
            let step = |i: usize, n: usize| if key.code == KeyCode::Right { (i + 1) % n } else { (i + n - 1) % n };
            match d.field {
                DistillField::Teacher => d.teacher = step(d.teacher, lanes),
                DistillField::Filter => {
                    let at = FILTERS.iter().position(|f| *f == d.filter).unwrap_or(0);
                    d.filter = FILTERS[step(at, FILTERS.len())];
                }
                DistillField::Inputs => {}
            }
        }
        KeyCode::Backspace if d.field == DistillField::Inputs => {
            d.inputs.pop();
        }
        KeyCode::Char(c) if typed && d.field == DistillField::Inputs => d.inputs.push(c),
        _ => {}
    }
    (Vec::new(), true)
}

pub fn on_msg(state: &mut AppState, msg: DistillMsg) -> Vec<Effect> {
    let Some(d) = state.distill.as_mut() else { return Vec::new() };
    match msg {
        DistillMsg::Line { progress: true, text } => d.progress = Some(text),
        DistillMsg::Line { progress: false, text } => d.lines.push(text),
        DistillMsg::NeedsConfirm(text) => d.status = DistillStatus::Confirm(text),
        DistillMsg::Finished(result) => {
            let (status, note) = match result {
                Ok(code) => (
                    DistillStatus::Done,
                    format!(
                        "distill finished{}",
                        if code == 1 { " (some teacher runs failed: a rerun asks them again)" } else { "" }
                    ),
                ),
                Err(e) => (DistillStatus::Failed(e.clone()), format!("distill stopped: {e}")),
            };
            d.status = status;
            if !matches!(state.mode, Mode::Distill) {
                state.info(note);
            }
            // F3, if open, shows the new examples.
            if matches!(state.mode, Mode::Dataset(_)) {
                return vec![Effect::LoadDataset];
            }
        }
    }
    Vec::new()
}
