//! What becomes of each teacher answer: kept as an example, rejected (kept aside with why), or failed.

use std::collections::HashMap;

use super::{Filter, Input, Teacher};
use crate::dataset::DatasetError;
use crate::dataset::{Example, normalized};
use crate::eval::Answer;
use crate::eval::assert::Observed;
use crate::workspace::Workspace;

/// What became of the answered inputs.
#[derive(Default)]
pub struct Outcome {
    pub kept: Vec<(Input, Example)>,
    pub rejected: Vec<(Input, String)>,
    /// Rejected now, already in rejected.jsonl from an earlier run of the same teacher.
    pub rejected_before: usize,
    pub failed: Vec<(Input, String)>,
    /// The rejected answers not yet in rejected.jsonl, as the examples to keep aside there.
    pub keep_aside: Vec<Example>,
}

/// Applies the filter to every answer and returns what became of each input, with the rejected answers that
/// rejected.jsonl lacks (once per teacher configuration) for the caller to keep aside.
pub fn sort(
    ws: &Workspace,
    teacher: &Teacher<'_>,
    filter: Filter,
    checks: &[crate::eval::Assertion],
    inputs: &[Input],
    answers: &mut HashMap<usize, Answer>,
) -> Result<Outcome, DatasetError> {
    let dir = ws.dataset_dir();
    let before = super::rejected_before(&dir, teacher.hash)?;
    let mut out = Outcome::default();
    for (i, input) in inputs.iter().enumerate() {
        let Some(a) = answers.remove(&i) else { continue };
        if let Some(e) = a.error {
            out.failed.push((input.clone(), e));
            continue;
        }
        let reasons: Vec<String> = match filter {
            Filter::None => Vec::new(),
            Filter::Evals | Filter::Judge => {
                let observed = Observed {
                    output: &a.output,
                    expected: "",
                    total_ms: a.total_ms,
                    shared_lanes: a.shared_lanes,
                    cost_usd: a.cost_usd(ws, teacher.lane),
                    prompt_tokens: a.prompt_tokens,
                    verdicts: Some(&a.verdicts),
                };
                checks
                    .iter()
                    .map(|c| c.check(&observed))
                    .filter(|c| !c.pass)
                    .map(|c| if c.detail.is_empty() { c.name } else { format!("{}: {}", c.name, c.detail) })
                    .collect()
            }
        };
        // The judge's score (the mean over its assertions) and reasons go with the example either way.
        let judged: Vec<&crate::eval::judge::Verdict> = a.verdicts.values().filter(|v| v.error.is_none()).collect();
        let mut extra: Vec<(&str, serde_json::Value)> = Vec::new();
        if !judged.is_empty() {
            let score = judged.iter().map(|v| v.score).sum::<f64>() / judged.len() as f64;
            let reason = judged.iter().map(|v| v.reason.as_str()).collect::<Vec<_>>().join(" | ");
            extra.push(("judge_score", ((score * 1e4).round() / 1e4).into()));
            extra.push(("judge_reason", reason.into()));
        }
        if reasons.is_empty() {
            out.kept.push((input.clone(), teacher.example(ws, input, &a.output, &extra)));
            continue;
        }
        let why = reasons.join("; ");
        if before.contains(&normalized(&input.text)) {
            out.rejected_before += 1;
        } else {
            extra.push(("rejected_because", why.clone().into()));
            out.keep_aside.push(teacher.example(ws, input, &a.output, &extra));
        }
        out.rejected.push((input.clone(), why));
    }
    Ok(out)
}
