//! The read-only views over the lanes (savings F12, tokens F4, history F9): their results, F4's text and
//! scrolling within their length.

use ratatui::crossterm::event::KeyCode;

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{Action, AppState, Effect, Mode, TokenView};
use crate::metrics::{Count, fmt_count};

/// Applies what the runtime brought back for a view, or a live count.
pub fn on_result(state: &mut AppState, action: Action) -> Vec<Effect> {
    match action {
        Action::HistoryLoaded(Ok((mut records, skipped))) => {
            records.reverse();
            state.mode = Mode::History { scroll: 0, records, skipped };
        }
        Action::HistoryLoaded(Err(e)) | Action::ExactCount { result: Err(e), .. } => state.error(e),
        Action::ExactCount { lane, input, system, result: Ok(n) } => {
            let now = state.ws.lanes.get(lane).and_then(|l| state.ws.prompt_text(&l.prompt)).unwrap_or_default();
            if input != state.input_text() || system != now {
                return Vec::new();
            }
            let exact = Count { tokens: n, estimated: false, how: "count_tokens endpoint".into() };
            if let Some(l) = state.lanes.get_mut(lane) {
                l.live = Some(Ok(exact.clone()));
            }
            if let Mode::Tokens(view) = &mut state.mode
                && view.lane == lane
                && let Ok((count, _)) = &mut view.result
            {
                *count = exact;
            }
        }
        Action::TokensReady(view) => state.mode = Mode::Tokens(view),
        Action::Counted(counts) => {
            for (lane, c) in state.lanes.iter_mut().zip(counts) {
                lane.live = Some(c);
            }
        }
        _ => {}
    }
    Vec::new()
}

/// F4's title and text: the prompt as sent, each token on alternating shading, framing in the accent colour.
/// The view renders it and the scroll limit measures it, so both wrap the same lines.
pub fn token_text(state: &AppState, view: &TokenView) -> (String, Vec<Line<'static>>) {
    let t = &state.theme;
    let id = state.ws.lanes.get(view.lane).map_or("?", |l| l.id.as_str());
    match &view.result {
        Err(e) => {
            (format!(" {id} · cannot tokenize "), vec![Line::styled(format!(" {e}"), Style::default().fg(t.error))])
        }
        Ok((count, segs)) => {
            let approx = if count.estimated { "≈" } else { "" };
            let title = format!(" {id} · {approx}{} tokens · {} ", fmt_count(count.tokens), count.how);
            let shades = [Style::default().fg(t.fg), Style::default().fg(t.fg).bg(t.selection)];
            let mut lines = vec![Line::default()];
            for (i, seg) in segs.iter().enumerate() {
                let style = if seg.framing { Style::default().fg(t.accent) } else { shades[i % 2] };
                let mut parts = seg.text.split('\n').peekable();
                while let Some(part) = parts.next() {
                    if !part.is_empty()
                        && let Some(line) = lines.last_mut()
                    {
                        line.push_span(Span::styled(part.to_string(), style));
                    }
                    if parts.peek().is_some() {
                        lines.push(Line::default());
                    }
                }
            }
            (title, lines)
        }
    }
}

/// The largest scroll of a scrolling view at the current screen size: its lines (wrapped as shown) less the
/// rows inside its frame, so that PgDn and End stop at the last line.
fn max_scroll(state: &AppState, mode: &Mode) -> u16 {
    let rows = usize::from(state.size.1.saturating_sub(4));
    let lines = match mode {
        // F4's frame is the screen less 4 columns and 2 rows, with borders; its text wraps.
        Mode::Tokens(view) => {
            let width = state.size.0.saturating_sub(6).max(1);
            Paragraph::new(token_text(state, view).1).wrap(Wrap { trim: false }).line_count(width)
        }
        // The history: a header and one line per record (or the line saying there are none).
        Mode::History { records, .. } => 1 + records.len().max(1),
        _ => 0,
    };
    u16::try_from(lines.saturating_sub(rows)).unwrap_or(u16::MAX)
}

/// A key in a view: arrows and pages scroll it, Home and End go to its top and bottom, never past the last line;
/// any other key closes it (returns `Mode::Normal`).
pub fn scroll(state: &AppState, mode: Mode, key: KeyCode) -> Mode {
    let max = max_scroll(state, &mode);
    let to = |at: u16| -> Option<u16> {
        let step: i32 = match key {
            KeyCode::Up | KeyCode::Char('k') => -1,
            KeyCode::Down | KeyCode::Char('j') => 1,
            KeyCode::PageUp => -10,
            KeyCode::PageDown => 10,
            KeyCode::Home => return Some(0),
            KeyCode::End => return Some(max),
            _ => return None,
        };
        Some((i32::from(at.min(max)) + step).clamp(0, i32::from(max)) as u16)
    };
    match mode {
        Mode::History { scroll, records, skipped } => match to(scroll) {
            Some(scroll) => Mode::History { scroll, records, skipped },
            None => Mode::Normal,
        },
        Mode::Tokens(mut view) => match to(view.scroll) {
            Some(scroll) => {
                view.scroll = scroll;
                Mode::Tokens(view)
            }
            None => Mode::Normal,
        },
        // The savings panel fits one screen: any key closes it.
        _ => Mode::Normal,
    }
}
