//! The F9 eval view: the scoreboard, pass rate per assertion and the case list; a case with the expected
//! answer beside a lane's, its checks (failures highlighted) and a word diff.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::overlay::{popup, view_block};
use crate::app::geometry::wide_popup;
use crate::app::{AppState, EvalData, EvalPane, EvalView};
use crate::eval::diff::{Piece, words};
use crate::eval::report;
use crate::metrics::format::{Field, fit, fit_table};

pub fn panel(state: &AppState, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let v = &state.eval;
    let rect = wide_popup(area);
    frame.render_widget(Clear, rect);
    let keys: &[&str] = match v.pane {
        EvalPane::Case | EvalPane::ConfirmPromote => {
            &["←→ lane", "Esc back", "PgUp/PgDn case", "↑↓ scroll", "p make this answer the expected one"]
        }
        _ if v.running.is_some() => {
            &["s stop the run", "Esc close (the run goes on)", "↑↓ case", "Enter open", "h run history"]
        }
        _ => &[
            "r run this case",
            "N r the next N",
            "a all missing",
            "Esc close",
            "↑↓ case",
            "Enter open",
            "h run history",
        ],
    };
    // As many keys as the frame holds, in order of importance.
    let keys: Vec<Field> =
        keys.iter().enumerate().map(|(i, k)| Field::new(*k, u8::try_from(i).unwrap_or(u8::MAX))).collect();
    let hints = format!(" {} ", fit(&keys, " · ", usize::from(rect.width).saturating_sub(4)));
    let block = view_block(state, " eval: test cases through every lane ".into())
        .title_bottom(Line::styled(hints, Style::default().fg(t.muted)));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let Some(d) = &v.data else {
        let text = v.error.clone().unwrap_or_else(|| "reading the test cases and the cache…".into());
        let style = Style::default().fg(if v.error.is_some() { t.error } else { t.muted });
        frame.render_widget(Paragraph::new(Line::styled(text, style)).wrap(Wrap { trim: false }), inner);
        return;
    };
    match &v.pane {
        EvalPane::Board => board(state, frame, inner, d),
        EvalPane::Case => case(state, frame, inner, d),
        EvalPane::ConfirmPromote => {
            case(state, frame, inner, d);
            let lane = d.lanes.get(v.lane).map_or("?", |&l| state.ws.lanes[l].id.as_str());
            let text = format!(
                "Make lane `{lane}`'s answer the expected answer of {}? y / any other key: no",
                d.cases[v.selected].id
            );
            confirm(state, frame, inner, &text);
        }
        EvalPane::ConfirmPaid(text) => {
            board(state, frame, inner, d);
            confirm(state, frame, inner, text);
        }
    }
}

fn confirm(state: &AppState, frame: &mut Frame, area: Rect, text: &str) {
    let rect = popup(area, 72.min(area.width), 7);
    frame.render_widget(Clear, rect);
    let block = Block::default().borders(Borders::ALL).border_style(Style::default().fg(state.theme.warn));
    frame.render_widget(Paragraph::new(text.to_string()).block(block).wrap(Wrap { trim: true }), rect);
}

/// What is shown and what a run is doing, in one line of `width`: the run's progress first, then facts that fit.
fn status_line(state: &AppState, v: &EvalView, d: &EvalData, width: usize) -> Line<'static> {
    let t = &state.theme;
    // Run errors (a run that did not complete) are not failed checks: the table's pass column counts those.
    let doing = match (v.running, v.count) {
        (Some((done, total, errors)), _) => format!(" ▶ running {done}/{total} · {errors} run error(s) ·"),
        (None, Some(n)) => format!(" r runs {n} case(s) from the selected one ·"),
        (None, None) => String::new(),
    };
    let mut fields = vec![
        Field::new(format!("{} cases (dataset/test.jsonl)", d.cases.len()), 0)
            .compact(format!("{} cases", d.cases.len())),
    ];
    fields.push(Field::new(format!("assertions: {}", d.assertions_from), 2));
    if let Some(r) = &d.board.reference {
        fields.push(Field::new(format!("reference lane {r}"), 1));
    }
    let facts = fit(&fields, " · ", width.saturating_sub(doing.chars().count() + 1));
    Line::from(vec![
        Span::styled(doing, Style::default().fg(t.accent)),
        Span::styled(format!(" {facts}"), Style::default().fg(t.fg)),
    ])
}

