//! F9 in the TUI: the eval run, the scoreboard, the case browser with its diff, promoting an answer into the
//! test split, and the question before paid calls.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::answers::{AnswerBackend, JSON_CASES, answers, answers_for, registry, write_ws};

struct Tui {
    state: tunebench::app::AppState,
    rt: tunebench::runtime::Runtime,
    actions: tokio::sync::mpsc::UnboundedReceiver<tunebench::app::Action>,
    _events: tokio::sync::mpsc::UnboundedReceiver<tunebench::engine::EngineEvent>,
}

impl Tui {
    fn new(root: &Path, b: &Arc<AnswerBackend>) -> Self {
        let (etx, erx) = tokio::sync::mpsc::unbounded_channel();
        let (atx, arx) = tokio::sync::mpsc::unbounded_channel();
        let mut rt = tunebench::runtime::Runtime::new(registry(b), etx);
        rt.actions = Some(atx);
        Self { state: support::state_for(root, 140, 40), rt, actions: arx, _events: erx }
    }

    fn key(&mut self, code: ratatui::crossterm::event::KeyCode) {
        self.rt.dispatch(&mut self.state, support::keys::key(code));
    }

    /// Applies what the runtime reports until `done` holds.
    async fn until(&mut self, done: impl Fn(&tunebench::app::AppState) -> bool) {
        while !done(&self.state) {
            let a = tokio::time::timeout(Duration::from_secs(20), self.actions.recv()).await.unwrap().unwrap();
            self.rt.dispatch(&mut self.state, a);
        }
    }

    fn screen(&self) -> String {
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(140, 40)).unwrap();
        t.draw(|f| tunebench::ui::render(&self.state, f)).unwrap();
        t.backend().to_string()
    }
}

fn lane_cases(s: &tunebench::app::AppState, lane: &str) -> Option<(usize, usize)> {
    let d = s.eval.data.as_ref()?;
    d.board.lanes.iter().find(|l| l.lane == lane).map(|l| (l.cases, l.passed))
}

