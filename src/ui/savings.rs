//! The savings line and the F12 panel: every lane against the reference lane, per run, per month, break-even.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph};

use crate::app::{AppState, LaneStatus};
use crate::metrics::prices::{Rate, rate};
use crate::metrics::savings::{Basis, Saving, Side, fmt_cents, fmt_signed_cost, project, prompt_cost_nanos};
use crate::metrics::{fmt_count, run_cost_nanos};

/// The comparison of every lane with the reference, on one basis.
pub struct Projection {
    pub reference: usize,
    pub basis: Basis,
    /// (lane, its side, its saving against the reference); the reference itself included, saving zero.
    pub rows: Vec<(usize, Side, Saving)>,
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
    let rows = counted
        .into_iter()
        .filter_map(|i| {
            let s = side(i)?;
            Some((i, s, project(&base, &s, ws.savings.monthly_runs, ws.savings.finetune_cost_usd)))
        })
        .collect();
    Some(Projection { reference, basis, rows })
}

/// The bottom line: the lane that saves the most prompt tokens against the reference.
pub fn summary(state: &AppState) -> Option<String> {
    let p = projection(state)?;
    let (i, _, s) = p.rows.iter().filter(|(i, _, _)| *i != p.reference).max_by_key(|(_, _, s)| s.tokens_saved)?;
    let mut line = format!(
        " {} vs {}: {sign}{} prompt tok/run ({sign}{:.0}%)",
        state.ws.lanes[*i].id,
        state.ws.lanes[p.reference].id,
        fmt_count(s.tokens_saved.unsigned_abs()),
        s.pct_saved.abs(),
        sign = if s.tokens_saved >= 0 { "−" } else { "+" },
    );
    match (s.per_run_nanos, s.per_month_nanos) {
        (Some(run), Some(month)) => line.push_str(&format!(
            " · saves {}/run · {}/mo at {} runs",
            fmt_signed_cost(run),
            fmt_cents(month),
            fmt_count(state.ws.savings.monthly_runs)
        )),
        _ => line.push_str(" · $ ? (a price is unknown)"),
    }
    if let Some(n) = s.break_even_runs {
        line.push_str(&format!(" · fine-tune paid back after {} runs", fmt_count(n)));
    }
    line.push_str(if p.basis == Basis::Prompts { " · prompts only (F12)" } else { " · last runs (F12)" });
    Some(line)
}

/// The F12 panel: one row per lane.
pub fn panel(state: &AppState, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let ws = &state.ws;
    let mut lines = Vec::new();
    match projection(state) {
        None => lines.push(Line::from(" No prompt count yet for the reference lane.")),
        Some(p) => {
            let fine_tune = ws
                .savings
                .finetune_cost_usd
                .map_or("not set ([savings] finetune_cost_usd)".into(), |c| fmt_cents((c * 1e9).round() as i64));
            lines.push(Line::from(format!(
                " reference: {} · {} runs a month · fine-tuning cost: {fine_tune}",
                ws.lanes[p.reference].id,
                fmt_count(ws.savings.monthly_runs)
            )));
            lines.push(Line::styled(format!(" {}", p.basis.caveat()), Style::default().fg(t.muted)));
            lines.push(Line::from(""));
            lines.push(Line::styled(
                format!(
                    " {:<14} {:>9} {:>16} {:>12} {:>14} {:>16}",
                    "lane", "prompt", "saved/run", "$/run", "saved/month", "paid back after"
                ),
                Style::default().add_modifier(Modifier::BOLD),
            ));
            for (i, side, s) in &p.rows {
                let approx = if side.estimated { "≈" } else { "" };
                let saved = if *i == p.reference {
                    "reference".to_string()
                } else {
                    let sign = match s.tokens_saved {
                        0 => "±",
                        n if n > 0 => "−",
                        _ => "+",
                    };
                    format!("{sign}{} ({sign}{:.0}%)", fmt_count(s.tokens_saved.unsigned_abs()), s.pct_saved.abs())
                };
                let cost = side.cost_nanos.map_or("?".into(), |n| fmt_signed_cost(n as i64));
                let month = s.per_month_nanos.map_or("?".into(), fmt_cents);
                let back = s.break_even_runs.map_or("—".into(), |n| format!("{} runs", fmt_count(n)));
                lines.push(Line::from(format!(
                    " {:<14} {:>9} {saved:>16} {cost:>12} {month:>14} {back:>16}",
                    ws.lanes[*i].id,
                    format!("{approx}{}", fmt_count(side.prompt_tokens)),
                )));
            }
        }
    }
    let r = super::overlay::popup(area, 96, lines.len() as u16 + 2);
    frame.render_widget(Clear, r);
    let block = super::overlay::view_block(state, " Savings (F12) — any key closes ".into());
    frame.render_widget(Paragraph::new(lines).block(block).style(Style::default().fg(t.fg)), r);
}
