//! Judge assertions in `tunebench eval` against a scripted judge lane: llm-rubric, g-eval and pairwise
//! verdicts, both orders of a pairwise comparison, malformed verdicts retried then counted as errors, the
//! judge's cache and cost, and the judge lane kept out of the contest.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use support::answers::{AnswerBackend, JSON_CASES, captured, parsed, registry, write_ws};
use tunebench::cli::eval::{EvalArgs, Streams, execute};

fn args(extra: &[&str]) -> EvalArgs {
    parsed("eval", extra)
}

async fn eval(root: &Path, b: &Arc<AnswerBackend>, a: &[&str]) -> (Result<u8, String>, Vec<serde_json::Value>, String) {
    let r = captured(None, async |io| execute(root, &args(a), registry(b), io).await).await;
    let lines = r.stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    (r.result, lines, r.stderr)
}

/// write_ws's two lanes plus a judge lane (priced), with `evals` as evals.toml.
fn workspace(dir: &Path, evals: &str) -> PathBuf {
    let root = write_ws(dir, "", "http://127.0.0.1:9/v1", 4);
    let toml = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    let judge = "[[lanes]]\nid = \"judge\"\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"\"\nmodel = \"m-judge\"\nprompt = \"short\"\n[pricing.\"m-judge\"]\ninput_per_mtok = 5.0\noutput_per_mtok = 5.0\n";
    std::fs::write(root.join("workspace.toml"), format!("{toml}{judge}")).unwrap();
    std::fs::write(root.join("evals.toml"), evals).unwrap();
    root
}

fn section<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text.find(&format!("{name}:\n")).map_or(0, |i| i + name.len() + 2);
    text[start..].split("\n\n").next().unwrap_or_default()
}

/// Lanes answer as write_ws's `answers` do (short gets billing wrong); the judge passes a rubric when the
/// answer holds the case's expected intent, scores g-eval 5 or 2 the same way, and in a pairwise comparison
/// prefers the answer whose intent is right (a tie when both or neither are).
fn backend(biased: bool) -> Arc<AnswerBackend> {
    AnswerBackend::new(move |lane, input| {
        if lane != "judge" {
            let (_, _, expected) = JSON_CASES.iter().find(|(_, i, _)| input.starts_with(i)).copied().unwrap();
            return Ok(if lane == "short" && input.starts_with("charged") {
                expected.replace("billing", "refund")
            } else {
                expected.into()
            });
        }
        let case_input = section(input, "Input");
        let (_, _, expected) = JSON_CASES.iter().find(|(_, i, _)| case_input.starts_with(i)).copied().unwrap();
        let intent: serde_json::Value = serde_json::from_str(expected).unwrap();
        let right = |a: &str| a.contains(&format!("\"intent\": \"{}\"", intent["intent"].as_str().unwrap()));
        Ok(if input.starts_with("Rubric:") {
            format!(
                "{{\"pass\": {}, \"score\": {}, \"reason\": \"intent checked\"}}",
                right(section(input, "Answer")),
                if right(section(input, "Answer")) { 0.9 } else { 0.1 }
            )
        } else if input.starts_with("Criteria:") {
            format!("{{\"score\": {}, \"reason\": \"scored\"}}", if right(section(input, "Answer")) { 5 } else { 2 })
        } else {
            let (a, b) = (right(section(input, "Answer A")), right(section(input, "Answer B")));
            let winner = if biased {
                "A"
            } else if a == b {
                "tie"
            } else if a {
                "A"
            } else {
                "B"
            };
            format!("{{\"winner\": \"{winner}\", \"reason\": \"compared\"}}")
        })
    })
}

const EVALS: &str = "[judge]\nlane = \"judge\"\n\n[[assert]]\ntype = \"llm-rubric\"\nname = \"rubric\"\nvalue = \"The intent is the right one.\"\n\n[[assert]]\ntype = \"g-eval\"\nname = \"geval\"\nvalue = \"Correct routing.\"\nsteps = [\"Read the ticket.\", \"Check the intent.\"]\nthreshold = 0.6\n\n[[assert]]\ntype = \"pairwise\"\nname = \"vs long\"\nvalue = \"Which answer routes the ticket better?\"\nweight = 0\n";

