//! `update()`: routes every action to state changes and effects; global keys before the editor.

use ratatui::crossterm::event::{KeyCode, KeyEvent, MouseEventKind};

use super::geometry;
use super::keys::{alt, ctrl, is_press, next_item, prev_item, run_focused};
use super::runs::{cancel, on_engine, run};
use super::settings::{self, SettingsForm};
use super::{Action, AppState, Effect, Focus, Mode, prompt};
use crate::engine::LaneIdx;

pub fn update(state: &mut AppState, action: Action) -> Vec<Effect> {
    let effects = match action {
        Action::Key(key) if is_press(&key) => on_key(state, key),
        Action::Key(_) => Vec::new(),
        Action::Paste(text) => {
            on_paste(state, &text);
            Vec::new()
        }
        Action::Mouse(m) => {
            on_mouse(state, m);
            Vec::new()
        }
        Action::Resize(w, h) => {
            state.size = (w, h);
            Vec::new()
        }
        Action::Engine(ev) => on_engine(state, ev),
        Action::HistoryLoaded(_) | Action::ExactCount { .. } | Action::TokensReady(_) | Action::Counted(_) => {
            super::views::on_result(state, action)
        }
        Action::DatasetLoaded(result) => {
            super::dataset::on_loaded(state, result.map(|(r, m)| (*r, m)));
            Vec::new()
        }
        Action::Training(msg) => super::train::on_msg(state, msg),
        Action::Eval(msg) => super::eval::on_msg(state, msg),
        Action::Distill(msg) => super::distill::on_msg(state, msg),
        Action::AdaptersListed(found) => {
            settings::on_adapters(state, found);
            Vec::new()
        }
        Action::PromoteChecked { lane, run, result } => {
            super::promote::on_checked(state, lane, run, result);
            Vec::new()
        }
        Action::Promoted(Ok(msg)) | Action::Saved(Ok(msg)) => {
            state.info(msg);
            Vec::new()
        }
        Action::Saved(Err(e)) | Action::Copied(Err(e)) | Action::RecordFailed(e) | Action::Promoted(Err(e)) => {
            state.error(e);
            Vec::new()
        }
        Action::InputSaved(Ok(saved)) => {
            state.drafts.remove(&state.input_idx);
            state.info(format!("saved input {}", saved.path.display()));
            state.inputs.push(saved);
            state.input_idx = Some(state.inputs.len() - 1);
            Vec::new()
        }
        Action::InputSaved(Err(e)) => {
            state.error(e);
            Vec::new()
        }
        Action::Copied(Ok(n)) => {
            state.info(format!(
                "copied {n} characters of lane `{}` to the clipboard (OSC 52)",
                state.ws.lanes[state.selected].id
            ));
            Vec::new()
        }
    };
    state.style_editor();
    effects
}

