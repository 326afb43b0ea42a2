//! Scores answers against their assertions and sums them per lane: pass rate with a Wilson interval,
//! per-assertion rates, token, time and cost figures, and savings against the reference lane.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::assert::Observed;
use super::runner::Job;
use super::{Answer, Case, Check, Evals};
use crate::engine::LaneIdx;
use crate::workspace::Workspace;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for `passed` of `n` at 95%: unlike p ± z·se it stays inside [0, 1] and is honest for
/// small n and rates near 0 or 1, which is where evals live.
pub fn wilson(passed: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, passed as f64 / n as f64);
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// One lane's answer to one case, judged.
#[derive(Debug, Clone)]
pub struct Scored {
    pub job: Job,
    pub answer: Answer,
    pub checks: Vec<Check>,
    /// At the lane's current price; None when unknown (no price, or a failed run).
    pub cost_usd: Option<f64>,
    pub pass: bool,
    /// Weighted share of assertions passed (0–1).
    pub score: f64,
}

pub fn judge(ws: &Workspace, case: &Case, evals: &Evals, job: Job, answer: Answer) -> Scored {
    let cost_usd = answer.cost_usd(ws, &ws.lanes[job.lane]);
    let observed = Observed {
        output: &answer.output,
        expected: &case.expected,
        total_ms: answer.total_ms,
        shared_lanes: answer.shared_lanes,
        cost_usd,
        prompt_tokens: answer.prompt_tokens,
        verdicts: Some(&answer.verdicts),
    };
    // A pairwise assertion compares a lane with its reference: on the reference lane itself it does not apply.
    let me = ws.lanes[job.lane].id.as_str();
    let mut checks: Vec<Check> = evals
        .for_case(case)
        .iter()
        .filter(|a| super::judge::reference_lane(ws, &a.kind).as_deref() != Some(me))
        .map(|a| a.check(&observed))
        .collect();
    if let Some(e) = &answer.error {
        checks.insert(0, Check { name: "run".into(), pass: false, weight: 1.0, detail: e.clone() });
    }
    let gating = checks.iter().filter(|c| c.weight > 0.0);
    let pass = gating.clone().all(|c| c.pass);
    let total: f64 = gating.clone().map(|c| c.weight).sum();
    // Adding 0.0 turns the empty sum's -0.0 into 0.0.
    let score = if total > 0.0 { gating.filter(|c| c.pass).map(|c| c.weight).sum::<f64>() / total + 0.0 } else { 1.0 };
    Scored { job, answer, checks, cost_usd, pass, score }
}

/// Mean and 95th percentile (nearest rank) of the values known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Stat {
    pub mean: Option<f64>,
    pub p95: Option<f64>,
}

