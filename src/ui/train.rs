//! F10: the training run — what is being trained, progress, the loss per step and validation loss per
//! evaluation as a chart, and the keys for what can be done next; mirrors `app::TrainState`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Clear, Dataset, Gauge, GraphType, Paragraph, Wrap};

use super::overlay::view_block;
use crate::app::geometry::wide_popup;
use crate::app::{AppState, Target, TrainStatus};
use crate::lora::train::Event;
use crate::metrics::fmt_count;
use crate::metrics::format::{Field, fit, fmt_clock};

pub fn panel(state: &AppState, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let tr = &state.train;
    let rect = wide_popup(area);
    frame.render_widget(Clear, rect);
    // After a run, Enter runs the lane with the adapter in the folder just written: both are named, and the
    // other keys give way when the frame is narrow.
    let run_hint = match (&tr.lane, &tr.adapter_dir) {
        (Some(lane), Some(dir)) => {
            let keys = [
                Field::new(format!("Enter run lane `{lane}` with {dir}"), 0),
                Field::new("n train again", 2),
                Field::new("Esc close", 1),
            ];
            format!(" {} ", fit(&keys, " · ", usize::from(rect.width).saturating_sub(4)))
        }
        _ => " n train again · Esc close ".to_string(),
    };
    let (hints, title) = match tr.target {
        Target::Hosted(p) => (super::train_hosted::hints(state), super::train_hosted::title(p, state)),
        Target::Local => {
            let hints = match tr.status {
                TrainStatus::Idle | TrainStatus::Failed if crate::app::train_targets(&state.ws).len() > 1 => {
                    " Enter train · t target · Esc close ".to_string()
                }
                TrainStatus::Idle | TrainStatus::Failed => " Enter train · Esc close ".to_string(),
                TrainStatus::Preparing | TrainStatus::Running | TrainStatus::Confirm => {
                    " s stop (keeps a checkpoint) · Esc close (training goes on) ".to_string()
                }
                TrainStatus::Stopping => " stopping after this step · Esc close ".to_string(),
                TrainStatus::Done => run_hint,
            };
            let title = match (&tr.adapter_dir, &tr.lane) {
                (Some(dir), Some(lane)) => format!(" train {dir} for lane `{lane}` "),
                _ => " train the adapter ".to_string(),
            };
            (hints, title)
        }
    };
    let block = view_block(state, title).title_bottom(Line::styled(hints, Style::default().fg(t.muted)));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    // The facts take the rows they need (the chart gets the rest), so the last line, how the run ended, shows.
    let mut lines: Vec<Line<'static>> = super::train_hosted::target_line(state).into_iter().collect();
    match tr.target {
        Target::Hosted(_) => lines.extend(super::train_hosted::info_lines(state, usize::from(inner.height / 4).max(1))),
        Target::Local => lines.extend(info_lines(state, usize::from(inner.width))),
    }
    let info_text = Paragraph::new(lines).wrap(Wrap { trim: true });
    let info_h = u16::try_from(info_text.line_count(inner.width)).unwrap_or(u16::MAX).max(1);
    let [info, gauge, chart] =
        Layout::vertical([Constraint::Length(info_h), Constraint::Length(1), Constraint::Min(3)]).areas(inner);
    frame.render_widget(info_text, info);
    let step = match &tr.last {
        Some(Event::Step { step, .. }) => *step,
        _ => tr.train_loss.last().map_or(0, |p| p.0 as usize),
    };
    // No gauge before the run knows its length: "step 0/0" would say nothing true.
    if tr.steps == 0 {
        let what = match (tr.status, tr.target) {
            (TrainStatus::Running, Target::Hosted(_)) => " the step count comes with the provider's first metrics",
            (_, Target::Hosted(_)) => " no job yet",
            (TrainStatus::Preparing | TrainStatus::Running, _) => " preparing: the step count comes with the data",
            _ => " no training run yet",
        };
        frame.render_widget(Paragraph::new(Line::styled(what, Style::default().fg(t.muted))), gauge);
    } else {
        let ratio = (step as f64 / tr.steps as f64).min(1.0);
        frame.render_widget(
            Gauge::default()
                .gauge_style(Style::default().fg(t.accent))
                .ratio(ratio)
                .label(format!("step {step}/{}", tr.steps)),
            gauge,
        );
    }
    // A sweep's curve (when `tunebench sweep` has made one) takes the lower half of the chart area.
    let chart = if tr.sweep.points.is_empty() {
        chart
    } else {
        let [top, bottom] = Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(chart);
        sweep_chart(state, frame, bottom);
        top
    };
    if tr.train_loss.is_empty() && tr.valid_loss.is_empty() {
        return;
    }
    let max_x = (tr.steps.max(1)) as f64;
    let ys = tr.train_loss.iter().chain(&tr.valid_loss).map(|p| p.1).filter(|y| y.is_finite());
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    let (lo, hi) = if lo < hi { (lo.min(0.0), hi * 1.05) } else { (0.0, hi.max(1.0)) };
    let sets = vec![
        Dataset::default()
            .name("train loss")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(t.accent))
            .data(&tr.train_loss),
        Dataset::default()
            .name("valid loss")
            .marker(Marker::Dot)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(t.warn).add_modifier(Modifier::BOLD))
            .data(&tr.valid_loss),
    ];
    let label = |v: f64| Span::styled(format!("{v:.2}"), Style::default().fg(t.muted));
    let chart_widget =
        Chart::new(sets)
            .x_axis(
                Axis::default().title(Span::styled("step", Style::default().fg(t.muted))).bounds([0.0, max_x]).labels(
                    [Span::raw("0"), Span::raw(format!("{}", tr.steps / 2)), Span::raw(format!("{}", tr.steps))],
                ),
            )
            .y_axis(Axis::default().bounds([lo, hi]).labels([label(lo), label((lo + hi) / 2.0), label(hi)]));
    frame.render_widget(chart_widget, chart);
}

