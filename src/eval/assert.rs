//! Assertion kinds and how each judges one lane's answer to one case.

use std::sync::Arc;

use serde_json::Value;

use super::similarity::{chrf, rouge_l};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Chrf,
    RougeL,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Chrf => "chrf",
            Metric::RougeL => "rouge-l",
        }
    }
}

#[derive(Clone)]
pub enum Kind {
    /// The answer equals `value` (default: the expected answer) after trimming whitespace.
    Equals(Option<String>),
    Contains {
        value: String,
        ignore_case: bool,
    },
    NotContains {
        value: String,
        ignore_case: bool,
    },
    Regex(regex::Regex),
    IsJson,
    JsonSchema(Arc<jsonschema::Validator>),
    /// The answer's JSON fields equal the expected answer's, normalised for case and whitespace
    /// (None: every field of the expected answer).
    JsonFields(Option<Vec<String>>),
    /// Similarity to the expected answer (or to one JSON field of both) at least `threshold`.
    Similarity {
        metric: Metric,
        threshold: f64,
        field: Option<String>,
    },
    MaxLatencyMs(f64),
    MaxCostUsd(f64),
    MaxPromptTokens(u64),
    /// A judge lane grades the answer against `rubric` (pass ∧ score ≥ threshold).
    Rubric {
        rubric: String,
        threshold: f64,
        judge: Option<String>,
    },
    /// A judge lane scores the answer 1–5 on `criteria` following `steps` (scaled to 0–1, ≥ threshold).
    GEval {
        criteria: String,
        steps: Vec<String>,
        threshold: f64,
        judge: Option<String>,
    },
    /// A judge lane compares the answer with the reference lane's, in both orders (win 1, tie ½, loss 0).
    Pairwise {
        question: String,
        threshold: f64,
        reference: Option<String>,
        judge: Option<String>,
    },
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.type_name())
    }
}

impl Kind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Equals(_) => "equals",
            Kind::Contains { .. } => "contains",
            Kind::NotContains { .. } => "not-contains",
            Kind::Regex(_) => "regex",
            Kind::IsJson => "is-json",
            Kind::JsonSchema(_) => "json-schema",
            Kind::JsonFields(_) => "json-fields",
            Kind::Similarity { .. } => "similarity",
            Kind::MaxLatencyMs(_) => "max-latency",
            Kind::MaxCostUsd(_) => "max-cost",
            Kind::MaxPromptTokens(_) => "max-prompt-tokens",
            Kind::Rubric { .. } => "llm-rubric",
            Kind::GEval { .. } => "g-eval",
            Kind::Pairwise { .. } => "pairwise",
        }
    }

    /// Graded by a judge lane rather than by rule.
    pub fn is_judged(&self) -> bool {
        matches!(self, Kind::Rubric { .. } | Kind::GEval { .. } | Kind::Pairwise { .. })
    }

    /// A judge assertion's pass mark (0–1).
    pub fn threshold(&self) -> Option<f64> {
        match self {
            Kind::Rubric { threshold, .. } | Kind::GEval { threshold, .. } | Kind::Pairwise { threshold, .. } => {
                Some(*threshold)
            }
            _ => None,
        }
    }

    /// A label for per-assertion pass rates when evals.toml gives no `name`.
    pub fn default_name(&self) -> String {
        let t = self.type_name();
        match self {
            Kind::Contains { value, .. } | Kind::NotContains { value, .. } => format!("{t} {value:?}"),
            Kind::Regex(re) => format!("{t} /{}/", re.as_str()),
            Kind::JsonFields(Some(fields)) => format!("{t} {}", fields.join(",")),
            Kind::Similarity { metric, threshold, field } => {
                let of = field.as_ref().map(|f| format!(" {f}")).unwrap_or_default();
                format!("{}{of} ≥ {threshold}", metric.name())
            }
            Kind::MaxLatencyMs(ms) => format!("{t} {ms}ms"),
            Kind::MaxCostUsd(usd) => format!("{t} ${usd}"),
            Kind::MaxPromptTokens(n) => format!("{t} {n}"),
            Kind::Rubric { rubric: text, .. }
            | Kind::GEval { criteria: text, .. }
            | Kind::Pairwise { question: text, .. } => {
                format!("{t} {}", glimpse(text))
            }
            _ => t.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Assertion {
    pub name: String,
    pub kind: Kind,
    /// Share of the case's score; 0 makes the assertion informational (reported, never failing the case).
    pub weight: f64,
}

impl Assertion {
    pub fn new(kind: Kind) -> Self {
        Self { name: kind.default_name(), kind, weight: 1.0 }
    }

    /// The comparison used without evals.toml: field by field for a JSON expected answer, else equality.
    pub fn default_for(expected: &str) -> Self {
        match parse_json(expected) {
            Some(Value::Object(_)) => Self::new(Kind::JsonFields(None)),
            _ => Self::new(Kind::Equals(None)),
        }
    }
}

/// What a lane produced for a case, as the assertions see it.
pub struct Observed<'a> {
    pub output: &'a str,
    pub expected: &'a str,
    pub total_ms: Option<f64>,
    /// Lanes that shared the device during the run (above 1: `total_ms` includes their turns).
    pub shared_lanes: Option<u32>,
    pub cost_usd: Option<f64>,
    pub prompt_tokens: Option<u64>,
    /// The judge's verdicts on this answer, by `judge::judge_id` (None: nothing was graded).
    pub verdicts: Option<&'a std::collections::HashMap<String, super::judge::Verdict>>,
}

/// One assertion's verdict on one answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub weight: f64,
    /// Why it failed (or the score it reached), for the report and the case browser.
    pub detail: String,
}

