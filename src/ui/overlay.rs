//! Overlays drawn over the main screen: help, the F2 prompt editor, the F6 lane settings, quit confirmation.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

use crate::app::{AppState, Mode, PromptEditor, SettingsForm};
use crate::metrics::fmt_count;

/// Every key, in the order a newcomer needs them. The help overlay and the README list the same.
pub const KEYS: &[(&str, &str)] = &[
    ("Ctrl+R", "run every lane on the input"),
    ("F5 / Ctrl+Enter", "run the focused lane (input: the last one focused)"),
    ("Esc", "cancel running lanes; close overlays; leave lanes"),
    ("Tab / Shift+Tab, click", "focus: input → lane 1 … lane n → input; a lane"),
    ("PgUp / PgDn, wheel", "scroll the focused lane (wheel: lane under mouse)"),
    ("↑↓ / j k, Home End", "scroll a line, to top/bottom (lanes focused)"),
    ("← → / h l, Enter", "pick the lane, run it (lanes focused)"),
    ("Alt+← / Alt+→, F7 / F8", "previous / next saved input (last slot: a new one)"),
    ("Ctrl+N", "save the input as new (inputs/NN-first-words.txt)"),
    ("Ctrl+P", "promote the focused lane's answer into the dataset"),
    ("F3", "dataset: search, open, edit, move, delete examples"),
    ("  D in F3", "distill: a teacher lane's answers into train.jsonl"),
    ("Ctrl+S", "save workspace, prompts, inputs (a typed new one too)"),
    ("F2", "prompt editor: the focused lane's system prompt"),
    ("  F7/F8, Ctrl+N in F2", "switch the lane's variant; save as a new variant"),
    ("F12, $ (lanes)", "savings vs the reference lane: run, month, break-even"),
    ("F4", "the focused lane's prompt as sent, token by token"),
    ("F6", "lane settings: the fields the lane's backend takes"),
    ("  ↑↓ Enter ←→ in F6", "field; Enter type/apply, Esc undo typing, ←→ choose"),
    ("F9", "eval: scoreboard, case browser; h run history"),
    ("F10", "train the adapter: loss curve, stop, run the lane"),
    ("Alt+C, y c (lanes)", "copy the focused lane's output (OSC 52)"),
    ("F1, ? (lanes) / Ctrl+Q", "this help (↑↓ scrolls) / quit (asks if unsaved)"),
];

pub fn render(state: &AppState, frame: &mut Frame, area: Rect) {
    match &state.mode {
        Mode::Normal => {}
        Mode::Help { scroll } => help(state, frame, area, *scroll),
        Mode::Savings => super::savings::panel(state, frame, area),
        Mode::Tokens(view) => tokens(state, frame, area, view),
        Mode::History { scroll, records, skipped } => {
            super::history::panel(state, frame, area, *scroll, records, *skipped)
        }
        Mode::Prompt(ed) => prompt(state, frame, area, ed),
        Mode::Settings(form) => settings(state, frame, area, form),
        Mode::Promote(form) => super::promote::dialog(state, frame, area, form),
        Mode::Dataset(view) => super::dataset::panel(state, frame, area, view),
        Mode::Train => super::train::panel(state, frame, area),
        Mode::Distill => super::distill::panel(state, frame, area),
        Mode::Eval => super::eval::panel(state, frame, area),
        Mode::ConfirmQuit => confirm(state, frame, area),
    }
}

pub(super) use crate::app::geometry::{popup, wide_popup};

fn frame_block(state: &AppState, title: String) -> Block<'static> {
    let t = &state.theme;
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Thick)
        .border_style(Style::default().fg(t.border_focus))
        .title(Span::styled(title, Style::default().fg(t.title).add_modifier(Modifier::BOLD)))
}

/// The frame of a read-only view (savings, tokens, history): rounded, in the accent colour.
pub(super) fn view_block(state: &AppState, title: String) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(Style::default().fg(state.theme.accent))
        .title(title)
}

fn help(state: &AppState, frame: &mut Frame, area: Rect, scroll: u16) {
    let t = &state.theme;
    let rect = popup(area, 96, KEYS.len() as u16 + 2);
    let key_w = KEYS.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<key_w$}  "), Style::default().fg(t.accent)),
                Span::styled(*what, Style::default().fg(t.fg)),
            ])
        })
        .collect();
    let max = (lines.len() as u16).saturating_sub(rect.height.saturating_sub(2));
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(frame_block(state, " Keys ".into())).scroll((scroll.min(max), 0)),
        rect,
    );
}