#[tokio::test]
async fn a_judge_lane_grades_rubrics_scores_and_pairs_and_is_never_a_contestant() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path(), EVALS);
    let b = backend(false);
    let (result, lines, stderr) = eval(&root, &b, &["--json"]).await;
    assert_eq!(result, Ok(0), "{stderr}");
    let lanes: Vec<&str> = lines.iter().map(|l| l["lane"].as_str().unwrap()).collect();
    assert_eq!(lanes, ["long", "short"], "the judge is not scored");
    let (long, short) = (&lines[0], &lines[1]);
    assert_eq!(long["passed"], 4, "{long}");
    assert_eq!(short["passed"], 3, "the billing case fails the rubric and g-eval: {short}");
    assert_eq!(short["assertions"]["rubric"], 0.75);
    assert_eq!(short["assertions"]["geval"], 0.75);
    // Pairwise: the reference ([savings] reference = long) is not compared with itself; short loses one, ties three.
    assert!(long["pairwise"].is_null(), "{long}");
    assert!(long["assertions"].get("vs long").is_none(), "the reference lane is not compared with itself: {long}");
    let p = &short["pairwise"];
    assert_eq!((p["wins"].as_u64(), p["ties"].as_u64(), p["losses"].as_u64()), (Some(0), Some(3), Some(1)), "{p}");
    assert_eq!(p["win_rate"], 0.375);
    // 4 rubric + 4 g-eval per lane, and 2 calls (both orders) per case for short's pairs.
    assert_eq!(short["judge_calls"], 16);
    assert!(short["judge_cost_usd"].as_f64().unwrap() > 0.0, "{short}");
    // One call per distinct prompt: where both lanes answered alike, their rubric and g-eval asks are the
    // same, and a pair of equal answers reads the same in both orders.
    assert!(stderr.contains("judge: 15 call(s), 0 without a well-formed verdict"), "{stderr}");
    let calls = b.calls();
    let (again, lines2, stderr2) = eval(&root, &b, &["--json"]).await;
    assert_eq!(again, Ok(0));
    assert_eq!(b.calls(), calls, "verdicts and answers come from the caches: {stderr2}");
    assert_eq!(lines2[1]["pairwise"], lines[1]["pairwise"]);
    let (refused, _, _) = eval(&root, &b, &["--lanes", "short,judge"]).await;
    assert!(refused.unwrap_err().contains("lane `judge` is evals.toml's judge"));
}

#[tokio::test]
async fn pairwise_asks_both_orders_so_a_judge_that_always_prefers_a_gives_ties() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path(), EVALS);
    let b = backend(true);
    let (result, lines, stderr) = eval(&root, &b, &["--json", "--lanes", "long,short"]).await;
    assert_eq!(result, Ok(0), "{stderr}");
    let p = &lines[1]["pairwise"];
    assert_eq!((p["wins"].as_u64(), p["ties"].as_u64(), p["losses"].as_u64()), (Some(0), Some(4), Some(0)), "{p}");
    let firsts: Vec<String> = b
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.0 == "judge" && s.1.starts_with("Question:") && section(&s.1, "Input").starts_with("charged"))
        .map(|s| section(&s.1, "Answer A").to_string())
        .collect();
    assert_eq!(firsts.len(), 2, "where the answers differ, both orders are asked");
    assert_ne!(firsts[0], firsts[1], "each answer comes first once");
}

#[tokio::test]
async fn a_malformed_verdict_is_asked_again_and_after_three_tries_counts_as_an_error_never_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(
        dir.path(),
        "[judge]\nlane = \"judge\"\n[[assert]]\ntype = \"llm-rubric\"\nvalue = \"Is it fine?\"\n",
    );
    // The judge rambles on the first try of every call, answers on the retry for c1..c3, never for c4.
    let b = AnswerBackend::new(|lane, input| {
        if lane != "judge" {
            return Ok("{\"intent\": \"x\"}".into());
        }
        if input.contains("app login fails") {
            return Ok("I think it is fine overall.".into());
        }
        Ok(if input.contains("(Your last reply could not be read") {
            "{\"pass\": true, \"score\": 1}"
        } else {
            "Looks good!"
        }
        .into())
    });
    let (result, lines, stderr) = eval(&root, &b, &["--json", "--lanes", "short"]).await;
    assert_eq!(result, Ok(0), "{stderr}");
    let short = &lines[0];
    assert_eq!(short["passed"], 3, "{short}");
    let judge_calls = b.seen.lock().unwrap().iter().filter(|s| s.0 == "judge").count();
    assert_eq!(judge_calls, 3 * 2 + 3, "two tries for three cases, three for the one that never answers");
    assert!(stderr.contains("judge: 4 call(s), 1 without a well-formed verdict"), "{stderr}");
    let report = dir.path().join("r.jsonl");
    let (_, _, _) = eval(&root, &b, &["--lanes", "short", "--out", report.to_str().unwrap()]).await;
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("judge error: malformed verdict: no JSON object"), "{text}");
    assert!(text.contains("(after 3 tries)"), "{text}");
}