impl Stat {
    pub fn of(values: impl Iterator<Item = Option<f64>>) -> Self {
        let mut v: Vec<f64> = values.flatten().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Self { mean: Some(v.iter().sum::<f64>() / v.len() as f64), p95: Some(v[rank - 1]) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssertRate {
    pub name: String,
    pub passed: usize,
    pub total: usize,
}

/// What a lane saves against the reference lane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VsReference {
    pub lane: String,
    /// Cases both lanes answered: the figures below are over these.
    pub cases: usize,
    /// Reference cost per 1,000 cases minus this lane's (positive: this lane is cheaper).
    pub saved_per_1k_usd: Option<f64>,
    pub saved_per_month_usd: Option<f64>,
    /// This lane's pass rate minus the reference's.
    pub pass_rate_delta: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaneScore {
    pub lane: String,
    pub idx: LaneIdx,
    /// Cases answered (run or cached); `not_run` were not.
    pub cases: usize,
    pub not_run: usize,
    pub passed: usize,
    pub errors: usize,
    pub cached: usize,
    pub mean_score: f64,
    pub assertions: Vec<AssertRate>,
    pub prompt_tokens: Stat,
    pub completion_tokens: Stat,
    pub ttft_ms: Stat,
    pub total_ms: Stat,
    /// The most lanes that shared the device during any of these runs (above 1: ttft and latency include
    /// other runs' work, as in a batched eval); None when every run had it alone or was not local.
    pub shared_lanes: Option<u32>,
    pub cost_per_case_usd: Option<f64>,
    pub vs_reference: Option<VsReference>,
    /// With `eval --repeat N`: the pass rate of each repeat over the cases it answered (empty without repeats).
    pub repeat_rates: Vec<f64>,
    /// What the lane ran with, for reports.
    pub config: LaneConfig,
    /// Judge calls behind this lane's verdicts, and what they cost at the judge lanes' prices (None: none,
    /// or a judge without a known price): priced apart from the lane's own runs. A reply shared with another
    /// lane (the same answer, so the same prompt: asked once) is counted in each.
    pub judge_calls: usize,
    pub judge_cost_usd: Option<f64>,
    /// Pairwise verdicts against the reference lane.
    pub pairwise: Option<Pairwise>,
}

/// Pairwise comparisons with the reference lane: wins, ties and losses (both orders asked for each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Pairwise {
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
}

impl Pairwise {
    pub fn n(&self) -> usize {
        self.wins + self.ties + self.losses
    }

    /// Ties count ½.
    pub fn win_rate(&self) -> f64 {
        if self.n() == 0 { 0.0 } else { (self.wins as f64 + 0.5 * self.ties as f64) / self.n() as f64 }
    }

    /// The win rate's 95% Wilson interval (a tie as half a win, so over 2n halves).
    pub fn ci95(&self) -> (f64, f64) {
        wilson(2 * self.wins + self.ties, 2 * self.n())
    }
}

/// A lane's configuration as the eval reports record it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaneConfig {
    pub backend: String,
    pub model: String,
    pub adapter: Option<String>,
    pub prompt_variant: String,
    #[serde(flatten)]
    pub sampling: crate::metrics::history::SamplingRecord,
}

impl LaneConfig {
    pub fn of(lane: &crate::workspace::LaneSpec) -> Self {
        Self {
            backend: lane.backend.as_str().into(),
            model: lane.model.clone(),
            adapter: lane.adapter.clone(),
            prompt_variant: lane.prompt.clone(),
            sampling: (&lane.sampling).into(),
        }
    }
}

/// How far the repeats' pass rates spread: lowest, highest and their standard deviation (population).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub max: f64,
    pub sd: f64,
}

impl LaneScore {
    /// The spread of the pass rate across repeats; None with fewer than two repeats answered.
    pub fn spread(&self) -> Option<Spread> {
        let r = &self.repeat_rates;
        if r.len() < 2 {
            return None;
        }
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        let sd = (r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / r.len() as f64).sqrt();
        Some(Spread {
            min: r.iter().copied().fold(f64::MAX, f64::min),
            max: r.iter().copied().fold(f64::MIN, f64::max),
            sd,
        })
    }

    pub fn pass_rate(&self) -> f64 {
        if self.cases == 0 { 0.0 } else { self.passed as f64 / self.cases as f64 }
    }

    pub fn ci95(&self) -> (f64, f64) {
        wilson(self.passed, self.cases)
    }

    pub fn cost_per_1k_usd(&self) -> Option<f64> {
        self.cost_per_case_usd.map(|c| c * 1000.0)
    }
}

/// Every judged answer and the per-lane sums.
#[derive(Debug, Clone, Default)]
pub struct Scoreboard {
    pub lanes: Vec<LaneScore>,
    /// Per case (in case order), the judged answers of the lanes that have one (in lane order).
    pub rows: Vec<Vec<Scored>>,
    pub reference: Option<String>,
}

