//! The read-only views over the lanes (savings F12, tokens F4, history F9): their results and scrolling.

use ratatui::crossterm::event::KeyCode;

use super::{Action, AppState, Effect, Mode};
use crate::metrics::Count;

/// Applies what the runtime brought back for a view, or a live count.
pub fn on_result(state: &mut AppState, action: Action) -> Vec<Effect> {
    match action {
        Action::HistoryLoaded(Ok((mut records, skipped))) => {
            records.reverse();
            state.mode = Mode::History { scroll: 0, records, skipped };
        }
        Action::HistoryLoaded(Err(e)) | Action::ExactCount { result: Err(e), .. } => state.error(e),
        Action::ExactCount { lane, input, system, result: Ok(n) } => {
            let now = state.ws.lanes.get(lane).and_then(|l| state.ws.prompt_text(&l.prompt)).unwrap_or_default();
            if input != state.input_text() || system != now {
                return Vec::new();
            }
            let exact = Count { tokens: n, estimated: false, how: "count_tokens endpoint".into() };
            if let Some(l) = state.lanes.get_mut(lane) {
                l.live = Some(Ok(exact.clone()));
            }
            if let Mode::Tokens(view) = &mut state.mode
                && view.lane == lane
                && let Ok((count, _)) = &mut view.result
            {
                *count = exact;
            }
        }
        Action::TokensReady(view) => state.mode = Mode::Tokens(view),
        Action::Counted(counts) => {
            for (lane, c) in state.lanes.iter_mut().zip(counts) {
                lane.live = Some(c);
            }
        }
        _ => {}
    }
    Vec::new()
}

/// A key in a view: arrows and pages scroll it; any other key closes it (returns `Mode::Normal`).
pub fn scroll(mode: Mode, key: KeyCode) -> Mode {
    let step: i16 = match key {
        KeyCode::Up | KeyCode::Char('k') => -1,
        KeyCode::Down | KeyCode::Char('j') => 1,
        KeyCode::PageUp => -10,
        KeyCode::PageDown => 10,
        _ => return Mode::Normal,
    };
    match mode {
        Mode::History { scroll, records, skipped } => {
            Mode::History { scroll: scroll.saturating_add_signed(step), records, skipped }
        }
        Mode::Tokens(mut view) => {
            view.scroll = view.scroll.saturating_add_signed(step);
            Mode::Tokens(view)
        }
        // The savings panel fits one screen: any key closes it.
        _ => Mode::Normal,
    }
}
