//! The TUI's whole event flow without a terminal: keys → update → runtime → engine → scripted backend → events.

mod support;

use std::time::Duration;

use ratatui::crossterm::event::KeyCode;
use support::keys::*;
use support::{Script, ScriptedBackend};
use tokio::sync::mpsc;
use tunebench::app::{Action, AppState, LaneStatus};
use tunebench::engine::EngineEvent;
use tunebench::runtime::Runtime;

const ANSWER: &str = r#"{"intent": "replacement", "product": "Aero X1 headphones", "urgency": "high"}"#;

struct Rig {
    state: AppState,
    rt: Runtime,
    rx: mpsc::UnboundedReceiver<EngineEvent>,
    _tmp: tempfile::TempDir,
}

fn rig(backend: std::sync::Arc<ScriptedBackend>) -> Rig {
    let (tmp, root) = support::example_copy();
    let (tx, rx) = mpsc::unbounded_channel();
    Rig { state: support::state_for(&root, 80, 24), rt: Runtime::new(support::registry(backend), tx), rx, _tmp: tmp }
}

impl Rig {
    /// Feeds engine events to the app until no lane is running.
    async fn settle(&mut self) {
        while self.state.any_running() {
            let ev = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
                .await
                .expect("engine went quiet")
                .unwrap();
            self.rt.dispatch(&mut self.state, Action::Engine(ev));
        }
    }

    async fn next_event(&mut self) {
        let ev = tokio::time::timeout(Duration::from_secs(10), self.rx.recv()).await.unwrap().unwrap();
        self.rt.dispatch(&mut self.state, Action::Engine(ev));
    }

