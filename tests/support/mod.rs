//! Test-only scripted backend: streams given text at a given rate, fails or panics on cue, reports usage.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tunebench::engine::{Backend, EngineError, LaneSink, Registry, RunRequest, Usage};
use tunebench::workspace::BackendKind;

/// What one lane does when run.
#[derive(Clone, Debug)]
pub struct Script {
    pub chunks: Vec<String>,
    pub delay: Duration,
    /// Fail with this message after streaming this many chunks.
    pub fail_after: Option<(usize, String)>,
    /// Panic after streaming this many chunks.
    pub panic_after: Option<usize>,
    pub prompt_tokens: Option<u64>,
    /// Report usage (else the engine estimates completion tokens).
    pub report_usage: bool,
}

impl Script {
    pub fn text(text: &str) -> Self {
        Self {
            chunks: text.split_inclusive(' ').map(str::to_string).collect(),
            delay: Duration::ZERO,
            fail_after: None,
            panic_after: None,
            prompt_tokens: Some(100),
            report_usage: true,
        }
    }

    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay = Duration::from_millis(ms);
        self
    }

    pub fn prompt_tokens(mut self, n: u64) -> Self {
        self.prompt_tokens = Some(n);
        self
    }

    pub fn fail_after(mut self, n: usize, msg: &str) -> Self {
        self.fail_after = Some((n, msg.to_string()));
        self
    }

    pub fn panic_after(mut self, n: usize) -> Self {
        self.panic_after = Some(n);
        self
    }

    pub fn no_usage(mut self) -> Self {
        self.report_usage = false;
        self
    }
}

/// Plays each lane's script (by lane id); also records the requests it saw.
#[derive(Default)]
pub struct ScriptedBackend {
    pub scripts: HashMap<String, Script>,
    pub seen: std::sync::Mutex<Vec<RunRequest>>,
}

impl ScriptedBackend {
    pub fn new(scripts: impl IntoIterator<Item = (&'static str, Script)>) -> Arc<Self> {
        Arc::new(Self {
            scripts: scripts.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            seen: Default::default(),
        })
    }
}

impl Backend for ScriptedBackend {
    fn run(
        &self,
        req: RunRequest,
        sink: LaneSink,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<Usage, EngineError>> {
        let script = self.scripts.get(&req.lane.id).cloned();
        self.seen.lock().unwrap().push(req.clone());
        Box::pin(async move {
            let Some(s) = script else {
                return Err(EngineError::Backend(format!("no script for lane {}", req.lane.id)));
            };
            sink.started(s.prompt_tokens);
            for (i, chunk) in s.chunks.iter().enumerate() {
                if s.fail_after.as_ref().is_some_and(|(n, _)| *n == i) {
                    return Err(EngineError::Backend(s.fail_after.unwrap().1));
                }
                if s.panic_after == Some(i) {
                    panic!("scripted panic in lane {}", req.lane.id);
                }
                if !s.delay.is_zero() {
                    tokio::select! {
                        () = cancel.cancelled() => return Err(EngineError::Cancelled),
                        () = tokio::time::sleep(s.delay) => {}
                    }
                }
                sink.token(chunk.clone());
            }
            Ok(if s.report_usage {
                Usage {
                    prompt_tokens: s.prompt_tokens,
                    completion_tokens: Some(s.chunks.len() as u64),
                    cached_prompt_tokens: None,
                    reasoning_tokens: None,
                    cache_write_tokens: None,
                    estimated: false,
                }
            } else {
                Usage::default()
            })
        })
    }
}

/// A registry whose every backend kind plays the scripts.
pub fn registry(backend: Arc<ScriptedBackend>) -> Registry {
    BackendKind::ALL.into_iter().fold(Registry::default(), |r, k| r.with(k, backend.clone()))
}

/// A private copy of the example workspace (so tests can write runs.jsonl and save), without local history or eval cache.
pub fn example_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workspaces/ticket-triage");
    copy_dir(&src, &dir.path().join("ticket-triage"));
    let ws = dir.path().join("ticket-triage");
    (dir, ws)
}

/// `example_copy` with its model path pointing at `model` (the copy's relative path would not reach it).
pub fn example_copy_with_model(model: &Path) -> (tempfile::TempDir, PathBuf) {
    let (tmp, root) = example_copy();
    let toml = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    let toml = toml.replace("../../models/SmolLM2-135M-Instruct.Q4_1.gguf", model.to_str().unwrap());
    std::fs::write(root.join("workspace.toml"), toml).unwrap();
    (tmp, root)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else if e.file_name() != "runs.jsonl" && e.file_name() != "eval-cache.jsonl" {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

pub mod keys {
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use tunebench::app::Action;

    pub fn key(code: KeyCode) -> Action {
        Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }
    pub fn ctrl(c: char) -> Action {
        Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
    }
    pub fn alt(code: KeyCode) -> Action {
        Action::Key(KeyEvent::new(code, KeyModifiers::ALT))
    }
    pub fn ch(c: char) -> Action {
        key(KeyCode::Char(c))
    }
    pub fn shift_tab() -> Action {
        Action::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT))
    }
}

/// App state on a workspace folder with the dark theme, sized like a terminal.
pub fn state_for(root: &Path, w: u16, h: u16) -> tunebench::app::AppState {
    let ws = tunebench::workspace::load(root).unwrap();
    let inputs = tunebench::workspace::load_inputs(&ws.inputs_dir()).unwrap();
    let mut s = tunebench::app::AppState::new(ws, inputs, tunebench::theme::Theme::default());
    s.size = (w, h);
    s
}

/// The default model: present in CI (which fetches it); elsewhere the tests needing it skip, saying so.
pub fn default_model() -> Option<PathBuf> {
    fetched_model("SmolLM2-135M-Instruct.Q4_1.gguf", "the default model", "scripts/fetch-model")
}

/// The second real model, gemma-3-270m Q4_K_M (Gemma Terms of Use), as `default_model`.
pub fn gemma_model() -> Option<PathBuf> {
    fetched_model("gemma-3-270m-Q4_K_M.gguf", "gemma-3-270m", "scripts/fetch-gemma")
}

/// `models/FILE` when present; CI must have fetched it with `script`, elsewhere the caller skips, saying so.
fn fetched_model(file: &str, what: &str, script: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(file);
    if p.is_file() {
        return Some(p);
    }
    assert!(std::env::var_os("CI").is_none(), "CI must fetch {what} first ({script})");
    eprintln!("skipped: {} is absent and CI is unset (run {script})", p.display());
    None
}

/// tests/fixtures/gemma3_270m_top1.json (scripts/gemma-fixture/make-top1): prompts, transformers' top-1 and
/// llama.cpp's greedy text on gemma-3-270m.
pub fn gemma_fixture() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3_270m_top1.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A JSON array of token ids.
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

pub fn example_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workspaces/ticket-triage")
}
pub mod answers;
pub mod api;
pub mod families;
pub mod finetune;
pub mod http;
pub mod tiny;
