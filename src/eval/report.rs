//! The scoreboard written out: `eval --json` lines, a terminal table, and reports (Markdown, CSV, JSON lines).

use serde::Serialize;
use serde_json::json;

use super::Case;
use super::score::{LaneScore, Scoreboard, Stat};
use crate::metrics::fmt_usd;
use crate::metrics::history::quote;

/// The `eval --json` line of a lane: the fields first, in its order, then extensions.
#[derive(Serialize)]
struct LaneLine<'a> {
    lane: &'a str,
    cases: usize,
    passed: usize,
    pass_rate: f64,
    pass_rate_ci95: [f64; 2],
    mean_prompt_tokens: Option<f64>,
    mean_completion_tokens: Option<f64>,
    mean_ttft_ms: Option<f64>,
    mean_total_ms: Option<f64>,
    cost_per_1k_usd: Option<f64>,
    mean_score: f64,
    errors: usize,
    not_run: usize,
    cached: usize,
    p95_prompt_tokens: Option<f64>,
    p95_completion_tokens: Option<f64>,
    p95_ttft_ms: Option<f64>,
    p95_total_ms: Option<f64>,
    cost_per_case_usd: Option<f64>,
    /// Pass rate per assertion, in the order they were first met.
    assertions: Rates<'a>,
    vs_reference: &'a Option<super::score::VsReference>,
    /// Runs of each case (`--repeat`), the pass rate of each repeat and their spread (None for one repeat).
    repeats: usize,
    pass_rate_by_repeat: Vec<f64>,
    pass_rate_spread: Option<super::score::Spread>,
    /// What the lane ran with: backend, model, adapter, prompt variant and sampling settings.
    config: &'a super::score::LaneConfig,
    /// The most lanes that shared the device in any run (ttft and total then include their work); null when
    /// every run had it alone.
    shared_lanes: Option<u32>,
    /// Judge calls behind the lane's verdicts and their cost, priced apart from the lane's own runs.
    judge_calls: usize,
    judge_cost_usd: Option<f64>,
    /// Pairwise verdicts against the reference lane (ties count ½ in the win rate).
    pairwise: Option<PairwiseLine>,
}

#[derive(Serialize)]
struct PairwiseLine {
    wins: usize,
    ties: usize,
    losses: usize,
    win_rate: f64,
    win_rate_ci95: [f64; 2],
}

/// `{"name": rate, …}` in the assertions' own order (a JSON object, which serde_json would sort).
struct Rates<'a>(&'a [super::score::AssertRate]);

impl Serialize for Rates<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = ser.serialize_map(Some(self.0.len()))?;
        for a in self.0 {
            m.serialize_entry(&a.name, &((a.passed as f64 / a.total.max(1) as f64 * 1e4).round() / 1e4))?;
        }
        m.end()
    }
}

pub fn lane_json(s: &LaneScore) -> String {
    let (lo, hi) = s.ci95();
    let r4 = |v: f64| (v * 1e4).round() / 1e4;
    let r1 = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
    let line = LaneLine {
        lane: &s.lane,
        cases: s.cases,
        passed: s.passed,
        pass_rate: r4(s.pass_rate()),
        pass_rate_ci95: [r4(lo), r4(hi)],
        mean_prompt_tokens: r1(s.prompt_tokens.mean),
        mean_completion_tokens: r1(s.completion_tokens.mean),
        mean_ttft_ms: r1(s.ttft_ms.mean),
        mean_total_ms: r1(s.total_ms.mean),
        cost_per_1k_usd: s.cost_per_1k_usd().map(|c| (c * 1e6).round() / 1e6),
        mean_score: r4(s.mean_score),
        errors: s.errors,
        not_run: s.not_run,
        cached: s.cached,
        p95_prompt_tokens: s.prompt_tokens.p95,
        p95_completion_tokens: s.completion_tokens.p95,
        p95_ttft_ms: r1(s.ttft_ms.p95),
        p95_total_ms: r1(s.total_ms.p95),
        cost_per_case_usd: s.cost_per_case_usd,
        assertions: Rates(&s.assertions),
        vs_reference: &s.vs_reference,
        repeats: s.repeat_rates.len().max(1),
        pass_rate_by_repeat: s.repeat_rates.iter().map(|&v| r4(v)).collect(),
        pass_rate_spread: s.spread().map(|p| super::score::Spread { min: r4(p.min), max: r4(p.max), sd: r4(p.sd) }),
        config: &s.config,
        shared_lanes: s.shared_lanes,
        judge_calls: s.judge_calls,
        judge_cost_usd: s.judge_cost_usd,
        pairwise: s.pairwise.map(|p| {
            let (lo, hi) = p.ci95();
            PairwiseLine {
                wins: p.wins,
                ties: p.ties,
                losses: p.losses,
                win_rate: r4(p.win_rate()),
                win_rate_ci95: [r4(lo), r4(hi)],
            }
        }),
    };
    // Plain numbers, strings and options: serialising cannot fail; never print a blank line if it did.
    serde_json::to_string(&line).unwrap_or_else(|e| format!("{{\"lane\":{:?},\"error\":\"{e}\"}}", s.lane))
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.decimals$}"))
}

