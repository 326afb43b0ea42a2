//! `update()` without a terminal for what a lane shows and how it is set: per-input results, the subtitle, F6
//! settings, and the editors' undo.

mod support;

use ratatui::crossterm::event::KeyCode;
use support::keys::*;
use tunebench::app::{Action, AppState, Effect, LaneStatus, Mode, update};
use tunebench::engine::{EngineError, EngineEvent, EventKind, Timings, Usage};

fn state() -> AppState {
    support::state_for(&support::example_root(), 120, 40)
}

fn ev(lane: usize, run: u64, kind: EventKind) -> Action {
    Action::Engine(EngineEvent { lane, run, kind })
}

#[test]
fn f6_edits_lane_settings_and_rejects_bad_values() {
    let mut s = state();
    update(&mut s, key(KeyCode::F(6)));
    for _ in 0..4 {
        update(&mut s, key(KeyCode::Down)); // → max_tokens (a local lane lists no base_url, api_key_env)
    }
    update(&mut s, key(KeyCode::Enter));
    for c in "abc".chars() {
        update(&mut s, ch(c));
    }
    update(&mut s, key(KeyCode::Enter));
    let Mode::Settings(form) = &s.mode else { panic!() };
    assert!(form.error.as_deref().unwrap().contains("max_tokens: `abc`"));
    update(&mut s, key(KeyCode::Esc)); // drop the edit
    update(&mut s, key(KeyCode::Enter));
    for c in "64".chars() {
        update(&mut s, ch(c));
    }
    update(&mut s, key(KeyCode::Enter));
    assert_eq!(s.ws.lanes[0].sampling.max_tokens, 64);
    for _ in 0..2 {
        update(&mut s, key(KeyCode::Up)); // → prompt, cycles with →
    }
    update(&mut s, key(KeyCode::Right));
    assert_eq!(s.ws.lanes[0].prompt, "short");
    update(&mut s, key(KeyCode::F(6)));
    assert!(matches!(s.mode, Mode::Normal));
}

