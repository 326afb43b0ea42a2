//! Ctrl+P: promote the focused lane's answer into a training example (edit first, rate 1–5, tag, or reject).

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use tui_textarea::TextArea;

use super::keys::ctrl;
use super::{AppState, Effect, LaneStatus, Mode, text_area};
use crate::dataset::{Example, Meta};
use crate::engine::RunId;

/// Where the typing goes in the promote dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromoteField {
    /// Keys are commands (rate, edit, promote …).
    None,
    Answer,
    Tags,
}

#[derive(Debug)]
pub struct PromoteForm {
    pub lane: usize,
    pub input: String,
    /// The lane's answer as produced, to tell whether it was edited.
    pub original: String,
    pub answer: TextArea<'static>,
    pub tags: TextArea<'static>,
    pub rating: Option<u8>,
    pub field: PromoteField,
    /// The lane failed: its answer is partial.
    pub partial: bool,
    /// The lane's whole output when it holds a reasoning model's `<think>` block: the answer starts without
    /// the block (a training example teaches the answer, not the thinking), and `k` puts it back.
    pub with_thinking: Option<String>,
}

/// What the runtime stores for a promotion (answered with `Action::Promoted`).
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub example: Example,
    /// Kept in dataset/rejected.jsonl (never trained on), not in a split.
    pub reject: bool,
}

impl PromoteForm {
    /// The answer as it will be stored (trailing whitespace dropped).
    pub fn answer_text(&self) -> String {
        self.answer.lines().join("\n").trim_end().to_string()
    }

    pub fn edited(&self) -> bool {
        self.answer_text() != self.original.trim_end()
    }

    /// Whether the answer holds the lane's thinking block (the user asked for it with `k`).
    pub fn keeps_thinking(&self) -> bool {
        self.with_thinking.as_deref().is_some_and(|full| self.answer_text() == full.trim_end())
    }
}

/// Ctrl+P: whether the focused lane has an answer to promote; if so, the dataset is asked first whether its
/// input is already there, so that a refusal comes before any editing or rating, not after.
pub fn check(state: &mut AppState) -> Option<Effect> {
    let i = state.selected;
    let (lane, spec) = (state.lanes.get(i)?, state.ws.lanes.get(i)?);
    if lane.status.is_running() {
        state.warn(format!("lane `{}` is still answering; promote it when it is done", spec.id));
        return None;
    }
    if lane.output.trim().is_empty() {
        state.warn(format!("lane `{}` has no answer to promote (run it first: F5)", spec.id));
        return None;
    }
    if state.stale_reason(i).is_some() {
        let why = "its answer is not to the input and settings shown now";
        state.warn(format!("lane `{}`: {why}; rerun it (F5) to promote", spec.id));
        return None;
    }
    let lane = &state.lanes[i];
    Some(Effect::CheckPromote { lane: i, run: lane.run?, input: lane.input.clone() })
}

/// The dataset's answer: opens the dialog, unless the input is already an example or the lane ran again.
pub fn on_checked(state: &mut AppState, lane: usize, run: RunId, result: Result<Option<String>, String>) {
    if !matches!(state.mode, Mode::Normal) || state.lanes.get(lane).and_then(|l| l.run) != Some(run) {
        return; // the user moved on (another overlay, a new run): the answer no longer applies
    }
    match result {
        Ok(None) => {
            if let Some(form) = open(state, lane) {
                state.mode = Mode::Promote(Box::new(form));
            }
        }
        Ok(Some(at)) => state.warn(format!("not promoted: this input is already {at}; edit that one instead (F3)")),
        Err(e) => state.error(format!("cannot check the dataset before promoting: {e}")),
    }
}

/// The dialog on lane `i`'s answer.
fn open(state: &AppState, i: usize) -> Option<PromoteForm> {
    let lane = state.lanes.get(i)?;
    let (thinking, answer) = crate::engine::think::split(&lane.output);
    Some(PromoteForm {
        lane: i,
        input: lane.input.clone(),
        original: answer.to_string(),
        answer: text_area(answer),
        with_thinking: thinking.map(|_| lane.output.clone()),
        tags: TextArea::default(),
        rating: None,
        field: PromoteField::None,
        partial: lane.status == LaneStatus::Failed,
    })
}

