//! Headless runs: the `run --json` contract through the library with the scripted backend, and the real binary.

mod support;

use std::process::Command;

use support::{Script, ScriptedBackend};
use tunebench::cli::headless;
use tunebench::workspace;

/// design.md's line, then the fields tunebench adds at the end.
const KEYS: [&str; 18] = [
    "lane",
    "backend",
    "model",
    "adapter",
    "prompt_variant",
    "output",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "total_ms",
    "tokens_per_s",
    "cost_usd",
    "error",
    "estimated",
    "cached_prompt_tokens",
    "reasoning_tokens",
    "shared_lanes",
    "own_compute_ms",
];

#[tokio::test(flavor = "multi_thread")]
async fn run_reports_each_lane_with_the_design_md_fields() {
    let (_tmp, root) = support::example_copy();
    let ws = workspace::load(&root).unwrap();
    let backend = ScriptedBackend::new([
        ("base", Script::text("one two three").prompt_tokens(1287).delay_ms(2)),
        ("tuned", Script::text("one two").prompt_tokens(231)),
        ("api", Script::text("partial answer here").prompt_tokens(1198).fail_after(2, "stream cut mid-answer")),
    ]);
    let lanes = headless::select_lanes(&ws, &[]).unwrap();
    let reports = headless::run(&ws, "My order arrived broken.", &lanes, support::registry(backend)).await.reports;

    let lines: Vec<String> = reports.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v.as_object().unwrap().len(), KEYS.len());
        assert_eq!(keys_in_order(line), KEYS, "field names and order are a contract");
    }
    let v: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(v[0]["lane"], "base");
    assert_eq!(v[0]["output"], "one two three");
    assert_eq!(v[0]["prompt_tokens"], 1287);
    assert_eq!(v[0]["completion_tokens"], 3);
    assert!(v[0]["total_ms"].as_f64().unwrap() >= v[0]["ttft_ms"].as_f64().unwrap());
    assert!(v[0]["error"].is_null());
    // The example prices SmolLM2 at $0.02/$0.08 per Mtok: 1,287 × 0.02e-6 + 3 × 0.08e-6 = $0.00002598.
    assert!((v[0]["cost_usd"].as_f64().unwrap() - 0.00002598).abs() < 1e-12, "{}", v[0]["cost_usd"]);
    assert_eq!(v[1]["adapter"], "adapters/ticket-lora-v2");
    assert_eq!(v[1]["prompt_variant"], "short");
    assert_eq!(v[2]["output"], "partial answer ", "a failed lane keeps its partial output");
    assert_eq!(v[2]["error"], "stream cut mid-answer");
    assert_eq!(v[2]["prompt_tokens"], 1198);

    let runs = std::fs::read_to_string(ws.runs_path()).unwrap();
    assert_eq!(runs.lines().count(), 3, "each finished lane is appended to runs.jsonl");
    // Each record says exactly what ran: hashes of the input and of the lane's system prompt.
    let sha = tunebench::metrics::history::sha256_hex;
    let recs: Vec<serde_json::Value> = runs.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let base = recs.iter().find(|r| r["lane"] == "base").unwrap();
    assert_eq!(base["input_sha256"], sha(b"My order arrived broken."));
    assert_eq!(base["prompt_sha256"], sha(ws.prompt_text("long").unwrap().as_bytes()));
    assert!(base["adapter_sha256"].is_null() && base["time_unix_ms"].as_u64().unwrap() > 0);
    // And the sampling settings it ran with.
    let sp = &ws.lanes[0].sampling;
    assert_eq!((base["temperature"].as_f64(), base["top_p"].as_f64()), (Some(sp.temperature), Some(sp.top_p)));
    assert_eq!((base["max_tokens"].as_u64(), base["seed"].as_u64()), (Some(u64::from(sp.max_tokens)), sp.seed));
    assert_eq!(base["repetition_penalty"].as_f64(), Some(sp.repetition_penalty));
    assert!(base.get("top_k").is_some(), "top_k recorded (null: no limit)");
    let tuned = recs.iter().find(|r| r["lane"] == "tuned").unwrap();
    let adapter = ws.resolve("adapters/ticket-lora-v2");
    let files = ["adapter_config.json", "adapter_model.safetensors"].map(|f| std::fs::read(adapter.join(f)).unwrap());
    assert_eq!(tuned["adapter_sha256"], sha(&files.concat()), "the shipped adapter's contents");

    // `tunebench runs --csv` exports the same records, one row each, header first.
    let out =
        Command::new(env!("CARGO_BIN_EXE_tunebench")).args(["runs", root.to_str().unwrap(), "--csv"]).output().unwrap();
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut rows = csv.lines();
    assert_eq!(rows.next().unwrap(), tunebench::metrics::history::CSV_COLUMNS.join(","));
    assert_eq!(rows.count(), 3);
    assert!(csv.contains(&sha(b"My order arrived broken.")));

    // `tunebench runs` writes the table F9's history does: UTC dates, "prompt" the variant, money one way.
    let out = Command::new(env!("CARGO_BIN_EXE_tunebench")).args(["runs", root.to_str().unwrap()]).output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let date = tunebench::metrics::history::utc_minute(base["time_unix_ms"].as_u64().unwrap());
    let row = table.lines().find(|l| l.contains(" base ")).unwrap();
    assert!(row.starts_with(&date), "{table}");
    assert!(row.contains(" long ") && row.contains(" 1,287 ") && row.ends_with("26.0 µ$"), "{table}");
    assert!(table.starts_with("time (UTC)       lane       prompt   prompt tok"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn priced_api_lanes_report_cost() {
    let (_tmp, root) = support::example_copy();
    let ws = workspace::load(&root).unwrap();
    let backend = ScriptedBackend::new([("api", Script::text("a b c d e f g h i j").prompt_tokens(1000))]);
    let lanes = headless::select_lanes(&ws, &["api".into()]).unwrap();
    let r = headless::run(&ws, "x", &lanes, support::registry(backend)).await.reports;
    assert_eq!(r.len(), 1);
    // 1000 × $0.15/M + 10 × $0.60/M = $0.000156
    assert!((r[0].cost_usd.unwrap() - 0.000156).abs() < 1e-12, "{:?}", r[0].cost_usd);
}

#[test]
fn unknown_lane_ids_are_named() {
    let ws = workspace::load(&support::example_root()).unwrap();
    let err = headless::select_lanes(&ws, &["base".into(), "gpt5".into()]).unwrap_err();
    assert!(err.contains("no lane `gpt5`") && err.contains("lanes: base, tuned, api"), "{err}");
    let err = headless::select_lanes(&ws, &["api".into(), "api".into()]).unwrap_err();
    assert!(err.contains("lane `api` is listed twice"), "{err}");
}

/// The keys of a raw JSON line in the order written (serde_json::Value would sort them).
fn keys_in_order(line: &str) -> Vec<&'static str> {
    let mut found: Vec<(usize, &'static str)> =
        KEYS.iter().filter_map(|k| line.find(&format!("\"{k}\":")).map(|at| (at, *k))).collect();
    found.sort();
    found.into_iter().map(|(_, k)| k).collect()
}

fn tunebench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tunebench")).args(args).output().unwrap()
}

#[test]
fn the_binary_prints_one_json_line_per_lane_and_fails_naming_the_lanes() {
    let (_tmp, root) = support::example_copy();
    let out = tunebench(&[
        "run",
        root.to_str().unwrap(),
        "--input",
        "My order arrived broken.",
        "--json",
        "--lanes",
        "base,api",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["lane"], "base");
    assert_eq!(lines[1]["lane"], "api");
    assert_eq!(keys_in_order(stdout.lines().next().unwrap()), KEYS);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("2 of 2 lane(s) failed: base (") && stderr.contains("; api ("), "{stderr}");
}

#[test]
fn the_binary_reads_the_input_from_a_file_or_stdin() {
    let (tmp, root) = support::example_copy();
    let input = tmp.path().join("ticket.txt");
    std::fs::write(&input, "Refund please").unwrap();
    let out = tunebench(&["run", root.to_str().unwrap(), "--input-file", input.to_str().unwrap(), "--lanes", "tuned"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("── tuned · short · smollm2 · local"), "{stdout}");
    let runs = std::fs::read_to_string(root.join("runs.jsonl")).unwrap();
    assert!(runs.contains("\"input\":\"Refund please\""));
}

#[test]
fn a_saved_input_file_sends_the_same_text_from_run_as_from_the_tui() {
    let (_tmp, root) = support::example_copy();
    let file = root.join("inputs/16-terse-one-liner.txt");
    // Two trailing blank lines typed on purpose, then the file's own line end (CRLF, as on Windows).
    std::fs::write(&file, "Charger dead after a week.\r\n\r\n\r\n").unwrap();
    let tui = support::state_for(&root, 80, 24);
    let shown = tui.inputs.iter().find(|i| i.path == file).unwrap().text.clone();
    assert_eq!(shown, "Charger dead after a week.\n\n");
    tunebench(&["run", root.to_str().unwrap(), "--input-file", file.to_str().unwrap(), "--lanes", "tuned"]);
    let runs = std::fs::read_to_string(root.join("runs.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(runs.lines().last().unwrap()).unwrap();
    assert_eq!(record["input"], shown.as_str(), "run --input-file and the TUI send one text");
}

#[test]
fn the_binary_reports_an_invalid_workspace_with_file_and_line() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid/unknown_backend.toml");
    let out = tunebench(&["run", dir.to_str().unwrap(), "--input", "x"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("unknown_backend.toml:17:11: lanes[1].backend: unknown backend `opneai`"), "{stderr}");
    // The TUI path validates the same way, before touching the terminal.
    let out = tunebench(&[dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("unknown_backend.toml:17:11"));
}

#[test]
fn the_binary_needs_an_input() {
    let out = tunebench(&["run", support::example_root().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("--input"));
}