    fn runs(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.state.ws.runs_path()).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_r_streams_every_lane_concurrently_and_records_runs() {
    let backend = ScriptedBackend::new([
        ("base", Script::text(ANSWER).delay_ms(2).prompt_tokens(1287)),
        ("tuned", Script::text(ANSWER).delay_ms(1).prompt_tokens(231)),
        ("api", Script::text(ANSWER).delay_ms(3).prompt_tokens(1198).fail_after(3, "connection reset by peer")),
    ]);
    let mut r = rig(backend.clone());
    r.rt.dispatch(&mut r.state, ctrl('r'));
    // Every lane reached its backend as Ctrl+R started it, in lane order, before any task ran: local lanes of
    // one run join their device's first step together.
    let order: Vec<String> = backend.seen.lock().unwrap().iter().map(|q| q.lane.id.clone()).collect();
    assert_eq!(order, ["base", "tuned", "api"]);
    r.settle().await;

    let s = &r.state;
    assert_eq!(
        [s.lanes[0].status, s.lanes[1].status, s.lanes[2].status],
        [LaneStatus::Done, LaneStatus::Done, LaneStatus::Failed]
    );
    assert_eq!(s.lanes[0].output, ANSWER);
    assert_eq!(s.lanes[1].output, ANSWER);
    assert_eq!(
        s.lanes[2].output, r#"{"intent": "replacement", "product": "#,
        "the failed lane keeps its partial output"
    );
    assert_eq!(s.lanes[1].usage.as_ref().unwrap().prompt_tokens, Some(231));
    let t = s.lanes[0].timings.unwrap();
    assert!(t.ttft.unwrap() <= t.total);
    // The backend saw each lane's own system prompt and the same input.
    let seen = backend.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|q| q.input == s.inputs[0].text));
    let short = seen.iter().find(|q| q.lane.id == "tuned").unwrap();
    assert_eq!(short.system_prompt, s.ws.prompts["short"].text);
    drop(seen);

    let runs = r.runs();
    assert_eq!(runs.len(), 3);
    let api = runs.iter().find(|v| v["lane"] == "api").unwrap();
    assert_eq!(api["error"], "connection reset by peer");
    assert_eq!(api["output"], r#"{"intent": "replacement", "product": "#);
    assert_eq!(api["input"], s.inputs[0].text.as_str());

    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
    term.draw(|f| tunebench::ui::render(&r.state, f)).unwrap();
    insta::with_settings!({filters => vec![(r"\b\d+(\.\d+)?(ms|s)\b *", "[time]"), (r"│[^│┃]*\bcost [^│┃]+", "│[rate and cost, as wide as they fit]")]}, {
        insta::assert_snapshot!("flow_after_run_80x24", term.backend().to_string());
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn esc_cancels_mid_stream_and_keeps_the_partial_output() {
    let backend = ScriptedBackend::new([
        ("base", Script::text(ANSWER).delay_ms(40)),
        ("tuned", Script::text("short").delay_ms(1)),
        ("api", Script::text(ANSWER).delay_ms(40)),
    ]);
    let mut r = rig(backend);
    r.rt.dispatch(&mut r.state, ctrl('r'));
    while r.state.lanes[0].output.is_empty() {
        r.next_event().await;
    }
    r.rt.dispatch(&mut r.state, key(KeyCode::Esc));
    r.settle().await;
    assert_eq!(r.state.lanes[0].status, LaneStatus::Cancelled);
    assert!(!r.state.lanes[0].output.is_empty() && r.state.lanes[0].output.len() < ANSWER.len());
    assert_eq!(r.runs().iter().filter(|v| v["error"] == "cancelled").count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_lane_shows_what_it_measured_before_the_cancel() {
    let backend = ScriptedBackend::new([
        ("base", Script::text(ANSWER).delay_ms(40)),
        ("tuned", Script::text("short")),
        ("api", Script::text("short")),
    ]);
    let mut r = rig(backend);
    r.rt.dispatch(&mut r.state, ctrl('r'));
    while r.state.lanes[0].output.split_inclusive(' ').count() < 2 {
        r.next_event().await;
    }
    r.rt.dispatch(&mut r.state, key(KeyCode::Esc));
    r.settle().await;
    let lane = &r.state.lanes[0];
    assert_eq!(lane.status, LaneStatus::Cancelled);
    let streamed = lane.output.split_inclusive(' ').count() as u64;
    let usage = lane.usage.as_ref().expect("what streamed is counted");
    assert_eq!((usage.completion_tokens, usage.estimated), (Some(streamed), true));
    let timings = lane.timings.expect("the run was timed until the cancel");
    assert!(timings.ttft.is_some_and(|t| t <= timings.total) && timings.total >= Duration::from_millis(40));
    let [counts, times, rate] = tunebench::ui::footer(&r.state, 0, 200);
    assert!(counts.contains(&format!("out ≈{streamed}")), "{counts}");
    assert!(counts.starts_with("in 100 "), "the backend's prompt count is no estimate: {counts}");
    assert!(!times.contains('—'), "ttft and total were measured: {times}");
    assert!(rate.ends_with("cost —"), "an unfinished run's bill is unknown, not a figure: {rate}");
}

/// A lane that fails before its first token (a missing model, no key) measured nothing worth showing: its
/// footer keeps "—" rather than reading as a zero-token answer that took 0 ms.
#[tokio::test(flavor = "multi_thread")]
async fn a_lane_failing_before_its_first_token_shows_no_figures() {
    let backend = ScriptedBackend::new([
        ("base", Script::text(ANSWER).fail_after(0, "model not found")),
        ("tuned", Script::text("short")),
        ("api", Script::text("short")),
    ]);
    let mut r = rig(backend);
    r.rt.dispatch(&mut r.state, ctrl('r'));
    r.settle().await;
    assert_eq!(r.state.lanes[0].status, LaneStatus::Failed);
    let [counts, times, _] = tunebench::ui::footer(&r.state, 0, 200);
    assert!(counts.ends_with("out —"), "{counts}");
    assert_eq!(times, "ttft — · total —");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_backend_fails_its_lane_not_the_program() {
    let backend = ScriptedBackend::new([
        ("base", Script::text(ANSWER).panic_after(2)),
        ("tuned", Script::text("fine")),
        ("api", Script::text("fine")),
    ]);
    let mut r = rig(backend);
    r.rt.dispatch(&mut r.state, ctrl('r'));
    r.settle().await;
    assert_eq!(r.state.lanes[0].status, LaneStatus::Failed);
    let err = r.state.lanes[0].error.as_ref().unwrap().to_string();
    assert!(err.contains("backend panicked: scripted panic in lane base"), "{err}");
    assert_eq!(r.state.lanes[0].output, r#"{"intent": "replacement", "#);
    assert_eq!(r.state.lanes[1].status, LaneStatus::Done);
}

#[tokio::test(flavor = "multi_thread")]
async fn rerunning_supersedes_the_old_run_without_mixing_outputs() {
    let backend = ScriptedBackend::new([
        ("base", Script::text(ANSWER).delay_ms(5)),
        ("tuned", Script::text(ANSWER).delay_ms(5)),
        ("api", Script::text(ANSWER).delay_ms(5)),
    ]);
    let mut r = rig(backend);
    r.rt.dispatch(&mut r.state, ctrl('r'));
    r.next_event().await;
    r.next_event().await;
    r.rt.dispatch(&mut r.state, key(KeyCode::F(5))); // rerun lane `base` alone
    r.settle().await;
    assert!(r.state.lanes.iter().all(|l| l.output == ANSWER), "no lane shows text of two runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_without_usage_gets_estimated_counts() {
    let backend = ScriptedBackend::new([
        ("base", Script::text("a b c d").no_usage()),
        ("tuned", Script::text("x")),
        ("api", Script::text("y")),
    ]);
    let mut r = rig(backend);
    r.rt.dispatch(&mut r.state, ctrl('r'));
    r.settle().await;
    let u = r.state.lanes[0].usage.clone().unwrap();
    assert_eq!((u.completion_tokens, u.estimated), (Some(4), true));
    assert!(tunebench::ui::footer(&r.state, 0, 200)[0].contains("out ≈4"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lanes_that_cannot_run_say_why_in_their_pane() {
    let (_tmp, root) = support::example_copy();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut state = support::state_for(&root, 80, 24);
    // No key in this environment, whatever the machine running the tests has set.
    let mut rt = Runtime::new(tunebench::engine::Registry::builtin_with_env(std::sync::Arc::new(|_| None)), tx);
    rt.dispatch(&mut state, ctrl('r'));
    while state.any_running() {
        let ev = rx.recv().await.unwrap();
        rt.dispatch(&mut state, Action::Engine(ev));
    }
    // The copy has no models/ beside it (the model is checked first); the API lane has no key.
    let why = ["model not found", "model not found", "no API key: OPENAI_API_KEY is not set"];
    for (i, want) in why.iter().enumerate() {
        let text = tunebench::app::geometry::output_text(&state, i).to_string();
        assert!(text.contains(want), "lane {i}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn save_and_quit_keeps_a_typed_new_input_and_edited_ones() {
    let mut r = rig(ScriptedBackend::new([]));
    let n = r.state.inputs.len();
    r.rt.dispatch(&mut r.state, ch('!')); // edit saved input 1
    r.rt.dispatch(&mut r.state, key(KeyCode::F(7))); // to the new-input slot
    for c in "Where is my parcel?".chars() {
        r.rt.dispatch(&mut r.state, ch(c));
    }
    r.rt.dispatch(&mut r.state, ctrl('q'));
    assert!(matches!(r.state.mode, tunebench::app::Mode::ConfirmQuit));
    r.rt.dispatch(&mut r.state, ch('s'));
    assert!(r.state.quit);
    let inputs = tunebench::workspace::load_inputs(&r.state.ws.inputs_dir()).unwrap();
    assert_eq!(inputs.len(), n + 1);
    assert!(inputs[0].text.starts_with('!'));
    assert_eq!(inputs[n].text, "Where is my parcel?");
    assert!(inputs[n].name.starts_with(&format!("{:02}-where-is-my-parcel", n + 1)));
}

#[tokio::test(flavor = "multi_thread")]
async fn f9_h_lists_recorded_runs_newest_first_and_f4_tokenizes_the_focused_lane() {
    let backend = ScriptedBackend::new([
        ("base", Script::text("a").prompt_tokens(10)),
        ("tuned", Script::text("b").prompt_tokens(5)),
        ("api", Script::text("c").prompt_tokens(9)),
    ]);
    let mut r = rig(backend);
    r.rt.dispatch(&mut r.state, ctrl('r'));
    r.settle().await;
    // F9 opens the eval view; h there opens the run history.
    r.rt.dispatch(&mut r.state, key(KeyCode::F(9)));
    assert!(matches!(r.state.mode, tunebench::app::Mode::Eval));
    r.rt.dispatch(&mut r.state, key(KeyCode::Char('h')));
    let tunebench::app::Mode::History { records, skipped, .. } = &r.state.mode else { panic!("{:?}", r.state.mode) };
    assert_eq!((records.len(), *skipped), (3, 0));
    let screen = {
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
        t.draw(|f| tunebench::ui::render(&r.state, f)).unwrap();
        t.backend().to_string()
    };
    assert!(screen.contains("Run history · 3 run(s)"), "{screen}");
    r.rt.dispatch(&mut r.state, key(KeyCode::Esc));
    assert!(matches!(r.state.mode, tunebench::app::Mode::Normal));

    // F4 on the api lane (o200k_base, no model file needed): the view adds up to the live count.
    r.state.selected = 2;
    r.rt.dispatch(&mut r.state, key(KeyCode::F(4)));
    let tunebench::app::Mode::Tokens(view) = &r.state.mode else { panic!("{:?}", r.state.mode) };
    let (_, segs) = view.result.as_ref().unwrap();
    let api = &r.state.ws.lanes[2];
    let system = r.state.ws.prompt_text(&api.prompt).unwrap();
    let count = tunebench::metrics::Counters::new().count(api, None, system, &r.state.input_text()).unwrap();
    assert_eq!(segs.iter().map(|s| u64::from(s.tokens)).sum::<u64>(), count.tokens);
}
