//! The F3 dataset view: list, search, open, edit, move between splits, delete; results come from the runtime.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
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

/// What the view shows below its header. Panes about one example name it by id: a read arriving meanwhile
/// (a move, an edit elsewhere) can reorder the rows, never redirect the action to another example.
#[derive(Debug)]
pub enum Pane {
    List,
    /// One example in full, scrolled.
    Open {
        id: String,
        scroll: u16,
    },
    /// Editing one turn ("user" or "assistant"); `saving` from Ctrl+S until the write comes back, so a
    /// failed write keeps the text.
    Edit {
        id: String,
        role: &'static str,
        area: Box<TextArea<'static>>,
        saving: bool,
    },
    ConfirmDelete {
        id: String,
    },
    /// Every check finding, scrolled.
    Findings {
        scroll: u16,
    },
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
    /// Only examples that came this way (None: all).
    pub origin: Option<crate::dataset::Origin>,
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
            origin: None,
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
            .filter(|(_, x, _)| self.origin.is_none_or(|o| o == x.meta.origin()))
            .filter(|(_, x, _)| q.is_empty() || matches(x, &q))
            .map(|(s, x, _)| (s, x))
            .collect()
    }

    pub fn current(&self) -> Option<(Split, &Example)> {
        self.rows().get(self.selected).copied()
    }

    pub fn example(&self, id: &str) -> Option<(Split, &Example)> {
        self.data.as_ref()?.dataset.find(id).map(|(s, x, _)| (s, x))
    }

    /// Keeps the selection on the example it was on (by id) across a re-read, else within bounds.
    fn reselect(&mut self, id: Option<String>) {
        let rows = self.rows();
        let at = id.and_then(|id| rows.iter().position(|(_, x)| x.id == id));
        self.selected = at.unwrap_or(self.selected).min(rows.len().saturating_sub(1));
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
            let id = view.current().map(|(_, x)| x.id.clone());
            view.data = Some(data);
            view.error = None;
            view.reselect(id);
            if matches!(view.pane, Pane::Edit { saving: true, .. }) {
                view.pane = Pane::List;
            }
            if let Some(m) = message {
                state.info(m);
            }
        }
        Err(e) => {
            // A failed write leaves the view as it was (an edit stays open with its text); a failed first
            // read shows why in the view.
            if let Pane::Edit { saving, .. } = &mut view.pane {
                *saving = false;
            }
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
            let editing = matches!(view.pane, Pane::Edit { .. });
            if editing && ctrl(&key, 'q') {
                state.warn("an example is being edited: Ctrl+S writes it, Esc discards it");
                state.mode = Mode::Dataset(view);
                return Vec::new();
            }
            if ctrl(&key, 'q') || (ctrl(&key, 's') && !editing) {
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
    let none = (Vec::new(), true);
    match std::mem::replace(&mut view.pane, Pane::List) {
        Pane::List => {}
        Pane::Open { id, scroll } => {
            view.pane = match key.code {
                KeyCode::Up | KeyCode::Char('k') => Pane::Open { id, scroll: scroll.saturating_sub(1) },
                KeyCode::Down | KeyCode::Char('j') => Pane::Open { id, scroll: scroll.saturating_add(1) },
                KeyCode::PageUp => Pane::Open { id, scroll: scroll.saturating_sub(10) },
                KeyCode::PageDown => Pane::Open { id, scroll: scroll.saturating_add(10) },
                KeyCode::Char(c @ ('e' | 'u')) => edit(view, &id, c),
                _ => Pane::List,
            };
            return none;
        }
        Pane::Findings { scroll } => {
            view.pane = match key.code {
                KeyCode::Up | KeyCode::Char('k') => Pane::Findings { scroll: scroll.saturating_sub(1) },
                KeyCode::Down | KeyCode::Char('j') => Pane::Findings { scroll: scroll.saturating_add(1) },
                KeyCode::PageUp => Pane::Findings { scroll: scroll.saturating_sub(10) },
                KeyCode::PageDown => Pane::Findings { scroll: scroll.saturating_add(10) },
                _ => Pane::List,
            };
            return none;
        }
        Pane::Edit { id, role, mut area, saving } => {
            if saving {
                view.pane = Pane::Edit { id, role, area, saving };
                return none;
            }
            if ctrl(&key, 's') {
                let Some((_, x)) = view.example(&id) else {
                    state.error(format!("example {id} is no longer in the dataset; Esc discards the edit"));
                    view.pane = Pane::Edit { id, role, area, saving: false };
                    return none;
                };
                let mut x = x.clone();
                let text = area.lines().join("\n").trim_end().to_string();
                if text.trim().is_empty() {
                    state.warn("an empty turn is not a training example; Esc discards the edit");
                    view.pane = Pane::Edit { id, role, area, saving: false };
                    return none;
                }
                let changed = text != if role == "user" { x.user() } else { x.assistant() };
                x.set_turn(role, text);
                x.meta.edited |= changed;
                view.pane = Pane::Edit { id, role, area, saving: true };
                return (vec![Effect::Dataset(DatasetOp::Replace(Box::new(x)))], true);
            }
            if key.code == KeyCode::Esc {
                state.info("edit discarded");
            } else {
                let width = super::geometry::editor_width(state, super::geometry::Editor::Popup);
                super::editing::key(&mut area, key, width);
                view.pane = Pane::Edit { id, role, area, saving: false };
            }
            return none;
        }
        Pane::ConfirmDelete { id } => {
            if key.code == KeyCode::Char('y') {
                return (vec![Effect::Dataset(DatasetOp::Delete { id })], true);
            }
            state.info("not deleted");
            return none;
        }
    }
    if !view.searching && key.code == KeyCode::Char('D') {
        super::distill::open(state);
        return (Vec::new(), false);
    }
    if view.searching {
        let typed = key.modifiers.difference(KeyModifiers::SHIFT).is_empty();
        match key.code {
            KeyCode::Enter | KeyCode::Esc => view.searching = false,
            KeyCode::Backspace => {
                view.query.pop();
            }
            KeyCode::Char(c) if typed => view.query.push(c),
            _ => {}
        }
        view.selected = 0;
        return none;
    }
    list_key(view, key)
}

/// The edit pane for turn `e` (answer) or `u` (input) of example `id`.
fn edit(view: &DatasetView, id: &str, which: char) -> Pane {
    let Some((_, x)) = view.example(id) else { return Pane::List };
    let (role, text) = if which == 'u' { ("user", x.user()) } else { ("assistant", x.assistant()) };
    Pane::Edit { id: id.to_string(), role, area: Box::new(text_area(text)), saving: false }
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
        KeyCode::Char('c') => view.pane = Pane::Findings { scroll: 0 },
        KeyCode::Char('o') => {
            use crate::dataset::Origin;
            view.origin = match view.origin {
                None => Some(Origin::ALL[0]),
                Some(o) => Origin::ALL.iter().skip_while(|x| **x != o).nth(1).copied(),
            };
            view.selected = 0;
        }
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
            let id = x.id.clone();
            match key.code {
                KeyCode::Enter => view.pane = Pane::Open { id, scroll: 0 },
                KeyCode::Char(c @ ('e' | 'u')) => view.pane = edit(view, &id, c),
                KeyCode::Char('m') => return (vec![Effect::Dataset(DatasetOp::Move { id, to: split.next() })], true),
                KeyCode::Char('d') | KeyCode::Delete => view.pane = Pane::ConfirmDelete { id },
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
