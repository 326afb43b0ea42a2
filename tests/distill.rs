//! `tunebench distill` against a scripted teacher: the filter, provenance, dedupe and leak refusal, resume
//! without paying twice, failed runs, the paid-call confirmation and the spend cap, input formats.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use support::answers::{AnswerBackend, Ran, captured, parsed, registry, write_ws};
use tunebench::cli::distill::{DistillArgs, execute};

async fn distill(root: &Path, b: &Arc<AnswerBackend>, a: &[&str], confirm: Option<&str>) -> Ran {
    captured(confirm, async |io| execute(root, &parsed::<DistillArgs>("distill", a), registry(b), io).await).await
}

/// A workspace of two lanes (the long one teaches) with four test cases, `[dataset]` storing against the
/// short prompt, and evals.toml checking the answer is a JSON object with an intent.
fn workspace(dir: &Path, base_url: &str) -> PathBuf {
    let root = write_ws(dir, "max_tokens = 1000", base_url, 4);
    let toml = std::fs::read_to_string(root.join("workspace.toml")).unwrap();
    std::fs::write(root.join("workspace.toml"), format!("{toml}[dataset]\nsystem_prompt = \"short\"\n")).unwrap();
    std::fs::write(
        root.join("evals.toml"),
        "[[assert]]\ntype = \"json-schema\"\nvalue = { type = \"object\", required = [\"intent\"] }\n[[assert]]\ntype = \"json-fields\"\n",
    )
    .unwrap();
    root
}

/// The teacher answers JSON with an intent, except for inputs mentioning "poem" (prose) and "boom" (fails).
fn teacher() -> Arc<AnswerBackend> {
    AnswerBackend::new(|_, input| {
        if input.contains("boom") {
            Err("server said 500".into())
        } else if input.contains("poem") {
            Ok("Roses are red.".into())
        } else {
            Ok(format!(r#"{{"intent": "other", "summary": "{} words"}}"#, input.split_whitespace().count()))
        }
    })
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn sha256(text: &str) -> String {
    tunebench::metrics::history::sha256_hex(text.as_bytes())
}

#[tokio::test]
async fn kept_answers_carry_provenance_rejected_ones_are_kept_aside_and_dataset_inputs_are_never_asked() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path(), "http://127.0.0.1:9/v1");
    let inputs = dir.path().join("inputs.txt");
    std::fs::write(
        &inputs,
        "The lamp I bought flickers whenever the fridge starts\n\
         charged twice #1\n\
         \n\
         Write me a poem about my late parcel\n\
         charged   TWICE #1\n\
         Where is my parcel?? #2\n\
         Can I change the delivery address after ordering?\n",
    )
    .unwrap();
    let b = teacher();
    let r = distill(&root, &b, &["--teacher", "long", "--inputs", inputs.to_str().unwrap()], None).await;
    assert_eq!(r.result, Ok(0), "{}\n{}", r.stdout, r.stderr);
    // The test input (line 2), its respelling (line 5) and a near duplicate of another (line 6) are never asked.
    let asked: Vec<String> = b.seen.lock().unwrap().iter().map(|s| s.1.clone()).collect();
    assert_eq!(
        asked,
        [
            "The lamp I bought flickers whenever the fridge starts",
            "Write me a poem about my late parcel",
            "Can I change the delivery address after ordering?"
        ]
    );
    assert!(r.stdout.contains("skipped 3"), "{}", r.stdout);
    assert!(r.stdout.contains(":2: the same text as example c2_1 (test.jsonl:2)"), "{}", r.stdout);
    assert!(r.stdout.contains(":5: the same text as example c2_1 (test.jsonl:2)"), "{}", r.stdout);
    assert!(r.stdout.contains(":6: a near duplicate of example c3_2 (test.jsonl:3)"), "{}", r.stdout);
    let train = jsonl(&root.join("dataset/train.jsonl"));
    assert_eq!(train.len(), 2, "{}", r.stdout);
    let first = &train[0];
    assert_eq!(first["messages"][0]["content"], "Short.");
    assert_eq!(first["messages"][1]["content"], "The lamp I bought flickers whenever the fridge starts");
    assert_eq!(first["messages"][2]["content"], r#"{"intent": "other", "summary": "9 words"}"#);
    let meta = &first["meta"];
    assert_eq!(meta["source"], "distill");
    assert_eq!(meta["source_lane"], "long");
    assert_eq!(meta["model"], "m-long");
    assert_eq!(meta["prompt_variant"], "long");
    assert_eq!(meta["prompt_sha256"], sha256("Long rules, examples and more rules."));
    assert!(meta["input_origin"].as_str().unwrap().ends_with("inputs.txt:1"));
    let rejected = jsonl(&root.join("dataset/rejected.jsonl"));
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["messages"][1]["content"], "Write me a poem about my late parcel");
    let why = rejected[0]["meta"]["rejected_because"].as_str().unwrap();
    assert!(why.contains("not JSON"), "{why}");
    assert!(r.stdout.contains("rejected 1"), "{}", r.stdout);
    assert!(
        r.stdout.contains("not applied (they need an expected answer or a reference lane): json-fields"),
        "{}",
        r.stdout
    );

    // A rerun asks nothing: kept inputs are now in the dataset, the rejected answer comes from the cache
    // and is not kept twice.
    let again = distill(&root, &b, &["--teacher", "long", "--inputs", inputs.to_str().unwrap()], None).await;
    assert_eq!(again.result, Ok(0), "{}", again.stderr);
    assert_eq!(b.calls(), 3);
    assert_eq!(jsonl(&root.join("dataset/train.jsonl")).len(), 2);
    assert_eq!(jsonl(&root.join("dataset/rejected.jsonl")).len(), 1);
    assert!(again.stdout.contains("1 of them kept there by an earlier run"), "{}", again.stdout);
    assert!(again.stdout.contains("skipped 5"), "{}", again.stdout);
}

#[tokio::test]
async fn a_failed_run_is_retried_by_the_next_one_and_nothing_is_asked_twice() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path(), "http://127.0.0.1:9/v1");
    let inputs = dir.path().join("inputs.jsonl");
    std::fs::write(
        &inputs,
        "{\"input\": \"my order went boom on the way\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"refund for the broken kettle\"}]}\n",
    )
    .unwrap();
    let b = teacher();
    let a = ["--teacher", "long", "--inputs", inputs.to_str().unwrap(), "--filter", "none"];
    let r = distill(&root, &b, &a, None).await;
    assert_eq!(r.result, Ok(1), "a failed teacher run exits 1: {}", r.stdout);
    assert!(r.stdout.contains("failed 1 (not kept; a rerun asks again)"), "{}", r.stdout);
    assert!(r.stdout.contains("server said 500"), "{}", r.stdout);
    assert_eq!(jsonl(&root.join("dataset/train.jsonl")).len(), 1);
    let fixed = AnswerBackend::new(|_, _| Ok("fine now".into()));
    let r = distill(&root, &fixed, &a, None).await;
    assert_eq!(r.result, Ok(0), "{}", r.stdout);
    let asked: Vec<String> = fixed.seen.lock().unwrap().iter().map(|s| s.1.clone()).collect();
    assert_eq!(asked, ["my order went boom on the way"]);
    assert_eq!(jsonl(&root.join("dataset/train.jsonl")).len(), 2);
}

