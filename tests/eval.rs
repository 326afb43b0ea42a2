//! `tunebench eval`, end to end against a workspace the tests write: caching and reruns, the per-lane
//! concurrency limit, the paid-call confirmation, exit codes, the --json contract, the reports and repeats.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::answers::{AnswerBackend, Ran, answers, answers_for, captured, parsed, registry, write_ws};
use tunebench::cli::eval::{EvalArgs, Streams, execute};
use tunebench::engine::Registry;
use tunebench::workspace::BackendKind;

fn args(extra: &[&str]) -> EvalArgs {
    parsed("eval", extra)
}

async fn eval(root: &Path, b: &Arc<AnswerBackend>, a: &[&str], confirm: Option<&str>) -> Ran {
    captured(confirm, async |io| execute(root, &args(a), registry(b), io).await).await
}

fn lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn json_lines_follow_the_contract_and_fail_under_sets_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "", "http://127.0.0.1:9/v1", 8);
    let b = answers();
    let r = eval(&root, &b, &["--json", "--fail-under", "0.8"], None).await;
    assert_eq!(r.result, Ok(1), "short passes 6/8 < 0.8; stderr: {}", r.stderr);
    assert!(r.stderr.contains("lane `short`: pass rate 0.750 is below --fail-under 0.8"), "{}", r.stderr);
    let ls = lines(&r.stdout);
    let contract = [
        "lane",
        "cases",
        "passed",
        "pass_rate",
        "pass_rate_ci95",
        "mean_prompt_tokens",
        "mean_completion_tokens",
        "mean_ttft_ms",
        "mean_total_ms",
        "cost_per_1k_usd",
    ];
    let first = r.stdout.lines().next().unwrap();
    let at: Vec<usize> = contract.iter().map(|k| first.find(&format!("\"{k}\":")).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]) && at[0] == 1, "the contract's fields lead, in order: {first}");
    assert!(
        first.starts_with(
            "{\"lane\":\"long\",\"cases\":8,\"passed\":8,\"pass_rate\":1.0,\"pass_rate_ci95\":[0.6756,1.0],"
        ),
        "{first}"
    );
    assert_eq!(
        (ls[0]["lane"].as_str(), ls[0]["cases"].as_u64(), ls[0]["passed"].as_u64()),
        (Some("long"), Some(8), Some(8))
    );
    assert_eq!(
        (ls[1]["lane"].as_str(), ls[1]["passed"].as_u64(), ls[1]["pass_rate"].as_f64()),
        (Some("short"), Some(6), Some(0.75))
    );
    let ci: Vec<f64> = ls[1]["pass_rate_ci95"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!((ci[0] - 0.4093).abs() < 1e-3 && (ci[1] - 0.9285).abs() < 1e-3, "Wilson 6/8: {ci:?}");
    assert_eq!(ls[1]["assertions"]["json-fields"].as_f64(), Some(0.75));
    // Prices: long pays 10$/Mtok in and 20$/Mtok for 3 tokens out; short a tenth of that.
    let cost = |l: &serde_json::Value| l["cost_per_1k_usd"].as_f64().unwrap();
    assert!(cost(&ls[0]) > 9.0 * cost(&ls[1]) && cost(&ls[1]) > 0.0, "{} {}", cost(&ls[0]), cost(&ls[1]));
    let vs = &ls[1]["vs_reference"];
    assert_eq!(vs["lane"], "long");
    assert!((vs["saved_per_1k_usd"].as_f64().unwrap() - (cost(&ls[0]) - cost(&ls[1]))).abs() < 1e-6);
    assert!((vs["pass_rate_delta"].as_f64().unwrap() + 0.25).abs() < 1e-9);
    let r = eval(&root, &b, &["--json", "--fail-under", "0.7"], None).await;
    assert_eq!(r.result, Ok(0));
    let r = eval(&root, &b, &["--fail-under", "80"], None).await;
    assert!(r.result.unwrap_err().contains("--fail-under 80: give a pass rate from 0 to 1"));
}

