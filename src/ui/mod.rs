//! Pure rendering of `&AppState`: header, input editor, lane panes, summary, key hints, overlays.

mod dataset;
mod distill;
mod eval;
mod history;
mod input;
mod lane;
mod overlay;
mod promote;
pub mod savings;
mod train;
mod train_hosted;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph};

use crate::app::{AppState, Focus, Level, Mode};
use crate::metrics::fmt_count;

pub use lane::{LaneView, footer};

pub fn render(state: &AppState, frame: &mut Frame) {
    let area = frame.area();
    let a = crate::app::geometry::areas(area, state.lanes.len());
    frame.render_widget(header(state), a.header);
    render_input(state, frame, a.input);
    for (idx, rect) in a.lanes.iter().enumerate() {
        frame.render_widget(LaneView { state, idx }, *rect);
    }
    frame.render_widget(summary(state), a.summary);
    frame.render_widget(hints(state), a.hints);
    overlay::render(state, frame, area);
    // Whatever a widget put in a cell (an answer in the eval view, a line of a dataset file), no control
    // character reaches the terminal: ratatui sends cell symbols as they are.
    for cell in frame.buffer_mut().content.iter_mut() {
        if let Some(safe) = crate::visible::cell_symbol(cell.symbol()) {
            cell.set_symbol(&safe);
        }
    }
}

fn header(state: &AppState) -> Paragraph<'static> {
    let t = &state.theme;
    let input = match state.input_idx {
        Some(i) => format!("input {}/{} {}", i + 1, state.inputs.len(), state.inputs[i].name),
        None => format!("new input (of {} saved)", state.inputs.len()),
    };
    let mut spans = vec![
        Span::styled(" tunebench", Style::default().fg(t.accent).add_modifier(Modifier::BOLD)),
        Span::styled(format!(" · {} · {input}", state.ws.name), Style::default().fg(t.title)),
    ];
    if state.ws.is_dirty() || !state.drafts.is_empty() {
        spans.push(Span::styled(" ● unsaved", Style::default().fg(t.warn)));
    }
    Paragraph::new(Line::from(spans))
}

fn render_input(state: &AppState, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let focused = state.focus == Focus::Input;
    let text = state.input_text();
    let edited = state.drafts.contains_key(&state.input_idx) || state.editor.lines().join("\n") != saved(state);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Rounded })
        .border_style(Style::default().fg(if focused { t.border_focus } else { t.border }))
        .title(Span::styled(if edited { " Input (edited) " } else { " Input " }, Style::default().fg(t.title)))
        .title(
            Line::styled(
                format!(" {} chars · {} lines ", fmt_count(text.chars().count() as u64), state.editor.lines().len()),
                Style::default().fg(t.muted),
            )
            .right_aligned(),
        );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // tui-textarea keeps the text and cursor but scrolls long lines sideways; the view wraps them.
    let view = input::WrappedEditor {
        lines: state.editor.lines(),
        cursor: state.editor.cursor(),
        show_cursor: focused && matches!(state.mode, Mode::Normal),
        style: Style::default().fg(t.fg),
    };
    frame.render_widget(view, inner);
}

fn saved(state: &AppState) -> &str {
    state.input_idx.and_then(|i| state.inputs.get(i)).map_or("", |s| s.text.as_str())
}

/// The comparison line: what the lane saving the most prompt tokens saves against the reference, in tokens
/// and dollars; the lane counts when nothing can be compared yet.
fn summary(state: &AppState) -> Paragraph<'static> {
    let t = &state.theme;
    let line = match savings::summary(state) {
        Some(line) => line,
        _ => {
            let running = state.lanes.iter().filter(|l| l.status.is_running()).count();
            let failed = state.lanes.iter().filter(|l| l.status == crate::app::LaneStatus::Failed).count();
            let done = state.lanes.iter().filter(|l| l.status == crate::app::LaneStatus::Done).count();
            format!(" {} lanes · {running} running · {done} done · {failed} failed", state.lanes.len())
        }
    };
    Paragraph::new(Line::styled(line, Style::default().fg(t.muted)))
}

fn hints(state: &AppState) -> Paragraph<'static> {
    let t = &state.theme;
    if let Some(s) = &state.status {
        let c = match s.level {
            Level::Info => t.ok,
            Level::Warn => t.warn,
            Level::Error => t.error,
        };
        return Paragraph::new(Line::styled(format!(" {}", s.text), Style::default().fg(c)));
    }
    // F5 runs the selected lane; from the input it is not the focused pane, so the hint names it.
    let run_lane = match (state.focus, state.ws.lanes.get(state.selected)) {
        (Focus::Input, Some(l)) => format!("F5 run {}", l.id),
        _ => "F5 run lane".to_string(),
    };
    let keys: &[&str] = match state.mode {
        Mode::Normal => &[
            "^R run all",
            &run_lane,
            "Tab focus",
            "F1 help",
            "^Q quit",
            "^S save",
            "F7/F8 input",
            "F2 prompt",
            "^P promote",
            "F3 dataset",
            "F12 savings",
            "F6 lane",
            "Esc cancel",
        ],
        Mode::Help { .. } => &["↑↓ scroll", "any other key closes"],
        _ => &["Esc close", "^S save", "^Q quit"],
    };
    // Most important first, as many as the width allows.
    let width = usize::from(state.size.0);
    let mut line = String::new();
    for k in keys {
        if line.chars().count() + k.chars().count() + 3 > width {
            break;
        }
        line.push_str(if line.is_empty() { " " } else { " · " });
        line.push_str(k);
    }
    Paragraph::new(Line::styled(line, Style::default().fg(t.muted)))
}