fn board(state: &AppState, frame: &mut Frame, area: Rect, d: &EvalData) {
    let t = &state.theme;
    let v = &state.eval;
    // The terminal is narrower than a report: headers shorten, and columns that do not fit go, least
    // important first ($/case first: $/1k says the same), rather than being cut at the frame.
    let (full_head, rows) = report::table(&d.board);
    let mut head = vec![
        "lane",
        "pass",
        "rate (95% CI)",
        "prompt tok",
        "compl tok",
        "ttft ms",
        "latency ms",
        "$/case",
        "$/1k cases",
        "vs reference",
    ];
    // With judge assertions the report's table ends with the judge's cost and the pairwise record.
    let judged = full_head.last() == Some(&"pairwise win/tie/loss");
    let mut order = vec![0, 1, 2, 6, 7, 8, 5, 9, 3, 4];
    if judged {
        head.extend(["judge $", "pairwise W/T/L"]);
        // Each column's priority (0 kept last): the pairwise record right after the pass rate.
        order = vec![0, 1, 2, 7, 8, 9, 6, 10, 4, 5, 11, 3];
    }
    let compact: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| c.replace(" / ", "/")).collect()).collect();
    let width = usize::from(area.width).saturating_sub(1);
    let table = fit_table(&head, &compact, &compact, &order, width);
    let mut aligned = table.into_iter().map(|l| format!(" {l}"));
    let mut lines = vec![
        status_line(state, v, d, usize::from(area.width)),
        Line::styled(" token and time columns: mean/p95 over completed runs", Style::default().fg(t.muted)),
    ];
    lines.push(Line::styled(aligned.next().unwrap_or_default(), Style::default().add_modifier(Modifier::BOLD)));
    for (row, s) in aligned.zip(&d.board.lanes) {
        let c = if s.cases == 0 { t.muted } else { t.fg };
        lines.push(Line::styled(row, Style::default().fg(c)));
    }
    lines.push(Line::styled(" pass rate per assertion:", Style::default().fg(t.title)));
    for s in d.board.lanes.iter().filter(|s| !s.assertions.is_empty()) {
        // Each assertion's count whole or not at all (an ellipsis says some did not fit).
        let fields: Vec<Field> = s
            .assertions
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let rate = format!("{} {}/{}", a.name, a.passed, a.total);
                Field::new(
                    if i == 0 { format!("{}: {rate}", s.lane) } else { rate },
                    u8::try_from(i).unwrap_or(u8::MAX),
                )
            })
            .collect();
        lines.push(Line::styled(
            format!("   {}", fit(&fields, " · ", width.saturating_sub(2))),
            Style::default().fg(t.fg),
        ));
    }
    let top = lines.len() as u16 + 1;
    let [head_area, list_area] = Layout::vertical([Constraint::Length(top), Constraint::Min(3)]).areas(area);
    frame.render_widget(Paragraph::new(lines), head_area);
    case_list(state, frame, list_area, d);
}