/// A key in the dialog: returns the effects and whether the dialog stays open.
pub fn key(state: &mut AppState, form: &mut PromoteForm, key: KeyEvent) -> (Vec<Effect>, bool) {
    match form.field {
        PromoteField::Answer => {
            if key.code == KeyCode::Esc {
                form.field = PromoteField::None;
            } else {
                let width = super::geometry::editor_width(state, super::geometry::Editor::PromoteAnswer);
                super::editing::key(&mut form.answer, key, width);
            }
            return (Vec::new(), true);
        }
        PromoteField::Tags => {
            if matches!(key.code, KeyCode::Esc | KeyCode::Enter) {
                form.field = PromoteField::None;
            } else {
                form.tags.input(key);
            }
            return (Vec::new(), true);
        }
        PromoteField::None => {}
    }
    match key.code {
        KeyCode::Char(c @ '1'..='5') => form.rating = Some(c as u8 - b'0'),
        KeyCode::Char('0') => form.rating = None,
        KeyCode::Char('e') => form.field = PromoteField::Answer,
        // Writing the right answer from scratch is common (the lane got it wrong): start from a blank.
        KeyCode::Char('c') => {
            form.answer = TextArea::default();
            form.field = PromoteField::Answer;
        }
        KeyCode::Char('t') => form.field = PromoteField::Tags,
        // The thinking block in or out of the answer, as the user chooses; edits made meanwhile are replaced.
        KeyCode::Char('k') => match &form.with_thinking {
            Some(_) if form.keeps_thinking() => form.answer = text_area(&form.original),
            Some(full) => form.answer = text_area(full),
            None => state.info("this answer has no <think> block"),
        },
        KeyCode::Enter => return store(state, form, false),
        KeyCode::Char('x') => return store(state, form, true),
        KeyCode::Esc | KeyCode::Char('q') => {
            state.info("promotion cancelled");
            return (Vec::new(), false);
        }
        _ if ctrl(&key, 'p') => return store(state, form, false),
        _ => {}
    }
    (Vec::new(), true)
}

/// Stores the example (or the rejection); an empty answer or input is no example and keeps the dialog open.
fn store(state: &mut AppState, form: &PromoteForm, reject: bool) -> (Vec<Effect>, bool) {
    if !reject && (form.answer_text().trim().is_empty() || form.input.trim().is_empty()) {
        state.warn("an empty answer or input is not a training example: e edits the answer, Esc cancels");
        return (Vec::new(), true);
    }
    (vec![Effect::Promote(Box::new(promotion(state, form, reject)))], false)
}

/// The example as stored: the dataset's system prompt (not the lane's), the run's input, the answer.
fn promotion(state: &AppState, form: &PromoteForm, reject: bool) -> Promotion {
    let spec = &state.ws.lanes[form.lane];
    let tags: Vec<String> =
        form.tags.lines().join(" ").split([',', ' ']).filter(|t| !t.is_empty()).map(str::to_string).collect();
    let meta = Meta {
        source_lane: Some(spec.id.clone()),
        model: Some(spec.model.clone()),
        adapter: spec.adapter.clone(),
        prompt_variant: Some(spec.prompt.clone()),
        rating: form.rating,
        edited: form.edited(),
        tags,
        ..Meta::default()
    };
    let example =
        Example::chat(String::new(), state.ws.dataset_system_prompt(), &form.input, &form.answer_text(), meta);
    Promotion { example, reject }
}

/// A paste goes into the field being typed (none: ignored, keys are commands there).
pub fn paste(form: &mut PromoteForm, text: &str) {
    match form.field {
        PromoteField::Answer => {
            form.answer.insert_str(text);
        }
        PromoteField::Tags => {
            form.tags.insert_str(text.replace('\n', " "));
        }
        PromoteField::None => {}
    }
}
