//! evals.toml: assertions for every case and for single cases by id, each error located by file, line and key.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::assert::{Assertion, Kind, Metric};
use super::{Case, EvalError};
use crate::workspace::line_col;

/// The assertions of a workspace: `all` apply to every case, `by_case` to the case with that id.
#[derive(Debug, Clone, Default)]
pub struct Evals {
    pub all: Vec<Assertion>,
    pub by_case: BTreeMap<String, Vec<Assertion>>,
    /// Where they came from (None: no evals.toml, the default comparison).
    pub file: Option<std::path::PathBuf>,
    /// `[judge] lane`: the lane that grades judge assertions naming none.
    pub judge: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvals {
    #[serde(default, rename = "assert")]
    all: Vec<Spanned<RawAssert>>,
    #[serde(default)]
    cases: Vec<RawCase>,
    judge: Option<RawJudge>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    lane: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    id: Spanned<String>,
    #[serde(default, rename = "assert")]
    asserts: Vec<Spanned<RawAssert>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssert {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    name: Option<String>,
    weight: Option<Spanned<f64>>,
    value: Option<Spanned<toml::Value>>,
    file: Option<Spanned<String>>,
    ignore_case: Option<Spanned<bool>>,
    fields: Option<Spanned<Vec<String>>>,
    field: Option<Spanned<String>>,
    metric: Option<Spanned<String>>,
    threshold: Option<Spanned<f64>>,
    judge: Option<Spanned<String>>,
    steps: Option<Spanned<Vec<String>>>,
    reference: Option<Spanned<String>>,
}

pub const KINDS: [&str; 14] = [
    "equals",
    "contains",
    "not-contains",
    "regex",
    "is-json",
    "json-schema",
    "json-fields",
    "similarity",
    "max-latency",
    "max-cost",
    "max-prompt-tokens",
    "llm-rubric",
    "g-eval",
    "pairwise",
];

impl Evals {
    /// Reads `root/evals.toml` when present; ids are checked against the cases.
    pub fn load(root: &Path, cases: &[Case]) -> Result<Self, EvalError> {
        let path = root.join(super::EVALS_FILE);
        match crate::workspace::store::read_text(&path) {
            Ok(src) => Self::parse(&path, &src, cases),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(EvalError::Io { path, source: e }),
        }
    }

    pub fn parse(path: &Path, src: &str, cases: &[Case]) -> Result<Self, EvalError> {
        let at = |offset: usize, key: &str, msg: &str| {
            let (line, col) = line_col(src, offset);
            EvalError::Invalid { where_: format!("{}:{line}:{col}", path.display()), message: format!("{key}: {msg}") }
        };
        let raw: RawEvals = serde_path_to_error::deserialize(toml::Deserializer::new(src)).map_err(|e| {
            let key: Vec<String> =
                e.path().to_string().split('.').filter(|s| !s.starts_with("$__")).map(String::from).collect();
            let inner = e.into_inner();
            at(inner.span().map_or(0, |s| s.start), &key.join("."), inner.message().trim())
        })?;
        let root = path.parent().unwrap_or(Path::new("."));
        let judge = raw.judge.as_ref().map(|j| j.lane.get_ref().clone());
        if let Some(j) = raw.judge.as_ref().filter(|j| j.lane.get_ref().trim().is_empty()) {
            return Err(at(j.lane.span().start, "judge.lane", "must name a lane"));
        }
        let mut evals = Evals { file: Some(path.to_path_buf()), judge, ..Self::default() };
        let judged = evals.judge.is_some();
        for (i, a) in raw.all.iter().enumerate() {
            evals.all.push(build(&at, root, &format!("assert[{i}]"), a, judged)?);
        }
        for (c, case) in raw.cases.iter().enumerate() {
            let id = case.id.get_ref();
            if !cases.iter().any(|k| &k.id == id) {
                return Err(at(
                    case.id.span().start,
                    &format!("cases[{c}].id"),
                    &format!("no case `{id}` in dataset/test.jsonl"),
                ));
            }
            let list = evals.by_case.entry(id.clone()).or_default();
            for (i, a) in case.asserts.iter().enumerate() {
                list.push(build(&at, root, &format!("cases[{c}].assert[{i}]"), a, judged)?);
            }
        }
        Ok(evals)
    }

    /// A case's assertions: the file's for every case (or the default comparison when it has none), then its own.
    pub fn for_case(&self, case: &Case) -> Vec<Assertion> {
        let mut list =
            if self.all.is_empty() { vec![Assertion::default_for(&case.expected)] } else { self.all.clone() };
        list.extend(self.by_case.get(&case.id).into_iter().flatten().cloned());
        list
    }
}

fn build(
    at: &dyn Fn(usize, &str, &str) -> EvalError,
    root: &Path,
    key: &str,
    a: &Spanned<RawAssert>,
    has_judge: bool,
) -> Result<Assertion, EvalError> {
    let start = a.span().start;
    let a = a.get_ref();
    let ty = a.kind.get_ref().as_str();
    let k = |field: &str| format!("{key}.{field}");
    // Every key given must mean something for this type: an option that would be ignored is an error.
    let given: [(&str, Option<usize>); 10] = [
        ("value", a.value.as_ref().map(|v| v.span().start)),
        ("file", a.file.as_ref().map(|v| v.span().start)),
        ("ignore_case", a.ignore_case.as_ref().map(|v| v.span().start)),
        ("fields", a.fields.as_ref().map(|v| v.span().start)),
        ("field", a.field.as_ref().map(|v| v.span().start)),
        ("metric", a.metric.as_ref().map(|v| v.span().start)),
        ("threshold", a.threshold.as_ref().map(|v| v.span().start)),
        ("judge", a.judge.as_ref().map(|v| v.span().start)),
        ("steps", a.steps.as_ref().map(|v| v.span().start)),
        ("reference", a.reference.as_ref().map(|v| v.span().start)),
    ];
    let takes: &[&str] = match ty {
        "equals" => &["value"],
        "contains" | "not-contains" => &["value", "ignore_case"],
        "regex" => &["value"],
        "is-json" => &[],
        "json-schema" => &["value", "file"],
        "json-fields" => &["fields"],
        "similarity" => &["metric", "threshold", "field"],
        "max-latency" | "max-cost" | "max-prompt-tokens" => &["threshold"],
        "llm-rubric" => &["value", "threshold", "judge"],
        "g-eval" => &["value", "steps", "threshold", "judge"],
        "pairwise" => &["value", "threshold", "reference", "judge"],
        other => {
            return Err(at(
                a.kind.span().start,
                &k("type"),
                &format!("unknown type `{other}` (one of: {})", KINDS.join(", ")),
            ));
        }
    };
    if let Some((field, Some(pos))) = given.iter().find(|(f, pos)| pos.is_some() && !takes.contains(f)) {
        return Err(at(*pos, &k(field), &format!("`{ty}` takes no `{field}` (it takes: {})", list_or_none(takes))));
    }
    let text = |what: &str| -> Result<String, EvalError> {
        match &a.value {
            Some(v) => match v.get_ref() {
                toml::Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(at(v.span().start, &k("value"), &format!("must be a non-empty string ({what})"))),
            },
            None => Err(at(start, &k("value"), &format!("`{ty}` needs `value` ({what})"))),
        }
    };
    let threshold = |what: &str, ok: &dyn Fn(f64) -> bool| -> Result<f64, EvalError> {
        match &a.threshold {
            Some(t) if ok(*t.get_ref()) => Ok(*t.get_ref()),
            Some(t) => Err(at(t.span().start, &k("threshold"), &format!("must be {what}"))),
            None => Err(at(start, &k("threshold"), &format!("`{ty}` needs `threshold` ({what})"))),
        }
    };
    let ignore_case = a.ignore_case.as_ref().is_some_and(|b| *b.get_ref());
    let judged = || -> Result<(f64, Option<String>), EvalError> {
        let judge = a.judge.as_ref().map(|j| j.get_ref().clone());
        if judge.is_none() && !has_judge {
            return Err(at(
                start,
                &k("judge"),
                &format!("`{ty}` needs a judge lane: `judge = \"…\"` here, or `[judge] lane = \"…\"`"),
            ));
        }
        let t = match &a.threshold {
            None => 0.5,
            Some(t) if (0.0..=1.0).contains(t.get_ref()) => *t.get_ref(),
            Some(t) => return Err(at(t.span().start, &k("threshold"), "must be a score from 0 to 1")),
        };
        Ok((t, judge))
    };
    let kind = match ty {
        "equals" => Kind::Equals(a.value.as_ref().map(|_| text("the exact answer")).transpose()?),
        "contains" => Kind::Contains { value: text("the text to find")?, ignore_case },
        "not-contains" => Kind::NotContains { value: text("the text that must not appear")?, ignore_case },
        "regex" => {
            let pattern = text("a regular expression")?;
            let at_value = a.value.as_ref().map_or(start, |v| v.span().start);
            Kind::Regex(regex::Regex::new(&pattern).map_err(|e| at(at_value, &k("value"), &e.to_string()))?)
        }
        "is-json" => Kind::IsJson,
        "json-schema" => Kind::JsonSchema(Arc::new(schema(at, root, key, start, a)?)),
        "json-fields" => Kind::JsonFields(match &a.fields {
            Some(f) if f.get_ref().is_empty() => {
                return Err(at(f.span().start, &k("fields"), "must name at least one field"));
            }
            f => f.as_ref().map(|f| f.get_ref().clone()),
        }),
        "similarity" => {
            let metric = match a.metric.as_ref().map(|m| (m.get_ref().as_str(), m.span().start)) {
                None | Some(("chrf", _)) => Metric::Chrf,
                Some(("rouge-l", _)) => Metric::RougeL,
                Some((other, pos)) => {
                    return Err(at(pos, &k("metric"), &format!("unknown metric `{other}` (chrf or rouge-l)")));
                }
            };
            let threshold = threshold("a score from 0 to 1", &|t| (0.0..=1.0).contains(&t))?;
            Kind::Similarity { metric, threshold, field: a.field.as_ref().map(|f| f.get_ref().clone()) }
        }
        "max-latency" => Kind::MaxLatencyMs(threshold("milliseconds above 0", &|t| t > 0.0 && t.is_finite())?),
        "max-cost" => Kind::MaxCostUsd(threshold("dollars, 0 or more", &|t| t >= 0.0 && t.is_finite())?),
        "llm-rubric" => {
            let (threshold, judge) = judged()?;
            Kind::Rubric { rubric: text("the rubric the judge grades by")?, threshold, judge }
        }
        "g-eval" => {
            let (threshold, judge) = judged()?;
            let steps = a.steps.as_ref().map(|s| s.get_ref().clone()).unwrap_or_default();
            Kind::GEval { criteria: text("the criteria the judge scores 1–5")?, steps, threshold, judge }
        }
        "pairwise" => {
            let (threshold, judge) = judged()?;
            let reference = a.reference.as_ref().map(|r| r.get_ref().clone());
            Kind::Pairwise {
                question: text("what the judge compares the two answers on")?,
                threshold,
                reference,
                judge,
            }
        }
        _ => Kind::MaxPromptTokens(
            threshold("a whole number of tokens", &|t| t >= 0.0 && t.fract() == 0.0 && t < 1e12)? as u64,
        ),
    };
    let weight = match &a.weight {
        Some(w) if !(w.get_ref().is_finite() && *w.get_ref() >= 0.0) => {
            return Err(at(w.span().start, &k("weight"), "must be 0 or more (0: reported, never failing a case)"));
        }
        Some(w) => *w.get_ref(),
        None => 1.0,
    };
    let name = a.name.clone().unwrap_or_else(|| kind.default_name());
    Ok(Assertion { name, kind, weight })
}

fn list_or_none(keys: &[&str]) -> String {
    if keys.is_empty() {
        "no options".into()
    } else {
        keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
    }
}

/// A JSON Schema given inline (`value = { … }`) or as a file relative to the workspace (`file = "x.json"`).
fn schema(
    at: &dyn Fn(usize, &str, &str) -> EvalError,
    root: &Path,
    key: &str,
    start: usize,
    a: &RawAssert,
) -> Result<jsonschema::Validator, EvalError> {
    let (doc, pos, field) = match (&a.value, &a.file) {
        (Some(_), Some(f)) => {
            return Err(at(f.span().start, &format!("{key}.file"), "give `value` or `file`, not both"));
        }
        (Some(v), None) => {
            let json = serde_json::to_value(v.get_ref())
                .map_err(|e| at(v.span().start, &format!("{key}.value"), &e.to_string()))?;
            (json, v.span().start, "value")
        }
        (None, Some(f)) => {
            let path = root.join(f.get_ref());
            let src = crate::workspace::store::read_text(&path)
                .map_err(|e| at(f.span().start, &format!("{key}.file"), &format!("{}: {e}", path.display())))?;
            let json = serde_json::from_str(&src).map_err(|e| {
                at(f.span().start, &format!("{key}.file"), &format!("{}:{}: {e}", path.display(), e.line()))
            })?;
            (json, f.span().start, "file")
        }
        (None, None) => {
            return Err(at(start, &format!("{key}.value"), "`json-schema` needs `value` (a schema) or `file`"));
        }
    };
    jsonschema::validator_for(&doc)
        .map_err(|e| at(pos, &format!("{key}.{field}"), &format!("not a valid JSON Schema: {e}")))
}
