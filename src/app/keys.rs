//! Key predicates shared by the modes, so every binding is spelled once.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

pub fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
}

pub fn alt(key: &KeyEvent, code: KeyCode) -> bool {
    key.modifiers.contains(KeyModifiers::ALT) && key.code == code
}

pub fn plain(key: &KeyEvent, code: KeyCode) -> bool {
    key.code == code && (key.modifiers - KeyModifiers::SHIFT).is_empty()
}

/// Key releases reported by the kitty protocol are not presses; repeats count, so holding a key repeats it.
pub fn is_press(key: &KeyEvent) -> bool {
    key.kind != KeyEventKind::Release
}

pub fn run_focused(key: &KeyEvent) -> bool {
    key.code == KeyCode::F(5) || (key.code == KeyCode::Enter && key.modifiers.contains(KeyModifiers::CONTROL))
}

pub fn prev_item(key: &KeyEvent) -> bool {
    key.code == KeyCode::F(7) || alt(key, KeyCode::Left)
}

pub fn next_item(key: &KeyEvent) -> bool {
    key.code == KeyCode::F(8) || alt(key, KeyCode::Right)
}