/// Test pass rate (%) against train examples, one line per setting of the other knobs, the reference lane as
/// a flat line; the title gives each point's pass count and interval, as the chart cannot.
fn sweep_chart(state: &AppState, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let curve = &state.train.sweep;
    let mut groups: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for p in &curve.points {
        let tr = &p.trained;
        let name = format!("r{} e{} lr {:e}", tr.rank, tr.epochs, tr.lr);
        let y = if p.cases == 0 { 0.0 } else { p.passed as f64 / p.cases as f64 * 100.0 };
        let xy = (tr.train_examples as f64, y);
        match groups.iter_mut().find(|g| g.0 == name) {
            Some(g) => g.1.push(xy),
            None => groups.push((name, vec![xy])),
        }
    }
    let max_x = curve.points.iter().map(|p| p.trained.train_examples).max().unwrap_or(1).max(1) as f64;
    let reference: Vec<(f64, f64)> =
        curve.reference.iter().flat_map(|(_, r)| [(0.0, r * 100.0), (max_x, r * 100.0)]).collect();
    let colors = [t.accent, t.ok, t.warn, t.fg];
    let mut sets: Vec<Dataset<'_>> = groups
        .iter()
        .enumerate()
        .map(|(i, (name, pts))| {
            Dataset::default()
                .name(name.clone())
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(colors[i % colors.len()]))
                .data(pts)
        })
        .collect();
    if let Some((lane, _)) = &curve.reference {
        sets.push(
            Dataset::default()
                .name(format!("`{lane}` (reference)"))
                .marker(Marker::Dot)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(t.muted))
                .data(&reference),
        );
    }
    let detail: Vec<String> = curve
        .points
        .iter()
        .map(|p| {
            format!(
                "{}: {}/{} ({:.0}–{:.0}%)",
                p.trained.train_examples,
                p.passed,
                p.cases,
                p.ci95.0 * 100.0,
                p.ci95.1 * 100.0
            )
        })
        .collect();
    let reference = curve
        .reference
        .as_ref()
        .map_or(String::new(), |(lane, r)| format!(" · `{lane}` {:.0}% (flat line)", r * 100.0));
    let muted = Style::default().fg(t.muted);
    let chart = Chart::new(sets)
        .block(ratatui::widgets::Block::default().title(Span::styled(
            format!(" sweep · test pass % by train examples · {}{reference} ", detail.join(" · ")),
            muted,
        )))
        .x_axis(Axis::default().title(Span::styled("examples", muted)).bounds([0.0, max_x]).labels([
            Span::raw("0"),
            Span::raw(format!("{}", max_x as usize / 2)),
            Span::raw(format!("{}", max_x as usize)),
        ]))
        .y_axis(Axis::default().bounds([0.0, 100.0]).labels([Span::raw("0"), Span::raw("50"), Span::raw("100")]));
    frame.render_widget(chart, area);
}

