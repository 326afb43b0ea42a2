//! The distill view: the settings (teacher lane, inputs, filter), then the run's progress line and its
//! summary — kept, rejected, skipped, failed, cost — as `tunebench distill` prints them; mirrors `app::DistillState`.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::overlay::view_block;
use crate::app::geometry::wide_popup;
use crate::app::{AppState, DistillField, DistillStatus, filter_name};

pub fn panel(state: &AppState, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let rect = wide_popup(area);
    frame.render_widget(Clear, rect);
    let Some(d) = &state.distill else { return };
    let hints = match &d.status {
        DistillStatus::Setup => " ↑↓ setting · ←→ choose · type the inputs path · Enter distill · Esc back to F3 ",
        DistillStatus::Confirm(_) => " y run the paid calls · any other key: no ",
        DistillStatus::Running => " s stop (answers so far are cached) · Esc back to F3 (it goes on) ",
        DistillStatus::Done | DistillStatus::Failed(_) => " n set up another · Esc back to F3 ",
    };
    let block = view_block(state, " distill: a teacher lane's answers into the dataset ".into())
        .title_bottom(Line::styled(hints, Style::default().fg(t.muted)));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let teacher = state.ws.lanes.get(d.teacher).map_or("?", |l| l.id.as_str());
    let prompt = state.ws.lanes.get(d.teacher).map_or("?", |l| l.prompt.as_str());
    let editable = d.status == DistillStatus::Setup;
    let row = |field: DistillField, label: &str, value: String, choose: bool| {
        let on = editable && d.field == field;
        let style = if on {
            Style::default().fg(t.title).bg(t.selection).add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(t.fg)
        };
        let value = if on && choose { format!("◂ {value} ▸") } else { value };
        let cursor = if on && field == DistillField::Inputs { "▏" } else { "" };
        Line::from(vec![
            Span::styled(format!(" {label:<9}"), Style::default().fg(t.muted)),
            Span::styled(format!("{value}{cursor}"), style),
        ])
    };
    let mut lines = vec![
        row(DistillField::Teacher, "teacher", format!("{teacher} (its `{prompt}` prompt)"), true),
        row(DistillField::Inputs, "inputs", d.inputs.clone(), false),
        row(DistillField::Filter, "filter", filter_name(d.filter).to_string(), true),
        Line::styled(
            format!(
                " kept answers go to dataset/train.jsonl against the `{}` prompt; inputs already in any split are never sent",
                state.ws.dataset.system_prompt
            ),
            Style::default().fg(t.muted),
        ),
        Line::raw(""),
    ];
    match &d.status {
        DistillStatus::Confirm(text) => {
            lines.push(Line::styled(format!(" {text}"), Style::default().fg(t.warn).add_modifier(Modifier::BOLD)))
        }
        DistillStatus::Failed(e) => lines.push(Line::styled(format!(" {e}"), Style::default().fg(t.error))),
        _ => {}
    }
    if let Some(p) = &d.progress {
        lines.push(Line::styled(format!(" {p}"), Style::default().fg(t.accent)));
    }
    // The counts and the cost first, then what each was about (a long run's lists may run off the bottom).
    let (heads, details): (Vec<&String>, Vec<&String>) = d.lines.iter().partition(|l| !l.starts_with("  "));
    for l in heads.into_iter().chain(details) {
        let colour = if l.starts_with("kept") {
            t.ok
        } else if l.starts_with("rejected") || l.starts_with("failed") {
            t.warn
        } else {
            t.fg
        };
        lines.push(Line::styled(format!(" {}", crate::visible::escape_line(l)), Style::default().fg(colour)));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