impl Assertion {
    pub fn check(&self, o: &Observed<'_>) -> Check {
        let (pass, detail) = self.judge(o);
        Check { name: self.name.clone(), pass, weight: self.weight, detail }
    }

    fn judge(&self, o: &Observed<'_>) -> (bool, String) {
        // A reasoning model's `<think>` block is not its answer: every assertion judges what follows it.
        let out = crate::engine::think::answer(o.output).trim();
        match &self.kind {
            Kind::Equals(value) => {
                let want = value.as_deref().unwrap_or(o.expected).trim();
                (out == want, if out == want { String::new() } else { format!("expected {}", glimpse(want)) })
            }
            Kind::Contains { value, ignore_case } => {
                let hit = contains(out, value, *ignore_case);
                (hit, if hit { String::new() } else { format!("{value:?} not found") })
            }
            Kind::NotContains { value, ignore_case } => {
                let hit = contains(out, value, *ignore_case);
                (!hit, if hit { format!("{value:?} found") } else { String::new() })
            }
            Kind::Regex(re) => {
                let hit = re.is_match(out);
                (hit, if hit { String::new() } else { format!("no match for /{}/", re.as_str()) })
            }
            Kind::IsJson => match parse_json(out) {
                Some(_) => (true, String::new()),
                None => (false, "not JSON".into()),
            },
            Kind::JsonSchema(validator) => match parse_json(out) {
                None => (false, "not JSON".into()),
                Some(v) => match validator.iter_errors(&v).next() {
                    None => (true, String::new()),
                    Some(e) => (false, format!("{} (at {})", e, e.instance_path())),
                },
            },
            Kind::JsonFields(fields) => json_fields(out, o.expected, fields.as_deref()),
            Kind::Similarity { metric, threshold, field } => {
                let pair = match field {
                    None => Ok((out.to_string(), o.expected.trim().to_string())),
                    Some(f) => {
                        field_text(out, f, "answer").and_then(|a| Ok((a, field_text(o.expected, f, "expected")?)))
                    }
                };
                match pair {
                    Err(e) => (false, e),
                    Ok((a, e)) => {
                        let s = match metric {
                            Metric::Chrf => chrf(&a, &e),
                            Metric::RougeL => rouge_l(&a, &e),
                        };
                        (s >= *threshold, format!("{} {s:.3}", metric.name()))
                    }
                }
            }
            Kind::MaxLatencyMs(max) => {
                // The wall figure is what the assertion reads; a shared one says so, as it includes other lanes.
                let (pass, detail) = limit(o.total_ms, *max, "latency", |v| format!("{v:.0}ms"));
                match o.shared_lanes.filter(|&n| n > 1) {
                    Some(n) => (pass, format!("{detail} (shared ×{n})")),
                    None => (pass, detail),
                }
            }
            Kind::MaxCostUsd(max) => limit(o.cost_usd, *max, "cost", |v| format!("${v:.6}")),
            Kind::MaxPromptTokens(max) => {
                limit(o.prompt_tokens.map(|n| n as f64), *max as f64, "prompt tokens", |v| format!("{v:.0}"))
            }
            kind @ (Kind::Rubric { .. } | Kind::GEval { .. } | Kind::Pairwise { .. }) => {
                match o.verdicts.and_then(|v| v.get(&super::judge::judge_id(kind))) {
                    None => (false, "not graded: no verdict from the judge (eval grades it)".into()),
                    Some(v) => match &v.error {
                        Some(e) => (false, e.clone()),
                        None => {
                            let outcome = v.outcome.map(|o| format!("{o:?} ").to_lowercase()).unwrap_or_default();
                            (v.pass, format!("{outcome}{:.2}: {}", v.score, v.reason))
                        }
                    },
                }
            }
        }
    }
}

