//! F3: the dataset view — split counts and token lengths, check findings, the example list, one example
//! opened or edited; mirrors `app::DatasetView`.

use std::collections::HashSet;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::overlay::view_block;
use crate::app::geometry::wide_popup;
use crate::app::{AppState, DatasetView, Pane};
use crate::dataset::{Example, Report, Severity, Split};

pub fn panel(state: &AppState, frame: &mut Frame, area: Rect, view: &DatasetView) {
    let t = &state.theme;
    let rect = wide_popup(area);
    frame.render_widget(Clear, rect);
    let Some(data) = &view.data else {
        let text = match &view.error {
            Some(e) => Line::styled(format!(" {e}"), Style::default().fg(t.error)),
            None => Line::styled(" reading the dataset…", Style::default().fg(t.muted)),
        };
        frame.render_widget(Paragraph::new(text).block(view_block(state, " dataset ".into())), rect);
        return;
    };
    let counts: Vec<String> = Split::ALL.iter().map(|&s| format!("{} {s}", data.dataset.count(s))).collect();
    let title =
        format!(" dataset · {} · stored with the `{}` prompt ", counts.join(" · "), state.ws.dataset.system_prompt);
    let hints = match view.pane {
        Pane::List if view.searching => " type to search · Enter/Esc done ",
        Pane::List => {
            " ↑↓ select · Enter open · e answer · u input · m move · d delete · / search · Tab split · o source · c findings · D distill · Esc close "
        }
        Pane::Open { .. } => " ↑↓ scroll · e edit answer · u edit input · any other key back ",
        Pane::Edit { saving: true, .. } => " writing… ",
        Pane::Edit { .. } => " ^S save the example · Esc discard ",
        Pane::ConfirmDelete { .. } => " y delete · any other key keeps it ",
        Pane::Findings { .. } => " ↑↓ scroll · any other key back ",
    };
    let block = view_block(state, title).title_bottom(Line::styled(hints, Style::default().fg(t.muted)));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let [figures, findings, filter, body] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Length(1), Constraint::Min(0)])
            .areas(inner);
    frame.render_widget(Paragraph::new(figures_line(data)).style(Style::default().fg(t.fg)), figures);
    frame.render_widget(findings_line(state, data), findings);
    frame.render_widget(filter_line(state, view), filter);
    match &view.pane {
        Pane::List | Pane::ConfirmDelete { .. } => list(state, frame, body, view, data),
        Pane::Findings { scroll } => {
            let lines: Vec<Line> = data
                .findings
                .iter()
                .map(|f| {
                    let colour = if f.severity == Severity::Error { t.error } else { t.warn };
                    let id = f.id.as_deref().unwrap_or("—");
                    Line::styled(
                        format!(" {:<13} {:<15} {id:<13} {}", f.kind.name(), f.at, f.message),
                        Style::default().fg(colour),
                    )
                })
                .collect();
            let lines =
                if lines.is_empty() { vec![Line::styled(" no problems", Style::default().fg(t.ok))] } else { lines };
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((*scroll, 0)), body);
        }
        Pane::Open { id, scroll } => {
            if let Some((split, x)) = view.example(id) {
                let p = Paragraph::new(detail(state, split, x)).wrap(Wrap { trim: false }).scroll((*scroll, 0));
                frame.render_widget(p, body);
            }
        }
        Pane::Edit { id, role, area, .. } => {
            let [label, text] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(body);
            let what = if *role == "user" { "input" } else { "answer" };
            let style = Style::default().fg(t.accent).add_modifier(Modifier::BOLD);
            frame.render_widget(Paragraph::new(Line::styled(format!(" editing the {what} of {id}"), style)), label);
            let editor = super::input::WrappedEditor {
                lines: area.lines(),
                cursor: area.cursor(),
                show_cursor: true,
                style: Style::default().fg(t.fg),
            };
            frame.render_widget(editor, text);
        }
    }
}

fn figures_line(data: &Report) -> String {
    let parts: Vec<String> = data
        .stats
        .splits
        .iter()
        .filter_map(|s| Some(format!("{} {}/{}/{}", s.split, s.tokens_p50?, s.tokens_p95?, s.tokens_max?)))
        .collect();
    match &data.measured_by {
        Ok(by) if !parts.is_empty() => format!(" tokens p50/p95/max: {} — {by}", parts.join(" · ")),
        Ok(by) => format!(" no examples yet — Ctrl+P on a lane promotes its answer ({by})"),
        Err(e) => format!(" no token figures: {e}"),
    }
}

fn findings_line(state: &AppState, data: &Report) -> Paragraph<'static> {
    let t = &state.theme;
    let errors = data.findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = data.findings.len() - errors;
    let Some(first) = data.findings.first() else {
        return Paragraph::new(Line::styled(" check: ✓ no problems", Style::default().fg(t.ok)));
    };
    let colour = if errors > 0 { t.error } else { t.warn };
    let text = format!(
        " check: {errors} error(s), {warnings} warning(s) · {} {} {}",
        first.kind.name(),
        first.at,
        first.message
    );
    Paragraph::new(Line::styled(text, Style::default().fg(colour)))
}

