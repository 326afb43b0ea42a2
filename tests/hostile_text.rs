//! Text others wrote never reaches the terminal with its control characters: the model's answer, a server's
//! error and warnings are shown escaped in the TUI (every screen cell is checked) and by `tunebench run`,
//! while `run --json` keeps them JSON-escaped.

mod support;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use support::http::{MockServer, Reply, openai_stream};
use support::keys::*;
use tunebench::app::{Action, AppState, update};
use tunebench::engine::{EngineError, EngineEvent, EventKind};

/// Retitles the terminal, clears it, starts a CSI through C1, and flips the rest of the line right to left.
const HOSTILE: &str = "Hi\x1b]0;pwned\x07\x1b[2J \u{9b}31mred\u{202e}gnp.exe\x7f end";
const SHOWN: &str = r"Hi\x1b]0;pwned\x07\x1b[2J \u{9b}31mred\u{202e}gnp.exe\x7f end";

fn ev(s: &mut AppState, lane: usize, kind: EventKind) {
    let run = s.lanes[lane].run.unwrap();
    update(s, Action::Engine(EngineEvent { lane, run, kind }));
}

fn hostile_screen(w: u16, h: u16) -> (AppState, ratatui::buffer::Buffer) {
    let mut s = support::state_for(&support::example_root(), w, h);
    update(&mut s, ctrl('r'));
    ev(&mut s, 0, EventKind::Started { prompt_tokens: Some(12) });
    ev(&mut s, 0, EventKind::Token { text: HOSTILE.into() });
    ev(&mut s, 1, EventKind::Warning { text: format!("warning {HOSTILE}") });
    ev(&mut s, 2, EventKind::Failed { error: EngineError::Backend(format!("500 server error: {HOSTILE}")) });
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| tunebench::ui::render(&s, f)).unwrap();
    (s, t.backend().buffer().clone())
}

#[test]
fn the_tui_shows_control_characters_escaped_and_never_sends_them() {
    for (w, h) in [(80, 24), (160, 48)] {
        let (_, buf) = hostile_screen(w, h);
        for cell in buf.content() {
            assert!(!cell.symbol().chars().any(tunebench::visible::is_unsafe), "{w}x{h}: cell {:?}", cell.symbol());
        }
        let rows: String = (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>().trim_end().to_string() + "\n")
            .collect();
        let flat: String = rows.split_whitespace().collect();
        let shown: String = SHOWN.split_whitespace().collect();
        // The answer wraps in its pane; its escaped form is all there, in order, once the wrapping is undone.
        assert!(flat.contains(&shown[..20]), "{w}x{h}: the answer is not shown escaped:\n{rows}");
        if w == 80 {
            insta::assert_snapshot!("hostile_text_80x24", rows);
        }
    }
}

/// A pane's own text, before layout: every place server text enters it is escaped.
#[test]
fn a_lane_pane_escapes_answer_warnings_and_error() {
    let (s, _) = hostile_screen(160, 48);
    for lane in 0..3 {
        let text = tunebench::app::geometry::output_text(&s, lane);
        let all: String = text.lines.iter().flat_map(|l| l.spans.iter().map(|sp| sp.content.to_string())).collect();
        assert!(!all.chars().any(tunebench::visible::is_unsafe), "lane {lane}: {all:?}");
        assert!(all.contains(SHOWN), "lane {lane}: {all:?}");
    }
}

/// A price for the test model, so `run` has a cost to print (a table after the last lane).
const PRICED: &str = "[pricing.\"test-model\"]\ninput_per_mtok = 0.15\noutput_per_mtok = 0.6\n";

#[tokio::test(flavor = "multi_thread")]
async fn run_prints_server_text_escaped_and_json_keeps_it_json_escaped() {
    let answer = Reply::sse(&openai_stream(&[HOSTILE], Some((5, 3, 0))));
    let failure = Reply::status(400, &serde_json::json!({"error": {"message": HOSTILE}}).to_string());
    for json in [false, true] {
        let server = MockServer::start(vec![answer.clone(), failure.clone()]).await;
        let ws = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let url = format!("{}/v1", server.url);
        // One lane at a time, so the answer and the failure reach the lanes in a known order.
        let lanes = [support::api::lane("good", "openai", &url, ""), support::api::lane("bad", "openai", &url, PRICED)];
        support::api::workspace(ws.path(), &lanes);
        let mut out = Vec::new();
        for lane in ["good", "bad"] {
            let mut args = vec!["run".to_string(), ws.path().display().to_string(), "--input".into(), "hi".into()];
            args.extend(["--lanes".into(), lane.into()]);
            if json {
                args.push("--json".into());
            }
            let (args, state) = (args.clone(), state.path().to_path_buf());
            out.push(
                tokio::task::spawn_blocking(move || {
                    std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
                        .args(&args)
                        .env("TB_KEY", support::api::KEY)
                        .env("XDG_STATE_HOME", state)
                        .output()
                        .unwrap()
                })
                .await
                .unwrap(),
            );
        }
        for o in &out {
            let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
                assert!(!text.chars().any(|c| tunebench::visible::is_unsafe(c) && c != '\n'), "{name}: {text:?}");
            }
            if json {
                let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
                let field = if v["error"].is_null() { &v["output"] } else { &v["error"] };
                assert!(field.as_str().unwrap().contains(HOSTILE), "JSON keeps the text as sent: {v}");
            } else {
                assert!(stdout.contains(SHOWN), "{stdout}");
            }
        }
        assert!(String::from_utf8_lossy(&out[1].stderr).contains(SHOWN), "the failed lane's line on stderr");
        if !json {
            // The metrics line uses the TUI's formats: money as `fmt_usd` writes it, never a raw float and " $".
            let good = String::from_utf8_lossy(&out[0].stdout);
            let line = good.lines().find(|l| l.starts_with("in ")).unwrap_or_default();
            assert!(line.starts_with("in 5 · out 3 · ttft ") && line.ends_with("cost 2.55 µ$"), "{line}");
        }
    }
}