fn prompt(state: &AppState, frame: &mut Frame, area: Rect, ed: &PromptEditor) {
    let t = &state.theme;
    let rect = wide_popup(area);
    let users: Vec<&str> = state.ws.lanes.iter().filter(|l| l.prompt == ed.variant).map(|l| l.id.as_str()).collect();
    let chars: usize = ed.area.lines().iter().map(|l| l.chars().count() + 1).sum::<usize>().saturating_sub(1);
    let title = format!(
        " prompt `{}` · lane {} · used by {} · {} chars ",
        ed.variant,
        state.ws.lanes[ed.lane].id,
        users.join(", "),
        fmt_count(chars as u64)
    );
    let block = frame_block(state, title);
    let inner = block.inner(rect);
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    let [text, line] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    frame.render_widget(
        super::input::WrappedEditor {
            lines: ed.area.lines(),
            cursor: ed.area.cursor(),
            show_cursor: ed.naming.is_none(),
            style: Style::default().fg(t.fg),
        },
        text,
    );
    match &ed.naming {
        Some(name) => {
            let [label, field] = Layout::horizontal([Constraint::Length(22), Constraint::Min(0)]).areas(line);
            frame.render_widget(
                Paragraph::new(Span::styled(" new variant name: ", Style::default().fg(t.accent))),
                label,
            );
            frame.render_widget(name, field);
        }
        None => frame.render_widget(
            Paragraph::new(Span::styled(
                " Esc/F2 close · F7/F8 switch variant · ^N save as new variant · ^S save workspace",
                Style::default().fg(t.muted),
            )),
            line,
        ),
    }
}

fn settings(state: &AppState, frame: &mut Frame, area: Rect, form: &SettingsForm) {
    let t = &state.theme;
    let n = form.rows.len();
    let rect = popup(area, 72, n as u16 + 5);
    let lane = &state.ws.lanes[form.lane];
    let block = frame_block(state, format!(" lane `{}` settings ", lane.id));
    let inner = block.inner(rect);
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    let rows = Layout::vertical(vec![Constraint::Length(1); n + 3]).split(inner);
    for (i, row) in form.rows.iter().enumerate() {
        let selected = i == form.row;
        let style = if selected { Style::default().bg(t.selection).fg(t.title) } else { Style::default().fg(t.fg) };
        let [label, value] = Layout::horizontal([Constraint::Length(21), Constraint::Min(0)]).areas(rows[i]);
        frame.render_widget(Paragraph::new(Span::styled(format!(" {:<19}", row.label()), style)), label);
        match (&form.editing, selected) {
            (Some(field), true) => frame.render_widget(field, value),
            _ => {
                let v = row.value(lane);
                let shown = if v.is_empty() { "(none)".to_string() } else { v };
                let arrows = if row.cycles() { "  ◂ ▸" } else { "" };
                frame.render_widget(Paragraph::new(Span::styled(format!("{shown}{arrows}"), style)), value);
            }
        }
    }
    if let Some(err) = &form.error {
        frame.render_widget(
            Paragraph::new(Span::styled(format!(" {err}"), Style::default().fg(t.error))).wrap(Wrap { trim: true }),
            rows[n + 1],
        );
    }
    frame.render_widget(
        Paragraph::new(Span::styled(
            " ↑↓ field · Enter type/apply · ←→ choose ◂ ▸ · Esc/F6 close · ^S save",
            Style::default().fg(t.muted),
        )),
        rows[n + 2],
    );
}

fn confirm(state: &AppState, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let rect = popup(area, 60, 5);
    let text = vec![
        Line::styled(" There are unsaved changes.", Style::default().fg(t.warn)),
        Line::styled(" s save and quit · q quit without saving · Esc stay", Style::default().fg(t.fg)),
    ];
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(text).block(frame_block(state, " Quit? ".into())), rect);
}

/// F4: the prompt as sent, token by token (the text is `app::views::token_text`, which its scroll limit measures).
fn tokens(state: &AppState, frame: &mut Frame, area: Rect, view: &crate::app::TokenView) {
    let (title, lines) = crate::app::views::token_text(state, view);
    let r = wide_popup(area);
    frame.render_widget(Clear, r);
    let block = view_block(state, title).title_bottom(" ↑↓ PgUp PgDn Home End scroll · any other key closes ");
    let para = Paragraph::new(lines).block(block).wrap(Wrap { trim: false }).scroll((view.scroll, 0));
    frame.render_widget(para, r);
}