fn case_list(state: &AppState, frame: &mut Frame, area: Rect, d: &EvalData) {
    let t = &state.theme;
    let v = &state.eval;
    let lane_w: Vec<usize> = d.lanes.iter().map(|&l| state.ws.lanes[l].id.chars().count().max(4)).collect();
    let mut head = format!(" {:<14}", "case");
    for (&l, w) in d.lanes.iter().zip(&lane_w) {
        head.push_str(&format!(" {:<w$}", state.ws.lanes[l].id));
    }
    head.push_str("  input");
    let mut lines = vec![Line::styled(head, Style::default().add_modifier(Modifier::BOLD))];
    let rows = usize::from(area.height.saturating_sub(1)).max(1);
    let first = v.selected.saturating_sub(rows - 1);
    for (ci, c) in d.cases.iter().enumerate().skip(first).take(rows) {
        let mut spans = vec![Span::raw(format!(" {:<14}", c.id))];
        for (&l, w) in d.lanes.iter().zip(&lane_w) {
            let (mark, color) = match d.board.get(ci, l) {
                None => ("·", t.muted),
                Some(s) if s.pass => ("✓", t.ok),
                Some(_) => ("✗", t.error),
            };
            spans.push(Span::styled(format!(" {mark:<w$}"), Style::default().fg(color)));
        }
        let input: String = c.input.split_whitespace().collect::<Vec<_>>().join(" ");
        spans.push(Span::styled(format!("  {input}"), Style::default().fg(t.muted)));
        let mut line = Line::from(spans);
        if ci == v.selected {
            line = line.style(Style::default().bg(t.selection));
        }
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn case(state: &AppState, frame: &mut Frame, area: Rect, d: &EvalData) {
    let t = &state.theme;
    let v = &state.eval;
    let Some(c) = d.cases.get(v.selected) else { return };
    let Some(&lane) = d.lanes.get(v.lane) else { return };
    let lane_id = &state.ws.lanes[lane].id;
    let scored = d.board.get(v.selected, lane);
    let verdict = match scored {
        None => Span::styled("not run".to_string(), Style::default().fg(t.muted)),
        Some(s) if s.pass => Span::styled(format!("PASS · score {:.2}", s.score), Style::default().fg(t.ok)),
        Some(s) => Span::styled(format!("FAIL · score {:.2}", s.score), Style::default().fg(t.error)),
    };
    let title = Line::from(vec![
        Span::styled(
            format!(
                " case {}/{} {} · lane `{lane_id}` ({}/{}) · ",
                v.selected + 1,
                d.cases.len(),
                c.id,
                v.lane + 1,
                d.lanes.len()
            ),
            Style::default().fg(t.title).add_modifier(Modifier::BOLD),
        ),
        verdict,
    ]);
    let area = area.inner(ratatui::layout::Margin { horizontal: 1, vertical: 0 });
    let [title_area, input_area, cols, rest] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(4),
        Constraint::Percentage(40),
        Constraint::Min(4),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(title), title_area);
    let boxed =
        |name: String| Block::default().borders(Borders::TOP).title(Span::styled(name, Style::default().fg(t.title)));
    frame.render_widget(
        Paragraph::new(c.input.clone())
            .style(Style::default().fg(t.fg))
            .block(boxed(" input ".into()))
            .wrap(Wrap { trim: false }),
        input_area,
    );
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).spacing(2).areas(cols);
    frame.render_widget(
        Paragraph::new(c.expected.clone()).block(boxed(" expected ".into())).wrap(Wrap { trim: false }),
        left,
    );
    let answer = scored
        .map_or_else(|| "(no answer yet: r on the scoreboard runs this case)".to_string(), |s| s.answer.output.clone());
    frame.render_widget(
        Paragraph::new(answer.clone()).block(boxed(format!(" answer · {lane_id} "))).wrap(Wrap { trim: false }),
        right,
    );
    let mut lines = Vec::new();
    for ch in scored.map(|s| s.checks.as_slice()).unwrap_or_default() {
        let (mark, color) = match (ch.pass, ch.weight > 0.0) {
            (true, _) => ("✓", t.ok),
            (false, true) => ("✗", t.error),
            (false, false) => ("○", t.warn),
        };
        let detail = if ch.detail.is_empty() { String::new() } else { format!(" — {}", ch.detail) };
        let info = if ch.weight > 0.0 { "" } else { " (informational)" };
        let style = Style::default().fg(color);
        lines.push(Line::styled(
            format!(" {mark} {}{info}{detail}", ch.name),
            if ch.pass { style } else { style.add_modifier(Modifier::BOLD) },
        ));
    }
    if let Some(s) = scored {
        lines.push(Line::default());
        lines.push(Line::styled(" diff: [-expected only-] {+answer only+}", Style::default().fg(t.title)));
        let mut spans = vec![Span::raw(" ")];
        for p in words(&c.expected, &s.answer.output) {
            spans.push(match p {
                Piece::Same(w) => Span::styled(format!("{w} "), Style::default().fg(t.fg)),
                Piece::Expected(w) => {
                    Span::styled(format!("[-{w}-] "), Style::default().fg(t.error).add_modifier(Modifier::CROSSED_OUT))
                }
                Piece::Answer(w) => {
                    Span::styled(format!("{{+{w}+}} "), Style::default().fg(t.ok).add_modifier(Modifier::BOLD))
                }
            });
        }
        lines.push(Line::from(spans));
    }
    frame.render_widget(
        Paragraph::new(lines).block(boxed(" checks ".into())).wrap(Wrap { trim: false }).scroll((v.scroll, 0)),
        rest,
    );
}
