//! F10 for a provider's fine-tuning job: the title, the keys, and what the job is doing — the plan and its
//! cost before anything is sent, the rules' findings, the job's id and status, its last messages, how it
//! ended. The chart (the losses the provider reports) is drawn as for a local run.

use ratatui::style::Style;
use ratatui::text::Line;

use crate::app::{AppState, Target, TrainStatus};

/// The target line: where Enter trains, and `t` when there is another place.
pub fn target_line(state: &AppState) -> Option<Line<'static>> {
    let all = crate::app::train_targets(&state.ws);
    if all.len() < 2 {
        return None;
    }
    let name = |t: &Target| match t {
        Target::Local => "this machine".to_string(),
        Target::Hosted(p) => (*p).to_string(),
    };
    let others: Vec<String> = all.iter().filter(|t| **t != state.train.target).map(name).collect();
    Some(Line::styled(
        format!(" trains on: {} (t: {})", name(&state.train.target), others.join(", ")),
        Style::default().fg(state.theme.muted),
    ))
}

pub fn title(provider: &str, state: &AppState) -> String {
    let lane = crate::finetune::provider(provider)
        .and_then(|p| crate::finetune::provider_lane(&state.ws, &p, None).ok())
        .map_or(String::new(), |l| format!(" (lane `{}`'s endpoint and key)", l.id));
    format!(" fine-tune on {provider}{lane} ")
}

pub fn hints(state: &AppState) -> String {
    let tr = &state.train;
    let h = tr.hosted.as_ref();
    let t = if crate::app::train_targets(&state.ws).len() > 1 { " · t target" } else { "" };
    match tr.status {
        TrainStatus::Idle | TrainStatus::Failed => format!(" Enter check and price{t} · Esc close "),
        TrainStatus::Preparing => " checking the dataset · Esc close ".into(),
        TrainStatus::Confirm => " Enter upload and start (paid) · Esc do not upload ".into(),
        TrainStatus::Running | TrainStatus::Stopping => match h.and_then(|h| h.job.as_ref()) {
            Some(_) if h.is_some_and(|h| h.cancel_armed) => " x again: cancel the job · Esc close (it goes on) ".into(),
            Some(_) => " x cancel the job · Esc close (the job goes on; F10 follows it again) ".into(),
            None => " uploading · Esc close ".into(),
        },
        TrainStatus::Done => match h.and_then(|h| h.lane.as_ref()) {
            Some(lane) => format!(" Enter run lane `{lane}`{t} · Esc close "),
            None => format!("{t} · Esc close ").trim_start_matches(" ·").to_string(),
        },
    }
}

/// What the job is doing, newest lines last; `room` rows at most for its log.
pub fn info_lines(state: &AppState, room: usize) -> Vec<Line<'static>> {
    let t = &state.theme;
    let tr = &state.train;
    let (fg, muted) = (Style::default().fg(t.fg), Style::default().fg(t.muted));
    let mut lines = Vec::new();
    let Some(h) = &tr.hosted else { return lines };
    match tr.status {
        TrainStatus::Idle => lines.push(Line::styled(
            format!(
                " Enter checks dataset/train.jsonl and valid.jsonl against {}'s rules and prices the job; nothing \
                 is uploaded until you confirm. The job runs on the provider: closing F10 or tunebench does not stop \
                 it, and F10 follows it again when opened. On success a lane asks the fine-tuned model.",
                h.provider
            ),
            fg,
        )),
        TrainStatus::Preparing => lines.push(Line::styled(" checking the dataset and pricing the job…", muted)),
        TrainStatus::Failed => {
            let e = tr.error.clone().unwrap_or_default();
            lines.push(Line::styled(format!(" {e}"), Style::default().fg(t.error)));
        }
        _ => {}
    }
    if let Some(plan) = &h.plan {
        for n in &plan.notes {
            lines.push(Line::styled(format!(" {n}"), muted));
        }
        if !plan.headline.is_empty() {
            lines.push(Line::styled(format!(" {}", plan.headline), fg));
        }
        for p in plan.problems.iter().take(room.max(1)) {
            lines.push(Line::styled(format!("  {}", crate::visible::escape_line(p)), Style::default().fg(t.warn)));
        }
        if plan.problems.len() > room.max(1) {
            lines.push(Line::styled(format!("  … {} more", plan.problems.len() - room.max(1)), muted));
        }
    }
    if let Some(job) = &h.job {
        let status = h.status.clone().unwrap_or_default();
        let loss = tr.train_loss.last().map_or(String::new(), |(s, l)| format!(" · step {s} train loss {l:.4}"));
        let valid = tr.valid_loss.last().map_or(String::new(), |(_, v)| format!(" · valid loss {v:.4}"));
        lines.push(Line::styled(format!(" job {job}: {status}{loss}{valid}"), fg));
    }
    let skip = h.log.len().saturating_sub(room);
    for l in &h.log[skip..] {
        lines.push(Line::styled(format!(" {l}"), muted));
    }
    lines
}
