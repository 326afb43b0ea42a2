//! `tunebench eval` as a command: exit codes, and real local backends — the tiny test model (always), and
//! the example workspace's base and tuned lanes on the default model (in CI, which fetches it).

mod support;

use std::process::Command;

use support::tiny;

fn eval(args: &[&str]) -> (std::process::ExitStatus, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tunebench")).arg("eval").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines = text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    (out.status, lines, stderr)
}

#[test]
fn the_tiny_model_answers_every_case_and_a_rerun_comes_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = tiny::write(dir.path(), None);
    let root = dir.path().join("ws");
    std::fs::create_dir_all(root.join("dataset")).unwrap();
    let lane = |id: &str, prompt: &str| {
        format!(
            "[[lanes]]\nid = \"{id}\"\nbackend = \"local\"\nmodel = \"tiny\"\nprompt = \"{prompt}\"\nmax_tokens = 6\ntemperature = 0.0\n"
        )
    };
    std::fs::write(
        root.join("workspace.toml"),
        format!(
            "name = \"tiny\"\n[prompts.long]\ntext = \"Answer with one word, please, and keep it short and plain.\"\n[prompts.short]\ntext = \"One word.\"\n[models.tiny]\npath = \"{}\"\ndevice = \"cpu\"\n{}{}",
            gguf.display(),
            lane("long", "long"),
            lane("short", "short")
        ),
    )
    .unwrap();
    let cases: String = ["hello there", "what is this", "one more"]
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let ex = serde_json::json!({"messages": [{"role": "user", "content": input}, {"role": "assistant", "content": "yes"}], "id": format!("t{i}")});
            format!("{ex}\n")
        })
        .collect();
    std::fs::write(root.join("dataset/test.jsonl"), cases).unwrap();
    let limit = |n: f64| {
        std::fs::write(root.join("evals.toml"), format!("[[assert]]\ntype = \"max-prompt-tokens\"\nthreshold = {n}\n"))
            .unwrap()
    };
    limit(100_000.0);
    let ws = root.to_str().unwrap();
    let (status, first, stderr) = eval(&[ws, "--json"]);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("3 case(s) × 2 lane(s): 0 cached, 6 to run"), "{stderr}");
    let (long, short) = (&first[0], &first[1]);
    assert_eq!((long["cases"].as_u64(), short["cases"].as_u64()), (Some(3), Some(3)));
    assert_eq!((long["errors"].as_u64(), short["errors"].as_u64()), (Some(0), Some(0)), "{stderr}");
    let tokens = |l: &serde_json::Value| l["mean_prompt_tokens"].as_f64().unwrap();
    assert!(tokens(long) > tokens(short) + 5.0, "the long prompt costs tokens: {} vs {}", tokens(long), tokens(short));
    assert!(short["mean_completion_tokens"].as_f64().unwrap() <= 6.0);
    assert_eq!((long["passed"].as_u64(), short["passed"].as_u64()), (Some(3), Some(3)));
    // A tighter limit re-scores the cached answers: nothing runs again, and only the short prompt fits.
    limit(((tokens(long) + tokens(short)) / 2.0).round());
    let (status, again, stderr) = eval(&[ws, "--json"]);
    assert!(status.success() && stderr.contains("6 cached, 0 to run"), "{stderr}");
    assert_eq!((again[0]["passed"].as_u64(), again[1]["passed"].as_u64()), (Some(0), Some(3)));
    assert_eq!(again[1]["mean_prompt_tokens"], short["mean_prompt_tokens"]);
    // Greedy decoding: running again afresh gives the answers the cache held.
    let report = dir.path().join("r.jsonl");
    let cached = std::fs::read_to_string(root.join("eval-cache.jsonl")).unwrap();
    let (status, _, stderr) = eval(&[ws, "--fresh", "--out", report.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    let outputs = |text: &str| -> Vec<String> {
        let mut v: Vec<String> =
            text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["output"].to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(outputs(&cached), outputs(&std::fs::read_to_string(&report).unwrap()));
}

#[test]
fn eval_of_the_example_compares_base_and_tuned() {
    let Some(model) = support::default_model() else { return };
    let (_tmp, root) = support::example_copy_with_model(&model);
    let report = root.join("r.jsonl");
    let args =
        [root.to_str().unwrap(), "--lanes", "base,tuned", "--limit", "2", "--json", "--out", report.to_str().unwrap()];
    let (status, lines, stderr) = eval(&args);
    assert!(status.success(), "{stderr}");
    assert_eq!(lines.len(), 2);
    let (base, tuned) = (&lines[0], &lines[1]);
    assert_eq!((base["lane"].as_str(), tuned["lane"].as_str()), (Some("base"), Some("tuned")));
    for l in &lines {
        assert_eq!((l["cases"].as_u64(), l["errors"].as_u64()), (Some(2), Some(0)), "{l}\n{stderr}");
        assert!(
            l["pass_rate_ci95"].as_array().unwrap().len() == 2 && l["cost_per_1k_usd"].as_f64().unwrap() > 0.0,
            "{l}"
        );
    }
    let tokens = |l: &serde_json::Value| l["mean_prompt_tokens"].as_f64().unwrap();
    assert!(tokens(base) > 4.0 * tokens(tuned), "the long prompt against the short one: {base} {tuned}");
    // The shipped adapter answers with the record's five fields (its labels are the model's judgement, which
    // moves with the last bits of the arithmetic; the scoreboard in the README measures it over all 20 cases).
    let mut checked = 0;
    for line in std::fs::read_to_string(&report).unwrap().lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        if case["lane"] != "tuned" {
            continue;
        }
        checked += 1;
        let answer: serde_json::Value = serde_json::from_str(case["output"].as_str().unwrap()).unwrap_or_default();
        let keys = ["intent", "product", "urgency", "sentiment", "summary"];
        assert!(keys.iter().all(|k| answer[k].is_string()), "the shipped adapter answers as a record: {case}");
    }
    assert_eq!(checked, 2, "both cases of the tuned lane are in the report");
}

#[test]
fn the_command_exits_2_on_bad_input_and_on_paid_calls_nobody_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let root = support::answers::write_ws(dir.path(), "", "https://api.example.com/v1", 2);
    let ws = root.to_str().unwrap();
    let (status, _, stderr) = eval(&[ws, "--out", "report.html"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(".md, .csv or .jsonl"), "{stderr}");
    std::fs::write(root.join("evals.toml"), "[[assert]]\ntype = \"regex\"\nvalue = \"(\"\n").unwrap();
    let (status, _, stderr) = eval(&[ws]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("evals.toml:3:9: assert[0].value: regex parse error"), "{stderr}");
    std::fs::remove_file(root.join("evals.toml")).unwrap();
    // Standard input is not a terminal here: the paid calls are refused before any is made.
    let (status, _, stderr) = eval(&[ws]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("4 paid call(s) on lane(s) long, short") && stderr.contains("pass --yes"), "{stderr}");
    assert!(!root.join("eval-cache.jsonl").exists());
}
