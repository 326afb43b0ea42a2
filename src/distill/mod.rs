//! Distillation: a teacher lane answers unlabeled inputs, the answers that pass a filter become training
//! examples against the dataset's short prompt (with their provenance), the others go to rejected.jsonl.
//! Inputs already in any split (exact or near duplicate) are never answered, so test inputs cannot leak.

pub mod generate;
pub mod inputs;
mod sort;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::dataset::{Dataset, DatasetError, Example, Meta, Split, jaccard, normalized, shingles};
use crate::eval::{Assertion, Case, Kind};
use crate::metrics::history::sha256_hex;
use crate::workspace::{LaneSpec, Workspace};

pub use inputs::Input;
pub use sort::{Outcome, sort};

/// Where rejected answers are kept (beside the splits; no split, check or export reads it).
pub const REJECTED_FILE: &str = "rejected.jsonl";

/// `meta.source` of a distilled example (F3 filters on it).
pub const SOURCE: &str = "distill";

/// Which answers become examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Filter {
    /// evals.toml's assertions that need no expected answer.
    Evals,
    /// evals.toml's `llm-rubric` and `g-eval` assertions, graded by the judge lane.
    Judge,
    /// Every answer the teacher finished.
    None,
}

/// An input left out before any call, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub input: Input,
    pub why: String,
}

/// Splits `inputs` into those to answer and those already in the dataset (the same text, or a near
/// duplicate: word 5-gram Jaccard ≥ `crate::dataset::check::NEAR`, the rule `dataset check` flags leaks by)
/// or given twice.
pub fn screen(ds: &Dataset, inputs: Vec<Input>) -> (Vec<Input>, Vec<Skipped>) {
    let near = crate::dataset::NEAR;
    let mut exact: HashMap<String, String> = HashMap::new();
    let mut sets: Vec<(HashSet<u64>, String)> = Vec::new();
    for (split, x, line) in ds.examples() {
        let place = format!("example {} ({}:{line})", x.id, split.file_name());
        exact.entry(normalized(x.user())).or_insert_with(|| place.clone());
        sets.push((shingles(x.user()), place));
    }
    // Shingle → the examples (and earlier inputs) holding it: only texts sharing one are compared.
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, (set, _)) in sets.iter().enumerate() {
        for g in set {
            index.entry(*g).or_default().push(i);
        }
    }
    let (mut keep, mut skipped) = (Vec::new(), Vec::new());
    for input in inputs {
        let key = normalized(&input.text);
        if let Some(place) = exact.get(&key) {
            skipped.push(Skipped { why: format!("the same text as {place}"), input });
            continue;
        }
        let set = shingles(&input.text);
        let mut candidates: Vec<usize> = set.iter().flat_map(|g| index.get(g).into_iter().flatten().copied()).collect();
        candidates.sort_unstable();
        candidates.dedup();
        let best = candidates
            .into_iter()
            .map(|i| (jaccard(&set, &sets[i].0), i))
            .filter(|(j, _)| *j >= near)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((j, i)) = best {
            skipped.push(Skipped { why: format!("a near duplicate of {} (5-gram Jaccard {j:.2})", sets[i].1), input });
            continue;
        }
        let place = format!("input {}", input.origin);
        exact.insert(key, place.clone());
        for g in &set {
            index.entry(*g).or_default().push(sets.len());
        }
        sets.push((set, place));
        keep.push(input);
    }
    (keep, skipped)
}

/// The eval case a teacher answers for an input: keyed like the test split's cases (the input's hash), so
/// an answer is cached once per (teacher lane configuration, input) and a rerun never pays for it again.
pub fn case_of(i: usize, input: &Input) -> Case {
    let hash = sha256_hex(input.text.as_bytes())[..16].to_string();
    Case {
        id: format!("in{}", i + 1),
        input: input.text.clone(),
        expected: String::new(),
        line: i + 1,
        hash,
        repeat: 0,
        tags: Vec::new(),
    }
}

/// The assertions `--filter evals` applies (those that need no expected answer) and the names of the rest,
/// which it skips (never fails on). Weight-0 assertions are informational and never reject.
pub fn answer_checks(all: &[Assertion]) -> (Vec<Assertion>, Vec<String>) {
    let (mut usable, mut skipped) = (Vec::new(), Vec::new());
    for a in all {
        let standalone = matches!(
            a.kind,
            Kind::Equals(Some(_))
                | Kind::Contains { .. }
                | Kind::NotContains { .. }
                | Kind::Regex(_)
                | Kind::IsJson
                | Kind::JsonSchema(_)
                | Kind::MaxLatencyMs(_)
                | Kind::MaxCostUsd(_)
                | Kind::MaxPromptTokens(_)
        );
        if standalone && a.weight > 0.0 {
            usable.push(a.clone());
        } else {
            skipped.push(format!("{} ({})", a.name, a.kind.type_name()));
        }
    }
    (usable, skipped)
}

/// The assertions `--filter judge` applies (`llm-rubric`, `g-eval`: they need no expected answer) and the
/// names of the rest it skips (`pairwise` needs a reference lane's answer to the same input).
pub fn judge_checks(all: &[Assertion]) -> (Vec<Assertion>, Vec<String>) {
    let (mut usable, mut skipped) = (Vec::new(), Vec::new());
    for a in all {
        if matches!(a.kind, Kind::Rubric { .. } | Kind::GEval { .. }) && a.weight > 0.0 {
            usable.push(a.clone());
        } else {
            skipped.push(format!("{} ({})", a.name, a.kind.type_name()));
        }
    }
    (usable, skipped)
}

