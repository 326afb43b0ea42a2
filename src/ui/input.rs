//! The input editor drawn soft-wrapped: tui-textarea keeps the text and cursor, this view wraps at words.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::widgets::Widget;
use unicode_width::UnicodeWidthChar;

use crate::app::editing::wrap_ranges;

pub struct WrappedEditor<'a> {
    pub lines: &'a [String],
    /// (row, col) in chars, as tui-textarea reports it.
    pub cursor: (usize, usize),
    pub show_cursor: bool,
    pub style: Style,
}

impl Widget for WrappedEditor<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let width = usize::from(area.width);
        // Every visual row as (logical row, char range), and the cursor's visual position.
        let mut rows = Vec::new();
        let mut cursor_at = (0, 0);
        for (r, line) in self.lines.iter().enumerate() {
            let ranges = wrap_ranges(line, width);
            let last = ranges.len() - 1;
            for (i, &(s, e)) in ranges.iter().enumerate() {
                if r == self.cursor.0 && self.cursor.1 >= s && (self.cursor.1 < e || i == last) {
                    let col: usize = line.chars().skip(s).take(self.cursor.1 - s).filter_map(|c| c.width()).sum();
                    cursor_at = (rows.len(), col);
                }
                rows.push((r, s, e));
            }
        }
        // A cursor at the very end of a full row shows at the start of the next one.
        if cursor_at.1 >= width {
            cursor_at = (cursor_at.0 + 1, 0);
        }
        let height = usize::from(area.height);
        let top = (cursor_at.0 + 1).saturating_sub(height);
        for (y, &(r, s, e)) in rows.iter().skip(top).take(height).enumerate() {
            let text: String = self.lines[r].chars().skip(s).take(e - s).collect();
            buf.set_stringn(area.x, area.y + y as u16, text, width, self.style);
        }
        if self.show_cursor {
            let y = cursor_at.0 - top;
            if y < height {
                let cell = &mut buf[(area.x + cursor_at.1 as u16, area.y + y as u16)];
                cell.set_style(self.style.add_modifier(Modifier::REVERSED));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_follows_into_wrapped_rows() {
        let lines = vec!["hello world again".to_string()];
        let mut buf = Buffer::empty(Rect::new(0, 0, 8, 2));
        let w = WrappedEditor { lines: &lines, cursor: (0, 17), show_cursor: true, style: Style::default() };
        w.render(Rect::new(0, 0, 8, 2), &mut buf);
        // Rows: "hello ", "world ", "again" — the cursor sits after "again", so the view scrolled one row.
        assert_eq!(buf[(0, 0)].symbol(), "w");
        assert_eq!(buf[(0, 1)].symbol(), "a");
        assert!(buf[(5, 1)].modifier.contains(Modifier::REVERSED));
    }
}
