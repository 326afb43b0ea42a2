//! `dataset check`: everything that makes a dataset train badly or evaluate dishonestly, one finding each.

use std::collections::HashSet;

use super::text::{normalized, shingles, similar_pairs};
use super::{Dataset, Example, Split};

/// Near-duplicate threshold on the user turn's word 5-gram Jaccard.
pub const NEAR: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth a look; `check` still passes.
    Warning,
    /// `check` fails.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Malformed,
    DuplicateId,
    RoleOrder,
    Empty,
    SystemPrompt,
    TooLong,
    /// The same input in two splits: an eval example that also trains.
    Leak,
    /// A test input that is one of the long prompt's few-shot examples.
    FewShotLeak,
    Duplicate,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Malformed => "malformed",
            Kind::DuplicateId => "duplicate-id",
            Kind::RoleOrder => "role-order",
            Kind::Empty => "empty",
            Kind::SystemPrompt => "system-prompt",
            Kind::TooLong => "too-long",
            Kind::Leak => "leak",
            Kind::FewShotLeak => "few-shot-leak",
            Kind::Duplicate => "duplicate",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    /// `split.jsonl:line` of the example (the first of a pair).
    pub at: String,
    pub id: Option<String>,
    pub message: String,
}

/// What to check the examples against.
pub struct Check<'a> {
    /// The system prompt every example should carry (the `[dataset] system_prompt` variant).
    pub system_prompt: &'a str,
    pub system_variant: &'a str,
    /// Other prompt variants (name, text): their few-shot examples must not be test inputs.
    pub prompts: Vec<(&'a str, &'a str)>,
    /// Tokens of a whole example in the adapter lane's model, and that model's context, when known.
    pub tokens: Option<super::CountTokens<'a>>,
    pub context: Option<usize>,
}

pub fn check(ds: &Dataset, c: &Check<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let at = |s: Split, line: usize| format!("{}:{line}", s.file_name());
    for (s, m) in ds.malformed() {
        out.push(finding(
            Kind::Malformed,
            Severity::Error,
            at(s, m.line),
            None,
            format!("not an example: {}", m.error),
        ));
    }
    let all: Vec<(Split, &Example, usize)> = ds.examples().collect();
    let mut ids = HashSet::new();
    for &(s, x, line) in &all {
        let f = |kind, sev, msg| finding(kind, sev, at(s, line), Some(x.id.clone()), msg);
        if !ids.insert(x.id.as_str()) {
            out.push(f(Kind::DuplicateId, Severity::Error, format!("id {} is used by another example", x.id)));
        }
        for (kind, msg) in shape_problems(x) {
            out.push(f(kind, Severity::Error, msg));
        }
        let system = x.system().unwrap_or_default();
        if system.trim() != c.system_prompt.trim() {
            let msg = if x.system().is_none() {
                format!("no system message; examples are stored against the `{}` prompt", c.system_variant)
            } else {
                format!("its system prompt differs from the `{}` prompt: {}", c.system_variant, glimpse(system))
            };
            out.push(f(Kind::SystemPrompt, Severity::Error, msg));
        }
        if let (Some(count), Some(ctx)) = (c.tokens, c.context) {
            match count(x) {
                Ok(n) if n > ctx => {
                    out.push(f(Kind::TooLong, Severity::Error, format!("{n} tokens; the model's context is {ctx}")));
                }
                Ok(_) => {}
                Err(e) => out.push(f(Kind::TooLong, Severity::Warning, format!("cannot count its tokens: {e}"))),
            }
        }
    }
    duplicates(&all, &mut out);
    few_shot(&all, c, &mut out);
    out.sort_by(|a, b| (b.severity, a.kind).cmp(&(a.severity, b.kind)));
    out
}

