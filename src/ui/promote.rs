//! Ctrl+P's dialog: the input, the answer (editable), rating and tags; mirrors `app::PromoteForm`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};

use super::dataset::{glimpse, stars};
use crate::app::{AppState, PromoteField, PromoteForm};

pub fn dialog(state: &AppState, frame: &mut Frame, area: Rect, form: &PromoteForm) {
    let t = &state.theme;
    let rect = crate::app::geometry::promote_popup(area);
    let lane = state.ws.lanes.get(form.lane).map_or("?", |l| l.id.as_str());
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Thick)
        .border_style(Style::default().fg(t.border_focus))
        .title(Span::styled(
            format!(" promote lane `{lane}`'s answer → dataset/train.jsonl "),
            Style::default().fg(t.title).add_modifier(Modifier::BOLD),
        ));
    let inner = block.inner(rect);
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    let [system, input, label, answer, meta, note, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Min(2),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let w = usize::from(inner.width).saturating_sub(12);
    let muted = Style::default().fg(t.muted);
    let variant = &state.ws.dataset.system_prompt;
    let sys = format!(
        " system (`{variant}`): {}",
        glimpse(state.ws.dataset_system_prompt(), w.saturating_sub(variant.len() + 4))
    );
    frame.render_widget(Paragraph::new(Line::styled(sys, muted)), system);
    let input_text = format!(" user: {}", glimpse(&form.input, w * 2));
    frame.render_widget(
        Paragraph::new(Line::styled(input_text, Style::default().fg(t.fg)))
            .wrap(ratatui::widgets::Wrap { trim: false }),
        input,
    );
    let editing = form.field == PromoteField::Answer;
    let edited = if form.edited() { " (edited)" } else { "" };
    let label_style = if editing { Style::default().fg(t.accent).add_modifier(Modifier::BOLD) } else { muted };
    frame.render_widget(Paragraph::new(Line::styled(format!(" assistant{edited}:"), label_style)), label);
    let editor = super::input::WrappedEditor {
        lines: form.answer.lines(),
        cursor: form.answer.cursor(),
        show_cursor: editing,
        style: Style::default().fg(t.fg),
    };
    frame.render_widget(editor, answer.inner(ratatui::layout::Margin { horizontal: 1, vertical: 0 }));
    let [rating, tags_label, tags] =
        Layout::horizontal([Constraint::Length(26), Constraint::Length(7), Constraint::Min(0)]).areas(meta);
    let r = form.rating.map_or("not rated".to_string(), stars);
    frame.render_widget(Paragraph::new(Line::styled(format!(" rating {r}"), Style::default().fg(t.accent))), rating);
    frame.render_widget(Paragraph::new(Line::styled(" tags ", muted)), tags_label);
    if form.field == PromoteField::Tags {
        frame.render_widget(&form.tags, tags);
    } else {
        let shown = form.tags.lines().join(" ");
        let shown = if shown.trim().is_empty() { "(none)".to_string() } else { shown };
        frame.render_widget(Paragraph::new(Line::styled(shown, Style::default().fg(t.fg))), tags);
    }
    if form.partial {
        let warn = " the lane failed: this answer is partial — edit it (e) before promoting";
        frame.render_widget(Paragraph::new(Line::styled(warn, Style::default().fg(t.warn))), note);
    } else if form.with_thinking.is_some() {
        let said = if form.keeps_thinking() {
            " the answer includes the lane's <think> block — k leaves it out"
        } else {
            " the lane's <think> block is left out of the answer — k keeps it"
        };
        frame.render_widget(Paragraph::new(Line::styled(said, muted)), note);
    }
    let hint = match form.field {
        PromoteField::Answer => " editing the answer · Esc done",
        PromoteField::Tags => " tags, comma or space separated · Enter/Esc done",
        PromoteField::None if form.with_thinking.is_some() => {
            " Enter promote · e edit · c write anew · k thinking · 1–5 rate · t tags · x reject · Esc cancel"
        }
        PromoteField::None => {
            " Enter promote · e edit answer · c write it anew · 1–5 rate · t tags · x reject · Esc cancel"
        }
    };
    frame.render_widget(Paragraph::new(Line::styled(hint, muted)), keys);
}
