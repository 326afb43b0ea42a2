//! `update()` without a terminal: key routing, focus, runs and their events, inputs, overlays, quitting.

mod support;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use support::keys::*;
use tunebench::app::{Action, AppState, Effect, Focus, LaneStatus, Mode, update};
use tunebench::engine::{EngineError, EngineEvent, EventKind, Timings, Usage};

fn state() -> AppState {
    support::state_for(&support::example_root(), 120, 40)
}

fn starts(effects: &[Effect]) -> Vec<(usize, u64)> {
    effects
        .iter()
        .filter_map(|e| if let Effect::Start { lane, run, .. } = e { Some((*lane, *run)) } else { None })
        .collect()
}

fn ev(lane: usize, run: u64, kind: EventKind) -> Action {
    Action::Engine(EngineEvent { lane, run, kind })
}

#[test]
fn ctrl_r_runs_every_lane_with_its_own_prompt() {
    let mut s = state();
    let fx = update(&mut s, ctrl('r'));
    assert_eq!(starts(&fx), [(0, 1), (1, 2), (2, 3)]);
    let Effect::Start { req, .. } = &fx[1] else { panic!() };
    assert_eq!(req.lane.id, "tuned");
    assert_eq!(req.system_prompt, s.ws.prompts["short"].text);
    assert_eq!(req.input, s.inputs[0].text);
    assert!(req.model.is_some(), "local lanes carry their [models] entry");
    assert!(s.lanes.iter().all(|l| l.status == LaneStatus::Waiting));
}

#[test]
fn f5_and_ctrl_enter_run_only_the_focused_lane() {
    let mut s = state();
    update(&mut s, key(KeyCode::Tab));
    update(&mut s, key(KeyCode::Tab));
    assert_eq!((s.focus, s.selected), (Focus::Lanes, 1));
    assert_eq!(starts(&update(&mut s, key(KeyCode::F(5)))), [(1, 1)]);
    let ctrl_enter = Action::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::CONTROL));
    assert_eq!(starts(&update(&mut s, ctrl_enter)), [(1, 2)]);
}

#[test]
fn tab_walks_input_then_each_lane_and_back() {
    let mut s = state();
    let mut seen = Vec::new();
    for _ in 0..4 {
        update(&mut s, key(KeyCode::Tab));
        seen.push((s.focus, s.selected));
    }
    assert_eq!(seen, [(Focus::Lanes, 0), (Focus::Lanes, 1), (Focus::Lanes, 2), (Focus::Input, 2)]);
    update(&mut s, shift_tab());
    assert_eq!((s.focus, s.selected), (Focus::Lanes, 2));
}

#[test]
fn global_keys_never_reach_the_editor() {
    let mut s = state();
    let before = s.input_text();
    for a in [ctrl('r'), key(KeyCode::Tab), shift_tab(), key(KeyCode::PageUp), key(KeyCode::PageDown), ctrl('s')] {
        update(&mut s, a);
    }
    assert_eq!(s.input_text(), before);
    // Typing still edits: '?' in the input is text, in the lanes it is help.
    assert_eq!(s.focus, Focus::Input);
    update(&mut s, ch('?'));
    assert!(s.input_text().starts_with('?'));
    update(&mut s, key(KeyCode::Tab));
    update(&mut s, ch('?'));
    assert!(matches!(s.mode, Mode::Help { .. }));
}

