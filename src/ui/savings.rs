//! The savings line and the F12 panel: every lane against the reference lane, per run, per month, break-even.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Wrap};

use crate::app::{AppState, LaneStatus};
use crate::metrics::format::{Field, fit, fit_table};
use crate::metrics::prices::{Rate, rate};
use crate::metrics::savings::{Basis, Saving, Side, project, prompt_cost_nanos};
use crate::metrics::{fmt_cost_nanos, fmt_count, fmt_count_compact, fmt_usd_nanos, run_cost_nanos};

/// One lane against the reference.
pub struct Row {
    pub lane: usize,
    pub side: Side,
    pub saving: Saving,
    /// The lane sends the reference's system prompt text: a token difference is only another tokenizer's count.
    pub same_prompt: bool,
}

/// The comparison of every lane with the reference, on one basis.
pub struct Projection {
    pub reference: usize,
    pub basis: Basis,
    /// Every lane with a count, the reference itself included (saving zero).
    pub rows: Vec<Row>,
}

/// Builds the projection from what the lanes show now; None until the reference has a prompt count.
pub fn projection(state: &AppState) -> Option<Projection> {
    let ws = &state.ws;
    let input = state.input_text();
    let reference = ws.savings.reference.as_ref().and_then(|id| ws.lanes.iter().position(|l| &l.id == id)).unwrap_or(0);
    let current_run = |i: usize| {
        let l = &state.lanes[i];
        (l.status == LaneStatus::Done && state.run_is_current(i, &input))
            .then_some(())
            .and(l.usage.as_ref().zip(l.timings.as_ref()))
    };
    let counted: Vec<usize> = (0..ws.lanes.len()).filter(|&i| state.shown_prompt_tokens(i, &input).is_some()).collect();
    let basis = if counted.iter().all(|&i| current_run(i).is_some()) { Basis::Runs } else { Basis::Prompts };
    let side = |i: usize| -> Option<Side> {
        let (tokens, estimated) = state.shown_prompt_tokens(i, &input)?;
        let r = rate(ws, &ws.lanes[i]);
        let cost_nanos = match basis {
            Basis::Runs => current_run(i).and_then(|(u, t)| run_cost_nanos(r, u, t)),
            Basis::Prompts => match r {
                Some(Rate::Tokens(p)) => Some(prompt_cost_nanos(tokens, p.input_per_mtok)),
                _ => None,
            },
        };
        Some(Side { prompt_tokens: tokens, estimated, cost_nanos })
    };
    let base = side(reference)?;
    let system = |i: usize| ws.prompt_text(&ws.lanes[i].prompt);
    let rows = counted
        .into_iter()
        .filter_map(|i| {
            let s = side(i)?;
            let saving = project(&base, &s, ws.savings.monthly_runs, ws.savings.finetune_cost_usd);
            Some(Row { lane: i, side: s, saving, same_prompt: i != reference && system(i) == system(reference) })
        })
        .collect();
    Some(Projection { reference, basis, rows })
}

/// `−1,252 (−91%)`: the lane's prompt tokens minus the reference's, and that as a share of the reference's.
fn token_delta(s: &Saving, compact: bool) -> String {
    let sign = match s.tokens_saved {
        0 => "±",
        n if n > 0 => "−",
        _ => "+",
    };
    let n = s.tokens_saved.unsigned_abs();
    let n = if compact { fmt_count_compact(n) } else { fmt_count(n) };
    format!("{sign}{n} ({sign}{:.0}%)", s.pct_saved.abs())
}

/// A difference of money with its sign always written: `−$2.50`, `+$15.99`, `±$0`.
fn signed_usd(nanos: i64) -> String {
    match nanos {
        0 => "±$0".into(),
        n if n > 0 => format!("+{}", fmt_usd_nanos(n)),
        n => fmt_usd_nanos(n),
    }
}

/// The bottom line: the lane that saves the most prompt tokens against the reference (a lane sending the
/// reference's own prompt saves none: its count only differs by tokenizer). Fields that do not fit the width
/// are dropped whole, least important first.
pub fn summary(state: &AppState) -> Option<String> {
    let p = projection(state)?;
    let best =
        p.rows.iter().filter(|r| r.lane != p.reference && !r.same_prompt).max_by_key(|r| r.saving.tokens_saved)?;
    let s = &best.saving;
    let ids = format!("{} vs {}", state.ws.lanes[best.lane].id, state.ws.lanes[p.reference].id);
    let mut fields = vec![
        Field::new(format!("{ids}: {} prompt tok/run", token_delta(s, false)), 0)
            .compact(format!("{ids}: {} tok", token_delta(s, true))),
    ];
    match (s.per_run_nanos, s.per_month_nanos) {
        (Some(run), Some(month)) => {
            let (verb, more) = if run >= 0 { ("saves", "") } else { ("costs", " more") };
            fields.push(Field::new(format!("{verb} {}/run{more}", fmt_usd_nanos(run.abs())), 1));
            fields.push(
                Field::new(
                    format!(
                        "{}/mo{more} at {} runs",
                        fmt_usd_nanos(month.abs()),
                        fmt_count(state.ws.savings.monthly_runs)
                    ),
                    2,
                )
                .compact(format!("{}/mo{more}", fmt_usd_nanos(month.abs()))),
            );
        }
        _ => fields.push(Field::new("$ ? (a price is unknown)", 1)),
    }
    if let Some(n) = s.break_even_runs {
        fields.push(
            Field::new(format!("fine-tune paid back after {} runs", fmt_count(n)), 3)
                .compact(format!("paid back after {} runs", fmt_count_compact(n))),
        );
    }
    fields.push(Field::new(if p.basis == Basis::Prompts { "prompts only (F12)" } else { "last runs (F12)" }, 4));
    Some(format!(" {}", fit(&fields, " · ", usize::from(state.size.0).saturating_sub(1))))
}