#[test]
fn f6_sets_an_api_lanes_endpoint_key_variable_and_stops() {
    let mut s = state();
    s.selected = 2;
    update(&mut s, key(KeyCode::F(6)));
    let type_row = |s: &mut AppState, down: usize, text: &str| {
        for _ in 0..down {
            update(s, key(KeyCode::Down));
        }
        update(s, key(KeyCode::Enter));
        for c in text.chars() {
            update(s, ch(c));
        }
        update(s, key(KeyCode::Enter));
    };
    type_row(&mut s, 3, "http://127.0.0.1:8080/v1"); // an OpenAI lane lists no adapter, top_k, repetition_penalty
    type_row(&mut s, 1, "LOCAL_KEY");
    type_row(&mut s, 5, r#"["\n\n", "%%"]"#);
    let lane = &s.ws.lanes[2];
    assert_eq!(lane.base_url.as_deref(), Some("http://127.0.0.1:8080/v1"));
    assert_eq!(lane.api_key_env.as_deref(), Some("LOCAL_KEY"));
    assert_eq!(lane.sampling.stop, ["\n\n", "%%"]);
    assert!(s.ws.to_toml().contains(r#"stop = ["\n\n", "%%"]"#), "{}", s.ws.to_toml());
    // Moving it to `local` is refused while it still has API-only keys.
    for _ in 0..9 {
        update(&mut s, key(KeyCode::Up));
    }
    update(&mut s, key(KeyCode::Left));
    let Mode::Settings(form) = &s.mode else { panic!() };
    assert!(form.error.as_deref().unwrap_or("").contains("local lanes"), "{:?}", form.error);
    assert!(s.ws.lanes[2].backend.is_api());
}

#[test]
fn the_lane_subtitle_names_the_adapter_once_and_follows_f6() {
    use tunebench::app::geometry::subtitle;
    use tunebench::workspace::LaneEdit;
    let mut s = state();
    assert_eq!(subtitle(&s, 1), "smollm2 · local · auto + ticket-lora-v2");
    update(&mut s, ctrl('r'));
    let detail = "cpu · Q4_1 · LoRA ticket-lora-v2 r16 ×210";
    update(&mut s, ev(1, 2, EventKind::Info { detail: detail.into() }));
    let sub = subtitle(&s, 1);
    assert_eq!(sub, format!("smollm2 · local · {detail}"));
    assert_eq!(sub.matches("ticket-lora").count(), 1, "{sub}");
    // F6 points the lane at another adapter: the report of the old one no longer describes it.
    s.ws.edit_lane(1, LaneEdit::Adapter(Some("adapters/nope".into()))).unwrap();
    assert_eq!(subtitle(&s, 1), "smollm2 · local · auto + nope");
    // Nor while a run with the new adapter waits, or after it failed to load it.
    update(&mut s, key(KeyCode::Tab));
    update(&mut s, key(KeyCode::Tab));
    update(&mut s, key(KeyCode::F(5)));
    assert_eq!(subtitle(&s, 1), "smollm2 · local · auto + nope");
    update(&mut s, ev(1, 4, EventKind::Failed { error: EngineError::Backend("no adapter at adapters/nope".into()) }));
    assert_eq!(subtitle(&s, 1), "smollm2 · local · auto + nope");
    // Back to the adapter it reported on: the report holds again.
    s.ws.edit_lane(1, LaneEdit::Adapter(Some("adapters/ticket-lora-v2".into()))).unwrap();
    assert_eq!(subtitle(&s, 1), format!("smollm2 · local · {detail}"));
}

fn done(s: &mut AppState, lane: usize, run: u64, text: &str, prompt_tokens: u64) -> Vec<Effect> {
    update(s, ev(lane, run, EventKind::Started { prompt_tokens: Some(prompt_tokens) }));
    update(s, ev(lane, run, EventKind::Token { text: text.into() }));
    let usage = Usage { prompt_tokens: Some(prompt_tokens), completion_tokens: Some(1), ..Usage::default() };
    let timings = Timings {
        ttft: Some(std::time::Duration::from_millis(5)),
        total: std::time::Duration::from_millis(9),
        busy: None,
        shared_lanes: None,
    };
    update(s, ev(lane, run, EventKind::Done { usage, timings }))
}

#[test]
fn each_input_keeps_its_own_lane_results_and_switching_back_shows_them() {
    let mut s = state();
    update(&mut s, ctrl('r'));
    done(&mut s, 0, 1, "answer to input 1", 1287);
    update(&mut s, ev(1, 2, EventKind::Token { text: "still ".into() }));
    // F8: input 2 has no answers yet; nothing of input 1's shows under its counts.
    update(&mut s, key(KeyCode::F(8)));
    assert!(s.lanes.iter().all(|l| l.status == LaneStatus::Idle && l.output.is_empty()));
    assert!(!tunebench::ui::footer(&s, 0, 200)[0].contains("1,287"), "{:?}", tunebench::ui::footer(&s, 0, 200));
    // Input 1's running lane keeps streaming into input 1's results, and is recorded on input 1's text.
    update(&mut s, ev(1, 2, EventKind::Token { text: "going".into() }));
    assert!(s.lanes[1].output.is_empty());
    let usage = Usage { prompt_tokens: Some(231), completion_tokens: Some(2), ..Usage::default() };
    let timings = Timings { ttft: None, total: std::time::Duration::from_millis(9), busy: None, shared_lanes: None };
    let fx = update(&mut s, ev(1, 2, EventKind::Done { usage, timings }));
    let Some(Effect::Record { input, .. }) = fx.first() else { panic!("{fx:?}") };
    assert_eq!(input, &s.inputs[0].text);
    // A run on input 2 is input 2's.
    update(&mut s, key(KeyCode::Tab));
    update(&mut s, key(KeyCode::F(5)));
    done(&mut s, 0, 4, "answer to input 2", 1300);
    // F7: back to input 1, its answers as they ended.
    update(&mut s, key(KeyCode::F(7)));
    assert_eq!(s.lanes[0].output, "answer to input 1");
    assert_eq!((s.lanes[1].output.as_str(), s.lanes[1].status), ("still going", LaneStatus::Done));
    assert!(
        tunebench::ui::footer(&s, 0, 200)[0].starts_with("in 1,287 · out 1"),
        "{:?}",
        tunebench::ui::footer(&s, 0, 200)
    );
    assert_eq!(s.stale_reason(0), None);
    update(&mut s, key(KeyCode::F(8)));
    assert_eq!(s.lanes[0].output, "answer to input 2");
}

#[test]
fn an_answer_to_another_text_is_marked_and_its_pane_keeps_its_own_figures() {
    use tunebench::metrics::Count;
    let mut s = state();
    update(&mut s, key(KeyCode::Tab));
    update(&mut s, key(KeyCode::F(5)));
    done(&mut s, 0, 1, "an answer", 1287);
    update(&mut s, ch('X')); // the input is edited after the run (a letter in the lanes goes to the input)
    let count = |tokens| Ok(Count { tokens, estimated: false, how: String::new() });
    update(&mut s, Action::Counted(vec![count(1290), count(120), count(1200)]));
    let why = s.stale_reason(0).expect("the answer is to an earlier text");
    let shown: String = tunebench::app::geometry::output_text(&s, 0).lines.iter().map(|l| l.to_string()).collect();
    assert!(shown.starts_with('⟲') && shown.contains(why), "{shown}");
    let footer = tunebench::ui::footer(&s, 0, 200);
    assert!(footer[0].starts_with("in 1,287 · out 1"), "the run's own figures, not the new text's: {footer:?}");
    assert!(tunebench::ui::footer(&s, 2, 200)[0].starts_with("in 1,200"), "a lane without an answer counts live");
    // Ctrl+P promotes only an answer to what is shown.
    assert_eq!(s.selected, 0);
    assert!(update(&mut s, ctrl('p')).is_empty());
    assert!(s.status.as_ref().unwrap().text.contains("rerun it (F5)"), "{:?}", s.status);
    update(&mut s, key(KeyCode::Esc)); // back to the input, to undo the edit
    update(&mut s, key(KeyCode::Backspace));
    assert_eq!(s.input_text(), s.inputs[0].text);
    assert_eq!(s.stale_reason(0), None, "the same text again: the answer is current");
    update(&mut s, key(KeyCode::Tab));
    assert!(matches!(update(&mut s, ctrl('p')).as_slice(), [Effect::CheckPromote { lane: 0, .. }]));
}

#[test]
fn f6_lists_the_fields_of_the_lanes_backend_and_enter_never_cycles() {
    use tunebench::app::SettingsRow as R;
    let mut s = state();
    let rows = |s: &AppState| if let Mode::Settings(f) = &s.mode { f.rows.clone() } else { panic!("F6 is open") };
    assert!(matches!(update(&mut s, key(KeyCode::F(6))).as_slice(), [Effect::ListAdapters]));
    let local = rows(&s);
    assert!(local.contains(&R::Adapter) && local.contains(&R::RepetitionPenalty) && local.contains(&R::TopK));
    assert!(!local.contains(&R::BaseUrl) && !local.contains(&R::ApiKeyEnv));
    // Enter on the backend (a ◂ ▸ row) opens it for typing; the lane stays local.
    update(&mut s, key(KeyCode::Enter));
    assert_eq!(s.ws.lanes[0].backend.as_str(), "local");
    let Mode::Settings(form) = &s.mode else { panic!() };
    assert!(form.editing.is_some(), "Enter types a value");
    update(&mut s, key(KeyCode::Esc));
    update(&mut s, key(KeyCode::Esc));
    // The OpenAI lane: endpoint and key, no adapter, top_k or repetition_penalty; Anthropic has no seed.
    s.selected = 2;
    update(&mut s, key(KeyCode::F(6)));
    let openai = rows(&s);
    assert!(openai.contains(&R::BaseUrl) && openai.contains(&R::ApiKeyEnv) && openai.contains(&R::Seed));
    assert!(!openai.contains(&R::Adapter) && !openai.contains(&R::TopK) && !openai.contains(&R::RepetitionPenalty));
    update(&mut s, key(KeyCode::Right)); // openai → anthropic: the list follows the backend
    assert_eq!(s.ws.lanes[2].backend.as_str(), "anthropic");
    let anthropic = rows(&s);
    assert!(anthropic.contains(&R::TopK) && !anthropic.contains(&R::Seed), "{anthropic:?}");
}

#[test]
fn f6_offers_the_adapter_folders_found_under_adapters() {
    let (_tmp, root) = support::example_copy();
    std::fs::create_dir_all(root.join("adapters/ticket-lora-v3")).unwrap();
    std::fs::write(root.join("adapters/ticket-lora-v3/adapter_config.json"), "{}").unwrap();
    std::fs::write(root.join("adapters/notes.txt"), "not an adapter").unwrap();
    // A folder without an adapter (a sweep's own folder, a run with only checkpoints) is not offered.
    let _ = std::fs::remove_dir_all(root.join("adapters/ticket-lora-sweep"));
    std::fs::create_dir_all(root.join("adapters/ticket-lora-sweep/checkpoints")).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut rt = tunebench::runtime::Runtime::new(tunebench::engine::Registry::default(), tx);
    let mut s = support::state_for(&root, 80, 24);
    s.selected = 1;
    rt.dispatch(&mut s, key(KeyCode::F(6)));
    let Mode::Settings(form) = &s.mode else { panic!() };
    assert_eq!(form.adapters, ["adapters/ticket-lora", "adapters/ticket-lora-v2", "adapters/ticket-lora-v3"]);
    for _ in 0..3 {
        rt.dispatch(&mut s, key(KeyCode::Down)); // → adapter
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        rt.dispatch(&mut s, key(KeyCode::Right));
        seen.push(s.ws.lanes[1].adapter.clone());
    }
    assert_eq!(seen, [Some("adapters/ticket-lora-v3".to_string()), None, Some("adapters/ticket-lora".to_string())]);
}

#[test]
fn the_prompt_and_promote_editors_undo_with_ctrl_z() {
    let mut s = state();
    let before = s.ws.prompt_text("long").unwrap().to_string();
    update(&mut s, key(KeyCode::F(2)));
    for c in "abc".chars() {
        update(&mut s, ch(c));
    }
    for _ in 0..3 {
        update(&mut s, ctrl('z'));
    }
    update(&mut s, key(KeyCode::Esc));
    assert_eq!(s.ws.prompt_text("long").unwrap(), before, "F2: three letters typed, three undone");
    // Ctrl+P's answer: written anew, then undone letter by letter.
    update(&mut s, key(KeyCode::Tab));
    update(&mut s, key(KeyCode::F(5)));
    done(&mut s, 0, 1, "the lane's answer", 1287);
    let Some(Effect::CheckPromote { run, .. }) = update(&mut s, ctrl('p')).pop() else { panic!("{:?}", s.status) };
    update(&mut s, Action::PromoteChecked { lane: 0, run, result: Ok(None) });
    update(&mut s, ch('e'));
    update(&mut s, key(KeyCode::End));
    update(&mut s, ch('!'));
    update(&mut s, ctrl('z'));
    let Mode::Promote(form) = &s.mode else { panic!("the dialog is open") };
    assert_eq!(form.answer_text(), "the lane's answer");
    assert!(!form.edited());
}