#[test]
fn events_stream_into_the_lane_and_stale_runs_are_dropped() {
    let mut s = state();
    update(&mut s, ctrl('r'));
    update(&mut s, ev(0, 1, EventKind::Started { prompt_tokens: Some(1204) }));
    update(&mut s, ev(0, 1, EventKind::Token { text: "{\"intent\": ".into() }));
    update(&mut s, ev(0, 1, EventKind::Token { text: "\"refund\"}".into() }));
    assert_eq!(s.lanes[0].status, LaneStatus::Streaming);
    // A second Ctrl+R supersedes run 1 with run 4: late events of run 1 change nothing.
    let fx = update(&mut s, ctrl('r'));
    assert!(fx.iter().any(|e| matches!(e, Effect::Cancel { lane: 0 })));
    update(&mut s, ev(0, 1, EventKind::Token { text: "late".into() }));
    assert_eq!(s.lanes[0].output, "");
    let usage = Usage { prompt_tokens: Some(1204), completion_tokens: Some(2), ..Usage::default() };
    let timings = Timings {
        ttft: Some(std::time::Duration::from_millis(300)),
        total: std::time::Duration::from_secs(1),
        busy: None,
        shared_lanes: None,
    };
    update(&mut s, ev(0, 4, EventKind::Token { text: "ok".into() }));
    let fx = update(&mut s, ev(0, 4, EventKind::Done { usage, timings }));
    assert_eq!(s.lanes[0].status, LaneStatus::Done);
    let Some(Effect::Record { report, .. }) = fx.first() else { panic!("{fx:?}") };
    assert_eq!((report.lane.as_str(), report.output.as_str(), report.prompt_tokens), ("base", "ok", Some(1204)));
}

#[test]
fn a_failed_lane_keeps_its_partial_output_and_says_why() {
    let mut s = state();
    update(&mut s, ctrl('r'));
    update(&mut s, ev(2, 3, EventKind::Token { text: "{\"intent\":".into() }));
    let fx = update(&mut s, ev(2, 3, EventKind::Failed { error: EngineError::Backend("stream cut".into()) }));
    assert_eq!(s.lanes[2].status, LaneStatus::Failed);
    assert_eq!(s.lanes[2].output, "{\"intent\":");
    assert!(s.status.as_ref().unwrap().text.contains("lane `api` failed: stream cut"));
    let Some(Effect::Record { report, .. }) = fx.first() else { panic!() };
    assert_eq!(report.error.as_deref(), Some("stream cut"));
    assert_eq!(report.output, "{\"intent\":");
}

#[test]
fn esc_cancels_running_lanes_only() {
    let mut s = state();
    assert!(update(&mut s, key(KeyCode::Esc)).is_empty());
    update(&mut s, ctrl('r'));
    update(&mut s, ev(1, 2, EventKind::Failed { error: EngineError::Backend("x".into()) }));
    let fx = update(&mut s, key(KeyCode::Esc));
    let cancelled: Vec<usize> =
        fx.iter().filter_map(|e| if let Effect::Cancel { lane } = e { Some(*lane) } else { None }).collect();
    assert_eq!(cancelled, [0, 2]);
    update(&mut s, ev(0, 1, EventKind::Failed { error: EngineError::Cancelled }));
    assert_eq!(s.lanes[0].status, LaneStatus::Cancelled);
}

#[test]
fn paste_arrives_whole_with_unix_line_ends() {
    let mut s = state();
    update(&mut s, key(KeyCode::Tab)); // focus the lanes: a paste still goes to the input
    update(&mut s, Action::Paste("Order #4411\r\narrived broken.\rRefund please".into()));
    assert_eq!(s.focus, Focus::Input);
    assert!(s.input_text().starts_with("Order #4411\narrived broken.\nRefund please"), "{}", s.input_text());
}

#[test]
fn saved_inputs_browse_with_alt_arrows_and_f7_f8_keeping_drafts() {
    let mut s = state();
    let n = s.inputs.len();
    update(&mut s, alt(KeyCode::Right));
    assert_eq!(s.input_idx, Some(1));
    assert_eq!(s.input_text(), s.inputs[1].text);
    update(&mut s, ch('X'));
    update(&mut s, key(KeyCode::F(8)));
    assert_eq!(s.input_idx, Some(2));
    update(&mut s, key(KeyCode::F(7)));
    assert_eq!(s.input_text(), format!("X{}", s.inputs[1].text), "the draft is kept while browsing");
    update(&mut s, alt(KeyCode::Left));
    update(&mut s, alt(KeyCode::Left));
    assert_eq!(s.input_idx, None, "before the first saved input is a new, empty one");
    assert_eq!(s.input_text(), "");
    update(&mut s, alt(KeyCode::Left));
    assert_eq!(s.input_idx, Some(n - 1));
    // Ctrl+S writes the edited input back.
    let Some(Effect::Save(req)) = update(&mut s, ctrl('s')).pop() else { panic!() };
    assert_eq!(req.inputs, [(1, format!("X{}", s.inputs[1].text))]);
    assert_eq!(req.new_input, None);
}