#[tokio::test]
async fn answers_are_cached_and_a_rerun_runs_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "", "http://127.0.0.1:9/v1", 4);
    let b = answers();
    let first = eval(&root, &b, &["--json"], None).await;
    assert_eq!((first.result, b.calls()), (Ok(0), 8));
    let again = eval(&root, &b, &["--json"], None).await;
    assert_eq!(b.calls(), 8, "everything cached: {}", again.stderr);
    assert!(again.stderr.contains("4 case(s) × 2 lane(s): 8 cached, 0 to run"), "{}", again.stderr);
    let strip = |s: &str| {
        lines(s)
            .into_iter()
            .map(|mut v| {
                v["cached"] = 0.into();
                v
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&first.stdout), strip(&again.stdout), "the same scoreboard from the cache");
    // Editing a prompt changes that lane's hash only.
    let toml = std::fs::read_to_string(root.join("workspace.toml")).unwrap().replace("Short.", "Short, and JSON.");
    std::fs::write(root.join("workspace.toml"), toml).unwrap();
    let r = eval(&root, &b, &["--json"], None).await;
    assert_eq!(b.calls(), 12, "only the short lane's 4 cases ran again: {}", r.stderr);
    // Editing an expected answer re-scores the cached answers without running anything.
    let test = std::fs::read_to_string(root.join("dataset/test.jsonl")).unwrap().replace("billing", "refund");
    std::fs::write(root.join("dataset/test.jsonl"), test).unwrap();
    let r = eval(&root, &b, &["--json"], None).await;
    assert_eq!(b.calls(), 12);
    let ls = lines(&r.stdout);
    assert_eq!(
        (ls[0]["passed"].as_u64(), ls[1]["passed"].as_u64()),
        (Some(3), Some(4)),
        "now the short lane is the right one"
    );
    // A new case runs alone; --fresh runs everything; --limit runs a prefix.
    let r = eval(&root, &b, &["--limit", "2"], None).await;
    assert_eq!((r.result, b.calls()), (Ok(0), 12));
    let r = eval(&root, &b, &["--fresh", "--lanes", "long"], None).await;
    assert_eq!((r.result, b.calls()), (Ok(0), 16));
}

#[tokio::test]
async fn failed_runs_count_as_failures_keep_partial_output_and_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "", "http://127.0.0.1:9/v1", 4);
    let flaky = AnswerBackend::new(|lane, input| {
        if lane == "short" && input.starts_with("where") {
            Err("HTTP 503 from the server".into())
        } else {
            answers_for(input)
        }
    });
    let out = dir.path().join("report.jsonl");
    let r = eval(&root, &flaky, &["--json", "--out", out.to_str().unwrap()], None).await;
    assert_eq!(r.result, Ok(0));
    assert!(r.stderr.contains("case c3_2 · lane short: HTTP 503 from the server"), "{}", r.stderr);
    let ls = lines(&r.stdout);
    assert_eq!((ls[1]["passed"].as_u64(), ls[1]["errors"].as_u64()), (Some(3), Some(1)));
    let report: Vec<serde_json::Value> = lines(&std::fs::read_to_string(&out).unwrap());
    let failed = report.iter().find(|v| v["lane"] == "short" && v["case_id"] == "c3_2").unwrap();
    assert_eq!((failed["output"].as_str(), failed["pass"].as_bool()), (Some("partial"), Some(false)));
    assert_eq!(failed["checks"][0]["name"], "run");
    let fixed = answers();
    let r = eval(&root, &fixed, &["--json"], None).await;
    assert_eq!(fixed.calls(), 1, "only the failed run is tried again: {}", r.stderr);
}

#[tokio::test]
async fn api_lanes_keep_to_their_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "", "http://127.0.0.1:9/v1", 12);
    let toml = std::fs::read_to_string(root.join("workspace.toml")).unwrap().replacen(
        "prompt = \"long\"\n",
        "prompt = \"long\"\nconcurrency = 3\n",
        1,
    );
    std::fs::write(root.join("workspace.toml"), toml).unwrap();
    let b = AnswerBackend::with_delay(Duration::from_millis(40), |_, input| answers_for(input));
    let r = eval(&root, &b, &["--concurrency", "2"], None).await;
    assert_eq!(r.result, Ok(0), "{}", r.stderr);
    assert_eq!(b.calls(), 24);
    assert_eq!(b.max_in_flight("long"), 3, "the lane's own key");
    assert_eq!(b.max_in_flight("short"), 2, "--concurrency for a lane without one");
    assert_eq!(b.max_in_flight("*"), 5);
    // Local lanes on one CPU run 4 at a time by default (the worker batches them), `--batch N` at most N, and
    // `--clean-timing` one at a time, so each run's timings are its own.
    let toml = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    let local = toml
        .replace(
            "backend = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"\"\n",
            "backend = \"local\"\n",
        )
        .replace("concurrency = 3\n", "")
        .replace("model = \"m-long\"", "model = \"m\"")
        .replace("model = \"m-short\"", "model = \"m\"")
        + "[models.m]\npath = \"model.gguf\"\ndevice = \"cpu\"\n";
    std::fs::write(root.join("workspace.toml"), local).unwrap();
    for (flags, most) in [(&["--concurrency", "8"][..], 4), (&["--batch", "2"][..], 2), (&["--clean-timing"][..], 1)] {
        let b = AnswerBackend::with_delay(Duration::from_millis(10), |_, input| answers_for(input));
        let reg = Registry::default().with(BackendKind::Local, Arc::new(support::answers::Handle(b.clone())));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let streams = Streams { stdout: &mut out, stderr: &mut err, confirm: None, tty: false };
        let r = execute(&root, &args(&[flags, &["--fresh"]].concat()), reg, streams).await;
        assert_eq!(r.map_err(|e| e.to_string()), Ok(0), "{}", String::from_utf8_lossy(&err));
        assert_eq!((b.calls(), b.max_in_flight("*")), (24, most), "{flags:?}");
    }
}