impl Scoreboard {
    pub fn build(
        ws: &Workspace,
        cases: &[Case],
        evals: &Evals,
        lanes: &[LaneIdx],
        mut answers: HashMap<(usize, LaneIdx), Answer>,
    ) -> Self {
        let rows: Vec<Vec<Scored>> = (0..cases.len())
            .map(|ci| {
                lanes
                    .iter()
                    .filter_map(|&l| {
                        answers.remove(&(ci, l)).map(|a| judge(ws, &cases[ci], evals, Job { case: ci, lane: l }, a))
                    })
                    .collect()
            })
            .collect();
        let mut scores: Vec<LaneScore> = lanes.iter().map(|&l| lane_score(ws, l, cases.len(), &rows)).collect();
        let repeats = cases.iter().map(|c| c.repeat + 1).max().unwrap_or(1);
        if repeats > 1 {
            for s in &mut scores {
                s.repeat_rates = (0..repeats)
                    .filter_map(|r| {
                        let mine: Vec<&Scored> = rows
                            .iter()
                            .enumerate()
                            .filter(|(ci, _)| cases[*ci].repeat == r)
                            .flat_map(|(_, row)| row.iter().filter(|x| x.job.lane == s.idx))
                            .collect();
                        (!mine.is_empty()).then(|| mine.iter().filter(|x| x.pass).count() as f64 / mine.len() as f64)
                    })
                    .collect();
            }
        }
        // The workspace's reference lane (as F12 takes it: `[savings] reference`, else the first lane).
        let reference = ws.savings.reference.clone().or_else(|| ws.lanes.first().map(|l| l.id.clone()));
        let reference = reference.filter(|r| scores.iter().any(|s| &s.lane == r));
        if let Some(r) = &reference
            && let Some(&base) = lanes.iter().find(|&&l| &ws.lanes[l].id == r)
        {
            for s in scores.iter_mut().filter(|s| &s.lane != r) {
                s.vs_reference = versus(ws, &rows, base, s.idx);
            }
        }
        Self { lanes: scores, rows, reference }
    }

    /// The judged answer of `lane` to case `ci`, if any.
    pub fn get(&self, ci: usize, lane: LaneIdx) -> Option<&Scored> {
        self.rows.get(ci)?.iter().find(|s| s.job.lane == lane)
    }
}

/// A lane against the reference over the cases both answered, so that a partial run compares like with like.
fn versus(ws: &Workspace, rows: &[Vec<Scored>], reference: LaneIdx, lane: LaneIdx) -> Option<VsReference> {
    let pairs: Vec<(&Scored, &Scored)> = rows
        .iter()
        .filter_map(|row| {
            Some((row.iter().find(|s| s.job.lane == reference)?, row.iter().find(|s| s.job.lane == lane)?))
        })
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let priced: Vec<(f64, f64)> = pairs.iter().filter_map(|(r, l)| r.cost_usd.zip(l.cost_usd)).collect();
    let saved = (!priced.is_empty()).then(|| priced.iter().map(|(r, l)| r - l).sum::<f64>() / priced.len() as f64);
    let passed = |f: &dyn Fn(&(&Scored, &Scored)) -> bool| pairs.iter().filter(|p| f(p)).count() as f64;
    Some(VsReference {
        lane: ws.lanes[reference].id.clone(),
        cases: pairs.len(),
        saved_per_1k_usd: saved.map(|d| d * 1000.0),
        saved_per_month_usd: saved.map(|d| d * ws.savings.monthly_runs as f64),
        pass_rate_delta: (passed(&|p| p.1.pass) - passed(&|p| p.0.pass)) / n,
    })
}