/// Exact and near-duplicate inputs: across splits they are leaks; within a split, repeats.
fn duplicates(all: &[(Split, &Example, usize)], out: &mut Vec<Finding>) {
    let sets: Vec<HashSet<u64>> = all.iter().map(|(_, x, _)| shingles(x.user())).collect();
    let keys: Vec<String> = all.iter().map(|(_, x, _)| normalized(x.user())).collect();
    let mut pairs = similar_pairs(&sets, NEAR);
    // Inputs with no words (emoji, punctuation) have no shingles: equal ones are paired by their text.
    let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (j, k) in keys.iter().enumerate() {
        match first.get(k.as_str()) {
            Some(&i) if sets[j].is_empty() => pairs.push((i, j, 1.0)),
            Some(_) => {}
            None => {
                first.insert(k, j);
            }
        }
    }
    for (i, j, score) in pairs {
        let ((si, xi, li), (sj, xj, lj)) = (all[i], all[j]);
        let exact = keys[i] == keys[j];
        let how = if exact {
            "the same input".to_string()
        } else {
            format!("a near-duplicate input (5-gram Jaccard {score:.2})")
        };
        let (kind, severity, msg) = if si != sj {
            let why = if si == Split::Train || sj == Split::Train {
                "an eval example that also trains"
            } else {
                "valid and test overlap, so the test score is not independent of model selection"
            };
            let what = format!("{how} as {} ({}:{lj}): {why}", xj.id, sj.file_name());
            (Kind::Leak, Severity::Error, what)
        } else if exact {
            (Kind::Duplicate, Severity::Error, format!("{how} as {} (line {lj})", xj.id))
        } else {
            (Kind::Duplicate, Severity::Warning, format!("{how} as {} (line {lj})", xj.id))
        };
        out.push(finding(kind, severity, format!("{}:{li}", si.file_name()), Some(xi.id.clone()), msg));
    }
}

/// Test inputs that appear in another prompt variant (its few-shot examples): a lane carrying that prompt
/// would be graded on an answer it was shown. A paragraph of the prompt as similar as a near-duplicate,
/// or most of the input's 5-grams inside the prompt, counts.
fn few_shot(all: &[(Split, &Example, usize)], c: &Check<'_>, out: &mut Vec<Finding>) {
    for (name, text) in &c.prompts {
        for &(s, x, line) in all.iter().filter(|(s, ..)| *s == Split::Test) {
            if let Some((best, inside)) = super::text::in_prompt(x.user(), text, NEAR) {
                let msg = format!(
                    "this test input is a few-shot example in the `{name}` prompt (5-gram Jaccard {best:.2}, {:.0}% of it inside)",
                    inside * 100.0
                );
                out.push(finding(
                    Kind::FewShotLeak,
                    Severity::Error,
                    format!("{}:{line}", s.file_name()),
                    Some(x.id.clone()),
                    msg,
                ));
            }
        }
    }
}

/// What is wrong with one example on its own (role order, empty messages): the rules `check` reports and
/// `import` and `export` refuse, so no file tunebench reads in or writes out holds what `check` rejects.
pub fn shape_problems(x: &Example) -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    if let Some(msg) = role_problem(x) {
        out.push((Kind::RoleOrder, msg));
    }
    if let Some(m) = x.messages.iter().position(|m| m.content.trim().is_empty()) {
        out.push((Kind::Empty, format!("message {} ({}) is empty", m + 1, x.messages[m].role)));
    }
    out
}

/// OpenAI's chat rule: an optional system message first, then user and assistant alternating, starting
/// with user and ending with the assistant's answer that is trained on.
fn role_problem(x: &Example) -> Option<String> {
    let roles: Vec<&str> = x.messages.iter().map(|m| m.role.as_str()).collect();
    if let Some(bad) = roles.iter().find(|r| !matches!(**r, "system" | "user" | "assistant")) {
        return Some(format!("unknown role `{bad}` (system, user or assistant)"));
    }
    let turns = roles.strip_prefix(&["system"]).unwrap_or(&roles);
    if turns.is_empty() {
        return Some("no user or assistant message".into());
    }
    for (i, r) in turns.iter().enumerate() {
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        if *r != want {
            return Some(format!("roles are {}: expected {want} at turn {}", roles.join(" → "), i + 1));
        }
    }
    (turns.len() % 2 == 1).then(|| format!("roles are {}: the last message must be the assistant's", roles.join(" → ")))
}

fn finding(kind: Kind, severity: Severity, at: String, id: Option<String>, message: String) -> Finding {
    Finding { kind, severity, at, id, message }
}

pub(super) fn glimpse(text: &str) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 60 { format!("{}…", one.chars().take(60).collect::<String>()) } else { one }
}