fn stat(s: Stat, decimals: usize) -> String {
    format!("{} / {}", num(s.mean, decimals), num(s.p95, decimals))
}

/// A time figure that includes other runs' work says so (a batched eval's runs share the device).
fn shared(cell: String, lanes: Option<u32>) -> String {
    match lanes {
        Some(n) => format!("{cell} (shared ×{n})"),
        None => cell,
    }
}

/// Rows of the scoreboard as cells, shared by the terminal table and the Markdown report; with repeats, a last
/// column gives the spread of the pass rate across them.
pub fn table(board: &Scoreboard) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let repeated = board.lanes.iter().any(|s| !s.repeat_rates.is_empty());
    let mut head = vec![
        "lane",
        "pass",
        "rate (95% CI)",
        "prompt tok mean/p95",
        "completion tok mean/p95",
        "ttft ms mean/p95",
        "latency ms mean/p95",
        "$/case",
        "$/1k cases",
        "vs reference",
    ];
    if repeated {
        head.push("pass rate over repeats min–max (sd)");
    }
    let judged = board.lanes.iter().any(|s| s.judge_calls > 0 || s.pairwise.is_some());
    if judged {
        head.push("judge cost");
        head.push("pairwise win/tie/loss");
    }
    let rows = board
        .lanes
        .iter()
        .map(|s| {
            let (lo, hi) = s.ci95();
            let vs = match &s.vs_reference {
                None if board.reference.as_deref() == Some(s.lane.as_str()) => "reference".into(),
                None => String::new(),
                Some(v) => format!(
                    "{} per 1k, {:+.0} pts",
                    v.saved_per_1k_usd.map_or("?".into(), |d| if d >= 0.0 {
                        format!("saves {}", fmt_usd(Some(d)))
                    } else {
                        format!("costs {} more", fmt_usd(Some(-d)))
                    }),
                    v.pass_rate_delta * 100.0
                ),
            };
            let spread = s.spread().map_or("–".into(), |p| {
                format!("{:.0}–{:.0}% (sd {:.1} pts)", p.min * 100.0, p.max * 100.0, p.sd * 100.0)
            });
            let mut row = vec![
                s.lane.clone(),
                format!(
                    "{}/{}{}",
                    s.passed,
                    s.cases,
                    if s.errors > 0 { format!(" ({} run errors)", s.errors) } else { String::new() }
                ),
                if s.cases == 0 {
                    "not run".into()
                } else {
                    format!("{:.0}% ({:.0}–{:.0}%)", s.pass_rate() * 100.0, lo * 100.0, hi * 100.0)
                },
                stat(s.prompt_tokens, 0),
                stat(s.completion_tokens, 0),
                shared(stat(s.ttft_ms, 0), s.shared_lanes),
                shared(stat(s.total_ms, 0), s.shared_lanes),
                fmt_usd(s.cost_per_case_usd),
                fmt_usd(s.cost_per_1k_usd()),
                vs,
            ];
            if repeated {
                row.push(spread);
            }
            if judged {
                row.push(if s.judge_calls > 0 { fmt_usd(s.judge_cost_usd) } else { "–".into() });
                row.push(s.pairwise.map_or("–".into(), |p| {
                    let (lo, hi) = p.ci95();
                    format!(
                        "{}/{}/{} = {:.0}% ({:.0}–{:.0}%)",
                        p.wins,
                        p.ties,
                        p.losses,
                        p.win_rate() * 100.0,
                        lo * 100.0,
                        hi * 100.0
                    )
                }));
            }
            row
        })
        .collect();
    (head, rows)
}

