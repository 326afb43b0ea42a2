//! Promotion and the dataset view through the whole TUI flow: keys → update → runtime → files, with the
//! scripted backend answering as the lanes.

mod support;

use std::time::Duration;

use ratatui::crossterm::event::KeyCode;
use support::keys::*;
use support::{Script, ScriptedBackend};
use tokio::sync::mpsc;
use tunebench::app::{Action, AppState, Mode, Pane};
use tunebench::engine::EngineEvent;
use tunebench::runtime::Runtime;

const WRONG: &str = r#"{"intent": "refund", "product": "unknown"}"#;
const RIGHT: &str = r#"{"intent": "replacement", "product": "Aero X1 headphones", "urgency": "medium", "sentiment": "neutral", "summary": "The customer wants a replacement for silent Aero X1 headphones."}"#;

struct Rig {
    state: AppState,
    rt: Runtime,
    rx: mpsc::UnboundedReceiver<EngineEvent>,
    _tmp: tempfile::TempDir,
}

impl Rig {
    async fn new() -> Self {
        Self::answering(WRONG).await
    }

    /// Every lane run once; lane `api` answers `api`.
    async fn answering(api: &str) -> Self {
        let backend = ScriptedBackend::new([
            ("base", Script::text(WRONG).prompt_tokens(1287)),
            ("tuned", Script::text(WRONG).prompt_tokens(231)),
            ("api", Script::text(api).prompt_tokens(1198)),
        ]);
        let (tmp, root) = support::example_copy();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut r = Rig {
            state: support::state_for(&root, 120, 40),
            rt: Runtime::new(support::registry(backend), tx),
            rx,
            _tmp: tmp,
        };
        r.send(ctrl('r'));
        while r.state.any_running() {
            let ev = tokio::time::timeout(Duration::from_secs(10), r.rx.recv()).await.unwrap().unwrap();
            r.rt.dispatch(&mut r.state, Action::Engine(ev));
        }
        r
    }

    fn send(&mut self, a: Action) {
        self.rt.dispatch(&mut self.state, a);
    }

    fn typed(&mut self, text: &str) {
        for c in text.chars() {
            self.send(ch(c));
        }
    }

    fn lines(&self, file: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.state.ws.dataset_dir().join(file)).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn status(&self) -> String {
        self.state.status.as_ref().map(|s| s.text.clone()).unwrap_or_default()
    }

    fn screen(&self) -> String {
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
        t.draw(|f| tunebench::ui::render(&self.state, f)).unwrap();
        t.backend().to_string()
    }

