//! The judge's prompts (one per assertion kind; they replace the judge lane's own prompt) and the JSON
//! verdicts read back from its replies.

use serde_json::Value;

use crate::eval::Kind;

/// One judge call: the system prompt and the user turn.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ask {
    pub system: String,
    pub input: String,
}

const RUBRIC: &str = "You grade an answer against a rubric. Read the input, the answer and the rubric. Reply with \
only a JSON object, no other text: {\"pass\": true or false, \"score\": a number from 0 to 1, \"reason\": \"one short \
sentence\"}. pass is true when the answer meets the rubric.";

const G_EVAL: &str = "You score an answer on the given criteria, following the evaluation steps. Reply with only a \
JSON object, no other text: {\"score\": an integer from 1 (poor) to 5 (excellent), \"reason\": \"one short \
sentence\"}.";

const PAIRWISE: &str = "You compare two answers, A and B, to the same input, on the question given. Judge the \
content, not the length or the order in which they appear. Reply with only a JSON object, no other text: \
{\"winner\": \"A\", \"B\" or \"tie\", \"reason\": \"one short sentence\"}.";

pub fn rubric(rubric: &str, input: &str, answer: &str) -> Ask {
    Ask { system: RUBRIC.into(), input: format!("Rubric:\n{rubric}\n\nInput:\n{input}\n\nAnswer:\n{answer}") }
}

pub fn g_eval(criteria: &str, steps: &[String], input: &str, answer: &str) -> Ask {
    let steps = if steps.is_empty() {
        "1. Read the input and the answer.\n2. Check the answer against each criterion.\n3. Give the score.".to_string()
    } else {
        steps.iter().enumerate().map(|(i, s)| format!("{}. {s}", i + 1)).collect::<Vec<_>>().join("\n")
    };
    Ask {
        system: G_EVAL.into(),
        input: format!("Criteria:\n{criteria}\n\nEvaluation steps:\n{steps}\n\nInput:\n{input}\n\nAnswer:\n{answer}"),
    }
}

pub fn pairwise(question: &str, input: &str, a: &str, b: &str) -> Ask {
    Ask {
        system: PAIRWISE.into(),
        input: format!("Question:\n{question}\n\nInput:\n{input}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"),
    }
}

/// The same call asked again after a malformed reply, saying what was wrong.
pub fn retry(ask: &Ask, problem: &str) -> Ask {
    Ask {
        system: ask.system.clone(),
        input: format!(
            "{}\n\n(Your last reply could not be read: {problem}. Reply with the JSON object only.)",
            ask.input
        ),
    }
}

/// A JSON list of non-empty strings (the first `[` to the last `]`), or an object holding one as `inputs`.
pub fn parse_list(reply: &str) -> Result<Vec<String>, String> {
    let text = crate::engine::think::answer(reply);
    let (Some(start), Some(end)) = (text.find('['), text.rfind(']')) else {
        return Err(format!("no JSON list in {}", crate::eval::assert::glimpse(text)));
    };
    let v: Value = serde_json::from_str(&text[start..=end.max(start)]).map_err(|e| format!("not a JSON list: {e}"))?;
    let items = v.as_array().ok_or("not a JSON list")?;
    let out: Vec<String> =
        items.iter().filter_map(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if out.is_empty() {
        return Err("the list holds no non-empty strings".into());
    }
    Ok(out)
}

/// A verdict as read: pass, score 0–1 (pairwise: 1 when A won, ½ tie, 0 when B won), reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub pass: bool,
    pub score: f64,
    pub reason: String,
}

/// Reads the JSON verdict of a reply (its first `{` to its last `}`, a reasoning model's thinking left out);
/// anything else is an error saying what is wrong, never a pass.
pub fn parse(kind: &Kind, reply: &str) -> Result<Parsed, String> {
    let text = crate::engine::think::answer(reply);
    let (Some(start), Some(end)) = (text.find('{'), text.rfind('}')) else {
        return Err(format!("malformed verdict: no JSON object in {}", crate::eval::assert::glimpse(text)));
    };
    let v: Value =
        serde_json::from_str(&text[start..=end.max(start)]).map_err(|e| format!("malformed verdict: {e}"))?;
    let reason = v.get("reason").and_then(Value::as_str).unwrap_or_default().trim().to_string();
    match kind {
        Kind::Rubric { .. } => {
            let pass =
                v.get("pass").and_then(Value::as_bool).ok_or("malformed verdict: `pass` is not true or false")?;
            let score = v.get("score").and_then(Value::as_f64).ok_or("malformed verdict: `score` is not a number")?;
            if !(0.0..=1.0).contains(&score) {
                return Err(format!("malformed verdict: `score` {score} is outside 0–1"));
            }
            Ok(Parsed { pass, score, reason })
        }
        Kind::GEval { .. } => {
            let s = v.get("score").and_then(Value::as_f64).ok_or("malformed verdict: `score` is not a number")?;
            if !(1.0..=5.0).contains(&s) {
                return Err(format!("malformed verdict: `score` {s} is outside 1–5"));
            }
            Ok(Parsed { pass: true, score: (s - 1.0) / 4.0, reason })
        }
        Kind::Pairwise { .. } => {
            let w = v.get("winner").and_then(Value::as_str).map(|w| w.trim().to_ascii_lowercase());
            let score = match w.as_deref() {
                Some("a") => 1.0,
                Some("b") => 0.0,
                Some("tie") => 0.5,
                _ => return Err("malformed verdict: `winner` is not \"A\", \"B\" or \"tie\"".into()),
            };
            Ok(Parsed { pass: true, score, reason })
        }
        _ => Err("not a judge assertion".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rubric_kind() -> Kind {
        Kind::Rubric { rubric: "r".into(), threshold: 0.5, judge: None }
    }

    #[test]
    fn verdicts_are_read_from_the_json_object_and_anything_else_is_an_error() {
        let ok = parse(&rubric_kind(), "Sure! {\"pass\": true, \"score\": 0.8, \"reason\": \"fine\"} done").unwrap();
        assert_eq!(ok, Parsed { pass: true, score: 0.8, reason: "fine".into() });
        assert!(parse(&rubric_kind(), "yes it passes").unwrap_err().contains("no JSON object"));
        assert!(parse(&rubric_kind(), "{\"pass\": \"yes\", \"score\": 1}").unwrap_err().contains("`pass`"));
        assert!(parse(&rubric_kind(), "{\"pass\": true, \"score\": 7}").unwrap_err().contains("outside 0–1"));
        let g = Kind::GEval { criteria: "c".into(), steps: vec![], threshold: 0.5, judge: None };
        assert_eq!(parse(&g, "{\"score\": 4, \"reason\": \"r\"}").unwrap().score, 0.75);
        assert!(parse(&g, "{\"score\": 0}").is_err());
        let p = Kind::Pairwise { question: "q".into(), threshold: 0.5, reference: None, judge: None };
        assert_eq!(parse(&p, "<think>hmm</think>{\"winner\": \"B\", \"reason\": \"r\"}").unwrap().score, 0.0);
        assert_eq!(parse(&p, "{\"winner\": \"Tie\"}").unwrap().score, 0.5);
        assert!(parse(&p, "{\"winner\": \"both\"}").is_err());
    }
}
