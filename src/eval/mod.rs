//! Evaluating lanes over the test split: cases, assertions (evals.toml), cached runs and the scoreboard.

pub mod assert;
pub mod cache;
pub mod diff;
pub mod judge;
pub mod report;
pub mod runner;
pub mod score;
pub mod similarity;
pub mod spec;

use std::path::PathBuf;

use crate::dataset::{Dataset, Split};
use crate::metrics::history::sha256_hex;
use crate::workspace::Workspace;

pub use assert::{Assertion, Check, Kind};
pub use cache::{Answer, Cache, lane_hash};
pub use score::{LaneScore, Scoreboard, wilson};
pub use spec::Evals;

/// The file of assertions next to workspace.toml.
pub const EVALS_FILE: &str = "evals.toml";

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file is wrong: `where_` names the file and line (and the field, in the message).
    #[error("{where_}: {message}")]
    Invalid { where_: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

/// One test example: the input every lane answers and the answer expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub id: String,
    pub input: String,
    pub expected: String,
    /// 1-based line in test.jsonl.
    pub line: usize,
    /// What identifies the case's run: its input (the expected answer is only scored against, so editing it
    /// re-scores the cached answers instead of running them again), and the repeat.
    pub hash: String,
    /// Which run of the case this is (`eval --repeat N`): 0 for the first; repeat i samples with seed + i.
    pub repeat: usize,
    /// The example's tags (`meta.tags`), which `eval --tag` selects by.
    pub tags: Vec<String>,
}

impl Case {
    /// Repeat `i` of this case: same id, input and expected answer; its own cache key (repeat 0 keeps the key
    /// a run without repeats has, so the cache stays valid).
    pub fn repeat(&self, i: usize) -> Self {
        let hash = if i == 0 {
            self.hash.clone()
        } else {
            sha256_hex(format!("{}|repeat {i}", self.hash).as_bytes())[..16].to_string()
        };
        Self { hash, repeat: i, ..self.clone() }
    }
}

/// The test split's examples, in file order; a malformed line is an error naming it (never silently skipped).
pub fn load_cases(ws: &Workspace) -> Result<Vec<Case>, EvalError> {
    let ds = Dataset::load(&ws.dataset_dir()).map_err(|e| EvalError::Refused(e.to_string()))?;
    let path = ds.path(Split::Test);
    if let Some((_, bad)) = ds.malformed().find(|(s, _)| *s == Split::Test) {
        return Err(EvalError::Invalid {
            where_: format!("{}:{}", path.display(), bad.line),
            message: format!("{} (fix or remove the line; `tunebench dataset … check` lists them all)", bad.error),
        });
    }
    let cases: Vec<Case> = ds
        .examples()
        .filter(|(s, _, _)| *s == Split::Test)
        .map(|(_, ex, line)| Case {
            id: if ex.id.is_empty() { format!("line{line}") } else { ex.id.clone() },
            input: ex.user().to_string(),
            expected: ex.assistant().to_string(),
            line,
            hash: sha256_hex(ex.user().as_bytes())[..16].to_string(),
            repeat: 0,
            tags: ex.meta.tags.clone(),
        })
        .collect();
    if cases.is_empty() {
        return Err(EvalError::Refused(format!(
            "{} has no examples: an eval needs test cases (promote answers with Ctrl+P, or `tunebench dataset {} split`)",
            path.display(),
            ws.root.display()
        )));
    }
    Ok(cases)
}

/// Which test cases an eval takes: those carrying `tag` (all when None), then the first `limit`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Select<'a> {
    pub limit: Option<usize>,
    pub tag: Option<&'a str>,
}

/// What an eval needs before it runs anything: cases, assertions, lane hashes and the cache.
pub struct Setup {
    pub cases: Vec<Case>,
    pub evals: Evals,
    /// Indexed by lane; lanes not chosen have an empty hash.
    pub hashes: Vec<String>,
    pub lanes: Vec<crate::engine::LaneIdx>,
    pub cache: Cache,
}

impl Setup {
    /// Reads everything up front, so that a bad evals.toml or test line stops the eval before any run.
    pub fn load(ws: &Workspace, lanes: Vec<crate::engine::LaneIdx>, limit: Option<usize>) -> Result<Self, EvalError> {
        Self::load_repeated(ws, lanes, Select { limit, tag: None }, 1)
    }

