//! The read-only views and the figures lanes show: keys that open them, when a run's figures still apply.

mod support;

use tunebench::app::update;

#[test]
fn savings_open_on_f12_and_on_dollar_with_the_lanes_focused() {
    use ratatui::crossterm::event::KeyCode;
    let mut s = support::state_for(&support::example_root(), 80, 24);
    update(&mut s, support::keys::key(KeyCode::F(12)));
    assert!(matches!(s.mode, tunebench::app::Mode::Savings));
    update(&mut s, support::keys::key(KeyCode::Esc));
    update(&mut s, support::keys::ch('$'));
    assert!(matches!(s.mode, tunebench::app::Mode::Normal), "in the input, `$` is text");
    update(&mut s, support::keys::key(KeyCode::Tab));
    update(&mut s, support::keys::ch('$'));
    assert!(matches!(s.mode, tunebench::app::Mode::Savings));
}

#[test]
fn a_run_stops_being_current_when_its_input_prompt_or_settings_change() {
    let ws = tunebench::workspace::load(&support::example_root()).unwrap();
    let spec = ws.lanes[0].clone();
    let mut lane = tunebench::app::LaneState::default();
    lane.begin(7, "input", &spec, "system");
    lane.prompt_tokens = Some(100);
    lane.live = Some(Ok(tunebench::metrics::Count { tokens: 120, estimated: false, how: String::new() }));
    assert!(lane.run_is_current("input", &spec, "system"));
    assert_eq!(lane.shown_prompt_tokens(true), Some((100, false)), "the run's own figure while current");
    assert!(!lane.run_is_current("input!", &spec, "system"));
    assert!(!lane.run_is_current("input", &spec, "edited system prompt"));
    let mut other = spec.clone();
    other.sampling.max_tokens += 1;
    assert!(!lane.run_is_current("input", &other, "system"));
    assert_eq!(lane.shown_prompt_tokens(false), Some((120, false)), "otherwise the live count");
    lane.live = Some(Err("model not found".into()));
    assert_eq!(lane.shown_prompt_tokens(false), None, "never an old run's figure as if it were current");
}

#[test]
fn an_exact_count_for_text_since_edited_is_dropped() {
    use tunebench::app::Action;
    let mut s = support::state_for(&support::example_root(), 80, 24);
    let system = s.ws.prompt_text("long").unwrap().to_string();
    let input = s.input_text();
    update(&mut s, Action::ExactCount { lane: 2, input: "older text".into(), system: system.clone(), result: Ok(9) });
    assert!(s.lanes[2].live.is_none(), "a late answer about old text is not shown");
    update(&mut s, Action::ExactCount { lane: 2, input, system, result: Ok(1234) });
    let c = s.lanes[2].live.clone().unwrap().unwrap();
    assert_eq!((c.tokens, c.estimated), (1234, false));
}

/// F4 at 80×24: End goes to the last line (it used to close the view), PgDn stops there, Home goes back.
#[test]
fn f4_end_scrolls_to_the_last_line_and_pgdn_stops_there() {
    use ratatui::crossterm::event::KeyCode;
    use tunebench::app::{Action, Mode, TokenView};
    use tunebench::metrics::{Count, count::Segment};
    let mut s = support::state_for(&support::example_root(), 80, 24);
    // 60 short lines: the frame holds 20 of them, so the last scroll is 61 − 20 (a blank first line included).
    let segs = (0..60).map(|i| Segment { text: format!("line {i}\n"), framing: false, tokens: 2 }).collect();
    let count = Count { tokens: 120, estimated: false, how: "test".into() };
    update(&mut s, Action::TokensReady(Box::new(TokenView { lane: 0, scroll: 0, result: Ok((count, segs)) })));
    let scroll = |s: &tunebench::app::AppState| match &s.mode {
        Mode::Tokens(v) => v.scroll,
        m => panic!("F4 closed: {m:?}"),
    };
    update(&mut s, support::keys::key(KeyCode::End));
    assert_eq!(scroll(&s), 41);
    for _ in 0..3 {
        update(&mut s, support::keys::key(KeyCode::PageDown));
    }
    assert_eq!(scroll(&s), 41, "PgDn stops at the end");
    update(&mut s, support::keys::key(KeyCode::Up));
    assert_eq!(scroll(&s), 40);
    update(&mut s, support::keys::key(KeyCode::Home));
    assert_eq!(scroll(&s), 0);
    update(&mut s, support::keys::key(KeyCode::Char('x')));
    assert!(matches!(s.mode, Mode::Normal), "any other key closes");
}
