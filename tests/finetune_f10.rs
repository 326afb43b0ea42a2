//! F10 on a provider (against the loopback fake of tests/support/finetune.rs): `t` picks OpenAI, Enter shows
//! the checked plan and its cost with nothing sent, Enter again uploads and starts the job, its losses fill
//! the chart, and success takes the new `ft-` lane into the open workspace (unsaved edits kept) where Enter
//! runs it; a job in progress is followed when F10 opens, and `x x` cancels it.

mod support;

use std::path::Path;
use std::sync::Arc;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use support::finetune::FakeOpenAi;
use tunebench::app::{Action, AppState, LaneStatus, Mode, Target, TrainStatus};
use tunebench::runtime::Runtime;

const KEY: &str = "sk-test-f10-key-456";
const MODEL: &str = "ft:gpt-4o-mini-2024-07-18:org::f10abc";

/// The example with its OpenAI lane on the fake.
fn workspace(fake: &FakeOpenAi) -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, ws) = support::example_copy();
    let file = ws.join("workspace.toml");
    let toml = std::fs::read_to_string(&file).unwrap().replace("https://api.openai.com/v1", &fake.url);
    std::fs::write(&file, toml).unwrap();
    (tmp, ws)
}

/// The TUI's state and runtime on `root`, keys from a fake environment, polling fast.
fn tui(root: &Path) -> (AppState, Runtime, tokio::sync::mpsc::UnboundedReceiver<Action>) {
    let ws = tunebench::workspace::load(root).unwrap();
    let mut state = AppState::new(ws, Vec::new(), tunebench::theme::Theme::default());
    state.size = (80, 24);
    let env: tunebench::engine::api::Env = Arc::new(|k| (k == "OPENAI_API_KEY").then(|| KEY.to_string()));
    let (etx, _erx) = tokio::sync::mpsc::unbounded_channel();
    let (atx, arx) = tokio::sync::mpsc::unbounded_channel();
    let mut rt = Runtime::new(tunebench::engine::Registry::builtin_with_env(env.clone()), etx);
    rt.actions = Some(atx);
    rt.env = env;
    rt.hosted_poll = 0.01;
    (state, rt, arx)
}