/// The F12 panel: one row per lane, differences taken as lane minus reference (− is fewer tokens, less money).
pub fn panel(state: &AppState, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let ws = &state.ws;
    let r = super::overlay::popup(area, 96, area.height);
    // The table is inside the frame and one space in.
    let width = usize::from(r.width).saturating_sub(3);
    let mut lines = Vec::new();
    match projection(state) {
        None => lines.push(Line::from(" No prompt count yet for the reference lane.")),
        Some(p) => {
            let fine_tune = ws
                .savings
                .finetune_cost_usd
                .map_or("not set ([savings] finetune_cost_usd)".into(), |c| fmt_usd_nanos((c * 1e9).round() as i64));
            let head = [
                Field::new(format!("reference: {}", ws.lanes[p.reference].id), 0),
                Field::new(format!("{} runs a month", fmt_count(ws.savings.monthly_runs)), 1)
                    .compact(format!("{} runs/mo", fmt_count_compact(ws.savings.monthly_runs))),
                Field::new(format!("fine-tuning cost: {fine_tune}"), 2).compact(format!("fine-tune {fine_tune}")),
            ];
            lines.push(Line::from(format!(" {}", fit(&head, " · ", width))));
            lines.push(Line::styled(format!(" {}", p.basis.caveat()), Style::default().fg(t.muted)));
            lines.push(Line::styled(
                " vs ref: this lane minus the reference; − is fewer tokens or less money",
                Style::default().fg(t.muted),
            ));
            lines.push(Line::from(""));
            let cells = |compact: bool| -> Vec<Vec<String>> {
                let count = |n: u64| if compact { fmt_count_compact(n) } else { fmt_count(n) };
                p.rows
                    .iter()
                    .map(|row| {
                        let (side, s) = (&row.side, &row.saving);
                        let approx = if side.estimated { "≈" } else { "" };
                        let reference = row.lane == p.reference;
                        let tokens = match (reference, row.same_prompt) {
                            (true, _) => "reference".to_string(),
                            (false, true) => "same prompt *".to_string(),
                            (false, false) => token_delta(s, compact),
                        };
                        let month = match s.per_month_nanos {
                            _ if reference => "—".to_string(),
                            Some(n) => signed_usd(-n),
                            None => "?".into(),
                        };
                        vec![
                            ws.lanes[row.lane].id.clone(),
                            format!("{approx}{}", count(side.prompt_tokens)),
                            tokens,
                            side.cost_nanos.map_or("?".into(), fmt_cost_nanos),
                            month,
                            s.break_even_runs.map_or("—".into(), |n| format!("{} runs", count(n))),
                        ]
                    })
                    .collect()
            };
            let head = ["lane", "prompt tok", "tok vs ref", "$/run", "$/month vs ref", "paid back after"];
            let mut table = fit_table(&head, &cells(false), &cells(true), &[0, 4, 1, 5, 2, 3], width).into_iter();
            let bold = Style::default().add_modifier(Modifier::BOLD);
            lines.push(Line::styled(format!(" {}", table.next().unwrap_or_default()), bold));
            lines.extend(table.map(|l| Line::from(format!(" {l}"))));
            for row in p.rows.iter().filter(|r| r.same_prompt && r.saving.tokens_saved != 0) {
                lines.push(Line::styled(
                    format!(
                        " * {} sends {}'s prompt text: its {} tokens are only another tokenizer's count, not a saving",
                        ws.lanes[row.lane].id,
                        ws.lanes[p.reference].id,
                        token_delta(&row.saving, false)
                    ),
                    Style::default().fg(t.muted),
                ));
            }
        }
    }
    // Long notes wrap inside the frame; the frame is as tall as the wrapped text.
    let para = Paragraph::new(lines).wrap(Wrap { trim: false }).style(Style::default().fg(t.fg));
    let height = para.line_count(r.width.saturating_sub(2)) + 2;
    let r = super::overlay::popup(area, 96, u16::try_from(height).unwrap_or(u16::MAX));
    frame.render_widget(Clear, r);
    let block = super::overlay::view_block(state, " Savings (F12) — any key closes ".into());
    frame.render_widget(para.block(block), r);
}