#[tokio::test]
async fn f9_runs_the_eval_shows_the_scoreboard_and_browses_and_promotes_a_case() {
    use ratatui::crossterm::event::KeyCode;
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "", "http://127.0.0.1:9/v1", 4);
    let b = answers();
    let mut tui = Tui::new(&root, &b);
    tui.key(KeyCode::F(9));
    assert!(matches!(tui.state.mode, tunebench::app::Mode::Eval));
    tui.until(|s| s.eval.data.is_some()).await;
    assert_eq!(lane_cases(&tui.state, "short"), Some((0, 0)), "nothing cached yet");
    tui.key(KeyCode::Char('a'));
    tui.until(|s| s.eval.running.is_none() && lane_cases(s, "short") == Some((4, 3))).await;
    assert_eq!(b.calls(), 8);
    let screen = tui.screen();
    assert!(screen.contains("4 cases (dataset/test.jsonl)") && screen.contains("reference lane long"), "{screen}");
    assert!(screen.contains("short  3/4   75% (30–95%)"), "{screen}");
    assert!(screen.contains("short: json-fields 3/4"), "{screen}");
    assert!(screen.contains("c2_1           ✓    ✗"), "the case list marks each lane: {screen}");
    // The second case, the short lane: expected beside the answer, the failed check and the diff.
    tui.key(KeyCode::Down);
    tui.key(KeyCode::Enter);
    tui.key(KeyCode::Right);
    let screen = tui.screen();
    assert!(screen.contains("case 2/4 c2_1 · lane `short` (2/2) · FAIL"), "{screen}");
    assert!(screen.contains("✗ json-fields — intent: \"refund\" ≠ \"billing\""), "{screen}");
    assert!(screen.contains("[-\"billing\",-]") && screen.contains("{+\"refund\",+}"), "{screen}");
    // p, then y: the short lane's answer becomes the case's expected answer (in test.jsonl, id kept).
    tui.key(KeyCode::Char('p'));
    assert!(tui.screen().contains("Make lane `short`'s answer the expected answer of c2_1?"));
    tui.key(KeyCode::Char('y'));
    tui.until(|s| lane_cases(s, "short") == Some((4, 4))).await;
    let test = std::fs::read_to_string(root.join("dataset/test.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(test.lines().nth(1).unwrap()).unwrap();
    assert_eq!(line["id"], "c2_1");
    assert_eq!(line["messages"][2]["content"], JSON_CASES[1].2.replace("billing", "refund"));
    assert_eq!(line["meta"]["source_lane"], "short");
    assert_eq!(lane_cases(&tui.state, "long"), Some((4, 3)), "re-scored from the cache, nothing run");
    assert_eq!(b.calls(), 8);
    tui.key(KeyCode::Esc);
    tui.key(KeyCode::Esc);
    assert!(matches!(tui.state.mode, tunebench::app::Mode::Normal));
}

#[tokio::test]
async fn f9_asks_before_paid_calls() {
    use ratatui::crossterm::event::KeyCode;
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "", "http://127.0.0.1:9/v1", 2);
    // The long lane's server is elsewhere (paid); the short lane's is this machine (free).
    let toml = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    std::fs::write(
        root.join("workspace.toml"),
        toml.replacen("http://127.0.0.1:9/v1", "https://api.example.com/v1", 1),
    )
    .unwrap();
    let b = answers();
    let mut tui = Tui::new(&root, &b);
    tui.key(KeyCode::F(9));
    tui.until(|s| s.eval.data.is_some()).await;
    tui.key(KeyCode::Char('a'));
    tui.until(|s| matches!(s.eval.pane, tunebench::app::EvalPane::ConfirmPaid(_))).await;
    assert!(tui.screen().contains("2 paid call(s) on lane(s) long:"), "{}", tui.screen());
    tui.key(KeyCode::Char('n'));
    assert_eq!(b.calls(), 0);
    // f: only the free lane's runs.
    tui.key(KeyCode::Char('a'));
    tui.until(|s| matches!(s.eval.pane, tunebench::app::EvalPane::ConfirmPaid(_))).await;
    tui.key(KeyCode::Char('f'));
    tui.until(|s| s.eval.running.is_none() && lane_cases(s, "short") == Some((2, 1))).await;
    assert_eq!((b.calls(), lane_cases(&tui.state, "long")), (2, Some((0, 0))));
    tui.key(KeyCode::Char('a'));
    tui.until(|s| matches!(s.eval.pane, tunebench::app::EvalPane::ConfirmPaid(_))).await;
    tui.key(KeyCode::Char('y'));
    tui.until(|s| s.eval.running.is_none() && lane_cases(s, "long") == Some((2, 2))).await;
    assert_eq!(b.calls(), 4);
}

