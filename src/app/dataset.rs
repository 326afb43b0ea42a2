//! The F3 dataset view: list, search, open, edit, move between splits, delete; results come from the runtime.

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use tui_textarea::TextArea;

use super::keys::ctrl;
use super::{AppState, Effect, text_area};
use crate::dataset::{Example, Report, Split};

/// A change the view asks the runtime to write (re-reading the files first, so edits elsewhere survive).
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetOp {
    Replace(Box<Example>),
    Move { id: String, to: Split },
    Delete { id: String },
}

#[derive(Debug)]
pub enum Pane {
    List,
    /// One example in full, scrolled.
    Open {
        scroll: u16,
    },
    /// Editing one turn ("user" or "assistant") of the selected example.
    Edit {
        role: &'static str,
        area: Box<TextArea<'static>>,
    },
    ConfirmDelete,
}

#[derive(Debug)]
pub struct DatasetView {
    /// None until the first read comes back.
    pub data: Option<Report>,
    pub error: Option<String>,
    /// Search text (matches id, input, answer and tags, ignoring case).
    pub query: String,
    pub searching: bool,
    /// Only this split (None: all).
    pub only: Option<Split>,
    pub selected: usize,
    pub pane: Pane,
}

impl DatasetView {
    pub fn new() -> Self {
        Self {
            data: None,
            error: None,
            query: String::new(),
            searching: false,
            only: None,
            selected: 0,
            pane: Pane::List,
        }
    }

    /// The examples shown, in split then file order.
    pub fn rows(&self) -> Vec<(Split, &Example)> {
        let Some(d) = &self.data else { return Vec::new() };
        let q = self.query.to_lowercase();
        d.dataset
            .examples()
            .filter(|(s, ..)| self.only.is_none_or(|o| o == *s))
            .filter(|(_, x, _)| q.is_empty() || matches(x, &q))
            .map(|(s, x, _)| (s, x))
            .collect()
    }

    pub fn current(&self) -> Option<(Split, &Example)> {
        self.rows().get(self.selected).copied()
    }

    fn clamp(&mut self) {
        let n = self.rows().len();
        self.selected = self.selected.min(n.saturating_sub(1));
    }
}

impl Default for DatasetView {
    fn default() -> Self {
        Self::new()
    }
}

fn matches(x: &Example, q: &str) -> bool {
    x.id.to_lowercase().contains(q)
        || x.user().to_lowercase().contains(q)
        || x.assistant().to_lowercase().contains(q)
        || x.meta.tags.iter().any(|t| t.to_lowercase().contains(q))
}

/// A read (or a write's read-back): into the view when it is open; a message or error shows either way.
pub fn on_loaded(state: &mut AppState, result: Result<(Report, Option<String>), String>) {
    match std::mem::replace(&mut state.mode, super::Mode::Normal) {
        super::Mode::Dataset(mut view) => {
            loaded(state, &mut view, result);
            state.mode = super::Mode::Dataset(view);
        }
        other => {
            state.mode = other;
            match result {
                Ok((_, Some(m))) => state.info(m),
                Ok(_) => {}
                Err(e) => state.error(e),
            }
        }
    }
}

fn loaded(state: &mut AppState, view: &mut DatasetView, result: Result<(Report, Option<String>), String>) {
    match result {
        Ok((data, message)) => {
            view.data = Some(data);
            view.error = None;
            view.clamp();
            if let Some(m) = message {
                state.info(m);
            }
        }
        Err(e) => {
            // A failed write leaves the view as it was; a failed first read shows why in the view.
            if view.data.is_none() {
                view.error = Some(e.clone());
            }
            state.error(e);
        }
    }
}

/// A key while the promote dialog or the dataset view is open. Ctrl+Q quits from both; Ctrl+S writes the
/// example being edited in the view, and saves the workspace anywhere else.
pub fn overlay_key(state: &mut AppState, mode: super::Mode, key: KeyEvent) -> Vec<Effect> {
    use super::Mode;
    let (effects, open) = match mode {
        Mode::Promote(mut form) => {
            if ctrl(&key, 'q') {
                state.mode = Mode::Promote(form);
                return super::update::global_save_quit(state, key);
            }
            let (effects, open) = super::promote::key(state, &mut form, key);
            (effects, open.then_some(Mode::Promote(form)))
        }
        Mode::Dataset(mut view) => {
            if ctrl(&key, 'q') || (ctrl(&key, 's') && !matches!(view.pane, Pane::Edit { .. })) {
                state.mode = Mode::Dataset(view);
                return super::update::global_save_quit(state, key);
            }
            let (effects, open) = self::key(state, &mut view, key);
            (effects, open.then_some(Mode::Dataset(view)))
        }
        other => (Vec::new(), Some(other)),
    };
    if let Some(mode) = open {
        state.mode = mode;
    }
    effects
}

