//! The F2 prompt-variant editor: edit a lane's system prompt, switch variant, save as a new variant.

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use tui_textarea::TextArea;

use super::keys::{ctrl, next_item, plain, prev_item};
use super::{AppState, Mode, text_area};
use crate::engine::LaneIdx;
use crate::workspace::LaneEdit;

#[derive(Debug)]
pub struct PromptEditor {
    pub lane: LaneIdx,
    /// The variant being edited (the lane's prompt).
    pub variant: String,
    pub area: TextArea<'static>,
    /// Set while the user types a name for "save as new variant".
    pub naming: Option<TextArea<'static>>,
}

impl PromptEditor {
    pub fn open(state: &AppState, lane: LaneIdx) -> Self {
        let variant = state.ws.lanes[lane].prompt.clone();
        let area = text_area(state.ws.prompt_text(&variant).unwrap_or_default());
        Self { lane, variant, area, naming: None }
    }

    fn text(&self) -> String {
        self.area.lines().join("\n")
    }
}

/// Handles a key in the prompt editor; returns false when the editor closes.
pub fn key(state: &mut AppState, ed: &mut PromptEditor, key: KeyEvent) -> bool {
    if let Some(name) = ed.naming.as_mut() {
        match key.code {
            KeyCode::Esc => ed.naming = None,
            KeyCode::Enter => {
                let name = name.lines().join("").trim().to_string();
                match state.ws.add_prompt_variant(&name, &ed.text()) {
                    Ok(()) => {
                        if let Err(e) = state.ws.edit_lane(ed.lane, LaneEdit::Prompt(name.clone())) {
                            state.error(e.to_string());
                        } else {
                            state.info(format!("new variant `{name}` (prompts/{name}.md) — Ctrl+S writes it"));
                        }
                        ed.variant = name;
                        ed.naming = None;
                    }
                    Err(e) => state.error(e.to_string()),
                }
            }
            _ => {
                name.input(key);
            }
        }
        return true;
    }
    if plain(&key, KeyCode::Esc) || key.code == KeyCode::F(2) {
        apply(state, ed);
        return false;
    }
    if prev_item(&key) || next_item(&key) {
        apply(state, ed);
        let names: Vec<String> = state.ws.prompts.keys().cloned().collect();
        let at = names.iter().position(|n| *n == ed.variant).unwrap_or(0);
        let step = if next_item(&key) { 1 } else { names.len() - 1 };
        let target = names[(at + step) % names.len()].clone();
        match state.ws.edit_lane(ed.lane, LaneEdit::Prompt(target.clone())) {
            Ok(()) => *ed = PromptEditor::open(state, ed.lane),
            Err(e) => state.error(e.to_string()),
        }
        return true;
    }
    if ctrl(&key, 'n') {
        ed.naming = Some(TextArea::default());
        return true;
    }
    let width = super::geometry::editor_width(state, super::geometry::Editor::Popup);
    super::editing::key(&mut ed.area, key, width);
    true
}

/// Pasted text goes where the cursor is.
pub fn paste(ed: &mut PromptEditor, text: &str) {
    match ed.naming.as_mut() {
        Some(name) => {
            name.insert_str(text.replace('\n', " "));
        }
        None => {
            ed.area.insert_str(text);
        }
    }
}

/// Writes the editor's text into the variant (in memory; Ctrl+S saves).
pub fn apply(state: &mut AppState, ed: &PromptEditor) {
    if let Err(e) = state.ws.set_prompt_text(&ed.variant, &ed.text()) {
        state.error(e.to_string());
    }
}

/// Opens the editor on the selected lane.
pub fn open(state: &mut AppState) {
    let ed = PromptEditor::open(state, state.selected);
    state.mode = Mode::Prompt(Box::new(ed));
}
