//! The F9 run history: runs.jsonl newest first, one line per run with its figures and a glimpse of its output.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph};

use crate::app::AppState;

pub use crate::metrics::history::utc_minute;

pub fn panel(
    state: &AppState,
    frame: &mut Frame,
    area: Rect,
    scroll: u16,
    records: &[serde_json::Value],
    skipped: usize,
) {
    let t = &state.theme;
    use crate::metrics::history::{TABLE_HEAD, table_cells, table_line};
    let mut lines = vec![Line::styled(
        format!(" {}  output / error", table_line(&TABLE_HEAD)),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    for r in records {
        let (tail, style) = match r.get("error").and_then(|e| e.as_str()) {
            Some(e) => (format!("✗ {e}"), Style::default().fg(t.error)),
            None => (r.get("output").and_then(|o| o.as_str()).unwrap_or("—").to_string(), Style::default().fg(t.fg)),
        };
        let tail: String = tail.split_whitespace().collect::<Vec<_>>().join(" ");
        lines.push(Line::styled(format!(" {}  {tail}", table_line(&table_cells(r))), style));
    }
    if records.is_empty() {
        lines.push(Line::styled(" No runs recorded yet: Ctrl+R runs every lane.", Style::default().fg(t.muted)));
    }
    let title = format!(
        " Run history · {} run(s){} · {} ",
        records.len(),
        if skipped > 0 { format!(" · {skipped} unreadable line(s) skipped") } else { String::new() },
        state.ws.runs_path().display()
    );
    let r = super::overlay::popup(area, area.width.saturating_sub(2), area.height.saturating_sub(2));
    frame.render_widget(Clear, r);
    let block = super::overlay::view_block(state, title)
        .title_bottom(" ↑↓ PgUp PgDn Home End scroll · any other key closes · `tunebench runs --csv` exports ");
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), r);
}