/// The header and rows as lines of columns padded to their widest cell, two spaces apart.
pub fn align(head: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    std::iter::once(line(&head)).chain(rows.iter().map(|r| line(r))).collect()
}

/// The scoreboard as aligned plain text, for the terminal.
pub fn text(board: &Scoreboard) -> String {
    let (head, rows) = table(board);
    let mut out: String = align(&head, &rows).into_iter().map(|l| l + "\n").collect();
    out.push_str(&assertion_text(board));
    out
}

pub fn assertion_text(board: &Scoreboard) -> String {
    let mut out = String::new();
    for s in &board.lanes {
        let parts: Vec<String> = s.assertions.iter().map(|a| format!("{} {}/{}", a.name, a.passed, a.total)).collect();
        if !parts.is_empty() {
            out.push_str(&format!("  {}: {}\n", s.lane, parts.join(" · ")));
        }
    }
    out
}

/// A report readable in a pull request: the scoreboard, pass rate per assertion, and the failed cases.
pub fn markdown(board: &Scoreboard, cases: &[Case], title: &str) -> String {
    // Failed checks quote answers; a report read in a terminal or a pull request shows their controls escaped.
    let cell = |s: &str| crate::visible::escape_line(&s.replace('|', "\\|").replace('\n', " ")).into_owned();
    let (head, rows) = table(board);
    let mut out = format!("# {title}\n\n| {} |\n|{}|\n", head.join(" | "), vec!["---"; head.len()].join("|"));
    for r in rows {
        out.push_str(&format!("| {} |\n", r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")));
    }
    out.push_str("\nPass rate: cases whose every assertion passed; 95% Wilson interval. Token and time figures: mean / p95 over completed runs.\n\n## Pass rate per assertion\n\n| assertion |");
    for s in &board.lanes {
        out.push_str(&format!(" {} |", cell(&s.lane)));
    }
    out.push_str(&format!("\n|---|{}\n", "---|".repeat(board.lanes.len())));
    let mut names: Vec<&str> = Vec::new();
    for a in board.lanes.iter().flat_map(|s| &s.assertions) {
        if !names.contains(&a.name.as_str()) {
            names.push(&a.name);
        }
    }
    for name in names {
        out.push_str(&format!("| {} |", cell(name)));
        for s in &board.lanes {
            let r = s.assertions.iter().find(|a| a.name == name);
            out.push_str(&r.map_or(" – |".into(), |a| format!(" {}/{} |", a.passed, a.total)));
        }
        out.push('\n');
    }
    out.push_str("\n## Lanes\n\n| lane | backend | model | adapter | prompt | temperature | top_p | top_k | max_tokens | seed | repetition penalty |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in &board.lanes {
        let c = &s.config;
        let sp = &c.sampling;
        let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            cell(&s.lane),
            c.backend,
            cell(&c.model),
            cell(c.adapter.as_deref().unwrap_or("–")),
            cell(&c.prompt_variant),
            sp.temperature,
            sp.top_p,
            opt(sp.top_k.map(|v| v.to_string())),
            sp.max_tokens,
            opt(sp.seed.map(|v| v.to_string())),
            sp.repetition_penalty
        ));
    }
    if board.lanes.iter().any(|s| !s.repeat_rates.is_empty()) {
        out.push_str("\nEach case ran once per repeat; repeat i sampled with seed + i. The pass rate and its interval are over all runs; the last column of the scoreboard is the spread of the per-repeat pass rates.\n");
    }
    out.push_str("\n## Failed cases\n\n");
    let mut any = false;
    for (ci, row) in board.rows.iter().enumerate() {
        for s in row.iter().filter(|s| !s.pass) {
            any = true;
            let failed: Vec<String> = s
                .checks
                .iter()
                .filter(|c| !c.pass && c.weight > 0.0)
                .map(|c| if c.detail.is_empty() { c.name.clone() } else { format!("{} ({})", c.name, c.detail) })
                .collect();
            let repeat = if cases[ci].repeat > 0 { format!(" (repeat {})", cases[ci].repeat) } else { String::new() };
            out.push_str(&format!(
                "- `{}`{repeat} · lane `{}`: {}\n",
                cases[ci].id,
                s.answer.lane,
                cell(&failed.join("; "))
            ));
        }
    }
    if !any {
        out.push_str("None.\n");
    }
    out
}

