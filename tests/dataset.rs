//! The dataset library and CLI: each check against a planted case, deterministic splits, the exchange
//! formats' own rules and round trips, import errors, and the starter data shipped with the example.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use tunebench::dataset::{self, Check, Dataset, Example, Format, Kind, Meta, Severity, Split, SplitPlan};

const SYS: &str = "Extract the ticket as JSON.";
const LONG: &str = "Rules.\n\nTicket:\nMy Lumen desk lamp arrived cracked and flickers. I want my money back. Order NW-48213.\n\nAnswer:\n{}";

fn ex(id: &str, system: &str, user: &str, answer: &str) -> Example {
    Example::chat(id.into(), system, user, answer, Meta::default())
}

fn write(dir: &Path, split: Split, lines: &[String]) {
    std::fs::write(dir.join(split.file_name()), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

/// A distinct, realistic-length ticket for `n` (no two share a word 5-gram).
fn ticket(n: usize) -> String {
    let words = ["lamp", "watch", "speaker", "headphones", "app", "charger", "strap", "parcel", "invoice", "screen"];
    let w = |k: usize| words[(n / 10usize.pow(k as u32)) % 10];
    format!("ticket {n}: my {} and {} broke near the {} so the {} needs {} help {n}", w(0), w(1), w(2), w(0), w(1))
}

fn check_with(ds: &Dataset, tokens: Option<dataset::CountTokens<'_>>, context: Option<usize>) -> Vec<dataset::Finding> {
    let c = Check { system_prompt: SYS, system_variant: "short", prompts: vec![("long", LONG)], tokens, context };
    dataset::check(ds, &c)
}

#[test]
fn every_check_catches_its_planted_case() {
    let dir = tempfile::tempdir().unwrap();
    let long_text = "word ".repeat(80);
    let base = "The left ear cup of my new headphones makes a loud crackling sound whenever the volume goes above half, and it started on the second day";
    let train = vec![
        ex("ok1", SYS, &ticket(1), "{}").to_line(),
        ex("dupid", SYS, &ticket(2), "{}").to_line(),
        "{\"messages\": [oops".to_string(),
        ex("dupid", SYS, &ticket(3), "{}").to_line(),
        Example {
            messages: vec![dataset::Message::new("assistant", "x"), dataset::Message::new("user", "y z")],
            ..ex("order", SYS, "", "")
        }
        .to_line(),
        ex("empty", SYS, &ticket(5), "  ").to_line(),
        ex("othersys", "Be nice.", &ticket(6), "{}").to_line(),
        ex("nosys", "", &ticket(7), "{}").to_line(),
        ex("long", SYS, &long_text, "{}").to_line(),
        ex("leak_a", SYS, "My Pulse watch strap SNAPPED   after a week.", "{}").to_line(),
        ex("near_a", SYS, base, "{}").to_line(),
        ex("twin_a", SYS, &ticket(8), "{}").to_line(),
        ex("twin_b", SYS, &ticket(8).to_uppercase(), "{}").to_line(),
        ex("close_a", SYS, &format!("{base} and it is annoying"), "{}").to_line(),
    ];
    write(dir.path(), Split::Train, &train);
    let valid = vec![ex("near_b", SYS, &format!("{base} of use"), "{}").to_line()];
    write(dir.path(), Split::Valid, &valid);
    let test = vec![
        ex("leak_b", SYS, "my pulse watch strap snapped after a week.", "{}").to_line(),
        ex(
            "fewshot",
            SYS,
            "My Lumen desk lamp arrived cracked and flickers. I want my money back. Order NW-48213.",
            "{}",
        )
        .to_line(),
        ex("ok2", SYS, &ticket(9), "{}").to_line(),
    ];
    write(dir.path(), Split::Test, &test);

    let ds = Dataset::load(dir.path()).unwrap();
    let count = |x: &Example| Ok(x.pairs().iter().map(|(_, c)| c.split_whitespace().count()).sum::<usize>());
    let findings = check_with(&ds, Some(&count), Some(50));
    let has = |kind: Kind, at: &str, id: Option<&str>, sev: Severity| {
        findings.iter().any(|f| f.kind == kind && f.at == at && f.id.as_deref() == id && f.severity == sev)
    };
    let show = format!("{findings:#?}");
    assert!(has(Kind::Malformed, "train.jsonl:3", None, Severity::Error), "{show}");
    assert!(has(Kind::DuplicateId, "train.jsonl:4", Some("dupid"), Severity::Error), "{show}");
    assert!(has(Kind::RoleOrder, "train.jsonl:5", Some("order"), Severity::Error), "{show}");
    assert!(has(Kind::Empty, "train.jsonl:6", Some("empty"), Severity::Error), "{show}");
    assert!(has(Kind::SystemPrompt, "train.jsonl:7", Some("othersys"), Severity::Error), "{show}");
    assert!(has(Kind::SystemPrompt, "train.jsonl:8", Some("nosys"), Severity::Error), "{show}");
    assert!(has(Kind::TooLong, "train.jsonl:9", Some("long"), Severity::Error), "{show}");
    assert!(
        has(Kind::Leak, "train.jsonl:10", Some("leak_a"), Severity::Error),
        "exact leak, case and spacing aside: {show}"
    );
    assert!(has(Kind::Leak, "train.jsonl:11", Some("near_a"), Severity::Error), "near leak: {show}");
    assert!(has(Kind::Duplicate, "train.jsonl:12", Some("twin_a"), Severity::Error), "{show}");
    assert!(has(Kind::FewShotLeak, "test.jsonl:2", Some("fewshot"), Severity::Error), "{show}");
    // Within one split a near-duplicate is worth a look, not a failure.
    assert!(has(Kind::Duplicate, "train.jsonl:11", Some("near_a"), Severity::Warning), "{show}");
    let flagged: BTreeSet<&str> = findings.iter().filter_map(|f| f.id.as_deref()).collect();
    for clean in ["ok1", "ok2"] {
        assert!(!flagged.contains(clean), "{clean} is clean: {show}");
    }
    // The near pair is ≥ 0.8 and a merely similar one is not.
    let j = |a: &str, b: &str| dataset::jaccard(&dataset::shingles(a), &dataset::shingles(b));
    assert!(j(base, &format!("{base} of use")) >= 0.8);
    assert!(j(base, "The left ear cup of my new headphones makes a loud crackling sound when I run") < 0.8);
    // Errors sort before warnings, so a report starts with what fails the check.
    assert_eq!(findings[0].severity, Severity::Error);
    assert_eq!(findings.last().unwrap().severity, Severity::Warning);
}

fn pool(dir: &Path, n: usize, order: impl Fn(usize) -> usize) {
    let mut lines = Vec::new();
    for i in 0..n {
        let k = order(i);
        lines.push(ex(&format!("ex_{k:04}"), SYS, &ticket(k), "{}").to_line());
    }
    // Five near-duplicate pairs: each must land in one split with its twin.
    for k in 0..5 {
        lines.push(ex(&format!("twin_{k}"), SYS, &format!("{} again", ticket(k)), "{}").to_line());
    }
    write(dir, Split::Train, &lines);
}

#[test]
fn split_is_deterministic_complete_and_keeps_near_duplicates_together() {
    let plan = SplitPlan { valid: 0.1, test: 0.1, seed: 7 };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    pool(a.path(), 100, |i| i);
    pool(b.path(), 100, |i| 99 - i); // the same examples in another order
    let da = dataset::resplit(&Dataset::load(a.path()).unwrap(), plan).unwrap();
    dataset::resplit(&Dataset::load(b.path()).unwrap(), plan).unwrap();
    for s in Split::ALL {
        let read = |d: &Path| std::fs::read(d.join(s.file_name())).unwrap();
        assert_eq!(read(a.path()), read(b.path()), "{s}: same examples and seed, same files");
    }
    let counts: Vec<usize> = Split::ALL.iter().map(|&s| da.count(s)).collect();
    assert_eq!(counts.iter().sum::<usize>(), 105, "nothing lost or doubled");
    assert!((10..=12).contains(&counts[1]) && (10..=12).contains(&counts[2]), "{counts:?}");
    let split_of = |id: &str| da.find(id).unwrap().0;
    for k in 0..5 {
        assert_eq!(split_of(&format!("twin_{k}")), split_of(&format!("ex_{k:04}")), "pair {k} split apart");
    }
    assert!(check_with(&da, None, None).iter().all(|f| f.kind != Kind::Leak), "a fresh split has no leak");
    // Another seed gives another split.
    let other = dataset::resplit(&da, SplitPlan { seed: 8, ..plan }).unwrap();
    let tests = |d: &Dataset| {
        d.examples().filter(|(s, ..)| *s == Split::Test).map(|(_, x, _)| x.id.clone()).collect::<Vec<_>>()
    };
    assert_ne!(tests(&da), tests(&other));
    // A cluster bigger than an eval split trains rather than swamping it; two examples still leave one training.
    let c = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (0..40).map(|i| ex(&format!("ex_{i:04}"), SYS, &ticket(i), "{}").to_line()).collect();
    let shared = "my lamp flickers every evening when the heating comes on and then it dies completely";
    lines.extend((0..20).map(|i| ex(&format!("clu_{i:02}"), SYS, &format!("{shared} {i}"), "{}").to_line()));
    write(c.path(), Split::Train, &lines);
    let dc = dataset::resplit(&Dataset::load(c.path()).unwrap(), plan).unwrap();
    assert_eq!((dc.count(Split::Valid), dc.count(Split::Test)), (6, 6), "first fit keeps eval splits at size");
    assert!((0..20).all(|i| dc.find(&format!("clu_{i:02}")).unwrap().0 == Split::Train));
    let two = tempfile::tempdir().unwrap();
    write(
        two.path(),
        Split::Train,
        &[ex("a", SYS, &ticket(1), "{}").to_line(), ex("b", SYS, &ticket(2), "{}").to_line()],
    );
    let d2 =
        dataset::resplit(&Dataset::load(two.path()).unwrap(), SplitPlan { valid: 0.45, test: 0.45, seed: 1 }).unwrap();
    assert_eq!(d2.count(Split::Train), 1);
    // Bad fractions are refused before anything is written.
    let err = dataset::resplit(&da, SplitPlan { valid: 0.6, test: 0.5, seed: 1 }).unwrap_err();
    assert!(err.to_string().contains("leave some examples for training"), "{err}");
}

fn samples() -> Vec<Example> {
    vec![
        ex("ex_a", SYS, "Lamp \"Lumen\" flickers\nsince Tuesday.", r#"{"intent": "technical_issue"}"#),
        ex("ex_b", "", "¿Dónde está mi pedido? 🙂", r#"{"intent": "shipping"}"#),
    ]
}

/// OpenAI's published format checks for chat fine-tuning data (the cookbook's format validator).
fn openai_rules(line: &Value) {
    let obj = line.as_object().expect("each line is an object");
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["messages"], "only `messages` (exporters strip id and meta)");
    let msgs = obj["messages"].as_array().expect("messages is a list");
    assert!(msgs.iter().any(|m| m["role"] == "assistant"), "an assistant message");
    for m in msgs {
        let keys: BTreeSet<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(keys.is_subset(&BTreeSet::from(["role", "content", "name", "weight"])), "{keys:?}");
        assert!(["system", "user", "assistant"].contains(&m["role"].as_str().unwrap()));
        assert!(!m["content"].as_str().expect("content is a string").is_empty());
    }
}

fn alpaca_rules(rec: &Value) {
    let keys: Vec<&String> = rec.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["input", "instruction", "output"]);
    assert!(["instruction", "input", "output"].iter().all(|k| rec[k].is_string()));
    assert!(!rec["output"].as_str().unwrap().is_empty());
}

fn sharegpt_rules(rec: &Value) {
    let conv = rec["conversations"].as_array().expect("conversations is a list");
    let speakers: Vec<&str> = conv.iter().map(|t| t["from"].as_str().unwrap()).collect();
    let turns = speakers.strip_prefix(&["system"]).unwrap_or(&speakers);
    for (i, s) in turns.iter().enumerate() {
        assert_eq!(*s, if i % 2 == 0 { "human" } else { "gpt" }, "{speakers:?}");
    }
    assert!(conv.iter().all(|t| t["value"].as_str().is_some_and(|v| !v.is_empty())));
}

#[test]
fn exports_follow_each_formats_rules_and_import_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let xs = samples();
    let refs: Vec<&Example> = xs.iter().collect();
    for (format, rules) in [
        (Format::OpenAi, openai_rules as fn(&Value)),
        (Format::Alpaca, alpaca_rules),
        (Format::ShareGpt, sharegpt_rules),
    ] {
        for name in ["out.jsonl", "out.json"] {
            let path = dir.path().join(name);
            std::fs::write(&path, dataset::export(&refs, format, &path).unwrap()).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let records: Vec<Value> = if text.starts_with('[') {
                assert!(format != Format::OpenAi, "OpenAI files are always JSON Lines");
                serde_json::from_str(&text).unwrap()
            } else {
                text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
            };
            assert_eq!(records.len(), 2, "{format:?} {name}");
            records.iter().for_each(rules);
            let back = dataset::import(&path, format).unwrap();
            let msgs = |v: &[Example]| v.iter().map(|x| x.messages.clone()).collect::<Vec<_>>();
            assert_eq!(msgs(&back), msgs(&xs), "{format:?} {name} round trip");
        }
    }
    let multi = Example {
        messages: ["user", "assistant", "user", "assistant"].iter().map(|r| dataset::Message::new(r, "x")).collect(),
        ..ex("ex_multi", SYS, "", "")
    };
    let err = dataset::export(&[&multi], Format::Alpaca, &dir.path().join("a.json")).unwrap_err().to_string();
    assert!(err.contains("ex_multi") && err.contains("one user turn"), "{err}");
}

#[test]
fn import_errors_name_the_file_and_line_or_index() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("in.jsonl");
    std::fs::write(
        &jsonl,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n{\"messages\": [{\"role\": \"user\"}]}\n",
    )
    .unwrap();
    let err = dataset::import(&jsonl, Format::OpenAi).unwrap_err().to_string();
    assert!(err.contains("in.jsonl:2") && err.contains("messages[0]: missing `content`"), "{err}");
    let array = dir.path().join("in.json");
    std::fs::write(
        &array,
        r#"[{"instruction": "i", "input": "x", "output": "o"}, {"instruction": "i", "input": "y"}]"#,
    )
    .unwrap();
    let err = dataset::import(&array, Format::Alpaca).unwrap_err().to_string();
    assert!(err.contains("in.json[1]") && err.contains("missing `output`"), "{err}");
    let sg = dir.path().join("sg.jsonl");
    std::fs::write(&sg, r#"{"conversations": [{"from": "robot", "value": "x"}]}"#).unwrap();
    let err = dataset::import(&sg, Format::ShareGpt).unwrap_err().to_string();
    assert!(err.contains("sg.jsonl:1") && err.contains("unknown speaker `robot`"), "{err}");
}

#[test]
fn the_starter_dataset_is_large_varied_correct_and_passes_check() {
    let root = support::example_root();
    let ws = tunebench::workspace::load(&root).unwrap();
    let ds = Dataset::load(&ws.dataset_dir()).unwrap();
    assert_eq!(ds.malformed().count(), 0);
    let n = |s| ds.count(s);
    assert!(n(Split::Train) >= 80 && n(Split::Valid) >= 20 && n(Split::Test) >= 20, "{:?}", Split::ALL.map(n));
    let allowed: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        (
            "intent",
            vec![
                "refund",
                "return",
                "replacement",
                "technical_issue",
                "billing",
                "shipping",
                "account",
                "product_question",
                "complaint",
                "feedback",
                "cancellation",
                "other",
            ],
        ),
        ("urgency", vec!["low", "medium", "high", "critical"]),
        ("sentiment", vec!["positive", "neutral", "negative", "angry"]),
        (
            "product",
            vec![
                "Aero X1 headphones",
                "Aero X1 Pro headphones",
                "Pulse smartwatch",
                "Pulse smartwatch 2",
                "HomeHub speaker",
                "HomeHub Mini",
                "Lumen desk lamp",
                "Northwind app",
                "unknown",
            ],
        ),
    ]);
    let mut seen: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut non_ascii = 0;
    for (_, x, line) in ds.examples() {
        assert_eq!(x.system(), Some(ws.prompt_text("short").unwrap()), "line {line}");
        let v: Value = serde_json::from_str(x.assistant()).unwrap_or_else(|e| panic!("{}: {e}", x.id));
        assert_eq!(v.as_object().unwrap().len(), 5, "{}", x.id);
        let at: Vec<Option<usize>> = ["intent", "product", "urgency", "sentiment", "summary"]
            .iter()
            .map(|k| x.assistant().find(&format!("\"{k}\":")))
            .collect();
        assert!(at.windows(2).all(|w| w[0].is_some() && w[0] < w[1]), "{}: keys in the prompt's order", x.id);
        for (k, ok) in &allowed {
            let got = v[*k].as_str().unwrap();
            assert!(ok.contains(&got), "{}: {k} = {got}", x.id);
            seen.entry(k).or_default().insert(got.to_string());
        }
        let summary = v["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("The customer") && summary.ends_with('.') && summary.split_whitespace().count() <= 25,
            "{}",
            x.id
        );
        non_ascii += usize::from(!x.user().is_ascii());
    }
    assert_eq!(seen["intent"].len(), 12, "every intent appears");
    assert_eq!(seen["urgency"].len(), 4);
    assert_eq!(seen["sentiment"].len(), 4);
    assert!(non_ascii >= 8, "tickets in other languages: {non_ascii}");
    let ctx = dataset::Context::of(&ws);
    let findings = ctx.check(&ds, ctx.measure(&tunebench::metrics::Counters::new()).ok().as_ref());
    assert!(findings.is_empty(), "{findings:#?}");
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench")).args(args).output().unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

/// Examples in the workspace's `split`.jsonl (one per line).
fn lines_of(root: &Path, split: &str) -> usize {
    std::fs::read_to_string(root.join(format!("dataset/{split}.jsonl"))).unwrap().lines().count()
}

#[test]
fn the_cli_catches_a_planted_train_test_leak_and_round_trips_exports() {
    let (_tmp, root) = support::example_copy();
    let ws = root.to_str().unwrap();
    let (code, out, err) = cli(&["dataset", ws, "check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 error(s)"), "{out}");
    // Plant a leak: a training ticket, lightly reworded, goes into test.
    let train = std::fs::read_to_string(root.join("dataset/train.jsonl")).unwrap();
    let mut x: Example = serde_json::from_str(train.lines().nth(4).unwrap()).unwrap();
    let leaked_id = x.id.clone();
    x.id = "ex_planted".into();
    let user = x.user().replacen(' ', "  ", 3) + " Thanks!";
    x.set_turn("user", user);
    let mut test = std::fs::read_to_string(root.join("dataset/test.jsonl")).unwrap();
    let (tests, all) =
        (test.lines().count() + 1, 1 + ["train", "valid", "test"].map(|s| lines_of(&root, s)).iter().sum::<usize>());
    test.push_str(&(x.to_line() + "\n"));
    std::fs::write(root.join("dataset/test.jsonl"), test).unwrap();
    let (code, out, _) = cli(&["dataset", ws, "check"]);
    assert_eq!(code, 1, "{out}");
    let leak = out.lines().find(|l| l.contains("leak")).unwrap_or_else(|| panic!("{out}"));
    assert!(
        leak.contains(&leaked_id) && leak.contains("ex_planted") && leak.contains("an eval example that also trains"),
        "{leak}"
    );

    let (code, out, _) = cli(&["dataset", ws, "stats", "--json"]);
    assert_eq!(code, 0);
    let rows: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.iter().map(|r| r["split"].as_str().unwrap()).collect::<Vec<_>>(), ["train", "valid", "test"]);
    assert_eq!(rows[2]["examples"], tests);

    // Export every split as ShareGPT, import it into an empty workspace copy: same examples.
    let out_file = root.join("all.json");
    let (code, out, err) =
        cli(&["dataset", ws, "export", "--format", "sharegpt", "--split", "all", "--out", out_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("exported {all} all example(s)")), "{out}");
    let (_tmp2, fresh) = support::example_copy();
    for s in Split::ALL {
        std::fs::remove_file(fresh.join("dataset").join(s.file_name())).unwrap();
    }
    let (code, out, err) =
        cli(&["dataset", fresh.to_str().unwrap(), "import", "--format", "sharegpt", out_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let total = Dataset::load(&root.join("dataset")).unwrap().examples().count();
    assert!(out.contains(&format!("imported {total} example(s)")), "{out}{err}");
    let back = Dataset::load(&fresh.join("dataset")).unwrap();
    let msgs = |d: &Dataset| {
        d.examples().map(|(_, x, _)| serde_json::to_string(&x.messages).unwrap()).collect::<BTreeSet<_>>()
    };
    assert_eq!(msgs(&back), msgs(&Dataset::load(&root.join("dataset")).unwrap()));
    // Importing the same file again adds nothing: every input is already there.
    let (code, out, err) =
        cli(&["dataset", fresh.to_str().unwrap(), "import", "--format", "sharegpt", out_file.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("imported 0 example(s) into") && out.contains(&format!("{total} duplicate(s) skipped")),
        "{out}"
    );
    assert!(err.contains("already example"), "{err}");
}