#[tokio::test]
async fn paid_calls_need_a_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "", "https://api.example.com/v1", 3);
    let b = answers();
    let r = eval(&root, &b, &[], None).await;
    let e = r.result.unwrap_err();
    assert!(e.contains("6 paid call(s) on lane(s) long, short") && e.contains("pass --yes"), "{e}");
    assert_eq!(b.calls(), 0, "nothing ran without a terminal to confirm on");
    let r = eval(&root, &b, &[], Some("n\n")).await;
    assert!(r.result.unwrap_err().contains("not confirmed"));
    assert!(r.stderr.contains("at most $") && r.stderr.contains("Proceed? [y/N]"), "{}", r.stderr);
    assert_eq!(b.calls(), 0);
    let r = eval(&root, &b, &[], Some("y\n")).await;
    assert_eq!((r.result, b.calls()), (Ok(0), 6));
    let r = eval(&root, &b, &["--fresh", "--yes"], None).await;
    assert_eq!((r.result, b.calls()), (Ok(0), 12), "--yes skips the question");
    assert!(!r.stderr.contains("Proceed?"));
    let r = eval(&root, &b, &[], None).await;
    assert_eq!(r.result, Ok(0), "all cached: nothing to pay for, nothing to ask");
}

#[tokio::test]
async fn reports_in_markdown_csv_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "", "http://127.0.0.1:9/v1", 4);
    let b = answers();
    for ext in ["md", "csv", "jsonl"] {
        let out = dir.path().join(format!("report.{ext}"));
        let r = eval(&root, &b, &["--out", out.to_str().unwrap()], None).await;
        assert_eq!(r.result, Ok(0), "{}", r.stderr);
        let text = std::fs::read_to_string(&out).unwrap();
        match ext {
            "md" => {
                assert!(text.starts_with("# tunebench eval · evaltest\n\n| lane | pass | rate (95% CI) |"), "{text}");
                assert!(text.contains("| short | 3/4 | 75% (30–95%) |"), "{text}");
                assert!(text.contains("| json-fields | 4/4 | 3/4 |"), "{text}");
                assert!(
                    text.contains("- `c2_1` · lane `short`: json-fields (intent: \"refund\" ≠ \"billing\")"),
                    "{text}"
                );
            }
            "csv" => {
                assert_eq!(text.lines().count(), 1 + 8);
                assert!(text.starts_with("case_id,lane,pass,score,failed_assertions,"));
                assert!(text.contains("c2_1,short,false,0.0000,json-fields,"), "{text}");
            }
            _ => assert_eq!(lines(&text).len(), 8),
        }
    }
    // The terminal table (no --json) shows the same figures.
    let r = eval(&root, &b, &[], None).await;
    assert!(r.stdout.contains("short  3/4") && r.stdout.contains("reference"), "{}", r.stdout);
    let r = eval(&root, &b, &["--out", "x.html"], None).await;
    assert!(r.result.unwrap_err().contains(".md, .csv or .jsonl"));
}