fn on_key(state: &mut AppState, key: KeyEvent) -> Vec<Effect> {
    // Overlays own the keyboard, except saving and quitting, which work everywhere.
    match std::mem::replace(&mut state.mode, Mode::Normal) {
        Mode::Normal => {}
        Mode::ConfirmQuit => return confirm_quit(state, key),
        Mode::Help { scroll } => {
            if ctrl(&key, 's') || ctrl(&key, 'q') {
                return global_save_quit(state, key);
            }
            state.mode = match key.code {
                KeyCode::Up | KeyCode::Char('k') => Mode::Help { scroll: scroll.saturating_sub(1) },
                KeyCode::Down | KeyCode::Char('j') => Mode::Help { scroll: scroll.saturating_add(1) },
                _ => Mode::Normal,
            };
            return Vec::new();
        }
        mode @ (Mode::Savings | Mode::History { .. } | Mode::Tokens(_)) => {
            if ctrl(&key, 's') || ctrl(&key, 'q') {
                return global_save_quit(state, key);
            }
            state.mode = super::views::scroll(state, mode, key.code);
            return Vec::new();
        }
        Mode::Prompt(mut ed) => {
            if ctrl(&key, 's') || ctrl(&key, 'q') {
                // While a new variant is being named, the text belongs to that variant, not the open one.
                if ed.naming.is_none() {
                    prompt::apply(state, &ed);
                }
                state.mode = Mode::Prompt(ed);
                return global_save_quit(state, key);
            }
            if prompt::key(state, &mut ed, key) {
                state.mode = Mode::Prompt(ed);
            }
            return Vec::new();
        }
        mode @ (Mode::Promote(_) | Mode::Dataset(_)) => return super::dataset::overlay_key(state, mode, key),
        Mode::Eval => {
            state.mode = Mode::Eval;
            if ctrl(&key, 's') || ctrl(&key, 'q') {
                return global_save_quit(state, key);
            }
            return super::eval::key(state, key);
        }
        Mode::Distill => {
            if ctrl(&key, 's') || ctrl(&key, 'q') {
                state.mode = Mode::Distill;
                return global_save_quit(state, key);
            }
            let (mut effects, open) = super::distill::key(state, key);
            if open {
                state.mode = Mode::Distill;
            } else {
                state.mode = Mode::Dataset(Box::default());
                effects.push(Effect::LoadDataset);
            }
            return effects;
        }
        Mode::Train => {
            if ctrl(&key, 's') || ctrl(&key, 'q') {
                state.mode = Mode::Train;
                return global_save_quit(state, key);
            }
            let (effects, open) = super::train::key(state, key);
            if open && matches!(state.mode, Mode::Normal) {
                state.mode = Mode::Train;
            }
            return effects;
        }
        Mode::Settings(mut form) => {
            if ctrl(&key, 's') || ctrl(&key, 'q') {
                // A field being typed is applied first, as Enter would; a bad value keeps the form open.
                if ctrl(&key, 's') && !settings::commit_editing(state, &mut form) {
                    state.mode = Mode::Settings(form);
                    return Vec::new();
                }
                state.mode = Mode::Settings(form);
                return global_save_quit(state, key);
            }
            if settings::key(state, &mut form, key) {
                state.mode = Mode::Settings(form);
            }
            return Vec::new();
        }
    }
    if ctrl(&key, 's') || ctrl(&key, 'q') {
        return global_save_quit(state, key);
    }
    if ctrl(&key, 'r') {
        return run(state, (0..state.lanes.len()).collect());
    }
    if run_focused(&key) {
        let effects = run(state, vec![state.selected]);
        // From the input, the lane last focused is not obvious: say which one ran.
        if state.focus == Focus::Input && !effects.is_empty() {
            let id = &state.ws.lanes[state.selected].id;
            state.info(format!("F5 runs lane `{id}`, the one last focused (Tab picks another; Ctrl+R runs all)"));
        }
        return effects;
    }
    if ctrl(&key, 'p') {
        return super::promote::check(state).into_iter().collect();
    }
    if ctrl(&key, 'n') {
        let text = state.input_text();
        if text.trim().is_empty() {
            state.warn("the input is empty; nothing to save");
            return Vec::new();
        }
        return vec![Effect::SaveInput { text }];
    }
    if alt(&key, KeyCode::Char('c')) || (state.focus == Focus::Lanes && matches!(key.code, KeyCode::Char('y' | 'c'))) {
        return copy(state);
    }
    match key.code {
        KeyCode::Esc => return cancel(state),
        KeyCode::Tab => cycle_focus(state, true),
        KeyCode::BackTab => cycle_focus(state, false),
        KeyCode::PageUp => scroll(state, state.selected, Scroll::PageUp),
        KeyCode::PageDown => scroll(state, state.selected, Scroll::PageDown),
        KeyCode::F(1) => state.mode = Mode::Help { scroll: 0 },
        KeyCode::F(3) => {
            state.mode = Mode::Dataset(Box::default());
            return vec![Effect::LoadDataset];
        }
        KeyCode::F(12) => state.mode = Mode::Savings,
        KeyCode::F(4) => return vec![Effect::ShowTokens { lane: state.selected }],
        KeyCode::F(9) => return super::eval::open(state),
        KeyCode::F(10) => return super::train::open(state),
        KeyCode::F(2) => prompt::open(state),
        KeyCode::F(6) => {
            state.mode = Mode::Settings(Box::new(SettingsForm::new(state, state.selected)));
            return vec![Effect::ListAdapters];
        }
        _ if prev_item(&key) => step_input(state, false),
        _ if next_item(&key) => step_input(state, true),
        _ if state.focus == Focus::Lanes => return lanes_key(state, key),
        _ => {
            let width = geometry::editor_width(state, geometry::Editor::Input);
            super::editing::key(&mut state.editor, key, width);
        }
    }
    Vec::new()
}

pub(super) fn global_save_quit(state: &mut AppState, key: KeyEvent) -> Vec<Effect> {
    if ctrl(&key, 's') {
        return vec![Effect::Save(state.save_request())];
    }
    if state.has_unsaved() {
        state.mode = Mode::ConfirmQuit;
        Vec::new()
    } else {
        vec![Effect::Quit]
    }
}

fn confirm_quit(state: &mut AppState, key: KeyEvent) -> Vec<Effect> {
    match key.code {
        KeyCode::Char('s') => vec![Effect::SaveAndQuit(state.save_request())],
        KeyCode::Char('q' | 'd') => vec![Effect::Quit],
        _ if ctrl(&key, 'q') => vec![Effect::Quit],
        _ => {
            state.info("quit cancelled");
            Vec::new()
        }
    }
}

