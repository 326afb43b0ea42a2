//! `export --verify`: the export served by a real llama-server on the loopback, asked through a temporary
//! OpenAI-compatible lane beside the in-process adapter lane, over the workspace's test cases; the two lanes'
//! pass rates, how many answers are identical and where each other one first differs, and a verdict.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::engine::local::tokenizer::Tokenizer;
use crate::engine::{LaneIdx, Registry};
use crate::eval::runner::{self, Progress};
use crate::eval::{Scoreboard, Setup};
use crate::workspace::{BackendKind, Workspace};

/// Where `scripts/build-llama-cpp --server` puts llama-server by default (CI builds it there).
pub fn default_server() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".cache/tunebench/llama.cpp/server/bin/llama-server"))
}

/// The llama-server to run: `explicit`, else TUNEBENCH_LLAMA_SERVER, else the default build.
pub fn find_server(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let chosen = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("TUNEBENCH_LLAMA_SERVER").map(PathBuf::from))
        .or_else(default_server);
    match chosen {
        Some(p) if p.is_file() => Ok(p),
        Some(p) => Err(format!(
            "no llama-server at {}: build it with scripts/build-llama-cpp --server ~/.cache/tunebench/llama.cpp, \
             or name one with --server",
            p.display()
        )),
        None => Err("no llama-server: name one with --server".into()),
    }
}

