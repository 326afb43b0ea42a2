//! Asking the judge lanes: the estimate of the paid calls, then the calls themselves (each judge lane within
//! its limit of calls in flight), every well-formed reply cached, a malformed one asked again twice.

use std::collections::{HashMap, VecDeque};

use tokio::sync::mpsc;

use super::cache::{self, JudgeCache, Reply};
use super::prompt::{self, Ask};
use crate::engine::{Engine, EventKind, LaneIdx, Registry, RunRequest};
use crate::eval::runner::{self, DEFAULT_API_CONCURRENCY};
use crate::eval::{Estimate, Kind, is_paid, lane_hash};
use crate::workspace::Workspace;

/// Tries per call: the first and two retries after a malformed verdict.
const TRIES: usize = 3;

/// What the paid judge calls will cost: prompts counted in the judge lane's tokenizer, replies bounded by its
/// max_tokens (retries are not counted: they happen only on a malformed reply).
pub fn estimate<T>(ws: &Workspace, asks: &[(LaneIdx, T, Ask)]) -> Estimate {
    let counters = crate::metrics::count::Counters::new();
    let mut e = Estimate::default();
    for (lane, _, ask) in asks.iter().filter(|(l, _, _)| is_paid(&ws.lanes[*l])) {
        let spec = &ws.lanes[*lane];
        e.calls += 1;
        if !e.lanes.contains(&spec.id) {
            e.lanes.push(spec.id.clone());
        }
        match crate::metrics::prices::rate(ws, spec) {
            Some(crate::metrics::prices::Rate::Tokens(p)) => {
                let tokens = counters.count(spec, None, &ask.system, &ask.input).map_or(0, |c| c.tokens);
                e.prompt_usd += tokens as f64 * p.input_per_mtok / 1e6;
                e.completion_max_usd += f64::from(spec.sampling.max_tokens) * p.output_per_mtok / 1e6;
            }
            _ if !e.unpriced.contains(&spec.id) => e.unpriced.push(spec.id.clone()),
            _ => {}
        }
    }
    e
}

/// What a reply must hold: a verdict for an assertion, or (a teacher writing new inputs) a JSON list of
/// strings, sampled with the lane's own settings and this seed.
#[derive(Debug, Clone)]
pub enum Expect {
    Verdict(Kind),
    List { seed: u64 },
}

impl Expect {
    fn check(&self, text: &str) -> Result<(), String> {
        match self {
            Expect::Verdict(kind) => prompt::parse(kind, text).map(|_| ()),
            Expect::List { .. } => prompt::parse_list(text).map(|_| ()),
        }
    }
}

struct Pending {
    lane: LaneIdx,
    kind: Expect,
    /// The ask as planned (its cache key), and as sent this try.
    ask: Ask,
    sent: Ask,
    tries: usize,
}

/// Asks every call (tunebench's prompt in place of the lane's own, temperature 0); returns, by cache key,
/// why each call that never gave a well-formed verdict failed.
pub async fn run(
    ws: &Workspace,
    registry: Registry,
    asks: Vec<(LaneIdx, Expect, Ask)>,
    cache: &mut JudgeCache,
) -> HashMap<String, String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(registry, tx);
    let judges: Vec<LaneIdx> = {
        let mut j: Vec<LaneIdx> = asks.iter().map(|a| a.0).collect();
        j.sort_unstable();
        j.dedup();
        j
    };
    let groups = runner::limits(ws, &judges, DEFAULT_API_CONCURRENCY as usize, None);
    let group_of = |lane: LaneIdx| groups.iter().position(|g| g.lanes.contains(&lane)).unwrap_or(0);
    let hashes: HashMap<LaneIdx, String> = judges.iter().map(|&l| (l, lane_hash(ws, &ws.lanes[l]))).collect();
    let mut queue: VecDeque<Pending> =
        asks.into_iter().map(|(lane, kind, ask)| Pending { lane, kind, sent: ask.clone(), ask, tries: 0 }).collect();
    let mut in_flight = vec![0usize; groups.len().max(1)];
    let mut running: HashMap<u64, (Pending, String)> = HashMap::new();
    let (mut next_id, mut errors) = (0u64, HashMap::new());
    loop {
        let mut waiting = VecDeque::new();
        while let Some(p) = queue.pop_front() {
            let g = group_of(p.lane);
            if in_flight[g] >= groups.get(g).map_or(1, |g| g.limit) {
                waiting.push_back(p);
                continue;
            }
            let Some(mut req) = RunRequest::for_lane(ws, p.lane, &p.sent.input) else { continue };
            req.system_prompt = p.sent.system.clone();
            match p.kind {
                Expect::Verdict(_) => req.lane.sampling.temperature = 0.0,
                Expect::List { seed } => req.lane.sampling.seed = Some(seed),
            }
            in_flight[g] += 1;
            engine.start(p.lane, next_id, req);
            running.insert(next_id, (p, String::new()));
            next_id += 1;
        }
        queue = waiting;
        if running.is_empty() {
            return errors;
        }
        let Some(ev) = rx.recv().await else { return errors };
        let Some((_, text)) = running.get_mut(&ev.run) else { continue };
        let usage = match ev.kind {
            EventKind::Token { text: t } => {
                text.push_str(&t);
                continue;
            }
            EventKind::Done { usage, .. } => Ok(usage),
            EventKind::Failed { error } => Err(error.to_string()),
            _ => continue,
        };
        let Some((p, text)) = running.remove(&ev.run) else { continue };
        in_flight[group_of(p.lane)] -= 1;
        let key = cache::key(&hashes[&p.lane], &p.ask);
        let problem = match usage {
            Err(e) => Some(e),
            Ok(usage) => match p.kind.check(&text) {
                Ok(_) => {
                    let reply = Reply {
                        key: key.clone(),
                        judge_lane: ws.lanes[p.lane].id.clone(),
                        text,
                        prompt_tokens: usage.prompt_tokens,
                        completion_tokens: usage.completion_tokens,
                        cached_prompt_tokens: usage.cached_prompt_tokens,
                        time_unix_ms: std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis()),
                    };
                    // Not cached (a full disk …): the verdict stands for this eval, the next one asks again.
                    let _ = cache.put(reply);
                    None
                }
                Err(e) if p.tries + 1 < TRIES => {
                    let sent = prompt::retry(&p.ask, &e);
                    queue.push_back(Pending { sent, tries: p.tries + 1, ..p });
                    continue;
                }
                Err(e) => Some(format!("{e} (after {TRIES} tries)")),
            },
        };
        if let Some(e) = problem {
            errors.insert(key, e);
        }
    }
}