#[tokio::test]
async fn paid_calls_are_confirmed_first_and_the_spend_cap_holds_inputs_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path(), "https://api.example.com/v1");
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    for (name, text) in [
        ("b10.txt", "second input about a lamp"),
        ("b2.txt", "first input about a kettle"),
        ("c.txt", "third one on a toaster"),
        ("notes.md", "not an input"),
    ] {
        std::fs::write(inputs.join(name), text).unwrap();
    }
    let b = teacher();
    let base = ["--teacher", "long", "--inputs", inputs.to_str().unwrap()];
    let r = distill(&root, &b, &base, None).await;
    let err = r.result.unwrap_err();
    assert!(err.contains("3 paid call(s) on lane(s) long") && err.contains("no terminal to ask on"), "{err}");
    let r = distill(&root, &b, &base, Some("n\n")).await;
    assert!(r.result.unwrap_err().contains("not confirmed"));
    assert_eq!(b.calls(), 0);
    assert!(!root.join("dataset/train.jsonl").exists());
    // max_tokens = 1000 at $20/Mtok: an answer may cost $0.02, so $0.03 affords one input.
    let r = distill(&root, &b, &[&base[..], &["--max-cost", "0.03", "--yes"]].concat(), None).await;
    assert_eq!(r.result, Ok(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("2 input(s) held back for a later run"), "{}", r.stderr);
    let asked: Vec<String> = b.seen.lock().unwrap().iter().map(|s| s.1.clone()).collect();
    assert_eq!(asked, ["first input about a kettle"], "natural order: b2 before b10");
    assert!(
        r.stdout.contains("cost: 210 µ$ for 1 call(s) made now"),
        "15 prompt tokens at $10/Mtok + 3 at $20: {}",
        r.stdout
    );
}

