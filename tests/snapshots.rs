//! Fixed-size screens rendered with ratatui's TestBackend and compared with insta snapshots.

mod support;

use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use support::keys::*;
use tunebench::app::{Action, AppState, update};
use tunebench::engine::{EngineError, EngineEvent, EventKind, Timings, Usage};

fn ev(s: &mut AppState, lane: usize, kind: EventKind) {
    let run = s.lanes[lane].run.unwrap();
    update(s, Action::Engine(EngineEvent { lane, run, kind }));
}

/// Three lanes mid-run: base finished, tuned streaming, api streaming after a slow start.
fn mid_stream(w: u16, h: u16) -> AppState {
    let mut s = support::state_for(&support::example_root(), w, h);
    update(&mut s, ctrl('r'));
    ev(&mut s, 0, EventKind::Started { prompt_tokens: Some(1287) });
    ev(&mut s, 0, EventKind::Token { text: r#"{"intent": "replacement", "product": "Aero X1 headphones", "urgency": "high", "sentiment": "negative", "summary": "Right ear cup silent on arrival; customer wants a replacement."}"#.into() });
    let usage = Usage {
        prompt_tokens: Some(1287),
        completion_tokens: Some(52),
        cached_prompt_tokens: None,
        reasoning_tokens: None,
        cache_write_tokens: None,
        estimated: false,
    };
    let timings = Timings {
        ttft: Some(Duration::from_millis(3120)),
        total: Duration::from_millis(4140),
        busy: None,
        shared_lanes: None,
    };
    ev(&mut s, 0, EventKind::Done { usage, timings });
    ev(&mut s, 1, EventKind::Started { prompt_tokens: Some(231) });
    ev(&mut s, 1, EventKind::Token { text: r#"{"intent": "replacement", "product": "Aero X1 head"#.into() });
    ev(&mut s, 2, EventKind::Started { prompt_tokens: Some(1198) });
    ev(&mut s, 2, EventKind::Token { text: r#"{"intent": "replacement","#.into() });
    s
}

fn screen(s: &AppState) -> String {
    let mut t = Terminal::new(TestBackend::new(s.size.0, s.size.1)).unwrap();
    t.draw(|f| tunebench::ui::render(s, f)).unwrap();
    t.backend().to_string()
}

/// Timings vary between machines in live runs; these screens are deterministic, but filter like the flow tests do.
macro_rules! snap {
    ($name:expr, $screen:expr) => {
        insta::with_settings!({filters => vec![(r"\b\d+(\.\d+)?(ms|s)\b", "[time]")]}, {
            insta::assert_snapshot!($name, $screen);
        })
    };
}

#[test]
fn three_lanes_mid_stream_80x24() {
    snap!("mid_stream_80x24", screen(&mid_stream(80, 24)));
}

#[test]
fn three_lanes_mid_stream_160x48() {
    snap!("mid_stream_160x48", screen(&mid_stream(160, 48)));
}

#[test]
fn failed_lane_keeps_partial_output_80x24() {
    let mut s = mid_stream(80, 24);
    ev(&mut s, 2, EventKind::Failed { error: EngineError::Backend("429 rate limited: retries exhausted".into()) });
    update(&mut s, ratatui_key_tab());
    snap!("failed_lane_80x24", screen(&s));
}

#[test]
fn help_overlay_fits_80x24() {
    let mut s = support::state_for(&support::example_root(), 80, 24);
    update(&mut s, key(ratatui::crossterm::event::KeyCode::F(1)));
    snap!("help_80x24", screen(&s));
}

#[test]
fn settings_overlay_80x24() {
    let mut s = support::state_for(&support::example_root(), 80, 24);
    update(&mut s, key(ratatui::crossterm::event::KeyCode::F(6)));
    snap!("settings_80x24", screen(&s));
}

/// An OpenAI lane's F6: its endpoint and key variable, none of the local-only fields.
#[test]
fn settings_overlay_of_an_api_lane_80x24() {
    let mut s = support::state_for(&support::example_root(), 80, 24);
    s.selected = 2;
    update(&mut s, key(ratatui::crossterm::event::KeyCode::F(6)));
    snap!("settings_api_80x24", screen(&s));
}

fn ratatui_key_tab() -> Action {
    key(ratatui::crossterm::event::KeyCode::Tab)
}

/// The F3 panel on live counts: every lane against the reference (base), with the example's prices.
#[test]
fn savings_panel_100x30() {
    use tunebench::metrics::Count;
    let mut s = support::state_for(&support::example_root(), 100, 30);
    let count = |tokens, estimated: bool| Ok(Count { tokens, estimated, how: String::new() });
    update(&mut s, Action::Counted(vec![count(1375, false), count(123, false), count(1249, false)]));
    update(&mut s, key(ratatui::crossterm::event::KeyCode::F(12)));
    let screen = screen(&s);
    // base at $0.02/Mtok: 1,375 tokens = $0.0000275; tuned 123 = $0.00000246; api (gpt-4o-mini $0.15) 1,249 = $0.000187.
    assert!(screen.contains("27.5 µ$") && screen.contains("2.46 µ$") && screen.contains("187 µ$"), "{screen}");
    // tuned is cheaper (− in both difference columns); api costs more (+), and sends base's own prompt.
    assert!(screen.contains("−1,252 (−91%)") && screen.contains("−$2.50"), "{screen}");
    assert!(screen.contains("same prompt *") && screen.contains("+$15.99"), "{screen}");
    assert!(screen.contains("−126 (−9%) tokens are only another tokenizer's count"), "{screen}");
    snap!("savings_panel_100x30", screen);
    update(&mut s, key(ratatui::crossterm::event::KeyCode::Esc));
    assert!(matches!(s.mode, tunebench::app::Mode::Normal), "any key closes the panel");
}

/// At 80×24 every figure of F12 is whole: compact forms and fewer columns, never a number cut at the frame.
#[test]
fn savings_panel_80x24() {
    use tunebench::metrics::Count;
    let mut s = support::state_for(&support::example_root(), 80, 24);
    let count = |tokens, estimated: bool| Ok(Count { tokens, estimated, how: String::new() });
    // tuned saves 1,375 − 196 tokens at $0.02/Mtok = $0.00002358 a run: $25 is paid back after 1,060,221 runs.
    update(&mut s, Action::Counted(vec![count(1375, false), count(196, false), count(1249, false)]));
    update(&mut s, key(ratatui::crossterm::event::KeyCode::F(12)));
    let screen = screen(&s);
    assert!(screen.contains("1,060,221 runs") || screen.contains("1.06 M runs"), "{screen}");
    snap!("savings_panel_80x24", screen);
}

/// A lane footer at 80×24 with long timings and a cost under a cent: figures shorten or go, never cut.
#[test]
fn lane_footer_keeps_whole_figures_80x24() {
    let mut s = support::state_for(&support::example_root(), 80, 24);
    update(&mut s, ctrl('r'));
    ev(&mut s, 0, EventKind::Started { prompt_tokens: Some(1287) });
    ev(&mut s, 0, EventKind::Token { text: "{}".into() });
    let usage = Usage { prompt_tokens: Some(1287), completion_tokens: Some(52), ..Usage::default() };
    let timings = Timings {
        ttft: Some(Duration::from_millis(12_500)),
        total: Duration::from_millis(36_850),
        busy: None,
        shared_lanes: None,
    };
    ev(&mut s, 0, EventKind::Done { usage, timings });
    let width = 24;
    let lines = tunebench::ui::footer(&s, 0, width);
    assert!(lines.iter().all(|l| l.chars().count() <= width), "{lines:?}");
    assert_eq!(lines[1], "total 36.85s …", "the total keeps its unit; ttft goes first");
    assert!(lines[2].contains(" µ$"), "{lines:?}");
    assert_eq!(tunebench::ui::footer(&s, 0, 80)[1], "ttft 12.50s · total 36.85s");
    snap!("lane_footer_80x24", screen(&s));
}

/// A lane that shared its device with two others says so beside its wall-clock figures and shows its own
/// compute time; at a pane's width the mark outlasts ttft; a lane that ran alone shows neither.
#[test]
fn a_shared_lane_footer_says_shared_and_its_own_compute() {
    let mut s = support::state_for(&support::example_root(), 80, 24);
    update(&mut s, ctrl('r'));
    ev(&mut s, 1, EventKind::Started { prompt_tokens: Some(140) });
    ev(&mut s, 1, EventKind::Token { text: "{}".into() });
    let usage = Usage { prompt_tokens: Some(140), completion_tokens: Some(63), ..Usage::default() };
    let timings = Timings {
        ttft: Some(Duration::from_millis(769)),
        total: Duration::from_millis(3790),
        busy: Some(Duration::from_millis(910)),
        shared_lanes: Some(3),
    };
    ev(&mut s, 1, EventKind::Done { usage: usage.clone(), timings });
    let wide = tunebench::ui::footer(&s, 1, 200);
    assert_eq!(wide[1], "ttft 769ms · total 3.79s · shared ×3");
    assert!(wide[2].contains("own 910ms"), "{wide:?}");
    let narrow = tunebench::ui::footer(&s, 1, 24);
    assert!(narrow.iter().all(|l| l.chars().count() <= 24), "{narrow:?}");
    assert!(narrow[1].contains("×3"), "the mark is kept when figures go: {narrow:?}");
    let alone = Timings { shared_lanes: Some(1), ..timings };
    ev(&mut s, 0, EventKind::Started { prompt_tokens: Some(140) });
    ev(&mut s, 0, EventKind::Token { text: "{}".into() });
    ev(&mut s, 0, EventKind::Done { usage, timings: alone });
    let one = tunebench::ui::footer(&s, 0, 200);
    assert_eq!(one[1], "ttft 769ms · total 3.79s");
    assert!(!one[2].contains("own"), "{one:?}");
}

/// F10 at 80×24: no "step 0/0" before a run; after `s`, "stopped at step N" (not "done"), the ETA as m:ss
/// while it ran, and the adapter Enter will run named.
#[test]
fn train_view_before_a_run_and_after_a_stop_80x24() {
    use ratatui::crossterm::event::KeyCode;
    use tunebench::app::TrainMsg;
    use tunebench::lora::train::{Event, Summary};
    let mut s = support::state_for(&support::example_root(), 80, 24);
    update(&mut s, key(KeyCode::F(10)));
    let before = screen(&s);
    assert!(!before.contains("step 0/0") && before.contains("no training run yet"), "{before}");
    snap!("train_before_80x24", before);

    update(&mut s, key(KeyCode::Enter));
    let prepared = TrainMsg::Prepared {
        lane: "tuned".into(),
        adapter_dir: "adapters/ticket-lora".into(),
        train: 86,
        valid: 20,
        skipped: vec![],
    };
    update(&mut s, Action::Training(prepared));
    update(
        &mut s,
        Action::Training(TrainMsg::Event(Event::Started { steps: 200, examples: 86, valid: 20, resumed_at: 0 })),
    );
    for step in 1..=40 {
        let loss = 2.0 - step as f64 * 0.03;
        let e = Event::Step { step, steps: 200, loss, lr: 2e-4, grad_norm: 1.0, tokens_per_s: 950.0, eta_s: 754.4 };
        update(&mut s, Action::Training(TrainMsg::Event(e)));
    }
    let running = screen(&s);
    assert!(running.contains("ETA 12:34") && running.contains("step 40/200"), "{running}");
    update(&mut s, ch('s'));
    let summary = Summary {
        steps: 40,
        train_loss: Some(0.8),
        valid_before: None,
        valid_best: None,
        stopped_early: false,
        cancelled: true,
        tokens: 61_234,
        seconds: 64.6,
        peak_rss_bytes: None,
    };
    update(&mut s, Action::Training(TrainMsg::Finished(Ok(summary))));
    let after = screen(&s);
    assert!(after.contains("stopped at step 40") && !after.contains("done"), "{after}");
    assert!(after.contains("Enter run lane `tuned` with adapters/ticket-lora"), "{after}");
    snap!("train_stopped_80x24", after);
}

/// F5 from the input runs the lane last focused: the hint names it before, the status line after.
#[test]
fn f5_from_the_input_names_the_lane_it_runs_80x24() {
    let mut s = support::state_for(&support::example_root(), 80, 24);
    update(&mut s, ratatui_key_tab());
    update(&mut s, ratatui_key_tab());
    update(&mut s, key(ratatui::crossterm::event::KeyCode::Esc)); // back to the input, lane `tuned` selected
    assert!(screen(&s).contains("F5 run tuned"), "{}", screen(&s));
    update(&mut s, key(ratatui::crossterm::event::KeyCode::F(5)));
    assert!(s.lanes[1].status.is_running() && !s.lanes[0].status.is_running());
    snap!("f5_from_input_80x24", screen(&s));
}

/// ↑ in wrapped text goes one drawn row up (tui-textarea alone would stay on the logical line's only row), and
/// Ctrl+Z undoes: a `|` typed after ↑ shows where the cursor went.
#[test]
fn up_moves_by_wrapped_row_and_ctrl_z_undoes_80x24() {
    use ratatui::crossterm::event::KeyCode;
    let mut s = support::state_for(&support::example_root(), 80, 24);
    update(&mut s, alt(KeyCode::Left)); // the new, empty input slot
    let long = "My Aero X1 headphones arrived this morning and the right ear cup makes no sound at all. \
                I tried them with my phone and my laptop and charged them fully, nothing.";
    update(&mut s, Action::Paste(long.into()));
    update(&mut s, key(KeyCode::Up));
    let (row, col) = s.editor.cursor();
    assert_eq!(row, 0);
    let len = long.chars().count();
    assert!(col < len && col + 78 >= len, "one drawn row (78 wide) up: {col} of {len}");
    update(&mut s, ch('|'));
    snap!("wrapped_up_80x24", screen(&s));
    update(&mut s, ctrl('z'));
    assert_eq!(s.input_text(), long, "Ctrl+Z takes the `|` back");
    update(&mut s, ctrl('y'));
    assert!(s.input_text().contains('|'), "Ctrl+Y puts it back");
}

/// A reasoning model's `<think>` block is shown dimmed and italic above its answer, never as the answer.
#[test]
fn thinking_is_shown_dimmed_above_the_answer() {
    for (w, h, name) in [(80, 24, "thinking_80x24"), (160, 48, "thinking_160x48")] {
        let mut s = support::state_for(&support::example_root(), w, h);
        update(&mut s, ctrl('r'));
        ev(&mut s, 1, EventKind::Started { prompt_tokens: Some(231) });
        let answer = "<think>\nThe ear cup is dead: a replacement.\n</think>\n\n{\"intent\": \"replacement\"}";
        ev(&mut s, 1, EventKind::Token { text: answer.into() });
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| tunebench::ui::render(&s, f)).unwrap();
        let buf = t.backend().buffer().clone();
        let rows: Vec<String> =
            (0..h).map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>()).collect();
        let (y, row) = rows.iter().enumerate().find(|(_, r)| r.contains("The ear cup")).unwrap();
        let col = row[..row.find("The ear cup").unwrap()].chars().count();
        let cell = &buf[(col as u16, y as u16)];
        assert_eq!(cell.fg, s.theme.muted, "thinking is dimmed");
        assert!(cell.modifier.contains(ratatui::style::Modifier::ITALIC));
        let (ay, arow) = rows.iter().enumerate().find(|(_, r)| r.contains("{\"intent\"")).unwrap();
        assert!(ay > y, "the answer comes after the thinking");
        let acol = arow[..arow.find("{\"intent\"").unwrap()].chars().count();
        assert_eq!(buf[(acol as u16, ay as u16)].fg, s.theme.fg);
        snap!(name, screen(&s));
    }
}