    /// As `load`, with the cases `select` keeps, every one `repeats` times (case order: all of repeat 0, then
    /// repeat 1, …).
    pub fn load_repeated(
        ws: &Workspace,
        lanes: Vec<crate::engine::LaneIdx>,
        select: Select<'_>,
        repeats: usize,
    ) -> Result<Self, EvalError> {
        let mut cases = load_cases(ws)?;
        // Ids are checked against every case, so that --limit or --tag cannot make a valid evals.toml look wrong.
        let evals = Evals::load(&ws.root, &cases)?;
        // A judge lane grades; it is never a contestant.
        let judges = judge::judge_lanes(ws, &evals).map_err(EvalError::Refused)?;
        let lanes: Vec<crate::engine::LaneIdx> = lanes.into_iter().filter(|l| !judges.contains(l)).collect();
        if let Some(tag) = select.tag {
            let all = cases.len();
            let mut known: Vec<String> = cases.iter().flat_map(|c| c.tags.iter().cloned()).collect();
            cases.retain(|c| c.tags.iter().any(|t| t == tag));
            if cases.is_empty() {
                known.sort_unstable();
                known.dedup();
                return Err(EvalError::Refused(format!(
                    "none of the {all} test cases carries the tag `{tag}` (their tags: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )));
            }
        }
        if let Some(n) = select.limit {
            cases.truncate(n);
        }
        let cases = (0..repeats.max(1)).flat_map(|i| cases.iter().map(move |c| c.repeat(i))).collect();
        let hashes = (0..ws.lanes.len())
            .map(|l| if lanes.contains(&l) { lane_hash(ws, &ws.lanes[l]) } else { String::new() })
            .collect();
        Ok(Self { cases, evals, hashes, lanes, cache: Cache::load(&ws.root)? })
    }

    pub fn plan(&self, fresh: bool) -> runner::Plan {
        runner::plan(&self.cases, &self.lanes, &self.hashes, &self.cache, fresh)
    }

    /// The scoreboard from the cache alone (what the TUI shows before and after a run).
    pub fn cached_board(&self, ws: &Workspace) -> Scoreboard {
        let mut answers = self.plan(false).cached.into_iter().map(|(j, a)| ((j.case, j.lane), a)).collect();
        // An unreadable judge cache leaves the judge's assertions ungraded, which their checks say.
        let judge_cache = judge::JudgeCache::load(&ws.root).unwrap_or_default();
        judge::cached(ws, &self.cases, &self.evals, &mut answers, &self.cache, &judge_cache);
        Scoreboard::build(ws, &self.cases, &self.evals, &self.lanes, answers)
    }
}

/// A call that costs money: an API lane whose server is not this machine.
pub fn is_paid(lane: &crate::workspace::LaneSpec) -> bool {
    let host = crate::workspace::url_host(lane.base_url());
    let host = host
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    lane.backend.is_api() && !matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1" | "0.0.0.0")
}

/// What the paid calls of a plan will cost: prompts counted in each lane's tokenizer, answers bounded by max_tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimate {
    pub calls: usize,
    pub lanes: Vec<String>,
    pub prompt_usd: f64,
    pub completion_max_usd: f64,
    /// Paid lanes without a known price.
    pub unpriced: Vec<String>,
}

impl Estimate {
    pub fn of(ws: &Workspace, cases: &[Case], jobs: &[runner::Job]) -> Self {
        let counters = crate::metrics::count::Counters::new();
        let mut e = Self::default();
        for job in jobs.iter().filter(|j| is_paid(&ws.lanes[j.lane])) {
            let lane = &ws.lanes[job.lane];
            e.calls += 1;
            if !e.lanes.contains(&lane.id) {
                e.lanes.push(lane.id.clone());
            }
            match crate::metrics::prices::rate(ws, lane) {
                Some(crate::metrics::prices::Rate::Tokens(p)) => {
                    let system = ws.prompt_text(&lane.prompt).unwrap_or_default();
                    let tokens = counters.count(lane, None, system, &cases[job.case].input).map_or(0, |c| c.tokens);
                    e.prompt_usd += tokens as f64 * p.input_per_mtok / 1e6;
                    e.completion_max_usd += f64::from(lane.sampling.max_tokens) * p.output_per_mtok / 1e6;
                }
                _ => {
                    if !e.unpriced.contains(&lane.id) {
                        e.unpriced.push(lane.id.clone());
                    }
                }
            }
        }
        e
    }

    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} paid call(s) on lane(s) {}: about ${:.4} for the prompts + at most ${:.4} for the answers (max_tokens) = at most ${:.4}",
            self.calls,
            self.lanes.join(", "),
            self.prompt_usd,
            self.completion_max_usd,
            self.prompt_usd + self.completion_max_usd
        );
        if !self.unpriced.is_empty() {
            s.push_str(&format!("; no price known for {} (add [pricing.\"model\"])", self.unpriced.join(", ")));
        }
        s
    }
}
