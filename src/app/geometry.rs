//! Screen geometry, shared by rendering, mouse hit-testing and scroll limits so they always agree; it owns
//! what a lane pane holds (model line, output text) because their wrapped size is the geometry.

use crate::visible::escape;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Paragraph, Wrap};

use crate::app::{AppState, LaneStatus};
use crate::metrics::fmt_count;

/// Narrowest lane pane before lanes wrap into another row.
pub const MIN_LANE_WIDTH: u16 = 26;
/// Rows under a lane's output: the footer's three metric lines.
pub const FOOTER_ROWS: u16 = 3;

pub struct Areas {
    pub header: Rect,
    pub input: Rect,
    pub lanes: Vec<Rect>,
    pub summary: Rect,
    pub hints: Rect,
}

pub fn areas(area: Rect, lanes: usize) -> Areas {
    let input_h = (area.height / 4).clamp(4, 12);
    let [header, input, grid, summary, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(input_h),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    Areas { header, input, lanes: grid_cells(grid, lanes), summary, hints }
}

/// Lanes side by side; when the terminal is too narrow they wrap into rows.
fn grid_cells(grid: Rect, n: usize) -> Vec<Rect> {
    if n == 0 {
        return Vec::new();
    }
    let cols = usize::from((grid.width / MIN_LANE_WIDTH).max(1)).min(n);
    let rows = n.div_ceil(cols);
    let row_areas = Layout::vertical(vec![Constraint::Ratio(1, rows as u32); rows]).split(grid);
    let mut cells = Vec::with_capacity(n);
    for (r, row) in row_areas.iter().enumerate() {
        let in_row = (n - r * cols).min(cols);
        let cols_area = Layout::horizontal(vec![Constraint::Ratio(1, in_row as u32); in_row]).split(*row);
        cells.extend(cols_area.iter().copied());
    }
    cells
}

/// A lane pane's parts: model line, output, footer.
pub struct LaneParts {
    pub subtitle: Rect,
    pub output: Rect,
    pub footer: Rect,
}

/// `subtitle_width` is the display width of the model line; it takes a second row when it does not fit.
pub fn lane_parts(pane: Rect, subtitle_width: usize) -> LaneParts {
    let inner = pane.inner(ratatui::layout::Margin::new(1, 1));
    let footer_h = FOOTER_ROWS.min(inner.height.saturating_sub(2));
    let sub_h = if subtitle_width > usize::from(inner.width) { 2 } else { 1 };
    let [subtitle, output, footer] =
        Layout::vertical([Constraint::Length(sub_h), Constraint::Min(0), Constraint::Length(footer_h)]).areas(inner);
    LaneParts { subtitle, output, footer }
}

fn screen(state: &AppState) -> Rect {
    Rect::new(0, 0, state.size.0, state.size.1)
}

/// The lane whose pane contains the cell, if any.
pub fn lane_at(state: &AppState, col: u16, row: u16) -> Option<usize> {
    let pos = ratatui::layout::Position::new(col, row);
    areas(screen(state), state.lanes.len()).lanes.iter().position(|r| r.contains(pos))
}

/// The text editors, for the width each is drawn at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Editor {
    Input,
    /// F2's prompt text and F3's example turn: a popup 4 columns narrower than the screen, inside its border.
    Popup,
    /// Ctrl+P's answer: a popup at most 100 wide, inside its border and a column of margin each side.
    PromoteAnswer,
}

/// The width an editor's text wraps at (as `ui` lays it out), so that ↑↓ move by the rows it draws.
pub fn editor_width(state: &AppState, which: Editor) -> u16 {
    let area = screen(state);
    match which {
        Editor::Input => area.width.saturating_sub(2),
        // Inside the popup's border.
        Editor::Popup => wide_popup(area).width.saturating_sub(2),
        // Inside the dialog's border and the answer box's own.
        Editor::PromoteAnswer => promote_popup(area).width.saturating_sub(4),
    }
}

/// A `width` × `height` rectangle centred in `area` (clipped to it).
pub fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(area.x + (area.width - w) / 2, area.y + (area.height - h) / 2, w, h)
}

/// The overlays that take the whole screen but a margin: F2, F3, F9, F10 and their editors.
pub fn wide_popup(area: Rect) -> Rect {
    popup(area, area.width.saturating_sub(4), area.height.saturating_sub(2))
}

/// Ctrl+P's promote dialog.
pub fn promote_popup(area: Rect) -> Rect {
    popup(area, 100.min(area.width.saturating_sub(2)), 22.min(area.height.saturating_sub(2)))
}

