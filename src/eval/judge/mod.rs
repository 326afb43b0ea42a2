//! Assertions graded by a judge lane (`llm-rubric`, `g-eval`, `pairwise`): the prompts tunebench sends (they
//! replace the judge lane's own, at temperature 0), the verdicts parsed from its replies, and the grading of a
//! whole eval — cached replies first, then the calls still missing, retried twice on a malformed verdict.

mod ask;
mod cache;
pub mod calibrate;
mod prompt;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Answer, Case, Evals, Kind, lane_hash};
use crate::engine::{LaneIdx, Registry};
use crate::metrics::history::sha256_hex;
use crate::workspace::Workspace;

pub use ask::{Expect, estimate, run as ask_all};
pub use cache::{JUDGE_CACHE_FILE, JudgeCache, Reply, key as cache_key};
pub use prompt::{Ask, parse, parse_list};

/// How a pairwise comparison came out for the lane (against the reference), both orders combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Win,
    Tie,
    Loss,
}

/// A judge's verdict on one answer for one assertion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    /// 0–1 (g-eval's 1–5 scaled; pairwise: win 1, tie ½, loss 0).
    pub score: f64,
    pub reason: String,
    /// The judge never gave a well-formed verdict (after the retries), or could not run: never a pass.
    pub error: Option<String>,
    pub outcome: Option<Outcome>,
    /// What the judge calls cost at the judge lane's price (None: unknown), and how many there were.
    pub cost_usd: Option<f64>,
    pub calls: usize,
}

impl Verdict {
    fn failed(error: String) -> Self {
        Self {
            pass: false,
            score: 0.0,
            reason: String::new(),
            error: Some(error),
            outcome: None,
            cost_usd: None,
            calls: 0,
        }
    }
}

/// What identifies a judge assertion's verdicts on an answer: its kind and its texts.
pub fn judge_id(kind: &Kind) -> String {
    let text = match kind {
        Kind::Rubric { rubric, .. } => format!("llm-rubric|{rubric}"),
        Kind::GEval { criteria, steps, .. } => format!("g-eval|{criteria}|{}", steps.join("\n")),
        Kind::Pairwise { question, reference, .. } => format!("pairwise|{question}|{reference:?}"),
        other => other.type_name().to_string(),
    };
    sha256_hex(text.as_bytes())[..16].to_string()
}

/// The judge lane an assertion names, else evals.toml's `[judge] lane`.
pub fn judge_lane<'a>(kind: &'a Kind, evals: &'a Evals) -> Option<&'a str> {
    match kind {
        Kind::Rubric { judge, .. } | Kind::GEval { judge, .. } | Kind::Pairwise { judge, .. } => {
            judge.as_deref().or(evals.judge.as_deref())
        }
        _ => None,
    }
}

/// The judge lanes evals.toml names (they are never scored as contestants), each checked to exist, as are
/// the pairwise reference lanes.
pub fn judge_lanes(ws: &Workspace, evals: &Evals) -> Result<Vec<LaneIdx>, String> {
    let file = evals.file.as_ref().map_or_else(|| super::EVALS_FILE.to_string(), |f| f.display().to_string());
    let known = || ws.lanes.iter().map(|l| l.id.as_str()).collect::<Vec<_>>().join(", ");
    let find = |id: &str, what: &str| {
        ws.lanes
            .iter()
            .position(|l| l.id == id)
            .ok_or_else(|| format!("{file}: {what} `{id}`: no such lane (lanes: {})", known()))
    };
    let mut judges = Vec::new();
    if let Some(j) = &evals.judge {
        judges.push(find(j, "[judge] lane")?);
    }
    for a in evals.all.iter().chain(evals.by_case.values().flatten()).filter(|a| a.kind.is_judged()) {
        if let Some(j) = judge_lane(&a.kind, evals) {
            let j = find(j, &format!("`{}`'s judge", a.name))?;
            if !judges.contains(&j) {
                judges.push(j);
            }
        }
        if let Some(r) = reference_lane(ws, &a.kind) {
            find(&r, &format!("`{}`'s reference", a.name))?;
        }
        if matches!(a.kind, Kind::Pairwise { .. }) && reference_lane(ws, &a.kind).is_none() {
            return Err(format!(
                "{file}: `{}` needs a reference lane: `reference = \"…\"`, or `[savings] reference` in workspace.toml",
                a.name
            ));
        }
    }
    Ok(judges)
}

/// One answer to grade: the case, the contestant lane, and (for pairwise) the reference lane's answer.
pub struct Item<'a> {
    pub case: &'a Case,
    pub lane: LaneIdx,
    pub answer: &'a Answer,
    pub reference: Option<&'a Answer>,
}

