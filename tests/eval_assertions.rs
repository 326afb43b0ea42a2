//! evals.toml: every assertion kind, per-case assertions and weights, the default comparison, and errors that
//! name the line and key.

use std::path::Path;

use tunebench::eval::assert::Observed;
use tunebench::eval::{Case, Evals};

fn case(id: &str, input: &str, expected: &str) -> Case {
    Case {
        id: id.into(),
        input: input.into(),
        expected: expected.into(),
        line: 1,
        hash: id.into(),
        repeat: 0,
        tags: Vec::new(),
    }
}

fn evals(src: &str, cases: &[Case]) -> Result<Evals, String> {
    Evals::parse(Path::new("/ws/evals.toml"), src, cases).map_err(|e| e.to_string())
}

/// The verdicts of every assertion in `src` on one answer.
fn verdicts(src: &str, output: &str, expected: &str) -> Vec<bool> {
    let c = case("c", "in", expected);
    let e = evals(src, std::slice::from_ref(&c)).unwrap();
    let o = Observed {
        output,
        expected,
        total_ms: Some(900.0),
        shared_lanes: None,
        cost_usd: Some(0.002),
        prompt_tokens: Some(120),
        verdicts: None,
    };
    e.for_case(&c).iter().map(|a| a.check(&o).pass).collect()
}

/// max-latency reads the wall figure; when other lanes shared the device it passes or fails on it all the
/// same, and its detail says the figure was shared.
#[test]
fn a_shared_latency_says_so() {
    let c = case("c", "in", "x");
    let e = evals("[[assert]]\ntype = \"max-latency\"\nthreshold = 1000\n", std::slice::from_ref(&c)).unwrap();
    let o = |total: f64, shared| Observed {
        output: "x",
        expected: "x",
        total_ms: Some(total),
        shared_lanes: shared,
        cost_usd: None,
        prompt_tokens: None,
        verdicts: None,
    };
    let check = |o: &Observed| e.for_case(&c)[0].check(o);
    let alone = check(&o(900.0, Some(1)));
    assert!(alone.pass && alone.detail == "900ms", "{alone:?}");
    let shared = check(&o(900.0, Some(3)));
    assert!(shared.pass && shared.detail == "900ms (shared ×3)", "{shared:?}");
    let slow = check(&o(3790.0, Some(2)));
    assert!(!slow.pass && slow.detail == "latency 3790ms > 1000ms (shared ×2)", "{slow:?}");
}

#[test]
fn each_assertion_kind_passes_and_fails() {
    let expected = r#"{"intent": "refund", "product": "Lumen desk lamp", "summary": "The customer wants a refund for a buzzing lamp."}"#;
    let good = "```json\n{\"intent\": \"REFUND\", \"product\": \"lumen  desk lamp\", \"summary\": \"The customer wants a refund for the buzzing lamp.\"}\n```";
    let wrong = r#"{"intent": "return", "product": "Lumen desk lamp", "summary": "Lamp."}"#;
    let cases: [(&str, &str, bool); 26] = [
        ("type = \"equals\"", expected, true),
        ("type = \"equals\"", wrong, false),
        ("type = \"equals\"\nvalue = \"Paris\"", "  Paris\n", true),
        ("type = \"contains\"\nvalue = \"Refund\"", good, false),
        ("type = \"contains\"\nvalue = \"Refund\"\nignore_case = true", good, true),
        ("type = \"not-contains\"\nvalue = \"return\"", good, true),
        ("type = \"not-contains\"\nvalue = \"return\"", wrong, false),
        ("type = \"regex\"\nvalue = '\"intent\":\\s*\"(refund|REFUND)\"'", good, true),
        ("type = \"regex\"\nvalue = '^\\{\"intent\": \"refund\"'", wrong, false),
        ("type = \"is-json\"", good, true),
        ("type = \"is-json\"", "Sure! {\"intent\": 1}", false),
        (
            "type = \"json-schema\"\nvalue = { type = \"object\", required = [\"intent\"], properties = { intent = { enum = [\"refund\", \"return\"] } } }",
            wrong,
            true,
        ),
        (
            "type = \"json-schema\"\nvalue = { type = \"object\", required = [\"intent\"], properties = { intent = { enum = [\"refund\"] } } }",
            wrong,
            false,
        ),
        ("type = \"json-fields\"\nfields = [\"intent\", \"product\"]", good, true),
        ("type = \"json-fields\"\nfields = [\"intent\", \"product\"]", wrong, false),
        ("type = \"json-fields\"", good, false), // every field, the free-text summary included
        ("type = \"similarity\"\nmetric = \"chrf\"\nfield = \"summary\"\nthreshold = 0.7", good, true),
        ("type = \"similarity\"\nmetric = \"chrf\"\nfield = \"summary\"\nthreshold = 0.7", wrong, false),
        ("type = \"similarity\"\nmetric = \"rouge-l\"\nthreshold = 0.6", good, true),
        ("type = \"similarity\"\nmetric = \"rouge-l\"\nthreshold = 0.9", wrong, false),
        ("type = \"max-latency\"\nthreshold = 1000", good, true),
        ("type = \"max-latency\"\nthreshold = 500", good, false),
        ("type = \"max-cost\"\nthreshold = 0.01", good, true),
        ("type = \"max-cost\"\nthreshold = 0.001", good, false),
        ("type = \"max-prompt-tokens\"\nthreshold = 120", good, true),
        ("type = \"max-prompt-tokens\"\nthreshold = 100", good, false),
    ];
    for (body, output, want) in cases {
        let got = verdicts(&format!("[[assert]]\n{body}\n"), output, expected);
        assert_eq!(got, vec![want], "{body}\non {output}");
    }
}