#[tokio::test]
async fn bad_inputs_and_a_filter_with_nothing_to_check_are_refused_with_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path(), "http://127.0.0.1:9/v1");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"input\": \"fine\"}\n\n{\"input\": 7}\n").unwrap();
    let b = teacher();
    let r = distill(&root, &b, &["--teacher", "long", "--inputs", bad.to_str().unwrap()], None).await;
    let err = r.result.unwrap_err();
    assert!(err.contains("bad.jsonl:3: `input`: must be a non-empty string"), "{err}");
    let r = distill(&root, &b, &["--teacher", "nobody", "--inputs", bad.to_str().unwrap()], None).await;
    assert!(r.result.unwrap_err().contains("no lane `nobody`"));
    std::fs::write(root.join("evals.toml"), "[[assert]]\ntype = \"json-fields\"\n").unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "a new question about invoices\n").unwrap();
    let r = distill(&root, &b, &["--teacher", "long", "--inputs", good.to_str().unwrap()], None).await;
    let err = r.result.unwrap_err();
    assert!(err.contains("--filter evals") && err.contains("--filter none"), "{err}");
    assert_eq!(b.calls(), 0);
}

#[test]
fn the_default_model_teaches_two_inputs_through_the_command() {
    let Some(model) = support::default_model() else { return };
    let (_tmp, root) = support::example_copy_with_model(&model);
    let inputs = root.join("new-tickets.txt");
    std::fs::write(
        &inputs,
        "My Pulse smartwatch 2 stopped syncing sleep data after the last update, please help.\n\
         I was billed twice for my HomeHub Mini order and want the extra charge refunded today!\n",
    )
    .unwrap();
    let before = jsonl(&root.join("dataset/train.jsonl")).len();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(["distill", root.to_str().unwrap(), "--teacher", "tuned", "--inputs", inputs.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("teacher `tuned` answers 2: 0 cached, 2 to run"), "{stderr}");
    let train = jsonl(&root.join("dataset/train.jsonl"));
    let rejected = jsonl(&root.join("dataset/rejected.jsonl"));
    let new: Vec<&serde_json::Value> = train[before..].iter().chain(&rejected).collect();
    assert_eq!(new.len(), 2, "every answer is kept or rejected: {stdout}");
    let short = "Extract the support ticket as JSON with keys intent, product, urgency, sentiment, summary.";
    for x in new {
        assert_eq!(x["meta"]["source"], "distill");
        assert_eq!(x["meta"]["source_lane"], "tuned");
        assert_eq!(x["meta"]["adapter"], "adapters/ticket-lora-v2");
        assert_eq!(x["messages"][0]["content"], short, "stored against the dataset's prompt");
        assert!(!x["messages"][2]["content"].as_str().unwrap().is_empty(), "{x}");
    }
    for x in &train[before..] {
        let answer: serde_json::Value = serde_json::from_str(x["messages"][2]["content"].as_str().unwrap()).unwrap();
        assert!(answer["intent"].is_string(), "a kept answer passed the schema: {x}");
    }
}

#[tokio::test]
async fn the_judge_filter_keeps_what_the_judge_passes_with_its_score_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path(), "http://127.0.0.1:9/v1");
    std::fs::write(
        root.join("evals.toml"),
        "[judge]\nlane = \"short\"\n[[assert]]\ntype = \"llm-rubric\"\nvalue = \"The answer is a JSON record, not prose.\"\n[[assert]]\ntype = \"pairwise\"\nvalue = \"Which is better?\"\n",
    )
    .unwrap();
    let inputs = dir.path().join("inputs.txt");
    std::fs::write(
        &inputs,
        "The lamp I bought flickers whenever the fridge starts\nWrite me a poem about my late parcel\n",
    )
    .unwrap();
    let b = AnswerBackend::new(|lane, input| {
        if lane == "short" {
            let answer = input.split("Answer:\n").nth(1).unwrap_or_default();
            let ok = answer.starts_with('{');
            return Ok(format!(
                "{{\"pass\": {ok}, \"score\": {}, \"reason\": \"{}\"}}",
                if ok { 0.9 } else { 0.2 },
                if ok { "a record" } else { "prose" }
            ));
        }
        if input.contains("poem") { Ok("Roses are red.".into()) } else { Ok("{\"intent\": \"other\"}".into()) }
    });
    let a = ["--teacher", "long", "--inputs", inputs.to_str().unwrap(), "--filter", "judge"];
    let r = distill(&root, &b, &a, None).await;
    assert_eq!(r.result, Ok(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("judge: 2 call(s), 0 without a well-formed verdict"), "{}", r.stderr);
    let train = jsonl(&root.join("dataset/train.jsonl"));
    assert_eq!(train.len(), 1);
    assert_eq!(
        (train[0]["meta"]["judge_score"].as_f64(), train[0]["meta"]["judge_reason"].as_str()),
        (Some(0.9), Some("a record"))
    );
    let rejected = jsonl(&root.join("dataset/rejected.jsonl"));
    assert_eq!(rejected.len(), 1);
    let why = rejected[0]["meta"]["rejected_because"].as_str().unwrap();
    assert!(why.contains("0.20: prose"), "{why}");
    assert!(
        r.stdout.contains("not applied (they need an expected answer or a reference lane): pairwise"),
        "{}",
        r.stdout
    );
    // A rerun grades from the judge's cache: nobody is asked again.
    let calls = b.calls();
    std::fs::write(&inputs, "Write me a poem about my late parcel\n").unwrap();
    let again = distill(&root, &b, &a, None).await;
    assert_eq!(again.result, Ok(0));
    assert_eq!(b.calls(), calls);
}