/// The judge calls an assertion needs on one answer, or why it cannot be graded.
fn asks(ws: &Workspace, evals: &Evals, kind: &Kind, item: &Item<'_>) -> Result<(LaneIdx, Vec<Ask>), String> {
    let name = judge_lane(kind, evals).ok_or("no judge lane: add [judge] lane = \"…\" to evals.toml")?;
    let judge =
        ws.lanes.iter().position(|l| l.id == name).ok_or_else(|| format!("no judge lane `{name}` in the workspace"))?;
    let answer = crate::engine::think::answer(&item.answer.output).trim();
    let input = &item.case.input;
    let asks = match kind {
        Kind::Rubric { rubric, .. } => vec![prompt::rubric(rubric, input, answer)],
        Kind::GEval { criteria, steps, .. } => vec![prompt::g_eval(criteria, steps, input, answer)],
        Kind::Pairwise { question, .. } => {
            let Some(r) = item.reference else {
                return Err("the reference lane has no answer for this case (run it too)".into());
            };
            let theirs = crate::engine::think::answer(&r.output).trim();
            vec![prompt::pairwise(question, input, answer, theirs), prompt::pairwise(question, input, theirs, answer)]
        }
        _ => return Err("not a judge assertion".into()),
    };
    Ok((judge, asks))
}

/// The pairwise reference lane of an assertion: its own `reference`, else `[savings] reference`.
pub fn reference_lane(ws: &Workspace, kind: &Kind) -> Option<String> {
    match kind {
        Kind::Pairwise { reference, .. } => reference.clone().or_else(|| ws.savings.reference.clone()),
        _ => None,
    }
}

/// Each judge assertion on each answer: the case, the lane, the assertion, and its judge calls (or why it
/// cannot be graded).
type Plan = Vec<(usize, LaneIdx, Kind, Result<(LaneIdx, Vec<Ask>), String>)>;

fn plan_of(
    ws: &Workspace,
    cases: &[Case],
    evals: &Evals,
    answers: &HashMap<(usize, LaneIdx), Answer>,
    eval_cache: &crate::eval::Cache,
) -> Plan {
    let mut plan = Plan::new();
    let mut refs: HashMap<(usize, String), Option<Answer>> = HashMap::new();
    let mut keys: Vec<(usize, LaneIdx)> = answers.keys().copied().collect();
    keys.sort_unstable();
    for (ci, lane) in keys {
        let case = &cases[ci];
        for a in evals.for_case(case).iter().filter(|a| a.kind.is_judged()) {
            let reference = reference_lane(ws, &a.kind);
            if reference.as_deref() == Some(ws.lanes[lane].id.as_str()) {
                continue; // a lane is not compared with itself
            }
            let ref_answer = match &reference {
                Some(r) => refs
                    .entry((ci, r.clone()))
                    .or_insert_with(|| reference_answer(ws, answers, eval_cache, ci, r, case))
                    .clone(),
                None => None,
            };
            let Some(answer) = answers.get(&(ci, lane)).filter(|a| a.error.is_none()) else { continue };
            let item = Item { case, lane, answer, reference: ref_answer.as_ref() };
            plan.push((ci, lane, a.kind.clone(), asks(ws, evals, &a.kind, &item)));
        }
    }
    plan
}

/// The calls the cache lacks, each once (lanes that answered alike share a prompt).
fn missing_of(ws: &Workspace, plan: &Plan, cache: &JudgeCache) -> Vec<(LaneIdx, Kind, Ask)> {
    let mut missing: Vec<(LaneIdx, Kind, Ask)> = Vec::new();
    for (_, _, kind, asked) in plan {
        if let Ok((judge, asks)) = asked {
            let hash = lane_hash(ws, &ws.lanes[*judge]);
            for ask in asks {
                if cache.get(&hash, ask).is_none() && !missing.iter().any(|(j, _, m)| j == judge && m == ask) {
                    missing.push((*judge, kind.clone(), ask.clone()));
                }
            }
        }
    }
    missing
}

/// Puts each planned verdict on its answer: from the cached replies, or the failure of its call.
fn attach(
    ws: &Workspace,
    plan: Plan,
    cache: &JudgeCache,
    failures: &HashMap<String, String>,
    answers: &mut HashMap<(usize, LaneIdx), Answer>,
) {
    for (ci, lane, kind, asked) in plan {
        let verdict = match asked {
            Err(e) => Verdict::failed(e),
            Ok((judge, asks)) => {
                let hash = lane_hash(ws, &ws.lanes[judge]);
                match asks.iter().find_map(|a| failures.get(&cache::key(&hash, a))) {
                    Some(e) => Verdict::failed(format!("judge error: {e}")),
                    None => {
                        let replies: Vec<Option<&Reply>> = asks.iter().map(|a| cache.get(&hash, a)).collect();
                        combine(ws, judge, &kind, &replies)
                    }
                }
            }
        };
        if let Some(a) = answers.get_mut(&(ci, lane)) {
            a.verdicts.insert(judge_id(&kind), verdict);
        }
    }
}