    /// Focus lane `api` (the third) and open the promote dialog.
    fn promote_api(&mut self) {
        for _ in 0..3 {
            self.send(key(KeyCode::Tab));
        }
        self.send(ctrl('p'));
        assert!(matches!(self.state.mode, Mode::Promote(_)), "Ctrl+P opens the dialog: {}", self.status());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_lanes_answer_is_edited_rated_and_stored_with_the_short_prompt() {
    let mut r = Rig::new().await;
    let before = r.lines("train.jsonl").len();
    r.promote_api();
    assert!(r.screen().contains("promote lane `api`'s answer"));
    r.send(ch('c')); // write the answer anew
    r.typed(RIGHT);
    r.send(key(KeyCode::Esc));
    r.send(ch('4'));
    r.send(ch('t'));
    r.typed("hardware, polite");
    r.send(key(KeyCode::Enter));
    assert!(r.screen().contains("★★★★☆"), "{}", r.screen());
    r.send(key(KeyCode::Enter));
    assert!(matches!(r.state.mode, Mode::Normal));
    assert!(r.status().starts_with("promoted as ex_"), "{}", r.status());

    let train = r.lines("train.jsonl");
    assert_eq!(train.len(), before + 1, "one line appended");
    let x = train.last().unwrap();
    let m = x["messages"].as_array().unwrap();
    assert_eq!(m[0]["role"], "system");
    assert_eq!(m[0]["content"], r.state.ws.prompt_text("short").unwrap(), "stored against the short prompt");
    assert_eq!(m[1]["content"], r.state.lanes[2].input);
    assert_eq!(m[2]["content"], RIGHT);
    let meta = &x["meta"];
    assert_eq!(meta["source_lane"], "api");
    assert_eq!(meta["prompt_variant"], "long");
    assert_eq!(meta["rating"], 4);
    assert_eq!(meta["edited"], true);
    assert_eq!(meta["tags"], serde_json::json!(["hardware", "polite"]));
    assert!(meta["time_unix_ms"].as_u64().unwrap() > 1_700_000_000_000);
    let id = x["id"].as_str().unwrap().to_string();

    // The same input again is refused before the dialog opens (no editing or rating to lose), and nothing is written.
    r.send(ctrl('p'));
    assert!(matches!(r.state.mode, Mode::Normal), "no dialog for an input already in the dataset");
    assert!(r.status().contains("already example") && r.status().contains(&id), "{}", r.status());
    assert!(r.status().contains("train.jsonl:"), "it names the line: {}", r.status());
    assert_eq!(r.lines("train.jsonl").len(), before + 1);

    // F3 shows it, found by search, with the short prompt named.
    r.send(key(KeyCode::F(3)));
    r.send(ch('/'));
    r.typed(&id);
    r.send(key(KeyCode::Enter));
    let Mode::Dataset(view) = &r.state.mode else { panic!("F3 opens the dataset view") };
    assert_eq!(view.rows().len(), 1);
    let screen = r.screen();
    assert!(screen.contains(&id) && screen.contains("stored with the `short` prompt"), "{screen}");
    assert!(screen.contains("check: ✓ no problems"), "{screen}");
    r.send(key(KeyCode::Enter));
    assert!(r.screen().contains("from lane `api`"), "opened: {}", r.screen());
}

/// A reasoning model's `<think>` block is not the answer a training example teaches: Ctrl+P leaves it out,
/// and `k` keeps it when the user asks.
#[tokio::test(flavor = "multi_thread")]
async fn a_think_block_stays_out_of_the_promoted_answer_unless_asked() {
    let output = format!("<think>\nThe ear cup is silent: a replacement.\n</think>\n\n{RIGHT}");
    let mut r = Rig::answering(&output).await;
    r.promote_api();
    let screen = r.screen();
    assert!(
        screen.contains("<think> block is left out of the answer") && !screen.contains("ear cup is silent"),
        "{screen}"
    );
    r.send(key(KeyCode::Enter));
    let stored = r.lines("train.jsonl");
    let x = stored.last().unwrap();
    assert_eq!(x["messages"][2]["content"], RIGHT, "the answer without its thinking");
    assert_ne!(x["meta"]["edited"], true, "leaving the thinking out is not an edit");

    let mut r = Rig::answering(&output).await;
    r.promote_api();
    r.send(ch('k'));
    assert!(r.screen().contains("includes the lane's <think> block"), "{}", r.screen());
    r.send(ch('k'));
    assert!(r.screen().contains("left out of the answer"), "k toggles: {}", r.screen());
    r.send(ch('k'));
    r.send(key(KeyCode::Enter));
    let x = r.lines("train.jsonl").last().cloned().unwrap();
    assert_eq!(x["messages"][2]["content"], output.as_str(), "kept because the user asked");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dataset_view_edits_moves_and_deletes_with_confirmation() {
    let mut r = Rig::new().await;
    r.send(key(KeyCode::F(3)));
    let Mode::Dataset(view) = &r.state.mode else { panic!() };
    let (split, first) = view.current().map(|(s, x)| (s, x.clone())).unwrap();
    assert_eq!(split, tunebench::dataset::Split::Train);

    // Edit the answer: the text changes in place, keeps its id and is marked edited.
    r.send(ch('e'));
    r.send(key(KeyCode::End));
    r.typed(" ");
    r.send(key(KeyCode::Backspace));
    r.send(key(KeyCode::Backspace));
    r.typed("}");
    r.send(ctrl('s'));
    assert!(r.status().starts_with("saved example"), "{}", r.status());
    let line = r.lines("train.jsonl").into_iter().find(|x| x["id"] == first.id.as_str()).unwrap();
    assert_ne!(line["meta"]["edited"], true, "the same text is no edit");

    r.send(ch('u'));
    r.typed("Note: ");
    r.send(ctrl('s'));
    let line = r.lines("train.jsonl").into_iter().find(|x| x["id"] == first.id.as_str()).unwrap();
    assert!(line["messages"][1]["content"].as_str().unwrap().starts_with("Note: "));
    assert_eq!(line["meta"]["edited"], true);

    // Move to valid, then delete: a key other than y keeps it.
    let valid = r.lines("valid.jsonl").len();
    r.send(ch('m'));
    assert!(r.lines("valid.jsonl").iter().any(|x| x["id"] == first.id.as_str()), "{}", r.status());
    assert!(!r.lines("train.jsonl").iter().any(|x| x["id"] == first.id.as_str()));
    let Mode::Dataset(view) = &mut r.state.mode else { panic!() };
    view.selected = view.rows().iter().position(|(_, x)| x.id == first.id).unwrap();
    r.send(ch('d'));
    assert!(r.screen().contains("y deletes it"), "{}", r.screen());
    r.send(ch('n'));
    assert!(r.lines("valid.jsonl").iter().any(|x| x["id"] == first.id.as_str()));
    r.send(ch('d'));
    r.send(ch('y'));
    assert!(!r.lines("valid.jsonl").iter().any(|x| x["id"] == first.id.as_str()), "{}", r.status());
    let Mode::Dataset(view) = &r.state.mode else { panic!() };
    assert!(matches!(view.pane, Pane::List));
    assert_eq!(view.data.as_ref().unwrap().dataset.count(tunebench::dataset::Split::Valid), valid);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_answer_is_kept_apart_and_never_trained_on() {
    let mut r = Rig::new().await;
    let before = r.lines("train.jsonl").len();
    r.promote_api();
    r.send(ch('x'));
    assert!(r.status().contains("rejected.jsonl"), "{}", r.status());
    let rejected = r.lines("rejected.jsonl");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["messages"][2]["content"], WRONG);
    assert_eq!(r.lines("train.jsonl").len(), before);
    // An emptied answer is no example: the dialog stays open and nothing is written.
    r.promote_api();
    r.send(ch('c'));
    r.send(key(KeyCode::Esc));
    r.send(key(KeyCode::Enter));
    assert!(matches!(r.state.mode, Mode::Promote(_)) && r.status().contains("empty answer"), "{}", r.status());
    r.send(key(KeyCode::Esc));
    assert_eq!(r.lines("train.jsonl").len(), before);
    // Esc cancels without writing.
    r.promote_api();
    r.send(key(KeyCode::Esc));
    assert_eq!(r.lines("rejected.jsonl").len(), 1);
    assert_eq!(r.lines("train.jsonl").len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn f3_filters_examples_by_where_they_came_from() {
    let mut r = Rig::new().await;
    r.promote_api();
    r.send(key(KeyCode::Enter));
    assert!(r.status().starts_with("promoted as ex_"), "{}", r.status());
    let distilled = serde_json::json!({"messages": [{"role": "user", "content": "distilled input"}, {"role": "assistant", "content": "{}"}], "id": "ex_distilled", "meta": {"source": "distill", "source_lane": "api"}});
    let path = r.state.ws.dataset_dir().join("train.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!("{distilled}\n"));
    std::fs::write(&path, text).unwrap();
    r.send(key(KeyCode::F(3)));
    let Mode::Dataset(view) = &r.state.mode else { panic!("F3 opens the dataset view") };
    let all = view.rows().len();
    let mut seen = Vec::new();
    for _ in 0..5 {
        r.send(ch('o'));
        let Mode::Dataset(view) = &r.state.mode else { panic!() };
        seen.push((view.origin.map(|o| o.name()), view.rows().len()));
    }
    assert_eq!(seen[0], (Some("promoted"), 1));
    assert_eq!(seen[1], (Some("distilled"), 1));
    assert_eq!(seen[2], (Some("imported"), 0));
    assert_eq!(seen[3], (Some("other"), all - 2));
    assert_eq!(seen[4], (None, all), "and back to every source");
    r.send(ch('o'));
    r.send(ch('o'));
    let screen = r.screen();
    assert!(screen.contains("distilled") && screen.contains("ex_distilled") && screen.contains("1 shown"), "{screen}");
}

/// F3's D: the api lane teaches the saved inputs; its paid calls are confirmed in the view first, the run's
/// progress and summary show there, and F3 shows the distilled examples after.
#[tokio::test(flavor = "multi_thread")]
async fn the_distill_view_runs_a_teacher_over_the_saved_inputs_after_confirming_paid_calls() {
    let mut r = Rig::answering(RIGHT).await;
    let (atx, mut arx) = mpsc::unbounded_channel();
    r.rt.actions = Some(atx);
    let before = r.lines("train.jsonl").len();
    r.send(key(KeyCode::F(3)));
    r.send(ch('D'));
    assert!(matches!(r.state.mode, Mode::Distill), "D opens the distill view");
    assert!(
        r.screen().contains("◂ base (its `long` prompt) ▸"),
        "the reference lane teaches by default: {}",
        r.screen()
    );
    r.send(key(KeyCode::Right));
    r.send(key(KeyCode::Right));
    assert!(r.screen().contains("◂ api (its `long` prompt) ▸"), "{}", r.screen());
    r.send(key(KeyCode::Enter));
    let mut pump = async |r: &mut Rig, until: &dyn Fn(&AppState) -> bool| {
        while !until(&r.state) {
            let a = tokio::time::timeout(Duration::from_secs(20), arx.recv()).await.unwrap().unwrap();
            r.send(a);
        }
    };
    let confirming =
        |s: &AppState| matches!(s.distill.as_ref().map(|d| &d.status), Some(tunebench::app::DistillStatus::Confirm(_)));
    pump(&mut r, &confirming).await;
    let screen = r.screen();
    assert!(screen.contains("paid call(s) on lane(s) api") && screen.contains("y run the paid calls"), "{screen}");
    r.send(ch('y'));
    let done =
        |s: &AppState| matches!(s.distill.as_ref().map(|d| &d.status), Some(tunebench::app::DistillStatus::Done));
    pump(&mut r, &done).await;
    let screen = r.screen();
    let added = r.lines("train.jsonl").len() - before;
    assert!(added > 0, "{screen}");
    assert!(screen.contains(&format!("kept {added} →")) && screen.contains("cost:"), "{screen}");
    let last = r.lines("train.jsonl").pop().unwrap();
    assert_eq!(last["meta"]["source"], "distill");
    assert_eq!(last["meta"]["source_lane"], "api");
    r.send(key(KeyCode::Esc));
    assert!(matches!(r.state.mode, Mode::Dataset(_)), "Esc goes back to F3");
}