fn limit(value: Option<f64>, max: f64, what: &str, show: impl Fn(f64) -> String) -> (bool, String) {
    match value {
        None => (false, format!("{what} unknown")),
        Some(v) if v <= max => (true, show(v)),
        Some(v) => (false, format!("{what} {} > {}", show(v), show(max))),
    }
}

fn contains(hay: &str, needle: &str, ignore_case: bool) -> bool {
    if ignore_case { hay.to_lowercase().contains(&needle.to_lowercase()) } else { hay.contains(needle) }
}

/// The answer as JSON: the whole text, or the inside of one Markdown code fence around it (models add them).
pub fn parse_json(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Some(v);
    }
    let inner = t.strip_prefix("```")?.strip_suffix("```")?;
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    serde_json::from_str(inner.trim()).ok()
}

/// Strings lower-cased with runs of whitespace made one space, inside arrays and objects too.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()),
        Value::Array(xs) => Value::Array(xs.iter().map(normalize).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect()),
        // 1 and 1.0 are the same number.
        Value::Number(n) => n.as_f64().and_then(serde_json::Number::from_f64).map_or_else(|| v.clone(), Value::Number),
        other => other.clone(),
    }
}

fn json_fields(out: &str, expected: &str, fields: Option<&[String]>) -> (bool, String) {
    let Some(Value::Object(want)) = parse_json(expected) else {
        return (false, "the expected answer is not a JSON object".into());
    };
    let Some(got) = parse_json(out) else { return (false, "not JSON".into()) };
    let Value::Object(got) = got else { return (false, "not a JSON object".into()) };
    let names: Vec<&str> = match fields {
        Some(f) => f.iter().map(String::as_str).collect(),
        None => want.keys().map(String::as_str).collect(),
    };
    let mut wrong = Vec::new();
    for name in names {
        match (want.get(name), got.get(name)) {
            (None, _) => wrong.push(format!("{name}: not in the expected answer")),
            (Some(_), None) => wrong.push(format!("{name}: missing")),
            (Some(w), Some(g)) if normalize(w) != normalize(g) => wrong.push(format!("{name}: {g} ≠ {w}")),
            _ => {}
        }
    }
    (wrong.is_empty(), wrong.join("; "))
}

fn field_text(json: &str, field: &str, which: &str) -> Result<String, String> {
    match parse_json(json) {
        Some(Value::Object(m)) => match m.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Ok(other.to_string()),
            None => Err(format!("{which} has no `{field}`")),
        },
        _ => Err(format!("{which} is not a JSON object")),
    }
}

/// The first line of a text, shortened for a one-line detail.
pub fn glimpse(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    let mut g: String = line.chars().take(60).collect();
    if g.len() < line.len() || s.lines().nth(1).is_some() {
        g.push('…');
    }
    format!("{g:?}")
}