/// The verdicts `judge_cache` already holds, put on `answers` without asking anything (what F9 shows before
/// and during a run); returns how many judge calls are still missing. `eval_cache` gives pairwise
/// references no lane of `answers` answered.
pub fn cached(
    ws: &Workspace,
    cases: &[Case],
    evals: &Evals,
    answers: &mut HashMap<(usize, LaneIdx), Answer>,
    eval_cache: &crate::eval::Cache,
    judge_cache: &JudgeCache,
) -> usize {
    let plan = plan_of(ws, cases, evals, answers, eval_cache);
    let missing = missing_of(ws, &plan, judge_cache).len();
    attach(ws, plan, judge_cache, &HashMap::new(), answers);
    missing
}

/// Grades every judge assertion on every answer: verdicts land in `answers` (each answer's `verdicts`, by
/// judge id; `eval_cache` as in `cached`). The calls the cache lacks run once `confirm` has seen their estimate and agreed (false: none
/// are made, and those verdicts stay ungraded).
pub async fn grade(
    ws: &Workspace,
    cases: &[Case],
    evals: &Evals,
    answers: &mut HashMap<(usize, LaneIdx), Answer>,
    eval_cache: &crate::eval::Cache,
    registry: Registry,
    confirm: &mut (dyn FnMut(&crate::eval::Estimate) -> bool + Send),
) -> Result<Grading, String> {
    let mut cache = JudgeCache::load(&ws.root)?;
    let plan = plan_of(ws, cases, evals, answers, eval_cache);
    let missing = missing_of(ws, &plan, &cache);
    let mut grading = Grading::default();
    let mut failures = HashMap::new();
    if !missing.is_empty() {
        if confirm(&ask::estimate(ws, &missing)) {
            grading.calls = missing.len();
            let asks = missing.into_iter().map(|(l, k, a)| (l, Expect::Verdict(k), a)).collect();
            failures = ask::run(ws, registry, asks, &mut cache).await;
            grading.errors = failures.len();
        } else {
            grading.declined = missing.len();
        }
    }
    attach(ws, plan, &cache, &failures, answers);
    Ok(grading)
}

/// The reference lane's answer to a case: from this eval's answers, else from the eval cache.
fn reference_answer(
    ws: &Workspace,
    answers: &HashMap<(usize, LaneIdx), Answer>,
    cache: &crate::eval::Cache,
    ci: usize,
    reference: &str,
    case: &Case,
) -> Option<Answer> {
    let lane = ws.lanes.iter().position(|l| l.id == reference)?;
    if let Some(a) = answers.get(&(ci, lane)).filter(|a| a.error.is_none()) {
        return Some(a.clone());
    }
    cache.get(&lane_hash(ws, &ws.lanes[lane]), &case.hash).cloned()
}

/// What grading did: judge calls made now, those that failed for good, those declined at the confirmation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Grading {
    pub calls: usize,
    pub errors: usize,
    pub declined: usize,
}

/// One assertion's verdict from its judge replies (one, or two for pairwise's two orders).
fn combine(ws: &Workspace, judge: LaneIdx, kind: &Kind, replies: &[Option<&Reply>]) -> Verdict {
    let Some(replies) = replies.iter().copied().collect::<Option<Vec<&Reply>>>() else {
        return Verdict::failed("not graded: no well-formed verdict from the judge (run the eval to ask it)".into());
    };
    let cost: Option<f64> = replies.iter().map(|r| r.cost_usd(ws, &ws.lanes[judge])).sum();
    let parsed: Result<Vec<prompt::Parsed>, String> = replies.iter().map(|r| parse(kind, &r.text)).collect();
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return Verdict { cost_usd: cost, calls: replies.len(), ..Verdict::failed(e) },
    };
    let threshold = kind.threshold().unwrap_or(0.5);
    let (score, reason, outcome, judged_pass) = match (kind, parsed.as_slice()) {
        (Kind::Pairwise { .. }, [first, second]) => {
            // First: the lane is A; second: the lane is B. A win in both orders is a win; a loss in both a loss.
            let mine = first.score + (1.0 - second.score);
            let outcome = if mine > 1.5 {
                Outcome::Win
            } else if mine < 0.5 {
                Outcome::Loss
            } else {
                Outcome::Tie
            };
            let score = match outcome {
                Outcome::Win => 1.0,
                Outcome::Tie => 0.5,
                Outcome::Loss => 0.0,
            };
            let reason = format!("as A: {}; as B: {}", first.reason, second.reason);
            (score, reason, Some(outcome), true)
        }
        (_, [one]) => (one.score, one.reason.clone(), None, one.pass),
        _ => return Verdict::failed("the judge's replies do not match the assertion".into()),
    };
    Verdict {
        pass: judged_pass && score >= threshold,
        score,
        reason,
        error: None,
        outcome,
        cost_usd: cost,
        calls: replies.len(),
    }
}
