//! The F9 eval view's state: the scoreboard from cached answers, a run of what is missing (going on when the
//! view is closed), the case browser, and making a lane's answer a case's expected one.

use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::{AppState, Effect, Mode};
use crate::engine::LaneIdx;
use crate::eval::{Case, Scoreboard};

/// What the scoreboard is made of.
#[derive(Debug, Clone)]
pub struct EvalData {
    pub cases: Vec<Case>,
    pub board: Scoreboard,
    pub lanes: Vec<LaneIdx>,
    /// "evals.toml", or how cases are compared without one.
    pub assertions_from: String,
}

/// What the runtime reports.
#[derive(Debug, Clone)]
pub enum EvalMsg {
    Loaded(Result<Box<EvalData>, String>),
    /// Paid calls are planned: the estimate, to confirm before anything runs.
    NeedsConfirm(String),
    /// Runs finished of those planned; `errors` are runs that did not complete (not answers that failed checks).
    Progress {
        done: usize,
        total: usize,
        errors: usize,
    },
    /// A run ended (or was stopped): what happened.
    Finished(Result<String, String>),
    /// Result of `Effect::EvalPromote`.
    Promoted(Result<String, String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EvalPane {
    #[default]
    Board,
    /// One case: the expected answer beside a lane's, its checks and a diff.
    Case,
    /// `y` runs the paid calls described, `f` only the free lanes' runs.
    ConfirmPaid(String),
    /// `y` makes the shown lane's answer the case's expected answer.
    ConfirmPromote,
}

#[derive(Debug, Clone, Default)]
pub struct EvalView {
    pub data: Option<Box<EvalData>>,
    pub error: Option<String>,
    pub pane: EvalPane,
    /// The case selected in the list.
    pub selected: usize,
    /// Index into `data.lanes` of the lane shown in the case pane.
    pub lane: usize,
    pub scroll: u16,
    /// (done, total, run errors) while a run is going.
    pub running: Option<(usize, usize, usize)>,
    pub last_message: Option<String>,
    /// Digits typed before `r`: how many cases, from the selected one, to run.
    pub count: Option<usize>,
    /// The cases the run asked for (None: all), kept for the paid-call question's answer.
    pub scope: Option<std::ops::Range<usize>>,
}

/// F9: shows the scoreboard (read again from the cache and the files).
pub fn open(state: &mut AppState) -> Vec<Effect> {
    state.mode = Mode::Eval;
    state.eval.pane = EvalPane::Board;
    vec![Effect::LoadEval]
}

pub fn on_msg(state: &mut AppState, msg: EvalMsg) -> Vec<Effect> {
    let v = &mut state.eval;
    match msg {
        EvalMsg::Loaded(Ok(data)) => {
            v.selected = v.selected.min(data.cases.len().saturating_sub(1));
            v.lane = v.lane.min(data.lanes.len().saturating_sub(1));
            v.data = Some(data);
            v.error = None;
        }
        EvalMsg::Loaded(Err(e)) => {
            v.data = None;
            v.error = Some(e);
        }
        EvalMsg::NeedsConfirm(text) => {
            v.running = None;
            v.pane = EvalPane::ConfirmPaid(text);
        }
        EvalMsg::Progress { done, total, errors } => v.running = Some((done, total, errors)),
        // The board already holds every answer of the run (its run errors too, which the cache does not keep).
        EvalMsg::Finished(r) => {
            v.running = None;
            match r {
                Ok(m) => {
                    v.last_message = Some(m.clone());
                    state.info(m);
                }
                Err(e) => state.error(e),
            }
        }
        EvalMsg::Promoted(Ok(m)) => {
            state.info(m);
            return vec![Effect::LoadEval];
        }
        EvalMsg::Promoted(Err(e)) => state.error(e),
    }
    Vec::new()
}

/// A key while F9 is open.
pub fn key(state: &mut AppState, key: KeyEvent) -> Vec<Effect> {
    let v = &mut state.eval;
    let cases = v.data.as_ref().map_or(0, |d| d.cases.len());
    let lanes = v.data.as_ref().map_or(0, |d| d.lanes.len());
    // A count typed before `r` applies to that `r` only: any other key forgets it.
    if !matches!(key.code, KeyCode::Char('0'..='9' | 'r')) {
        v.count = None;
    }
    match v.pane.clone() {
        EvalPane::ConfirmPaid(_) => {
            v.pane = EvalPane::Board;
            let (confirmed, free_only) = match key.code {
                KeyCode::Char('y') => (true, false),
                KeyCode::Char('f') => (false, true),
                _ => return Vec::new(),
            };
            v.running = Some((0, 0, 0));
            return vec![Effect::RunEval { confirmed, free_only, cases: v.scope.clone() }];
        }
        EvalPane::ConfirmPromote => {
            v.pane = EvalPane::Case;
            if key.code == KeyCode::Char('y')
                && let Some((case_id, lane, answer)) = shown_answer(v)
            {
                return vec![Effect::EvalPromote { case_id, lane, answer }];
            }
        }
        EvalPane::Board => match key.code {
            KeyCode::Up | KeyCode::Char('k') => v.selected = v.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => v.selected = (v.selected + 1).min(cases.saturating_sub(1)),
            KeyCode::PageUp => v.selected = v.selected.saturating_sub(10),
            KeyCode::PageDown => v.selected = (v.selected + 10).min(cases.saturating_sub(1)),
            KeyCode::Home => v.selected = 0,
            KeyCode::End => v.selected = cases.saturating_sub(1),
            KeyCode::Enter if cases > 0 => {
                v.pane = EvalPane::Case;
                v.scroll = 0;
            }
            // `r` runs the selected case, `N r` the N cases from it, `a` every case: only what is not cached.
            KeyCode::Char(d @ '0'..='9') if v.running.is_none() => {
                let n = v.count.unwrap_or(0).saturating_mul(10).saturating_add(d as usize - '0' as usize);
                v.count = Some(n.min(cases.max(1)));
                return Vec::new();
            }
            KeyCode::Char(c @ ('r' | 'a')) if v.running.is_none() && cases > 0 => {
                let n = v.count.take().filter(|&n| n > 0).unwrap_or(1);
                v.scope = (c == 'r').then(|| v.selected..(v.selected + n).min(cases));
                v.running = Some((0, 0, 0));
                return vec![Effect::RunEval { confirmed: false, free_only: false, cases: v.scope.clone() }];
            }
            KeyCode::Char('s') if v.running.is_some() => return vec![Effect::StopEval],
            KeyCode::Char('h') => return vec![Effect::LoadHistory],
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::F(9) => state.mode = Mode::Normal,
            _ => {}
        },
        EvalPane::Case => match key.code {
            KeyCode::Left | KeyCode::Char('h') => v.lane = (v.lane + lanes.max(1) - 1) % lanes.max(1),
            KeyCode::Right | KeyCode::Char('l') | KeyCode::Tab => v.lane = (v.lane + 1) % lanes.max(1),
            KeyCode::Up | KeyCode::Char('k') => v.scroll = v.scroll.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => v.scroll = v.scroll.saturating_add(1),
            KeyCode::PageUp => v.selected = v.selected.saturating_sub(1),
            KeyCode::PageDown => v.selected = (v.selected + 1).min(cases.saturating_sub(1)),
            KeyCode::Char('p') => match shown_answer(v) {
                Some(_) => v.pane = EvalPane::ConfirmPromote,
                None => state.error("this lane has no finished answer to this case to promote"),
            },
            KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace => v.pane = EvalPane::Board,
            _ => {}
        },
    }
    Vec::new()
}

/// The case pane's lane answer, when it finished: (case id, lane, answer).
pub fn shown_answer(v: &EvalView) -> Option<(String, LaneIdx, String)> {
    let d = v.data.as_ref()?;
    let lane = *d.lanes.get(v.lane)?;
    let scored = d.board.get(v.selected, lane)?;
    (scored.answer.error.is_none() && !scored.answer.output.trim().is_empty())
        .then(|| (d.cases[v.selected].id.clone(), lane, scored.answer.output.clone()))
}