#[tokio::test]
async fn judge_settings_are_checked_with_the_place_and_paid_judges_are_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path(), "[[assert]]\ntype = \"llm-rubric\"\nvalue = \"x\"\n");
    let b = backend(false);
    let (r, _, _) = eval(&root, &b, &[]).await;
    let e = r.unwrap_err();
    assert!(e.contains("evals.toml:1:1") && e.contains("needs a judge lane"), "{e}");
    std::fs::write(
        root.join("evals.toml"),
        "[judge]\nlane = \"nobody\"\n[[assert]]\ntype = \"llm-rubric\"\nvalue = \"x\"\n",
    )
    .unwrap();
    let (r, _, _) = eval(&root, &b, &[]).await;
    assert!(r.unwrap_err().contains("[judge] lane `nobody`: no such lane"));
    std::fs::write(root.join("evals.toml"), "[[assert]]\ntype = \"regex\"\nvalue = \"x\"\njudge = \"judge\"\n")
        .unwrap();
    let (r, _, _) = eval(&root, &b, &[]).await;
    assert!(r.unwrap_err().contains("`regex` takes no `judge`"));
    // A hosted judge costs money: without a terminal nothing is asked of it, and the command says so.
    let toml = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    let paid =
        toml.replacen("model = \"m-judge\"", "model = \"m-judge\"\nbase_url = \"https://api.example.com/v1\"", 1);
    let paid = paid.replacen(
        "base_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"\"\nmodel = \"m-judge\"",
        "api_key_env = \"\"\nmodel = \"m-judge\"",
        1,
    );
    std::fs::write(root.join("workspace.toml"), paid).unwrap();
    std::fs::write(
        root.join("evals.toml"),
        "[judge]\nlane = \"judge\"\n[[assert]]\ntype = \"llm-rubric\"\nvalue = \"x\"\n",
    )
    .unwrap();
    let (r, _, _) = eval(&root, &b, &["--lanes", "short"]).await;
    let e = r.unwrap_err();
    assert!(e.contains("paid call(s) on lane(s) judge") && e.contains("no terminal"), "{e}");
    assert_eq!(b.seen.lock().unwrap().iter().filter(|s| s.0 == "judge").count(), 0);
}

#[tokio::test]
async fn calibration_compares_the_judge_with_the_ratings_people_gave() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(
        dir.path(),
        "[judge]\nlane = \"judge\"\n[[assert]]\ntype = \"llm-rubric\"\nname = \"record\"\nvalue = \"The answer is a JSON record.\"\n",
    );
    let ex = |id: &str, input: &str, answer: &str, meta: serde_json::Value| {
        serde_json::json!({"messages": [{"role": "user", "content": input}, {"role": "assistant", "content": answer}], "id": id, "meta": meta}).to_string() + "\n"
    };
    let train = [
        ex("r5", "lamp broken", "{\"intent\": \"refund\"}", serde_json::json!({"rating": 5})),
        ex("r4", "watch slow", "{\"intent\": \"technical_issue\"}", serde_json::json!({"rating": 4})),
        ex("r2", "late parcel", "Your parcel is late, sorry.", serde_json::json!({"rating": 2})),
        ex("r1", "app crash", "{\"intent\": \"billing\"}", serde_json::json!({"rating": 1})),
        ex("plain", "no rating here", "{}", serde_json::json!({})),
    ]
    .concat();
    std::fs::write(root.join("dataset/train.jsonl"), train).unwrap();
    let mut test = std::fs::read_to_string(root.join("dataset/test.jsonl")).unwrap();
    test.push_str(&ex(
        "f9",
        "speaker hums",
        "{\"intent\": \"technical_issue\"}",
        serde_json::json!({"source_lane": "long"}),
    ));
    std::fs::write(root.join("dataset/test.jsonl"), test).unwrap();
    let b = AnswerBackend::new(|_, input| {
        let ok = section(input, "Answer").starts_with('{');
        Ok(format!("{{\"pass\": {ok}, \"score\": {}, \"reason\": \"r\"}}", if ok { 0.9 } else { 0.1 }))
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let streams = Streams { stdout: &mut out, stderr: &mut err, confirm: None, tty: false };
    let r = execute(&root, &args(&["--calibrate"]), registry(&b), streams).await.map_err(|e| format!("{e:#}"));
    let stdout = String::from_utf8(out).unwrap();
    assert_eq!(r, Ok(0), "{stdout}");
    assert!(
        stdout.contains(
            "5 answer(s) people judged (4 rated 1–5, 4–5 a pass; 1 chosen in F9 as expected); 5 judge call(s)"
        ),
        "{stdout}"
    );
    // r1 (rated 1, a JSON record) is the one disagreement; ρ over (score, rating) = 1/√15.
    let row = stdout.lines().find(|l| l.starts_with("record")).unwrap();
    assert!(row.contains("4/5") && row.contains("80%") && row.contains("0.26 (n=4)"), "{row}");
}