#[test]
fn ctrl_n_saves_the_input_as_new() {
    let mut s = state();
    let fx = update(&mut s, ctrl('n'));
    assert!(matches!(&fx[..], [Effect::SaveInput { text }] if *text == s.inputs[0].text));
}

#[test]
fn ctrl_q_asks_only_when_something_is_unsaved() {
    let mut s = state();
    assert!(matches!(&update(&mut s, ctrl('q'))[..], [Effect::Quit]));
    update(&mut s, ch('!'));
    assert!(update(&mut s, ctrl('q')).is_empty());
    assert!(matches!(s.mode, Mode::ConfirmQuit));
    assert!(update(&mut s, key(KeyCode::Esc)).is_empty(), "Esc stays");
    assert!(matches!(s.mode, Mode::Normal));
    update(&mut s, ctrl('q'));
    assert!(matches!(&update(&mut s, ch('s'))[..], [Effect::SaveAndQuit(_)]));
    update(&mut s, ctrl('q'));
    assert!(matches!(&update(&mut s, ch('q'))[..], [Effect::Quit]));
}

#[test]
fn f2_edits_switches_and_forks_prompt_variants() {
    let mut s = state();
    update(&mut s, key(KeyCode::Tab));
    update(&mut s, key(KeyCode::Tab)); // lane `tuned`, variant `short`
    update(&mut s, key(KeyCode::F(2)));
    assert!(matches!(&s.mode, Mode::Prompt(ed) if ed.variant == "short"));
    update(&mut s, ch('!'));
    update(&mut s, key(KeyCode::Esc));
    assert!(s.ws.prompts["short"].text.starts_with('!'));
    assert!(s.ws.is_dirty());
    // Switch the lane to the other variant, then fork it under a new name.
    update(&mut s, key(KeyCode::F(2)));
    update(&mut s, key(KeyCode::F(7)));
    assert_eq!(s.ws.lanes[1].prompt, "long");
    update(&mut s, ch('@'));
    update(&mut s, ctrl('n'));
    for c in "long-v2".chars() {
        update(&mut s, ch(c));
    }
    update(&mut s, key(KeyCode::Enter));
    assert_eq!(s.ws.lanes[1].prompt, "long-v2");
    assert!(s.ws.prompts["long-v2"].text.starts_with('@'));
    assert!(!s.ws.prompts["long"].text.starts_with('@'), "the original variant keeps its text");
}

#[test]
fn scrolling_is_clamped_and_the_wheel_scrolls_the_lane_under_the_mouse() {
    let mut s = state();
    update(&mut s, ctrl('r'));
    let long: String = (0..200).map(|i| format!("line {i}\n")).collect();
    update(&mut s, ev(2, 3, EventKind::Token { text: long }));
    let wheel = |kind, column| Action::Mouse(MouseEvent { kind, column, row: 20, modifiers: KeyModifiers::NONE });
    update(&mut s, wheel(MouseEventKind::ScrollUp, 100));
    assert_eq!(s.lanes[2].scroll_back, 3);
    assert_eq!(s.lanes[0].scroll_back, 0);
    for _ in 0..200 {
        update(&mut s, wheel(MouseEventKind::ScrollUp, 100));
    }
    let top = s.lanes[2].scroll_back;
    assert!(top > 150 && top < 200, "clamped to the text: {top}");
    update(&mut s, wheel(MouseEventKind::Down(MouseButton::Left), 5));
    assert_eq!((s.focus, s.selected), (Focus::Lanes, 0));
    s.selected = 2;
    update(&mut s, key(KeyCode::End));
    assert_eq!(s.lanes[2].scroll_back, 0);
}

#[test]
fn copy_sends_the_focused_lanes_output() {
    let mut s = state();
    update(&mut s, ctrl('r'));
    update(&mut s, ev(0, 1, EventKind::Token { text: "answer".into() }));
    let fx = update(&mut s, alt(KeyCode::Char('c')));
    assert!(matches!(&fx[..], [Effect::Copy(t)] if t == "answer"));
    s.selected = 1;
    assert!(update(&mut s, alt(KeyCode::Char('c'))).is_empty(), "nothing to copy");
}