/// The wrapped output of a lane, as shown.
pub fn output_paragraph(text: ratatui::text::Text<'_>) -> Paragraph<'_> {
    Paragraph::new(text).wrap(Wrap { trim: false })
}

/// (largest scroll-back, page height) of a lane's output at the current screen size.
pub fn lane_scroll_bounds(state: &AppState, lane: usize) -> (u16, u16) {
    let Some(pane) = areas(screen(state), state.lanes.len()).lanes.get(lane).copied() else {
        return (0, 1);
    };
    let out = lane_parts(pane, subtitle(state, lane).chars().count()).output;
    let text = output_text(state, lane);
    let total = output_paragraph(text).line_count(out.width.max(1));
    (u16::try_from(total.saturating_sub(usize::from(out.height))).unwrap_or(u16::MAX), out.height)
}

/// The output text as wrapped and scrolled: streamed text, then the error of a failed run. The model and the
/// server wrote all of it, so control characters are escaped before layout (wrapping counts what is shown).
pub fn output_text(state: &AppState, idx: usize) -> Text<'static> {
    let lane = &state.lanes[idx];
    let t = &state.theme;
    let mut lines: Vec<Line<'static>> =
        lane.warnings.iter().map(|w| Line::styled(format!("⚠ {}", escape(w)), Style::default().fg(t.warn))).collect();
    if let Some(why) = state.stale_reason(idx) {
        lines.insert(0, Line::styled(format!("⟲ {why}"), Style::default().fg(t.warn).add_modifier(Modifier::ITALIC)));
    }
    let mut text = if lane.output.is_empty() {
        let hint = match (lane.status, lane.progress) {
            (LaneStatus::Idle, _) => "Ctrl+R runs every lane, F5 this one".to_string(),
            (LaneStatus::Waiting, Some((done, total))) => {
                format!("reading the prompt: {}/{} tokens…", fmt_count(done), fmt_count(total))
            }
            (LaneStatus::Waiting, None) => "waiting for the first token…".to_string(),
            _ => String::new(),
        };
        if hint.is_empty() { Text::default() } else { Text::from(Line::styled(hint, Style::default().fg(t.muted))) }
    } else {
        // A reasoning model's thinking is shown dimmed above the answer, never as part of it.
        let (thinking, answer) = crate::engine::think::split(&lane.output);
        let mut text = Text::default();
        if let Some(th) = thinking.map(str::trim).filter(|th| !th.is_empty()) {
            let style = Style::default().fg(t.muted).add_modifier(Modifier::ITALIC);
            text.lines.push(Line::styled("thinking:", style));
            text.lines.extend(styled_lines(escape(th).into_owned(), style));
            if !answer.is_empty() {
                text.lines.push(Line::default());
            }
        }
        text.lines.extend(styled_lines(escape(answer).into_owned(), Style::default().fg(t.fg)));
        text
    };
    if !lines.is_empty() {
        lines.extend(text.lines);
        text = Text::from(lines);
    }
    if let Some(err) = &lane.error {
        let style = if lane.status == LaneStatus::Cancelled { t.warn } else { t.error };
        text.push_line(Line::styled(
            format!("✗ {}", escape(&err.to_string())),
            Style::default().fg(style).add_modifier(Modifier::BOLD),
        ));
    }
    text
}

fn styled_lines(s: String, style: Style) -> impl Iterator<Item = Line<'static>> {
    Text::raw(s).lines.into_iter().map(move |l| l.patch_style(style))
}

/// Model, backend and where it runs: device for local lanes (plus adapter), host for API lanes.
pub fn subtitle(state: &AppState, idx: usize) -> String {
    let spec = &state.ws.lanes[idx];
    let mut s = format!("{} · {}", spec.model, spec.backend);
    match (state.lanes[idx].detail_for(spec), state.ws.models.get(&spec.model).filter(|_| !spec.backend.is_api())) {
        // The backend's own report names the adapter it loaded (with its rank): the settings' name would repeat it.
        (Some(d), _) => s.push_str(&format!(" · {d}")),
        (None, m) => {
            if let Some(m) = m {
                s.push_str(&format!(" · {}", m.device));
            }
            if let Some(a) = &spec.adapter {
                let name = std::path::Path::new(a).file_name().map_or(a.clone(), |n| n.to_string_lossy().into_owned());
                s.push_str(&format!(" + {name}"));
            }
        }
    }
    if spec.backend.is_api() {
        s.push_str(&format!(" · {}", crate::workspace::url_host(spec.base_url())));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_lanes_fit_side_by_side_at_80_columns() {
        let a = areas(Rect::new(0, 0, 80, 24), 3);
        assert_eq!(a.lanes.len(), 3);
        assert!(a.lanes.iter().all(|r| r.y == a.lanes[0].y), "one row");
    }

    #[test]
    fn six_lanes_wrap_into_rows_when_narrow() {
        let a = areas(Rect::new(0, 0, 80, 24), 6);
        let rows: std::collections::BTreeSet<u16> = a.lanes.iter().map(|r| r.y).collect();
        assert_eq!(rows.len(), 2);
        let wide = areas(Rect::new(0, 0, 160, 48), 6);
        assert!(wide.lanes.iter().all(|r| r.y == wide.lanes[0].y));
    }
}
