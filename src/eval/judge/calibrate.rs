//! Whether to trust the judge: its verdicts on answers people have already judged — examples rated 1–5 when
//! promoted (4 or 5 counts as a pass) and test answers chosen in F9 as the expected one (a pass) — as
//! agreement (accuracy with a Wilson interval) and, where there are ratings, Spearman's rank correlation.

use std::collections::HashMap;

use super::{Grading, grade};
use crate::dataset::{Dataset, Split};
use crate::engine::{LaneIdx, Registry};
use crate::eval::{Answer, Case, Estimate, Evals, wilson};
use crate::workspace::Workspace;

/// An answer a person judged: the input, the answer, pass or not, and the rating when there was one.
#[derive(Debug, Clone)]
pub struct Labeled {
    pub id: String,
    pub input: String,
    pub answer: String,
    pub pass: bool,
    pub rating: Option<u8>,
}

/// The dataset's human-judged answers: rated examples of any split, and test cases whose expected answer was
/// a lane's answer chosen in F9 (unedited).
pub fn labeled(ds: &Dataset) -> Vec<Labeled> {
    ds.examples()
        .filter_map(|(split, x, _)| {
            let chosen = split == Split::Test && x.meta.source_lane.is_some() && !x.meta.edited;
            let (pass, rating) = match x.meta.rating {
                Some(r) => (r >= 4, Some(r)),
                None if chosen => (true, None),
                None => return None,
            };
            Some(Labeled { id: x.id.clone(), input: x.user().into(), answer: x.assistant().into(), pass, rating })
        })
        .collect()
}

/// One judge assertion's agreement with people.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub assertion: String,
    /// Items with a verdict (errors left out, counted apart).
    pub n: usize,
    pub agree: usize,
    pub errors: usize,
    /// Spearman's ρ between the judge's score and the rating, over the rated items (None under 3).
    pub spearman: Option<f64>,
    pub rated: usize,
}

impl Agreement {
    pub fn accuracy(&self) -> f64 {
        if self.n == 0 { 0.0 } else { self.agree as f64 / self.n as f64 }
    }

    pub fn ci95(&self) -> (f64, f64) {
        wilson(self.agree, self.n)
    }
}

/// Grades every labeled answer with each of evals.toml's llm-rubric and g-eval assertions (cached calls
/// reused, missing ones confirmed first) and compares the verdicts with the people's.
pub async fn calibrate(
    ws: &Workspace,
    evals: &Evals,
    items: &[Labeled],
    registry: Registry,
    confirm: &mut (dyn FnMut(&Estimate) -> bool + Send),
) -> Result<(Vec<Agreement>, Grading), String> {
    let checks: Vec<_> = evals
        .all
        .iter()
        .filter(|a| matches!(a.kind, crate::eval::Kind::Rubric { .. } | crate::eval::Kind::GEval { .. }))
        .cloned()
        .collect();
    if checks.is_empty() {
        return Err("--calibrate: evals.toml has no llm-rubric or g-eval assertion to calibrate".into());
    }
    if items.is_empty() {
        return Err("--calibrate: no answer in the dataset carries a person's judgement (rate answers 1–5 when \
                    promoting them with Ctrl+P, or pick a lane's answer as a test case's expected one in F9)"
            .into());
    }
    let cases: Vec<Case> = items
        .iter()
        .enumerate()
        .map(|(i, x)| Case {
            id: x.id.clone(),
            input: x.input.clone(),
            expected: String::new(),
            line: i + 1,
            hash: String::new(),
            repeat: 0,
            tags: Vec::new(),
        })
        .collect();
    // Any lane index will do: the judge sees the input and the answer, never the lane.
    let lane: LaneIdx = 0;
    let mut answers: HashMap<(usize, LaneIdx), Answer> =
        items.iter().enumerate().map(|(i, x)| ((i, lane), human_answer(ws, &x.answer))).collect();
    let only = Evals {
        all: checks.clone(),
        by_case: Default::default(),
        file: evals.file.clone(),
        judge: evals.judge.clone(),
    };
    // No pairwise here: no lane's answers are needed from the eval cache.
    let grading = grade(ws, &cases, &only, &mut answers, &crate::eval::Cache::default(), registry, confirm).await?;
    let agreements = checks
        .iter()
        .map(|a| {
            let id = super::judge_id(&a.kind);
            let mut g = Agreement { assertion: a.name.clone(), n: 0, agree: 0, errors: 0, spearman: None, rated: 0 };
            let mut pairs = Vec::new();
            for (i, x) in items.iter().enumerate() {
                match answers.get(&(i, lane)).and_then(|ans| ans.verdicts.get(&id)) {
                    Some(v) if v.error.is_none() => {
                        g.n += 1;
                        g.agree += usize::from(v.pass == x.pass);
                        if let Some(r) = x.rating {
                            pairs.push((v.score, f64::from(r)));
                        }
                    }
                    _ => g.errors += 1,
                }
            }
            g.rated = pairs.len();
            g.spearman = (pairs.len() >= 3).then(|| spearman(&pairs)).flatten();
            g
        })
        .collect();
    Ok((agreements, grading))
}

fn human_answer(ws: &Workspace, output: &str) -> Answer {
    let lane = ws.lanes.first().map(|l| l.id.clone()).unwrap_or_default();
    Answer::new(String::new(), String::new(), lane, String::new(), output.to_string())
}

/// Ranks with ties given their average rank (1-based).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            r[*k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's ρ: Pearson's r of the ranks (None when either side has no spread).
pub fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    let (a, b): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
    let (ra, rb) = (ranks(&a), ranks(&b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let (va, vb): (f64, f64) = (ra.iter().map(|x| (x - ma).powi(2)).sum(), rb.iter().map(|y| (y - mb).powi(2)).sum());
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_ranks_with_ties() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
        let perfect = spearman(&[(0.1, 1.0), (0.5, 3.0), (0.9, 5.0)]).unwrap();
        assert!((perfect - 1.0).abs() < 1e-12);
        let reversed = spearman(&[(0.9, 1.0), (0.5, 3.0), (0.1, 5.0)]).unwrap();
        assert!((reversed + 1.0).abs() < 1e-12);
        assert_eq!(spearman(&[(0.5, 1.0), (0.5, 2.0), (0.5, 3.0)]), None);
    }
}
