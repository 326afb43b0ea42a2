//! The F9 run history: runs.jsonl newest first, one line per run with its figures and a glimpse of its output.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph};

use crate::app::AppState;

/// UTC "YYYY-MM-DD HH:MM" from Unix milliseconds (civil-from-days, no time zone database needed).
pub fn utc_minute(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = crate::engine::local::template::civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

pub fn panel(
    state: &AppState,
    frame: &mut Frame,
    area: Rect,
    scroll: u16,
    records: &[serde_json::Value],
    skipped: usize,
) {
    let t = &state.theme;
    let text = |r: &serde_json::Value, k: &str| match r.get(k) {
        None | Some(serde_json::Value::Null) => "—".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let mut lines = vec![Line::styled(
        format!(
            " {:<16} {:<10} {:<8} {:>7} {:>5} {:>8} {:>9} {:>10}  output / error",
            "time (UTC)", "lane", "prompt", "in", "out", "ttft ms", "total ms", "cost $"
        ),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    for r in records {
        let when = r.get("time_unix_ms").and_then(serde_json::Value::as_u64).map_or("—".into(), utc_minute);
        let (tail, style) = match r.get("error").and_then(|e| e.as_str()) {
            Some(e) => (format!("✗ {e}"), Style::default().fg(t.error)),
            None => (text(r, "output"), Style::default().fg(t.fg)),
        };
        let tail: String = tail.split_whitespace().collect::<Vec<_>>().join(" ");
        lines.push(Line::styled(
            format!(
                " {when:<16} {:<10} {:<8} {:>7} {:>5} {:>8} {:>9} {:>10}  {tail}",
                text(r, "lane"),
                text(r, "prompt_variant"),
                text(r, "prompt_tokens"),
                text(r, "completion_tokens"),
                text(r, "ttft_ms"),
                text(r, "total_ms"),
                text(r, "cost_usd"),
            ),
            style,
        ));
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
        .title_bottom(" ↑↓ PgUp PgDn scroll · any other key closes · `tunebench runs --csv` exports ");
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), r);
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc_minute(0), "1970-01-01 00:00");
        assert_eq!(super::utc_minute(1_795_573_959_231), "2026-11-25 02:32");
        assert_eq!(super::utc_minute(951_782_400_000), "2000-02-29 00:00");
    }
}
