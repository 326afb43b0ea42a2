//! A test backend whose answer depends on the lane and the input, counting calls and runs in flight per lane.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

use tunebench::engine::{Backend, EngineError, LaneSink, Registry, RunRequest, Usage};
use tunebench::workspace::BackendKind;

type Answerer = dyn Fn(&str, &str) -> Result<String, String> + Send + Sync;

pub struct AnswerBackend {
    answer: Box<Answerer>,
    pub delay: Duration,
    pub calls: AtomicUsize,
    /// Per lane, and "*" for all lanes together: (in flight now, most in flight at once).
    pub flight: Mutex<HashMap<String, (usize, usize)>>,
    /// (lane, input, seed) of every call, in order.
    pub seen: Mutex<Vec<(String, String, Option<u64>)>>,
}

impl AnswerBackend {
    /// `answer(lane, input)`: the text the lane streams (in 3 pieces), or an error it fails with.
    pub fn new(answer: impl Fn(&str, &str) -> Result<String, String> + Send + Sync + 'static) -> Arc<Self> {
        Self::with_delay(Duration::ZERO, answer)
    }

    pub fn with_delay(
        delay: Duration,
        answer: impl Fn(&str, &str) -> Result<String, String> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            answer: Box::new(answer),
            delay,
            calls: AtomicUsize::new(0),
            flight: Mutex::default(),
            seen: Mutex::default(),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self, lane: &str) -> usize {
        self.flight.lock().unwrap().get(lane).map_or(0, |f| f.1)
    }
}

/// The backend as a registry holds it.
pub struct Handle(pub Arc<AnswerBackend>);

impl Backend for Handle {
    fn run(
        &self,
        req: RunRequest,
        sink: LaneSink,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<Usage, EngineError>> {
        let me = self.0.clone();
        Box::pin(async move {
            me.calls.fetch_add(1, Ordering::SeqCst);
            {
                let mut f = me.flight.lock().unwrap();
                for key in [req.lane.id.clone(), "*".into()] {
                    let e = f.entry(key).or_default();
                    e.0 += 1;
                    e.1 = e.1.max(e.0);
                }
            }
            me.seen.lock().unwrap().push((req.lane.id.clone(), req.input.clone(), req.lane.sampling.seed));
            let result = (me.answer)(&req.lane.id, &req.input);
            let prompt_tokens = (req.system_prompt.len() + req.input.len()) as u64 / 4;
            sink.started(Some(prompt_tokens));
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(me.delay) => {}
            }
            let out = match result {
                Ok(text) => {
                    let chars: Vec<char> = text.chars().collect();
                    for piece in chars.chunks(chars.len().div_ceil(3).max(1)) {
                        sink.token(piece.iter().collect::<String>());
                    }
                    Ok(Usage { prompt_tokens: Some(prompt_tokens), completion_tokens: Some(3), ..Usage::default() })
                }
                Err(e) => {
                    sink.token("partial");
                    Err(EngineError::Backend(e))
                }
            };
            let mut f = me.flight.lock().unwrap();
            for key in [req.lane.id.clone(), "*".into()] {
                f.entry(key).or_default().0 -= 1;
            }
            drop(f);
            out
        })
    }
}

// ---- a workspace of two API lanes and JSON test cases, for the eval tests ----

pub const JSON_CASES: [(&str, &str, &str); 4] = [
    ("c1", "my lamp buzzes, refund please", r#"{"intent": "refund", "summary": "The customer wants a refund."}"#),
    ("c2", "charged twice", r#"{"intent": "billing", "summary": "The customer was charged twice."}"#),
    ("c3", "where is my parcel", r#"{"intent": "shipping", "summary": "The parcel is late."}"#),
    ("c4", "app login fails", r#"{"intent": "account", "summary": "The customer cannot log in."}"#),
];

pub fn write_ws(dir: &Path, lane_extra: &str, base_url: &str, n_cases: usize) -> PathBuf {
    let root = dir.join("ws");
    std::fs::create_dir_all(root.join("dataset")).unwrap();
    let lane = |id: &str, prompt: &str, model: &str| {
        format!(
            "[[lanes]]\nid = \"{id}\"\nbackend = \"openai\"\nbase_url = \"{base_url}\"\napi_key_env = \"\"\nmodel = \"{model}\"\nprompt = \"{prompt}\"\n{lane_extra}\n"
        )
    };
    let toml = format!(
        "name = \"evaltest\"\n[prompts.long]\ntext = \"Long rules, examples and more rules.\"\n[prompts.short]\ntext = \"Short.\"\n{}{}[pricing.\"m-long\"]\ninput_per_mtok = 10.0\noutput_per_mtok = 20.0\n[pricing.\"m-short\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n[savings]\nreference = \"long\"\nmonthly_runs = 1000\n",
        lane("long", "long", "m-long"),
        lane("short", "short", "m-short"),
    );
    std::fs::write(root.join("workspace.toml"), toml).unwrap();
    let mut lines = String::new();
    for i in 0..n_cases {
        let (id, input, expected) = JSON_CASES[i % 4];
        let (id, input) = (format!("{id}_{i}"), format!("{input} #{i}"));
        let ex = serde_json::json!({"messages": [{"role": "system", "content": "Short."}, {"role": "user", "content": input}, {"role": "assistant", "content": expected}], "id": id});
        lines.push_str(&format!("{ex}\n"));
    }
    std::fs::write(root.join("dataset/test.jsonl"), lines).unwrap();
    root
}

/// The long lane answers every case right; the short one gets billing wrong (so 3 of 4 right).
pub fn answers() -> Arc<AnswerBackend> {
    AnswerBackend::new(|lane, input| {
        let (_, _, expected) = JSON_CASES.iter().find(|(_, i, _)| input.starts_with(i)).copied().unwrap();
        Ok(if lane == "short" && input.starts_with("charged") {
            expected.replace("billing", "refund")
        } else {
            expected.into()
        })
    })
}

pub fn registry(b: &Arc<AnswerBackend>) -> Registry {
    Registry::default().with(BackendKind::OpenAi, Arc::new(Handle(b.clone())))
}

pub fn answers_for(input: &str) -> Result<String, String> {
    Ok(JSON_CASES.iter().find(|(_, i, _)| input.starts_with(i)).unwrap().2.into())
}

// ---- running a command in-process, as the eval and distill tests do ----

/// A command's arguments as clap parses them after its name.
pub fn parsed<A: clap::Args>(name: &str, extra: &[&str]) -> A {
    let cmd = A::augment_args(clap::Command::new("tunebench"));
    A::from_arg_matches(&cmd.get_matches_from(std::iter::once(name).chain(extra.iter().copied()))).unwrap()
}

/// What a command run in-process returned and printed.
pub struct Ran {
    pub result: Result<u8, String>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command with its output captured; `confirm` is what a person types at its question (None: no
/// terminal to ask on).
pub async fn captured(
    confirm: Option<&str>,
    run: impl for<'x> AsyncFnOnce(tunebench::cli::eval::Streams<'x>) -> anyhow::Result<u8>,
) -> Ran {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = confirm.map(|c| std::io::Cursor::new(c.as_bytes().to_vec()));
    let streams = tunebench::cli::eval::Streams {
        stdout: &mut out,
        stderr: &mut err,
        confirm: input.as_mut().map(|i| i as &mut (dyn std::io::BufRead + Send)),
        tty: false,
    };
    let result = run(streams).await.map_err(|e| format!("{e:#}"));
    Ran { result, stdout: String::from_utf8(out).unwrap(), stderr: String::from_utf8(err).unwrap() }
}