/// While a run goes on, F9's table fills in answer by answer; `r` runs the selected case, `N r` the N cases from
/// it; run errors are counted as errors, apart from answers that fail their checks.
#[tokio::test]
async fn f9_fills_in_while_running_and_r_runs_the_selected_case_or_n_cases() {
    use ratatui::crossterm::event::KeyCode;
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "", "http://127.0.0.1:9/v1", 6);
    // The short lane's server is down for the "where is my parcel" case: a run error, not a wrong answer.
    let b = support::answers::AnswerBackend::new(|lane, input| {
        if lane == "short" && input.starts_with("where is my parcel") {
            return Err("server said 503".into());
        }
        support::answers::answers_for(input)
    });
    let mut tui = Tui::new(&root, &b);
    tui.key(KeyCode::F(9));
    tui.until(|s| s.eval.data.is_some()).await;
    tui.key(KeyCode::Down);
    tui.key(KeyCode::Char('r'));
    let mut seen_live = false;
    while !(tui.state.eval.running.is_none() && tui.state.eval.last_message.is_some()) {
        let a = tokio::time::timeout(Duration::from_secs(20), tui.actions.recv()).await.unwrap().unwrap();
        tui.rt.dispatch(&mut tui.state, a);
        seen_live |= tui.state.eval.running.is_some() && lane_cases(&tui.state, "long").is_some_and(|c| c.0 > 0);
    }
    assert!(seen_live, "the table showed answers while the run was going");
    assert_eq!(b.calls(), 2, "r ran the selected case only, on both lanes");
    assert_eq!((lane_cases(&tui.state, "long"), lane_cases(&tui.state, "short")), (Some((1, 1)), Some((1, 1))));
    let d = tui.state.eval.data.as_ref().unwrap();
    assert!(d.board.get(1, 0).is_some() && d.board.get(0, 0).is_none(), "case 2 (selected) ran, case 1 did not");

    // 3r: the selected case and the two after it; case 2 is cached, so 4 runs, and c3 fails on the short lane.
    tui.state.eval.last_message = None;
    tui.key(KeyCode::Char('3'));
    assert!(tui.screen().contains("r runs 3 case(s) from the selected one"), "{}", tui.screen());
    tui.key(KeyCode::Char('r'));
    tui.until(|s| s.eval.running.is_none() && s.eval.last_message.is_some()).await;
    assert_eq!(b.calls(), 6);
    let msg = tui.state.eval.last_message.clone().unwrap();
    assert_eq!(msg, "eval ran 4 runs (1 run error(s))");
    let short = tui.state.eval.data.as_ref().unwrap().board.lanes.iter().find(|l| l.lane == "short").unwrap().clone();
    assert_eq!((short.cases, short.passed, short.errors), (3, 2, 1), "the run error stays on the board");
    assert!(tui.screen().contains("2/3 (1 run errors)"), "{}", tui.screen());
}

/// F9 with judge assertions: the judge grades after the lanes' runs; its reason is each check's detail in the
/// case view, and the scoreboard gains the judge's cost and the pairwise column.
#[tokio::test]
async fn f9_grades_with_the_judge_lane_and_shows_its_reasons() {
    use ratatui::crossterm::event::KeyCode;
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "", "http://127.0.0.1:9/v1", 4);
    let toml = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    let judge = "[[lanes]]\nid = \"judge\"\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"\"\nmodel = \"m-long\"\nprompt = \"short\"\n";
    std::fs::write(root.join("workspace.toml"), format!("{toml}{judge}")).unwrap();
    std::fs::write(
        root.join("evals.toml"),
        "[judge]\nlane = \"judge\"\n[[assert]]\ntype = \"llm-rubric\"\nname = \"has a summary\"\nvalue = \"The answer has a summary.\"\n[[assert]]\ntype = \"pairwise\"\nname = \"vs long\"\nvalue = \"Which is better?\"\nweight = 0\n",
    )
    .unwrap();
    let b = AnswerBackend::new(|lane, input| {
        if lane != "judge" {
            return answers_for(input);
        }
        Ok(if input.starts_with("Rubric:") {
            "{\"pass\": true, \"score\": 0.8, \"reason\": \"a summary is there\"}".into()
        } else {
            "{\"winner\": \"tie\", \"reason\": \"the same routing\"}".into()
        })
    });
    let mut tui = Tui::new(&root, &b);
    tui.key(KeyCode::F(9));
    tui.until(|s| s.eval.data.is_some()).await;
    tui.key(KeyCode::Char('a'));
    tui.until(|s| s.eval.running.is_none() && lane_cases(s, "short") == Some((4, 4))).await;
    let screen = tui.screen();
    assert!(!screen.contains("│ judge "), "the judge is not a contestant: {screen}");
    assert!(screen.contains("pairwise W/T/L") && screen.contains("0/4/0 = 50% (22–78%)"), "{screen}");
    assert!(
        screen.contains("long: has a summary 4/4\n") || !screen.contains("long: has a summary 4/4 · vs long"),
        "the reference is not compared with itself: {screen}"
    );
    tui.key(KeyCode::Enter);
    tui.key(KeyCode::Right);
    let screen = tui.screen();
    assert!(screen.contains("✓ has a summary — 0.80: a summary is there"), "{screen}");
    assert!(screen.contains("vs long (informational) — tie 0.50: as A: the same routing"), "{screen}");
}