fn key(c: KeyCode) -> Action {
    Action::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

/// Applies what the runtime reports until `done` holds.
async fn until(
    state: &mut AppState,
    rt: &mut Runtime,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Action>,
    done: impl Fn(&AppState) -> bool,
) {
    while !done(state) {
        let a = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
        rt.dispatch(state, a);
    }
}

fn screen(state: &AppState, w: u16, h: u16) -> String {
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
    term.draw(|f| tunebench::ui::render(state, f)).unwrap();
    term.backend().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn f10_fine_tunes_on_openai_from_a_priced_plan_to_a_lane_enter_runs() {
    let losses = [(1, 1.9, 2.0), (2, 1.2, 1.4), (3, 0.8, 1.1)];
    let fake =
        FakeOpenAi::start(&["validating_files", "queued", "running", "running", "succeeded"], MODEL, &losses).await;
    let (_tmp, root) = workspace(&fake);
    let (mut state, mut rt, mut rx) = tui(&root);
    // An unsaved edit: the new lane must join it, not replace it.
    state.ws.edit_lane(0, tunebench::workspace::LaneEdit::MaxTokens(99)).unwrap();
    rt.dispatch(&mut state, key(KeyCode::F(10)));
    assert!(matches!(state.mode, Mode::Train));
    assert_eq!(state.train.target, Target::Local, "the adapter lane's machine first");
    rt.dispatch(&mut state, key(KeyCode::Char('t')));
    assert_eq!(state.train.target, Target::Hosted("openai"));
    let s = screen(&state, 80, 24);
    assert!(s.contains("fine-tune on openai") && s.contains("Enter check and price"), "{s}");
    rt.dispatch(&mut state, key(KeyCode::Enter));
    until(&mut state, &mut rt, &mut rx, |s| s.train.status != TrainStatus::Preparing).await;
    assert_eq!(state.train.status, TrainStatus::Confirm, "{:?}", state.train.error);
    let plan = state.train.hosted.as_ref().and_then(|h| h.plan.clone()).unwrap();
    assert!(plan.headline.contains("615 training example(s), 110 validation"), "{}", plan.headline);
    assert!(plan.headline.contains("training cost $"), "{}", plan.headline);
    assert!(fake.fake.lock().unwrap().requests.is_empty(), "nothing is sent before Enter confirms");
    let wide = screen(&state, 160, 40);
    assert!(wide.contains("training cost") && wide.contains("Enter upload and start (paid)"), "{wide}");
    rt.dispatch(&mut state, key(KeyCode::Enter));
    until(&mut state, &mut rt, &mut rx, |s| !matches!(s.train.status, TrainStatus::Running)).await;
    assert_eq!(state.train.status, TrainStatus::Done, "{:?} {:?}", state.train.error, state.train.hosted);
    assert_eq!(state.train.steps, 3);
    assert_eq!(state.train.train_loss, vec![(1.0, 1.9), (2.0, 1.2), (3.0, 0.8)]);
    assert_eq!(state.train.valid_loss.last(), Some(&(3.0, 1.1)));
    assert_eq!(fake.fake.lock().unwrap().uploads.len(), 2, "train and valid, once");
    let s = screen(&state, 80, 24);
    assert!(s.contains("train loss") && s.contains("step 3/3"), "{s}");
    // The lane the job wrote is in the open workspace, beside the unsaved edit, and a save keeps both.
    let id = "ft-ftjob-abc123";
    let lane = state.ws.lanes.iter().position(|l| l.id == id).expect("the new lane");
    assert_eq!(state.ws.lanes[lane].model, MODEL);
    assert_eq!(state.lanes.len(), state.ws.lanes.len());
    assert_eq!(state.ws.lanes[0].sampling.max_tokens, 99);
    assert!(state.ws.pricing.contains_key(MODEL), "the fine-tuned price");
    state.ws.save().unwrap();
    let saved = tunebench::workspace::load(&root).unwrap();
    assert!(saved.lane(id).is_some() && saved.lanes[0].sampling.max_tokens == 99);
    assert!(saved.pricing.contains_key(MODEL));
    assert!(!root.join("finetune-job.json").exists(), "the finished job moved to the history");
    // Enter runs the new lane on the input.
    state.editor.insert_str("I was charged twice for my subscription this month.");
    assert!(screen(&state, 100, 30).contains(&format!("Enter run lane `{id}`")));
    rt.dispatch(&mut state, key(KeyCode::Enter));
    assert!(matches!(state.mode, Mode::Normal));
    assert_ne!(state.lanes[lane].status, LaneStatus::Idle, "{:?}", state.status);
    rt.cancel_all();
}

#[tokio::test(flavor = "multi_thread")]
async fn f10_follows_a_job_in_progress_and_x_twice_cancels_it() {
    let fake = FakeOpenAi::start(&["validating_files", "running"], MODEL, &[(1, 1.5, 1.6)]).await;
    let (_tmp, root) = workspace(&fake);
    // A job started from the command line, not followed.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .arg("train")
        .arg(&root)
        .args(["--on", "openai", "--yes", "--no-follow"])
        .env("OPENAI_API_KEY", KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (mut state, mut rt, mut rx) = tui(&root);
    rt.dispatch(&mut state, key(KeyCode::F(10)));
    until(&mut state, &mut rt, &mut rx, |s| {
        s.train.hosted.as_ref().is_some_and(|h| h.status.as_deref() == Some("running"))
    })
    .await;
    assert_eq!(state.train.target, Target::Hosted("openai"));
    assert_eq!(state.train.status, TrainStatus::Running);
    let s = screen(&state, 80, 24);
    assert!(s.contains("x cancel the job") && s.contains("running"), "{s}");
    rt.dispatch(&mut state, key(KeyCode::Char('x')));
    assert!(!fake.fake.lock().unwrap().cancelled, "one x only asks");
    rt.dispatch(&mut state, key(KeyCode::Char('x')));
    until(&mut state, &mut rt, &mut rx, |s| s.train.status != TrainStatus::Running).await;
    assert!(fake.fake.lock().unwrap().cancelled);
    assert_eq!(state.train.status, TrainStatus::Failed);
    let log = state.train.hosted.as_ref().map(|h| h.log.join("\n")).unwrap_or_default();
    assert!(log.contains("cancelled"), "{log}");
    assert_eq!(fake.fake.lock().unwrap().uploads.len(), 2, "following never uploads again");
    assert!(state.ws.lanes.iter().all(|l| !l.id.starts_with("ft-")));
}