/// One JSON object per case and lane: the answer, every check, and its figures.
pub fn case_lines(board: &Scoreboard, cases: &[Case]) -> String {
    let mut out = String::new();
    for (ci, row) in board.rows.iter().enumerate() {
        for s in row {
            let a = &s.answer;
            let v = json!({
                "case_id": cases[ci].id,
                "repeat": cases[ci].repeat,
                "lane": a.lane,
                "pass": s.pass,
                "score": s.score,
                "input": cases[ci].input,
                "expected": cases[ci].expected,
                "output": a.output,
                "error": a.error,
                "checks": s.checks,
                "prompt_tokens": a.prompt_tokens,
                "completion_tokens": a.completion_tokens,
                "ttft_ms": a.ttft_ms,
                "total_ms": a.total_ms,
                "cost_usd": s.cost_usd,
                "cached": a.from_cache,
                "sampling": sampling_of(board, s, &cases[ci]),
                "shared_lanes": a.shared_lanes,
            });
            out.push_str(&v.to_string());
            out.push('\n');
        }
    }
    out
}

/// One CSV row per case and lane (RFC 4180).
pub fn csv(board: &Scoreboard, cases: &[Case]) -> String {
    let mut out = String::from(
        "case_id,lane,pass,score,failed_assertions,prompt_tokens,completion_tokens,ttft_ms,total_ms,cost_usd,error,output,expected,repeat,temperature,top_p,top_k,max_tokens,seed,repetition_penalty\n",
    );
    let opt = |v: Option<String>| v.unwrap_or_default();
    for (ci, row) in board.rows.iter().enumerate() {
        for s in row {
            let a = &s.answer;
            let failed: Vec<&str> =
                s.checks.iter().filter(|c| !c.pass && c.weight > 0.0).map(|c| c.name.as_str()).collect();
            let cells = [
                quote(&cases[ci].id),
                quote(&a.lane),
                s.pass.to_string(),
                format!("{:.4}", s.score),
                quote(&failed.join("; ")),
                opt(a.prompt_tokens.map(|v| v.to_string())),
                opt(a.completion_tokens.map(|v| v.to_string())),
                opt(a.ttft_ms.map(|v| v.to_string())),
                opt(a.total_ms.map(|v| v.to_string())),
                opt(s.cost_usd.map(|v| v.to_string())),
                quote(a.error.as_deref().unwrap_or_default()),
                quote(&a.output),
                quote(&cases[ci].expected),
                cases[ci].repeat.to_string(),
            ];
            let sampling = sampling_of(board, s, &cases[ci]).map_or_else(
                || vec![String::new(); 6],
                |sp| {
                    vec![
                        sp.temperature.to_string(),
                        sp.top_p.to_string(),
                        opt(sp.top_k.map(|v| v.to_string())),
                        sp.max_tokens.to_string(),
                        opt(sp.seed.map(|v| v.to_string())),
                        sp.repetition_penalty.to_string(),
                    ]
                },
            );
            let cells: Vec<String> = cells.into_iter().chain(sampling).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    out
}

/// The sampling a case's run used: its lane's settings, with the seed moved by the repeat (seed + i).
fn sampling_of(
    board: &Scoreboard,
    s: &super::score::Scored,
    case: &Case,
) -> Option<crate::metrics::history::SamplingRecord> {
    let mut sp = board.lanes.iter().find(|l| l.idx == s.job.lane)?.config.sampling.clone();
    sp.seed = sp.seed.map(|v| v.wrapping_add(case.repeat as u64));
    Some(sp)
}