/// `--repeat 3`: every case runs three times, repeat i with seed + i, each repeat cached on its own key; the
/// pass rate's spread across repeats is reported, and the reports record each lane's configuration and sampling.
#[tokio::test]
async fn repeats_sample_with_seed_plus_i_are_cached_apart_and_report_their_spread() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "temperature = 0.7\nseed = 10\ntop_p = 0.9", "http://127.0.0.1:9/v1", 2);
    // The short lane's sampled answer is right only on its first draw (seed 10) for "charged twice".
    // The backend records each call's seed before answering; the answer reads it back through this handle.
    let me: Arc<std::sync::OnceLock<Arc<AnswerBackend>>> = Arc::default();
    let handle = me.clone();
    let b = AnswerBackend::new(move |lane, input| {
        let seen = handle.get().unwrap().seen.lock().unwrap();
        let seed = seen.iter().rev().find(|(l, i, _)| l == lane && i == input).and_then(|s| s.2);
        let right = support::answers::answers_for(input)?;
        Ok(if lane == "short" && seed != Some(10) { right.replace("\"refund\"", "\"billing\"") } else { right })
    });
    assert!(me.set(b.clone()).is_ok());
    let out = dir.path().join("report.md");
    let r = eval(&root, &b, &["--json", "--repeat", "3", "--out", out.to_str().unwrap()], None).await;
    assert_eq!(r.result, Ok(0), "{}", r.stderr);
    assert!(r.stderr.contains("eval: 2 case(s) × 3 repeats × 2 lane(s): 0 cached, 12 to run"), "{}", r.stderr);
    let mut seeds: Vec<(String, String, Option<u64>)> = b.seen.lock().unwrap().clone();
    seeds.sort();
    let short_c1: Vec<Option<u64>> =
        seeds.iter().filter(|(l, i, _)| l == "short" && i.starts_with("my lamp")).map(|s| s.2).collect();
    assert_eq!(short_c1, vec![Some(10), Some(11), Some(12)], "repeat i samples with seed + i");
    let ls = lines(&r.stdout);
    let short = ls.iter().find(|l| l["lane"] == "short").unwrap();
    // Case 1 ("refund") passes only on repeat 0; case 2 always: per repeat 2/2, 1/2, 1/2.
    assert_eq!(
        (short["cases"].as_u64(), short["passed"].as_u64(), short["repeats"].as_u64()),
        (Some(6), Some(4), Some(3))
    );
    assert_eq!(short["pass_rate_by_repeat"], serde_json::json!([1.0, 0.5, 0.5]));
    assert_eq!(short["pass_rate_spread"]["min"], 0.5);
    assert_eq!(short["pass_rate_spread"]["max"], 1.0);
    assert_eq!(short["config"]["temperature"], 0.7);
    assert_eq!(short["config"]["seed"], 10);
    assert_eq!(short["config"]["prompt_variant"], "short");
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.contains("| short | openai | m-short | – | short | 0.7 | 0.9 | – | 256 | 10 | 1 |"), "{md}");
    assert!(md.contains("50–100% (sd 23.6 pts)"), "{md}");
    assert!(md.contains("(repeat 1) · lane `short`"), "{md}");
    // Each repeat has its own cache key: a rerun runs nothing; one more repeat runs only the new one.
    let again = eval(&root, &b, &["--json", "--repeat", "3"], None).await;
    assert!(again.stderr.contains("12 cached, 0 to run"), "{}", again.stderr);
    let more = eval(&root, &b, &["--json", "--repeat", "4"], None).await;
    assert!(more.stderr.contains("12 cached, 4 to run"), "{}", more.stderr);
    // CSV: the repeat and the seed it sampled with, per row.
    let csv_out = dir.path().join("r.csv");
    eval(&root, &b, &["--repeat", "2", "--out", csv_out.to_str().unwrap()], None).await;
    let csv = std::fs::read_to_string(&csv_out).unwrap();
    assert!(
        csv.lines().next().unwrap().ends_with(",repeat,temperature,top_p,top_k,max_tokens,seed,repetition_penalty")
    );
    assert!(csv.lines().any(|l| l.starts_with("c1_0,short,") && l.ends_with(",1,0.7,0.9,,256,11,1")), "{csv}");
}

#[tokio::test]
async fn tag_keeps_only_the_cases_that_carry_it_and_an_unknown_tag_is_refused_with_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_ws(dir.path(), "", "http://127.0.0.1:9/v1", 8);
    // Cases 0 and 5 form a frozen subset.
    let path = root.join("dataset/test.jsonl");
    let tagged: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let tags = if i == 0 || i == 5 { vec!["frozen", "en"] } else { vec!["en"] };
            v["meta"] = serde_json::json!({ "tags": tags });
            v.to_string()
        })
        .collect();
    std::fs::write(&path, tagged.join("\n") + "\n").unwrap();
    let b = answers();
    let r = eval(&root, &b, &["--json", "--lanes", "short", "--tag", "frozen"], None).await;
    assert_eq!(r.result, Ok(0), "{}", r.stderr);
    assert_eq!(b.calls(), 2, "only the two tagged cases ran");
    assert_eq!(lines(&r.stdout)[0]["cases"].as_u64(), Some(2));
    let r = eval(&root, &b, &["--tag", "frozen-20"], None).await;
    let err = r.result.unwrap_err();
    assert!(err.contains("none of the 8 test cases carries the tag `frozen-20` (their tags: en, frozen)"), "{err}");
    assert_eq!(b.calls(), 2, "nothing ran");
}