#[test]
fn events_after_a_run_ended_are_ignored() {
    let mut s = state();
    update(&mut s, ctrl('r'));
    update(&mut s, ev(0, 1, EventKind::Token { text: "part".into() }));
    update(&mut s, ev(0, 1, EventKind::Failed { error: EngineError::Cancelled }));
    update(&mut s, ev(0, 1, EventKind::Token { text: "straggler".into() }));
    assert_eq!((s.lanes[0].status, s.lanes[0].output.as_str()), (LaneStatus::Cancelled, "part"));
}

#[test]
fn a_run_is_recorded_with_the_settings_it_ran_with() {
    let mut s = state();
    update(&mut s, ctrl('r'));
    // Switch lane `base` to the short prompt while its run is still going.
    update(&mut s, key(KeyCode::F(6)));
    update(&mut s, key(KeyCode::Down));
    update(&mut s, key(KeyCode::Down));
    update(&mut s, key(KeyCode::Right));
    update(&mut s, key(KeyCode::Esc));
    assert_eq!(s.ws.lanes[0].prompt, "short");
    let usage = Usage { prompt_tokens: Some(9), completion_tokens: Some(1), ..Usage::default() };
    let fx = update(&mut s, ev(0, 1, EventKind::Done { usage, timings: Timings::default() }));
    let Some(Effect::Record { report, .. }) = fx.first() else { panic!() };
    assert_eq!(report.prompt_variant, "long");
}

#[test]
fn a_scrolled_back_lane_keeps_its_place_while_text_streams_in() {
    let mut s = state();
    update(&mut s, ctrl('r'));
    let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
    update(&mut s, ev(2, 3, EventKind::Token { text }));
    s.selected = 2;
    update(&mut s, key(KeyCode::PageUp));
    let back = s.lanes[2].scroll_back;
    assert!(back > 0);
    update(&mut s, ev(2, 3, EventKind::Token { text: "more\nand more\n".into() }));
    assert_eq!(s.lanes[2].scroll_back, back + 2);
}

#[test]
fn ctrl_s_while_naming_a_variant_leaves_the_open_one_alone() {
    let mut s = state();
    let short = s.ws.prompts["short"].text.clone();
    s.selected = 1;
    update(&mut s, key(KeyCode::F(2)));
    update(&mut s, ch('@'));
    update(&mut s, ctrl('n'));
    let fx = update(&mut s, ctrl('s'));
    assert!(matches!(&fx[..], [Effect::Save(_)]));
    assert_eq!(s.ws.prompts["short"].text, short);
}

#[test]
fn ctrl_q_quits_from_overlays_too() {
    let mut s = state();
    update(&mut s, key(KeyCode::F(1)));
    assert!(matches!(&update(&mut s, ctrl('q'))[..], [Effect::Quit]));
    let mut s = state();
    update(&mut s, key(KeyCode::F(6)));
    update(&mut s, key(KeyCode::Right)); // the backend cycles: unsaved work
    update(&mut s, key(KeyCode::Down));
    update(&mut s, key(KeyCode::Enter));
    assert!(update(&mut s, ctrl('q')).is_empty(), "unsaved (the backend cycled): asks");
    assert!(matches!(s.mode, Mode::ConfirmQuit));
}

#[test]
fn whitespace_in_the_new_input_slot_is_not_unsaved_work() {
    let mut s = state();
    update(&mut s, key(KeyCode::F(7)));
    update(&mut s, ch(' '));
    assert!(matches!(&update(&mut s, ctrl('q'))[..], [Effect::Quit]));
}

#[test]
fn a_long_prefill_shows_its_progress_until_the_first_token() {
    let mut s = state();
    update(&mut s, ctrl('r'));
    update(&mut s, ev(0, 1, EventKind::Started { prompt_tokens: Some(1305) }));
    update(&mut s, ev(0, 1, EventKind::Progress { done: 640, total: 1305 }));
    assert!(tunebench::app::geometry::output_text(&s, 0).to_string().contains("reading the prompt: 640/1,305 tokens…"));
    update(&mut s, ev(0, 1, EventKind::Token { text: "{".into() }));
    assert_eq!(tunebench::app::geometry::output_text(&s, 0).to_string(), "{");
}
