//! A lane pane: title, model line, streamed output with scrolling, metric footer; mirrors `app::LaneState`.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph, Widget};

use crate::app::geometry::{lane_parts, output_paragraph, output_text, subtitle};
use crate::app::{AppState, Focus, LaneStatus};
use crate::metrics::format::{Field, fit};
use crate::metrics::{RunFigures, fmt_cost_nanos, fmt_count, fmt_count_compact, fmt_duration};

pub struct LaneView<'a> {
    pub state: &'a AppState,
    pub idx: usize,
}

impl Widget for LaneView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (state, idx) = (self.state, self.idx);
        let t = &state.theme;
        let spec = &state.ws.lanes[idx];
        let lane = &state.lanes[idx];
        let selected = idx == state.selected;
        let border = match (selected, state.focus) {
            (true, Focus::Lanes) => Style::default().fg(t.border_focus),
            (true, Focus::Input) => Style::default().fg(t.accent),
            _ => Style::default().fg(t.border),
        };
        let status_colour = match lane.status {
            LaneStatus::Idle => t.muted,
            LaneStatus::Waiting | LaneStatus::Streaming => t.accent,
            LaneStatus::Done => t.ok,
            LaneStatus::Failed => t.error,
            LaneStatus::Cancelled => t.warn,
        };
        let title_style =
            Style::default().fg(t.title).add_modifier(if selected { Modifier::BOLD } else { Modifier::empty() });
        // The status word when both titles fit on the border, else its one-glyph form.
        let left = spec.id.chars().count() + spec.prompt.chars().count() + 5;
        let word = lane.status.label();
        let status = if left + word.len() + 4 <= usize::from(area.width) {
            format!(" {word} ")
        } else {
            format!(" {} ", lane.status.glyph())
        };
        let block = Block::default()
            .borders(Borders::ALL)
            .border_type(if selected && state.focus == Focus::Lanes { BorderType::Thick } else { BorderType::Rounded })
            .border_style(border)
            .title(Line::from(vec![Span::styled(format!(" {} · {} ", spec.id, spec.prompt), title_style)]))
            .title(Line::styled(status, Style::default().fg(status_colour)).alignment(Alignment::Right));
        block.render(area, buf);

        let sub = subtitle(state, idx);
        let parts = lane_parts(area, sub.chars().count());
        Paragraph::new(Line::styled(sub, Style::default().fg(t.muted)))
            .wrap(ratatui::widgets::Wrap { trim: true })
            .render(parts.subtitle, buf);

        let para = output_paragraph(output_text(state, idx));
        let total = para.line_count(parts.output.width.max(1));
        let max = total.saturating_sub(usize::from(parts.output.height));
        let top = max.saturating_sub(usize::from(lane.scroll_back));
        para.scroll((u16::try_from(top).unwrap_or(u16::MAX), 0)).render(parts.output, buf);
        if lane.scroll_back > 0 && parts.output.height > 0 {
            let mark = format!("↑{}", lane.scroll_back.min(u16::try_from(max).unwrap_or(u16::MAX)));
            let x = parts.output.right().saturating_sub(mark.chars().count() as u16);
            buf.set_string(x, parts.output.y, mark, Style::default().fg(t.accent));
        }

        let footer: Vec<Line> = footer(state, idx, usize::from(parts.footer.width))
            .into_iter()
            .map(|s| Line::styled(s, Style::default().fg(t.fg)))
            .collect();
        Paragraph::new(footer).render(parts.footer, buf);
    }
}

/// Three metric lines in `width` columns; "—" wherever the backend has not reported the figure. A line too
/// long for the pane takes compact forms, then loses its less important figure: numbers are never cut.
pub fn footer(state: &AppState, idx: usize, width: usize) -> [String; 3] {
    let lane = &state.lanes[idx];
    let spec = &state.ws.lanes[idx];
    let dash = || "—".to_string();
    let approx = if lane.usage.as_ref().is_some_and(|u| u.estimated) { "≈" } else { "" };
    let shown = state.pane_prompt_tokens(idx);
    let count = |n: Option<(u64, &str)>, compact: bool| {
        n.map_or_else(dash, |(n, a)| format!("{a}{}", if compact { fmt_count_compact(n) } else { fmt_count(n) }))
    };
    let prompt = shown.map(|(n, est)| (n, if est { "≈" } else { "" }));
    let completion = lane.usage.as_ref().and_then(|u| u.completion_tokens).map(|n| (n, approx));
    let figures = match (&lane.usage, &lane.timings) {
        (Some(u), Some(tm)) => Some(RunFigures::new(u, tm, crate::metrics::prices::rate(&state.ws, spec))),
        _ => None,
    };
    let ttft = lane.timings.and_then(|tm| tm.ttft).map_or_else(dash, fmt_duration);
    let total = lane.timings.map_or_else(dash, |tm| fmt_duration(tm.total));
    let rate = figures.and_then(|f| f.tokens_per_s).map_or_else(dash, |r| format!("{r:.1}"));
    // A run whose price is unknown costs "?", never a silent 0; an unfinished run's bill is not known at all.
    let cost = figures
        .filter(|_| lane.status == LaneStatus::Done)
        .map_or_else(dash, |f| f.cost_nanos.map_or_else(|| "?".into(), |n| format!("{approx}{}", fmt_cost_nanos(n))));
    // A lane that shared its device: "shared ×N" beside its wall-clock figures, and its own compute time.
    let shared_lanes = lane.timings.and_then(|tm| tm.shared_lanes).filter(|&n| n > 1);
    let shared = shared_lanes.map(|n| format!("×{n}"));
    let own = shared_lanes.and(lane.timings.and_then(|tm| tm.busy)).map(fmt_duration);
    let line = |fields: &[Field]| {
        let present: Vec<Field> = fields.iter().filter(|f| !f.full.is_empty()).cloned().collect();
        fit(&present, " · ", width)
    };
    [
        line(&[
            Field::new(format!("in {}", count(prompt, false)), 0).compact(format!("in {}", count(prompt, true))),
            Field::new(format!("out {}", count(completion, false)), 1)
                .compact(format!("out {}", count(completion, true))),
        ]),
        line(&[
            Field::new(format!("ttft {ttft}"), 1),
            Field::new(format!("total {total}"), 0),
            // Kept longest: without it a shared lane's figures would read as its own.
            shared.clone().map_or_else(|| Field::new("", 3), |s| Field::new(format!("shared {s}"), 0).compact(s)),
        ]),
        line(&[
            Field::new(format!("{rate} tok/s"), 1),
            own.clone().map_or_else(|| Field::new("", 3), |o| Field::new(format!("own {o}"), 2)),
            Field::new(format!("cost {cost}"), 0),
        ]),
    ]
}