/// A llama-server child on the loopback, stopped when dropped.
pub struct Served {
    child: Child,
    pub base_url: String,
    pub log: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin -m model [--lora lora]` on a free loopback port and waits until it answers /health.
pub async fn serve(bin: &Path, model: &Path, lora: Option<&Path>, log: &Path) -> Result<Served, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free loopback port: {e}"))?
        .port();
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg("-m").arg(model);
    if let Some(l) = lora {
        cmd.arg("--lora").arg(l);
    }
    // --jinja: the model's own chat template, as transformers and tunebench render it.
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "-c", "4096", "-np", "1", "--jinja"]);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let mut served = Served { child, base_url: format!("http://127.0.0.1:{port}"), log: log.to_path_buf() };
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = served.child.try_wait() {
            return Err(format!("llama-server exited ({status}) before it answered: {}", tail(log)));
        }
        let health = client.get(format!("{}/health", served.base_url)).timeout(Duration::from_secs(2)).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            return Ok(served);
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!("llama-server did not answer /health within 300 s: {}", tail(log)));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The last lines of the server's log, for an error.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// One case whose answers differ: where, and the tokens there.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub case: String,
    /// Index of the first differing token of the answers (in the model's tokenizer).
    pub at: usize,
    pub in_process: String,
    pub served: String,
}

/// What the round trip measured.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub cases: usize,
    pub in_process_pass: f64,
    pub served_pass: f64,
    pub identical: usize,
    /// Cases whose answers agree on their first `AGREE_TOKENS` tokens (or wholly, when shorter).
    pub agree: usize,
    pub mismatches: Vec<Mismatch>,
    pub errors: Vec<String>,
}

/// The opening a template or end-token mistake changes: agreeing this far, two engines' greedy answers differ
/// only by their arithmetic.
pub const AGREE_TOKENS: usize = 16;

/// Runs the test cases (the first `limit`) through lane `lane` in process and through a temporary lane that
/// asks `served`, with the same prompt and sampling.
pub async fn compare(
    ws: &Workspace,
    lane: LaneIdx,
    served: &Served,
    tokenizer: &Tokenizer,
    limit: Option<usize>,
    registry: Registry,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Verdict, String> {
    let mut ws = ws.clone();
    let mut deployed = ws.lanes[lane].clone();
    deployed.id = format!("{}-served", deployed.id);
    deployed.backend = BackendKind::OpenAi;
    deployed.base_url = Some(format!("{}/v1", served.base_url));
    deployed.api_key_env = Some(String::new());
    deployed.adapter = None;
    deployed.model = "served".into();
    deployed.api.concurrency = Some(1);
    ws.lanes.push(deployed);
    let served_idx = ws.lanes.len() - 1;
    let mut setup = Setup::load(&ws, vec![lane, served_idx], limit).map_err(|e| e.to_string())?;
    let plan = setup.plan(false);
    let mut answers: HashMap<(usize, usize), crate::eval::Answer> =
        plan.cached.into_iter().map(|(j, a)| ((j.case, j.lane), a)).collect();
    let total = plan.run.len();
    let limits = runner::limits(&ws, &setup.lanes, 1, None);
    let (mut done, cache, cases) = (0usize, &mut setup.cache, &setup.cases);
    let mut on = |p: Progress| {
        if let Progress::Finished(job, answer) = p {
            done += 1;
            progress(done, total);
            // The served lane's hash holds this run's port: its answers would never be found again.
            if job.lane == lane {
                let _ = cache.put(&answer);
            }
            answers.insert((job.case, job.lane), *answer);
        }
    };
    runner::run(&ws, cases, &setup.hashes, plan.run, &limits, registry, CancellationToken::new(), &mut on).await;
    let mut v = Verdict {
        cases: setup.cases.len(),
        in_process_pass: 0.0,
        served_pass: 0.0,
        identical: 0,
        agree: 0,
        mismatches: Vec::new(),
        errors: Vec::new(),
    };
    for (ci, case) in setup.cases.iter().enumerate() {
        let (Some(a), Some(b)) = (answers.get(&(ci, lane)), answers.get(&(ci, served_idx))) else { continue };
        for x in [a, b].into_iter().filter(|x| x.error.is_some()) {
            v.errors.push(format!("case {} · lane {}: {}", case.id, x.lane, x.error.as_deref().unwrap_or("")));
        }
        if a.output == b.output {
            v.identical += 1;
            v.agree += 1;
            continue;
        }
        let ids = |t: &str| tokenizer.encode(t, false).unwrap_or_default();
        let (ta, tb) = (ids(&a.output), ids(&b.output));
        let at = ta.iter().zip(&tb).position(|(x, y)| x != y).unwrap_or(ta.len().min(tb.len()));
        if at >= AGREE_TOKENS {
            v.agree += 1;
        }
        let piece = |t: &[u32]| t.get(at).map_or_else(|| "(end)".to_string(), |&i| tokenizer.decode(&[i]));
        v.mismatches.push(Mismatch { case: case.id.clone(), at, in_process: piece(&ta), served: piece(&tb) });
    }
    let board = Scoreboard::build(&ws, &setup.cases, &setup.evals, &setup.lanes, answers);
    for s in &board.lanes {
        if s.idx == lane {
            v.in_process_pass = s.pass_rate();
        } else if s.idx == served_idx {
            v.served_pass = s.pass_rate();
        }
    }
    Ok(v)
}

impl Verdict {
    /// The failures against the limits: agreement below `min_agree`, or the served pass rate more than
    /// `max_drop` under the in-process one, or any failed run.
    pub fn failures(&self, min_agree: f64, max_drop: f64) -> Vec<String> {
        let mut out = Vec::new();
        let share = self.agree as f64 / self.cases.max(1) as f64;
        if share < min_agree {
            out.push(format!(
                "{:.0}% of answers agree on their first {AGREE_TOKENS} tokens, below --min-agree {:.0}%",
                share * 100.0,
                min_agree * 100.0
            ));
        }
        if self.in_process_pass - self.served_pass > max_drop {
            out.push(format!(
                "the served pass rate {:.1}% is more than --max-drop {:.1} points under the in-process {:.1}%",
                self.served_pass * 100.0,
                max_drop * 100.0,
                self.in_process_pass * 100.0
            ));
        }
        if !self.errors.is_empty() {
            out.push(format!("{} run(s) failed", self.errors.len()));
        }
        out
    }
}