fn filter_line(state: &AppState, view: &DatasetView) -> Paragraph<'static> {
    let t = &state.theme;
    if let Pane::ConfirmDelete { id } = &view.pane {
        let text = format!(" delete {id}? y deletes it from its split file · any other key keeps it");
        return Paragraph::new(Line::styled(text, Style::default().fg(t.warn).add_modifier(Modifier::BOLD)));
    }
    let mut spans = Vec::new();
    let choices: [(Option<Split>, &str); 4] =
        [(None, "all"), (Some(Split::Train), "train"), (Some(Split::Valid), "valid"), (Some(Split::Test), "test")];
    for (s, name) in choices {
        let style = if view.only == s {
            Style::default().fg(t.title).bg(t.selection).add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(t.muted)
        };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(name.to_string(), style));
    }
    let origin = view.origin.map_or("all sources", |o| o.name());
    let style = if view.origin.is_some() {
        Style::default().fg(t.title).bg(t.selection).add_modifier(Modifier::BOLD)
    } else {
        Style::default().fg(t.muted)
    };
    spans.push(Span::styled("  ", Style::default()));
    spans.push(Span::styled(origin.to_string(), style));
    let cursor = if view.searching { "▏" } else { "" };
    let shown = view.rows().len();
    spans.push(Span::styled(format!("   / {}{cursor}", view.query), Style::default().fg(t.accent)));
    spans.push(Span::styled(format!("   {shown} shown"), Style::default().fg(t.muted)));
    Paragraph::new(Line::from(spans))
}

fn list(state: &AppState, frame: &mut Frame, area: Rect, view: &DatasetView, data: &Report) {
    let t = &state.theme;
    let rows = view.rows();
    let flagged: HashSet<&str> = data.findings.iter().filter_map(|f| f.id.as_deref()).collect();
    let height = usize::from(area.height).max(1);
    let top = view.selected.saturating_sub(height - 1);
    let width = usize::from(area.width);
    let text_w = width.saturating_sub(30);
    let lines: Vec<Line> = rows
        .iter()
        .enumerate()
        .skip(top)
        .take(height)
        .map(|(i, (split, x))| {
            let rating = x.meta.rating.map_or("     ".to_string(), stars);
            let mark = if flagged.contains(x.id.as_str()) { "!" } else { " " };
            let user_w = text_w * 3 / 5;
            let line = format!(
                "{mark}{split:<5} {:<13} {rating} {} │ {}",
                x.id,
                glimpse(x.user(), user_w),
                glimpse(x.assistant(), text_w.saturating_sub(user_w + 3))
            );
            let style = if i == view.selected {
                Style::default().fg(t.title).bg(t.selection)
            } else if mark == "!" {
                Style::default().fg(t.warn)
            } else {
                Style::default().fg(t.fg)
            };
            Line::styled(line, style)
        })
        .collect();
    if lines.is_empty() {
        let msg = if view.query.is_empty() { " no examples here" } else { " nothing matches the search" };
        frame.render_widget(Paragraph::new(Line::styled(msg, Style::default().fg(t.muted))), area);
        return;
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn detail(state: &AppState, split: Split, x: &Example) -> Vec<Line<'static>> {
    let t = &state.theme;
    let m = &x.meta;
    let mut facts = vec![format!("{} in {}", x.id, split.file_name())];
    if let Some(l) = &m.source_lane {
        facts.push(format!("from lane `{l}`"));
    }
    facts.extend(m.model.as_ref().map(|v| format!("model {v}")));
    facts.extend(m.adapter.as_ref().map(|v| format!("adapter {v}")));
    facts.extend(m.prompt_variant.as_ref().map(|v| format!("answered with the `{v}` prompt")));
    facts.extend(m.rating.map(stars));
    if m.edited {
        facts.push("edited".into());
    }
    if !m.tags.is_empty() {
        facts.push(format!("tags {}", m.tags.join(", ")));
    }
    facts.extend(m.time_unix_ms.map(|ms| format!("{} UTC", super::history::utc_minute(ms))));
    facts.extend(m.source.clone());
    let mut lines =
        vec![Line::styled(format!(" {}", facts.join(" · ")), Style::default().fg(t.muted)), Line::default()];
    for msg in &x.messages {
        lines.push(Line::styled(format!(" {}", msg.role), Style::default().fg(t.accent).add_modifier(Modifier::BOLD)));
        // A blank line stays empty: ratatui wraps a whitespace-only line into two rows.
        lines.extend(msg.content.split('\n').map(|l| {
            if l.trim().is_empty() {
                Line::default()
            } else {
                Line::styled(format!("   {l}"), Style::default().fg(t.fg))
            }
        }));
        lines.push(Line::default());
    }
    lines
}

pub fn stars(r: u8) -> String {
    let r = usize::from(r.min(5));
    format!("{}{}", "★".repeat(r), "☆".repeat(5 - r))
}

/// The text on one line, cut (with an ellipsis) or padded to `width` terminal columns.
pub fn glimpse(text: &str, width: usize) -> String {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    let one = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let w = one.width();
    if w <= width {
        return format!("{one}{}", " ".repeat(width - w));
    }
    let mut out = String::new();
    let mut used = 0;
    for c in one.chars() {
        let cw = c.width().unwrap_or(0);
        if used + cw + 1 > width {
            break;
        }
        out.push(c);
        used += cw;
    }
    out.push('…');
    used += 1;
    out.push_str(&" ".repeat(width.saturating_sub(used)));
    out
}