#[test]
fn a_schema_file_and_per_case_assertions_and_weights() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.json"), r#"{"type": "object", "required": ["a"]}"#).unwrap();
    let cs = [case("one", "x", "{\"a\": 1}"), case("two", "y", "{\"a\": 2}")];
    let src = "[[assert]]\ntype = \"json-schema\"\nfile = \"schema.json\"\n\n[[assert]]\ntype = \"contains\"\nvalue = \"zzz\"\nweight = 0\n\n[[cases]]\nid = \"two\"\n[[cases.assert]]\ntype = \"contains\"\nvalue = \"2\"\n";
    let e = Evals::parse(&dir.path().join("evals.toml"), src, &cs).unwrap();
    assert_eq!(e.for_case(&cs[0]).len(), 2);
    let two = e.for_case(&cs[1]);
    assert_eq!(
        two.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["json-schema", "contains \"zzz\"", "contains \"2\""]
    );
    let o = |out| Observed {
        output: out,
        expected: "{\"a\": 2}",
        total_ms: None,
        shared_lanes: None,
        cost_usd: None,
        prompt_tokens: None,
        verdicts: None,
    };
    let checks: Vec<bool> = two.iter().map(|a| a.check(&o("{\"a\": 2}")).pass).collect();
    assert_eq!(checks, [true, false, true], "the weight-0 assertion fails but is only informational");
    assert!(!two[0].check(&o("{\"b\": 2}")).pass);
}

#[test]
fn the_default_comparison_is_field_by_field_for_json_and_trimmed_equality_otherwise() {
    let json = r#"{"intent": "refund", "urgency": "High"}"#;
    assert_eq!(verdicts("", "{\"urgency\": \"high \", \"intent\": \"REFUND\", \"extra\": 1}", json), [true]);
    assert_eq!(verdicts("", "{\"intent\": \"refund\"}", json), [false], "a missing field fails");
    assert_eq!(verdicts("", "{\"intent\": \"refund\", \"urgency\": \"low\"}", json), [false]);
    assert_eq!(
        verdicts("", "{\"intent\": \"refund\", \"urgency\": \"high\", \"n\": 1.0}", &json.replace('}', ", \"n\": 1}")),
        [true]
    );
    assert_eq!(verdicts("", "  Paris \n", "Paris"), [true]);
    assert_eq!(verdicts("", "paris", "Paris"), [false], "plain text is compared exactly, after trimming");
    let c = case("c", "in", json);
    assert_eq!(evals("", std::slice::from_ref(&c)).unwrap().for_case(&c)[0].name, "json-fields");
}

#[test]
fn evals_toml_errors_name_the_line_and_key() {
    let cs = [case("ex_1", "x", "y")];
    let bad: [(&str, &str); 8] = [
        ("[[assert]]\ntype = \"contain\"\n", "evals.toml:2:8: assert[0].type: unknown type `contain`"),
        (
            "[[assert]]\ntype = \"contains\"\nfields = [\"a\"]\nvalue = \"x\"\n",
            "evals.toml:3:10: assert[0].fields: `contains` takes no `fields`",
        ),
        ("[[assert]]\ntype = \"regex\"\nvalue = \"(unclosed\"\n", "evals.toml:3:9: assert[0].value: regex parse error"),
        ("[[assert]]\ntype = \"contains\"\n", "evals.toml:1:1: assert[0].value: `contains` needs `value`"),
        (
            "[[assert]]\ntype = \"similarity\"\nthreshold = 2\n",
            "evals.toml:3:13: assert[0].threshold: must be a score from 0 to 1",
        ),
        ("[[cases]]\nid = \"ex_9\"\n", "evals.toml:2:6: cases[0].id: no case `ex_9` in dataset/test.jsonl"),
        ("[[assert]]\ntype = \"is-json\"\nweight = -1\n", "evals.toml:3:10: assert[0].weight: must be 0 or more"),
        (
            "[[assert]]\ntype = \"is-json\"\ncolour = 1\n",
            "evals.toml:3:1: assert[0].colour: unknown field `colour`, expected one of `type`",
        ),
    ];
    for (src, want) in bad {
        let got = evals(src, &cs).unwrap_err();
        assert!(got.contains(want), "{src}\n got: {got}\nwant: {want}");
    }
}

/// evals.toml is read like every workspace file: a FIFO there is refused, not waited on.
#[cfg(unix)]
#[test]
fn a_fifo_as_evals_toml_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("evals.toml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let root = dir.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tx.send(Evals::load(&root, &[case("c", "in", "x")]).map(|_| ()).unwrap_err().to_string())
    });
    let err = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("blocked on a FIFO");
    assert!(err.contains("evals.toml") && err.contains("not a regular file (a FIFO)"), "{err}");
}

/// A reasoning model's `<think>…</think>` block is never judged as its answer.
#[test]
fn assertions_judge_the_answer_without_its_thinking() {
    let thought = "<think>\nIs it Paris? Not Lyon, surely.\n</think>\n\nParis";
    assert_eq!(verdicts("[[assert]]\ntype = \"equals\"", thought, "Paris"), [true]);
    assert_eq!(verdicts("[[assert]]\ntype = \"not-contains\"\nvalue = \"Lyon\"", thought, "Paris"), [true]);
    assert_eq!(verdicts("[[assert]]\ntype = \"is-json\"", "<think>{\"a\": 1}</think>not json", ""), [false]);
    // Still thinking when max_tokens cut it: there is no answer yet.
    assert_eq!(verdicts("[[assert]]\ntype = \"contains\"\nvalue = \"Paris\"", "<think>Paris, maybe", "Paris"), [false]);
}