/// What the teacher's configuration was, as an example's `meta` records it.
pub struct Teacher<'a> {
    pub lane: &'a LaneSpec,
    /// The eval cache's hash of the lane (see `eval::lane_hash`).
    pub hash: &'a str,
    pub prompt_sha256: String,
}

impl<'a> Teacher<'a> {
    pub fn new(ws: &Workspace, lane: &'a LaneSpec, hash: &'a str) -> Self {
        let prompt_sha256 = sha256_hex(ws.prompt_text(&lane.prompt).unwrap_or_default().as_bytes());
        Self { lane, hash, prompt_sha256 }
    }

    /// The example an answer becomes: the dataset's system prompt, the input, the answer (a reasoning model's
    /// thinking left out), and where it came from. `extra` adds keys to `meta` (a judge's score and reason,
    /// or why it was rejected).
    pub fn example(&self, ws: &Workspace, input: &Input, answer: &str, extra: &[(&str, serde_json::Value)]) -> Example {
        let mut meta = Meta {
            source: Some(SOURCE.into()),
            source_lane: Some(self.lane.id.clone()),
            model: Some(self.lane.model.clone()),
            adapter: self.lane.adapter.clone(),
            prompt_variant: Some(self.lane.prompt.clone()),
            time_unix_ms: Some(now_ms()),
            ..Meta::default()
        };
        meta.extra.insert("prompt_sha256".into(), self.prompt_sha256.clone().into());
        meta.extra.insert("teacher_hash".into(), self.hash.into());
        meta.extra.insert("input_origin".into(), input.origin.clone().into());
        for (k, v) in extra {
            meta.extra.insert((*k).into(), v.clone());
        }
        let answer = crate::engine::think::answer(answer).trim();
        Example::chat(String::new(), ws.dataset_system_prompt(), &input.text, answer, meta)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The rejected answers already kept for this teacher configuration (by normalised input), so that a rerun,
/// which reads the teacher's answers from the cache, does not keep them twice.
pub fn rejected_before(dir: &Path, teacher_hash: &str) -> Result<HashSet<String>, DatasetError> {
    let path = dir.join(REJECTED_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(DatasetError::io(&path, e)),
    };
    let (entries, _) = crate::dataset::parse_lines(&bytes, Split::Train);
    Ok(entries
        .iter()
        .filter_map(|e| match e {
            crate::dataset::Entry::Example(x, _) => Some(x),
            _ => None,
        })
        .filter(|x| x.meta.extra.get("teacher_hash").and_then(|v| v.as_str()) == Some(teacher_hash))
        .map(|x| normalized(x.user()))
        .collect())
}

/// Appends rejected answers to rejected.jsonl (one fsync'd write), with ids the dataset does not use.
pub fn keep_rejected(ds: &Dataset, dir: &Path, mut xs: Vec<Example>) -> Result<(), DatasetError> {
    if xs.is_empty() {
        return Ok(());
    }
    let mut taken: HashSet<String> = HashSet::new();
    let mut text = String::new();
    for x in &mut xs {
        x.id = crate::dataset::new_id(x.user(), &|id| ds.find(id).is_some() || taken.contains(id));
        taken.insert(x.id.clone());
        text.push_str(&x.to_line());
        text.push('\n');
    }
    let path = dir.join(REJECTED_FILE);
    crate::workspace::store::append_line(&path, text.trim_end_matches('\n'))
        .map_err(|e| DatasetError::Refused(format!("{}: {e}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str, origin: &str) -> Input {
        Input { text: text.into(), origin: origin.into() }
    }

    #[test]
    fn inputs_in_the_dataset_or_given_twice_are_skipped_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let line = |id: &str, user: &str| {
            serde_json::json!({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "a"}], "id": id})
                .to_string()
        };
        std::fs::write(
            dir.path().join("test.jsonl"),
            line("t1", "My order 5521 never arrived and the tracking page is blank") + "\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("train.jsonl"), line("r1", "Refund please") + "\n").unwrap();
        let ds = Dataset::load(dir.path()).unwrap();
        let (keep, skipped) = screen(
            &ds,
            vec![
                input("refund   PLEASE", "in:1"),
                input("My order 5521 never arrived and the tracking page is blank!!", "in:2"),
                input("The app logs me out every five minutes on Android", "in:3"),
                input("the app logs me out every five minutes on android", "in:4"),
                input("Where do I change my billing address?", "in:5"),
            ],
        );
        let kept: Vec<&str> = keep.iter().map(|i| i.origin.as_str()).collect();
        assert_eq!(kept, ["in:3", "in:5"]);
        let why: Vec<(&str, &str)> = skipped.iter().map(|s| (s.input.origin.as_str(), s.why.as_str())).collect();
        assert_eq!(why[0], ("in:1", "the same text as example r1 (train.jsonl:1)"));
        assert!(why[1].1.starts_with("a near duplicate of example t1 (test.jsonl:1)"), "{why:?}");
        assert_eq!(why[2], ("in:4", "the same text as input in:3"));
    }

    #[test]
    fn the_evals_filter_uses_only_assertions_that_need_no_expected_answer() {
        let src = "[[assert]]\ntype = \"is-json\"\n[[assert]]\ntype = \"json-fields\"\n[[assert]]\ntype = \"regex\"\nvalue = \"x\"\nweight = 0\n[[assert]]\ntype = \"max-cost\"\nthreshold = 0.1\n";
        let evals = crate::eval::Evals::parse(Path::new("evals.toml"), src, &[]).unwrap();
        let (usable, skipped) = answer_checks(&evals.all);
        let names: Vec<&str> = usable.iter().map(|a| a.kind.type_name()).collect();
        assert_eq!(names, ["is-json", "max-cost"]);
        assert_eq!(skipped, ["json-fields (json-fields)", "regex /x/ (regex)"]);
    }
}