/// Keys while the lanes have focus: navigation and scrolling; other text goes back to the editor.
fn lanes_key(state: &mut AppState, key: KeyEvent) -> Vec<Effect> {
    let n = state.lanes.len();
    if n == 0 {
        return Vec::new();
    }
    match key.code {
        KeyCode::Char('?') => state.mode = Mode::Help { scroll: 0 },
        KeyCode::Char('$') => state.mode = Mode::Savings,
        KeyCode::Enter => return run(state, vec![state.selected]),
        KeyCode::Up | KeyCode::Char('k') => scroll(state, state.selected, Scroll::Lines(1)),
        KeyCode::Down | KeyCode::Char('j') => scroll(state, state.selected, Scroll::Lines(-1)),
        KeyCode::Home | KeyCode::Char('g') => scroll(state, state.selected, Scroll::Top),
        KeyCode::End | KeyCode::Char('G') => scroll(state, state.selected, Scroll::Bottom),
        KeyCode::Left | KeyCode::Char('h') => state.selected = (state.selected + n - 1) % n,
        KeyCode::Right | KeyCode::Char('l') => state.selected = (state.selected + 1) % n,
        KeyCode::Char(_) if (key.modifiers - ratatui::crossterm::event::KeyModifiers::SHIFT).is_empty() => {
            state.focus = Focus::Input;
            state.editor.input(key);
        }
        _ => {}
    }
    Vec::new()
}

/// Tab walks input → lane 1 → … → lane n → input; Shift+Tab walks back.
fn cycle_focus(state: &mut AppState, forward: bool) {
    let n = state.lanes.len();
    if n == 0 {
        return;
    }
    (state.focus, state.selected) = match (state.focus, forward) {
        (Focus::Input, true) => (Focus::Lanes, 0),
        (Focus::Input, false) => (Focus::Lanes, n - 1),
        (Focus::Lanes, true) if state.selected + 1 < n => (Focus::Lanes, state.selected + 1),
        (Focus::Lanes, false) if state.selected > 0 => (Focus::Lanes, state.selected - 1),
        (Focus::Lanes, _) => (Focus::Input, state.selected),
    };
}

fn step_input(state: &mut AppState, forward: bool) {
    let n = state.inputs.len();
    if n == 0 {
        state.warn("no saved inputs in this workspace yet (Ctrl+N saves one)");
        return;
    }
    // Slots: the saved inputs, then the new-input slot at the end.
    let slot = state.input_idx.unwrap_or(n);
    let next = if forward { (slot + 1) % (n + 1) } else { (slot + n) % (n + 1) };
    state.show_input((next < n).then_some(next));
    state.status = None;
}

fn copy(state: &mut AppState) -> Vec<Effect> {
    let text = state.lanes[state.selected].output.clone();
    if text.is_empty() {
        state.warn(format!("lane `{}` has no output to copy", state.ws.lanes[state.selected].id));
        return Vec::new();
    }
    vec![Effect::Copy(text)]
}

fn on_paste(state: &mut AppState, text: &str) {
    // Terminals send CR or CRLF line ends in pastes; the editor wants LF.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    match &mut state.mode {
        Mode::Prompt(ed) => prompt::paste(ed, &text),
        Mode::Settings(form) => settings::paste(form, &text),
        Mode::Promote(form) => super::promote::paste(form, &text),
        Mode::Dataset(view) => super::dataset::paste(view, &text),
        Mode::Distill => {
            if let Some(d) = state.distill.as_mut().filter(|d| d.field == super::DistillField::Inputs) {
                d.inputs.push_str(text.trim());
            }
        }
        Mode::Help { .. }
        | Mode::Savings
        | Mode::Tokens(_)
        | Mode::History { .. }
        | Mode::ConfirmQuit
        | Mode::Eval
        | Mode::Train => {}
        Mode::Normal => {
            state.focus = Focus::Input;
            state.editor.insert_str(&text);
        }
    }
}

fn on_mouse(state: &mut AppState, m: ratatui::crossterm::event::MouseEvent) {
    if !matches!(state.mode, Mode::Normal) {
        return;
    }
    let Some(lane) = geometry::lane_at(state, m.column, m.row) else {
        return;
    };
    match m.kind {
        MouseEventKind::ScrollUp => scroll(state, lane, Scroll::Lines(3)),
        MouseEventKind::ScrollDown => scroll(state, lane, Scroll::Lines(-3)),
        MouseEventKind::Down(_) => {
            state.selected = lane;
            state.focus = Focus::Lanes;
        }
        _ => {}
    }
}

enum Scroll {
    Lines(i32),
    PageUp,
    PageDown,
    Top,
    Bottom,
}

fn scroll(state: &mut AppState, lane: LaneIdx, how: Scroll) {
    let (max, page) = geometry::lane_scroll_bounds(state, lane);
    let page = i32::from(page.max(1));
    let cur = i32::from(state.lanes[lane].scroll_back.min(max));
    let next = match how {
        Scroll::Lines(n) => cur + n,
        Scroll::PageUp => cur + page,
        Scroll::PageDown => cur - page,
        Scroll::Top => i32::from(max),
        Scroll::Bottom => 0,
    };
    state.lanes[lane].scroll_back = next.clamp(0, i32::from(max)) as u16;
}