fn info_lines(state: &AppState, width: usize) -> Vec<Line<'static>> {
    let t = &state.theme;
    let tr = &state.train;
    let muted = Style::default().fg(t.muted);
    let mut lines = Vec::new();
    match tr.status {
        TrainStatus::Idle => {
            let opts = crate::cli::train::default_options();
            let c = &opts.config;
            let text = match crate::lora::train::job::planned(&state.ws, &opts) {
                Ok((lane, dir)) => {
                    let dir = dir.strip_prefix(&state.ws.root).unwrap_or(&dir).display().to_string();
                    format!(
                        " Enter trains lane `{lane}`'s adapter into {dir} (a trained adapter is never replaced: a new \
                         version goes beside it) on dataset/train.jsonl, valid.jsonl for early stopping, with \
                         `tunebench train`'s defaults: rank {}, alpha {}, lr {:.0e}, {} epochs, batch {}, {}. The CLI \
                         takes every setting.",
                        c.rank, c.alpha, c.lr, c.epochs, c.batch, opts.targets
                    )
                }
                Err(e) => format!(" nothing to train: {e}"),
            };
            lines.push(Line::styled(text, Style::default().fg(t.fg)));
        }
        TrainStatus::Preparing => lines.push(Line::styled(" loading the model and rendering the examples…", muted)),
        TrainStatus::Failed => {
            let e = tr.error.clone().unwrap_or_default();
            lines.push(Line::styled(format!(" failed: {e}"), Style::default().fg(t.error)));
        }
        _ => {}
    }
    if let Some(Event::Step { loss, lr, tokens_per_s, eta_s, .. }) = &tr.last {
        // One line: what does not fit goes whole, least important first, rather than wrapping a label from its value.
        let fields = [
            Field::new(format!("{} train / {} valid examples", tr.examples.0, tr.examples.1), 3),
            Field::new(format!("loss {loss:.4}"), 0),
            Field::new(format!("lr {lr:.2e}"), 4),
            Field::new(format!("{tokens_per_s:.0} tok/s"), 2),
        ];
        let mut fields = fields.to_vec();
        if tr.running() {
            fields.push(Field::new(format!("ETA {}", fmt_clock(*eta_s)), 1));
        }
        lines.push(Line::styled(
            format!(" {}", fit(&fields, " · ", width.saturating_sub(1))),
            Style::default().fg(t.fg),
        ));
    }
    if let Some(&(step, v)) = tr.valid_loss.last() {
        let first = tr.valid_loss.first().map_or(v, |p| p.1);
        lines.push(Line::styled(format!(" valid loss {first:.4} at start → {v:.4} at step {step}"), muted));
    }
    if tr.last_run {
        lines.push(Line::styled(" the adapter's last training run, read from its checkpoint", muted));
    }
    if let Some(s) = &tr.summary {
        let how = if s.cancelled {
            format!("stopped at step {}", s.steps)
        } else if s.stopped_early {
            format!("stopped early at step {} (no gain)", s.steps)
        } else {
            format!("done: {} steps", s.steps)
        };
        let rss = s.peak_rss_bytes.map_or(String::new(), |b| format!(" · peak RSS {:.0} MiB", b as f64 / 1048576.0));
        let colour = if s.cancelled { t.warn } else { t.ok };
        lines.push(Line::styled(
            format!(" {how}, {} tokens in {}{rss}", fmt_count(s.tokens), fmt_clock(s.seconds)),
            Style::default().fg(colour),
        ));
    }
    if !tr.skipped.is_empty() {
        lines.push(Line::styled(
            format!(" {} example(s) left out, e.g. {}", tr.skipped.len(), tr.skipped[0]),
            Style::default().fg(t.warn),
        ));
    }
    lines
}