/// A key in the view: the effects, and whether the view stays open.
fn key(state: &mut AppState, view: &mut DatasetView, key: KeyEvent) -> (Vec<Effect>, bool) {
    match std::mem::replace(&mut view.pane, Pane::List) {
        Pane::List => {}
        Pane::Open { scroll } => {
            view.pane = match key.code {
                KeyCode::Up | KeyCode::Char('k') => Pane::Open { scroll: scroll.saturating_sub(1) },
                KeyCode::Down | KeyCode::Char('j') => Pane::Open { scroll: scroll.saturating_add(1) },
                KeyCode::PageUp => Pane::Open { scroll: scroll.saturating_sub(10) },
                KeyCode::PageDown => Pane::Open { scroll: scroll.saturating_add(10) },
                KeyCode::Char('e' | 'u') => return list_key(view, key),
                _ => Pane::List,
            };
            return (Vec::new(), true);
        }
        Pane::Edit { role, mut area } => {
            if ctrl(&key, 's') {
                let Some((_, x)) = view.current() else { return (Vec::new(), true) };
                let mut x = x.clone();
                let text = area.lines().join("\n").trim_end().to_string();
                if text.trim().is_empty() {
                    state.warn("an empty turn is not a training example; Esc discards the edit");
                    view.pane = Pane::Edit { role, area };
                    return (Vec::new(), true);
                }
                let changed = text != if role == "user" { x.user() } else { x.assistant() };
                x.set_turn(role, text);
                x.meta.edited |= changed;
                return (vec![Effect::Dataset(DatasetOp::Replace(Box::new(x)))], true);
            }
            if key.code == KeyCode::Esc {
                state.info("edit discarded");
            } else {
                area.input(key);
                view.pane = Pane::Edit { role, area };
            }
            return (Vec::new(), true);
        }
        Pane::ConfirmDelete => {
            if key.code == KeyCode::Char('y')
                && let Some((_, x)) = view.current()
            {
                return (vec![Effect::Dataset(DatasetOp::Delete { id: x.id.clone() })], true);
            }
            state.info("not deleted");
            return (Vec::new(), true);
        }
    }
    if view.searching {
        match key.code {
            KeyCode::Enter | KeyCode::Esc => view.searching = false,
            KeyCode::Backspace => {
                view.query.pop();
            }
            KeyCode::Char(c) => view.query.push(c),
            _ => {}
        }
        view.selected = 0;
        return (Vec::new(), true);
    }
    list_key(view, key)
}

fn list_key(view: &mut DatasetView, key: KeyEvent) -> (Vec<Effect>, bool) {
    let n = view.rows().len();
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => view.selected = view.selected.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => view.selected = (view.selected + 1).min(n.saturating_sub(1)),
        KeyCode::PageUp => view.selected = view.selected.saturating_sub(10),
        KeyCode::PageDown => view.selected = (view.selected + 10).min(n.saturating_sub(1)),
        KeyCode::Home | KeyCode::Char('g') => view.selected = 0,
        KeyCode::End | KeyCode::Char('G') => view.selected = n.saturating_sub(1),
        KeyCode::Char('/') => view.searching = true,
        KeyCode::Tab => {
            view.only = match view.only {
                None => Some(Split::Train),
                Some(Split::Test) => None,
                Some(s) => Some(s.next()),
            };
            view.selected = 0;
        }
        KeyCode::Esc if !view.query.is_empty() => {
            view.query.clear();
            view.selected = 0;
        }
        KeyCode::Esc | KeyCode::F(3) | KeyCode::Char('q') => return (Vec::new(), false),
        _ => {
            let Some((split, x)) = view.current() else {
                return (Vec::new(), true);
            };
            match key.code {
                KeyCode::Enter => view.pane = Pane::Open { scroll: 0 },
                KeyCode::Char('e') => {
                    view.pane = Pane::Edit { role: "assistant", area: Box::new(text_area(x.assistant())) }
                }
                KeyCode::Char('u') => view.pane = Pane::Edit { role: "user", area: Box::new(text_area(x.user())) },
                KeyCode::Char('m') => {
                    let op = DatasetOp::Move { id: x.id.clone(), to: split.next() };
                    return (vec![Effect::Dataset(op)], true);
                }
                KeyCode::Char('d') | KeyCode::Delete => view.pane = Pane::ConfirmDelete,
                _ => {}
            }
        }
    }
    (Vec::new(), true)
}

/// A paste goes into the turn being edited or the search.
pub fn paste(view: &mut DatasetView, text: &str) {
    match &mut view.pane {
        Pane::Edit { area, .. } => {
            area.insert_str(text);
        }
        Pane::List if view.searching => view.query.push_str(&text.replace('\n', " ")),
        _ => {}
    }
}