fn lane_score(ws: &Workspace, lane: LaneIdx, total_cases: usize, rows: &[Vec<Scored>]) -> LaneScore {
    let mine: Vec<&Scored> = rows.iter().flatten().filter(|s| s.job.lane == lane).collect();
    let spec = &ws.lanes[lane];
    let mut rates: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for (order, c) in mine.iter().flat_map(|s| s.checks.iter()).enumerate() {
        let e = rates.entry(c.name.clone()).or_insert((order, 0, 0));
        e.1 += usize::from(c.pass);
        e.2 += 1;
    }
    let mut assertions: Vec<(usize, AssertRate)> =
        rates.into_iter().map(|(name, (order, passed, total))| (order, AssertRate { name, passed, total })).collect();
    assertions.sort_by_key(|(order, _)| *order);
    let costs: Vec<Option<f64>> = mine.iter().map(|s| s.cost_usd).collect();
    let ok = mine.iter().filter(|s| s.answer.error.is_none());
    let verdicts = || mine.iter().flat_map(|s| s.answer.verdicts.values());
    LaneScore {
        lane: spec.id.clone(),
        idx: lane,
        cases: mine.len(),
        not_run: total_cases - mine.len(),
        passed: mine.iter().filter(|s| s.pass).count(),
        errors: mine.iter().filter(|s| s.answer.error.is_some()).count(),
        cached: mine.iter().filter(|s| s.answer.from_cache).count(),
        mean_score: if mine.is_empty() { 0.0 } else { mine.iter().map(|s| s.score).sum::<f64>() / mine.len() as f64 },
        assertions: assertions.into_iter().map(|(_, a)| a).collect(),
        prompt_tokens: Stat::of(ok.clone().map(|s| s.answer.prompt_tokens.map(|n| n as f64))),
        completion_tokens: Stat::of(ok.clone().map(|s| s.answer.completion_tokens.map(|n| n as f64))),
        ttft_ms: Stat::of(ok.clone().map(|s| s.answer.ttft_ms)),
        total_ms: Stat::of(ok.clone().map(|s| s.answer.total_ms)),
        shared_lanes: ok.filter_map(|s| s.answer.shared_lanes).filter(|&n| n > 1).max(),
        cost_per_case_usd: {
            let known: Vec<f64> = costs.iter().flatten().copied().collect();
            (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
        },
        vs_reference: None,
        repeat_rates: Vec::new(),
        config: LaneConfig::of(spec),
        judge_calls: verdicts().map(|v| v.calls).sum(),
        judge_cost_usd: {
            let costs: Vec<Option<f64>> = verdicts().filter(|v| v.calls > 0).map(|v| v.cost_usd).collect();
            (!costs.is_empty()).then(|| costs.iter().copied().sum::<Option<f64>>()).flatten()
        },
        pairwise: {
            let mut p = Pairwise::default();
            for o in verdicts().filter_map(|v| v.outcome) {
                match o {
                    super::judge::Outcome::Win => p.wins += 1,
                    super::judge::Outcome::Tie => p.ties += 1,
                    super::judge::Outcome::Loss => p.losses += 1,
                }
            }
            (p.n() > 0).then_some(p)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // 8/10: the textbook interval is [0.490, 0.943]; 0/10 and 10/10 stay inside [0, 1].
        let (lo, hi) = wilson(8, 10);
        assert!((lo - 0.4902).abs() < 1e-3 && (hi - 0.9433).abs() < 1e-3, "{lo} {hi}");
        let (lo, hi) = wilson(0, 10);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-3, "{hi}");
        let (lo, hi) = wilson(10, 10);
        assert!((lo - 0.7225).abs() < 1e-3 && (hi - 1.0).abs() < 1e-12, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn the_spread_of_repeats() {
        let ws =
            crate::workspace::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workspaces/ticket-triage"));
        let ws = ws.unwrap();
        let mut s = lane_score(&ws, 0, 0, &[]);
        assert_eq!(s.spread(), None);
        s.repeat_rates = vec![0.5, 0.75, 1.0];
        let sp = s.spread().unwrap();
        assert_eq!((sp.min, sp.max), (0.5, 1.0));
        assert!((sp.sd - 0.2041).abs() < 1e-4, "{}", sp.sd);
    }

    #[test]
    fn p95_is_the_nearest_rank() {
        let s = Stat::of((1..=20).map(|v| Some(v as f64)));
        assert_eq!((s.mean, s.p95), (Some(10.5), Some(19.0)));
        assert_eq!(Stat::of([None, Some(3.0)].into_iter()).p95, Some(3.0));
        assert_eq!(Stat::of(std::iter::empty()), Stat::default());
    }
}
