//! The text editors' shared keys (the input, F2's prompt, F3's example, Ctrl+P's answer): undo and redo,
//! and ↑↓ by wrapped row, at the width the view draws each editor (so a key moves where the eye expects).

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use tui_textarea::{CursorMove, TextArea};
use unicode_width::UnicodeWidthChar;

use super::keys::ctrl;

/// Char ranges `[start, end)` of one logical line, one per visual row, breaking after spaces when possible.
pub fn wrap_ranges(line: &str, width: usize) -> Vec<(usize, usize)> {
    let chars: Vec<char> = line.chars().collect();
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut w = 0;
        let mut end = start;
        let mut last_break = None;
        while end < chars.len() {
            let cw = chars[end].width().unwrap_or(0);
            if w + cw > width && end > start {
                break;
            }
            w += cw;
            if chars[end] == ' ' {
                last_break = Some(end + 1);
            }
            end += 1;
        }
        if let Some(b) = last_break.filter(|&b| b > start && end < chars.len()) {
            end = b;
        }
        rows.push((start, end));
        start = end;
    }
    if rows.is_empty() {
        rows.push((0, 0));
    }
    rows
}

/// The visual row of char column `col` among a line's `ranges` (a position at a row's end belongs to the next
/// row, except on the last), as the view draws the cursor.
fn row_of(ranges: &[(usize, usize)], col: usize) -> usize {
    let last = ranges.len() - 1;
    ranges.iter().position(|&(s, e)| col >= s && col < e).unwrap_or(last)
}

/// A key for an editor drawn `width` cells wide: Ctrl+Z undoes, Ctrl+Y redoes, ↑↓ move one wrapped row;
/// anything else is the text area's own.
pub fn key(area: &mut TextArea<'static>, key: KeyEvent, width: u16) {
    if ctrl(&key, 'z') {
        area.undo();
        return;
    }
    if ctrl(&key, 'y') {
        area.redo();
        return;
    }
    let up = match key.code {
        KeyCode::Up if key.modifiers.is_empty() => true,
        KeyCode::Down if key.modifiers.is_empty() => false,
        _ => {
            area.input(key);
            return;
        }
    };
    if let Some((row, col)) = vertical(area.lines(), area.cursor(), usize::from(width), up) {
        area.move_cursor(CursorMove::Jump(row as u16, col as u16));
    }
}

/// Where ↑ (or ↓) takes the cursor: the same offset into the wrapped row above (below), clamped to it.
pub fn vertical(lines: &[String], (r, c): (usize, usize), width: usize, up: bool) -> Option<(usize, usize)> {
    let ranges = wrap_ranges(lines.get(r)?, width);
    let i = row_of(&ranges, c);
    let offset = c - ranges[i].0;
    let (r2, ranges2, i2) = match (up, i) {
        (true, 0) => {
            let r2 = r.checked_sub(1)?;
            let rs = wrap_ranges(&lines[r2], width);
            let last = rs.len() - 1;
            (r2, rs, last)
        }
        (true, _) => (r, ranges.clone(), i - 1),
        (false, _) if i + 1 < ranges.len() => (r, ranges.clone(), i + 1),
        (false, _) => {
            let r2 = r + 1;
            (r2, wrap_ranges(lines.get(r2)?, width), 0)
        }
    };
    let (s, e) = ranges2[i2];
    // On a row that wraps, its end is the next row's start: stop one short of it.
    let end = if i2 + 1 < ranges2.len() { e.saturating_sub(1).max(s) } else { e };
    Some((r2, (s + offset).min(end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_after_spaces_and_hard_wraps_long_words() {
        assert_eq!(wrap_ranges("hello world", 8), vec![(0, 6), (6, 11)]);
        assert_eq!(wrap_ranges("abcdefghij", 4), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(wrap_ranges("", 4), vec![(0, 0)]);
    }

    #[test]
    fn up_and_down_move_by_wrapped_row() {
        // Rows at width 8: "hello " "world " "again", then the next line "x".
        let lines = vec!["hello world again".to_string(), "x".to_string()];
        assert_eq!(vertical(&lines, (0, 14), 8, true), Some((0, 8)), "again's 'a'+2 → world's 'r'");
        assert_eq!(vertical(&lines, (0, 8), 8, true), Some((0, 2)));
        assert_eq!(vertical(&lines, (0, 2), 8, true), None, "the top row stays");
        assert_eq!(vertical(&lines, (0, 4), 8, false), Some((0, 10)));
        assert_eq!(vertical(&lines, (0, 5), 8, false), Some((0, 11)), "clamped before the next row starts");
        assert_eq!(vertical(&lines, (0, 16), 8, false), Some((1, 1)), "the last row goes to the next line");
        assert_eq!(vertical(&lines, (1, 0), 8, true), Some((0, 12)), "back into the previous line's last row");
    }
}