#[tokio::test]
async fn generated_inputs_imitate_the_seeds_and_duplicates_or_worked_examples_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path(), "http://127.0.0.1:9/v1");
    let seeds = dir.path().join("seeds.txt");
    std::fs::write(&seeds, "my toaster burns everything\nthe headphones lost bass after a week\n").unwrap();
    let b = AnswerBackend::new(|_, input| {
        if input.starts_with("The task's instructions") {
            assert!(
                input.contains("Long rules, examples and more rules.")
                    && input.contains("1. my toaster burns everything"),
                "{input}"
            );
            return Ok(serde_json::json!([
                "charged twice #1",
                "a brand new question about desk lamps",
                "A brand new question about desk lamps",
                "Long rules, examples and more rules",
                "my kettle whistles far too loudly",
                "the watch strap snapped on day two",
                "one more than asked for"
            ])
            .to_string());
        }
        Ok("{\"intent\": \"other\"}".into())
    });
    let a = ["--teacher", "long", "--generate", "3", "--seed-inputs", seeds.to_str().unwrap()];
    let r = distill(&root, &b, &a, None).await;
    assert_eq!(r.result, Ok(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("the teacher wrote 3 new input(s) in 1 call(s) (3 rejected"), "{}", r.stderr);
    let train = jsonl(&root.join("dataset/train.jsonl"));
    let kept: Vec<&str> = train.iter().map(|x| x["messages"][1]["content"].as_str().unwrap()).collect();
    assert_eq!(
        kept,
        [
            "a brand new question about desk lamps",
            "my kettle whistles far too loudly",
            "the watch strap snapped on day two"
        ]
    );
    assert_eq!(train[1]["meta"]["input_origin"], "generated batch 1 #5");
    assert!(r.stdout.contains("generated batch 1 #1: the same text as example c2_1 (test.jsonl:2)"), "{}", r.stdout);
    assert!(r.stdout.contains("generated batch 1 #3: the same text as input generated batch 1 #2"), "{}", r.stdout);
    assert!(r.stdout.contains("generated batch 1 #4: a worked example of a prompt"), "{}", r.stdout);
    assert_eq!(b.calls(), 4, "one batch, three answers");
}

#[tokio::test]
async fn the_spend_cap_covers_writing_new_inputs_and_answering_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace(dir.path(), "https://api.example.com/v1");
    let seeds = dir.path().join("seeds.txt");
    std::fs::write(&seeds, "my toaster burns everything\n").unwrap();
    let b = AnswerBackend::new(|_, input| {
        Ok(if input.starts_with("The task's instructions") {
            r#"["a new lamp question", "my kettle whistles far too loudly", "the watch strap snapped"]"#.into()
        } else {
            "{\"intent\": \"other\"}".into()
        })
    });
    // Each call may cost up to ~$0.02 (1,000 answer tokens at $20/Mtok): $0.03 allows one generation call and
    // leaves too little for any answer, which wait for a later run.
    let a = [
        "--teacher",
        "long",
        "--generate",
        "3",
        "--seed-inputs",
        seeds.to_str().unwrap(),
        "--max-cost",
        "0.03",
        "--yes",
    ];
    let r = distill(&root, &b, &a, None).await;
    assert_eq!(r.result, Ok(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("new input(s) in 1 call(s)"), "{}", r.stderr);
    assert!(r.stderr.contains("3 input(s) held back for a later run"), "{}", r.stderr);
    assert_eq!(b.calls(), 1);
    let r = distill(&root, &b, &[&a[..6], &["--max-cost", "0.001", "--yes"]].concat(), None).await;
    assert!(r.result.unwrap_err().contains("not even one call for new inputs fits"));
}
