//! Dataset files from outside and after a crash: imports held to `check`'s rules, BOMs and bad UTF-8
//! located, exports that never write what `check` rejects, duplicates a killed rewrite left healed, and
//! re-splitting curated data only when asked.

mod support;

use std::path::Path;
use std::process::Stdio;

use tunebench::dataset::{self, Dataset, Example, Format, Message, Meta, Split};

const SYS: &str = "Extract the ticket as JSON.";

fn ex(id: &str, user: &str) -> Example {
    Example::chat(id.into(), SYS, user, "{}", Meta::default())
}

fn import_err(dir: &Path, name: &str, text: &[u8], format: Format) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    dataset::import(&path, format).unwrap_err().to_string()
}

#[test]
fn import_refuses_what_check_rejects_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ok = r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#;
    let err = import_err(dir.path(), "empty.jsonl", format!("{ok}\n{{\"messages\":[]}}\n").as_bytes(), Format::OpenAi);
    assert!(err.contains("empty.jsonl:2: no user or assistant message"), "{err}");
    let user_only = r#"{"messages": [{"role": "user", "content": "a question"}]}"#;
    let err = import_err(dir.path(), "user.jsonl", format!("{user_only}\n").as_bytes(), Format::OpenAi);
    assert!(err.contains("user.jsonl:1: roles are user: the last message must be the assistant's"), "{err}");
    let alpaca = r#"[{"instruction": "", "input": "", "output": "o"}]"#;
    let err = import_err(dir.path(), "a.json", alpaca.as_bytes(), Format::Alpaca);
    assert!(err.contains("a.json[0]: message 1 (user) is empty"), "{err}");
    let sg = r#"{"conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]}"#;
    let err = import_err(dir.path(), "sg.jsonl", sg.as_bytes(), Format::ShareGpt);
    assert!(err.contains("sg.jsonl:1: roles are assistant → user: expected user at turn 1"), "{err}");
}

#[test]
fn import_against_a_system_prompt_fills_a_missing_one_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let none = r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#;
    let same = Example::chat(String::new(), SYS, "c", "d", Meta::default()).to_line();
    std::fs::write(&path, format!("{none}\n{same}\n")).unwrap();
    let (xs, filled) = dataset::import_for(&path, Format::OpenAi, Some(SYS)).unwrap();
    assert_eq!(filled, 1);
    assert!(xs.iter().all(|x| x.system() == Some(SYS)), "{xs:?}");
    let other = Example::chat(String::new(), "Be nice.", "e", "f", Meta::default()).to_line();
    std::fs::write(&path, format!("{none}\n{other}\n")).unwrap();
    let err = dataset::import_for(&path, Format::OpenAi, Some(SYS)).unwrap_err().to_string();
    assert!(err.contains("in.jsonl:2: its system prompt differs") && err.contains("Be nice."), "{err}");
}

#[test]
fn a_bom_is_accepted_and_bad_utf8_names_the_line_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    let line = ex("", "lamp broke").to_line();
    let path = dir.path().join("bom.jsonl");
    std::fs::write(&path, format!("\u{FEFF}{line}\n")).unwrap();
    let xs = dataset::import(&path, Format::OpenAi).unwrap();
    assert_eq!(xs[0].user(), "lamp broke");
    let mut bytes = format!("{line}\n").into_bytes();
    bytes.extend_from_slice(b"{\"messages\": \"caf\xE9\"}\n");
    let err = import_err(dir.path(), "latin1.jsonl", &bytes, Format::OpenAi);
    assert!(err.contains("latin1.jsonl:2: byte 18 (0xE9) is not UTF-8"), "{err}");
    // A split file saved with a BOM reads as examples, not as a malformed first line.
    let ds_dir = dir.path().join("ds");
    std::fs::create_dir_all(&ds_dir).unwrap();
    std::fs::write(ds_dir.join("train.jsonl"), format!("\u{FEFF}{}\n", ex("ex_a", "lamp broke").to_line())).unwrap();
    let ds = Dataset::load(&ds_dir).unwrap();
    assert_eq!((ds.malformed().count(), ds.count(Split::Train)), (0, 1));
}

/// `check` flags an example longer than the model's context; import refuses it with its line, counted the same way.
#[test]
fn import_refuses_a_record_longer_than_the_models_context() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.jsonl");
    let rec = |words: usize| {
        let user = vec!["word"; words].join(" ");
        format!(
            r#"{{"messages": [{{"role": "user", "content": "{user}"}}, {{"role": "assistant", "content": "ok"}}]}}"#
        )
    };
    std::fs::write(&path, format!("{}\n{}\n", rec(10), rec(60))).unwrap();
    let words = |x: &Example| Ok(x.pairs().iter().map(|(_, c)| c.split_whitespace().count()).sum::<usize>());
    let rule: dataset::LengthRule<'_> = (&words, 50);
    let err = dataset::import_checked(&path, Format::OpenAi, None, Some(rule)).unwrap_err().to_string();
    assert!(err.contains("long.jsonl:2: 61 tokens; the model's context is 50"), "{err}");
    let (xs, _) = dataset::import_checked(&path, Format::OpenAi, None, Some((&words, 100))).unwrap();
    assert_eq!(xs.len(), 2, "within the context both records import");
}

#[test]
fn export_never_writes_a_role_order_check_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let good = ex("ex_good", "fine");
    let mut bad = ex("ex_bad", "no answer");
    bad.messages.push(Message::new("user", "and again"));
    for format in [Format::OpenAi, Format::ShareGpt, Format::Alpaca] {
        let err = dataset::export(&[&good, &bad], format, &dir.path().join("out.jsonl")).unwrap_err().to_string();
        assert!(err.contains("example ex_bad") && err.contains("the last message must be the assistant's"), "{err}");
    }
    assert!(dataset::export(&[&good], Format::OpenAi, &dir.path().join("out.jsonl")).is_ok());
}

/// Runs the binary with no terminal on stdin: (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_tunebench")).args(args).stdin(Stdio::null()).output().unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

fn files(root: &Path) -> Vec<Vec<u8>> {
    Split::ALL.iter().map(|s| std::fs::read(root.join("dataset").join(s.file_name())).unwrap()).collect()
}

#[test]
fn a_killed_rewrites_duplicates_heal_and_its_temp_files_go() {
    let (_tmp, root) = support::example_copy();
    let ws = root.to_str().unwrap();
    let dir = root.join("dataset");
    let before = Dataset::load(&dir).unwrap().examples().count();
    // What a kill between a move's two writes leaves: the example in both files.
    let test = std::fs::read_to_string(dir.join("test.jsonl")).unwrap();
    let moved = test.lines().nth(3).unwrap().to_string();
    let mut train = std::fs::read_to_string(dir.join("train.jsonl")).unwrap();
    train.push_str(&format!("{moved}\n"));
    // A copy of an example without a stored id: its derived id (split and line) differs between copies.
    let mut bare: serde_json::Value = serde_json::from_str(test.lines().nth(5).unwrap()).unwrap();
    bare.as_object_mut().unwrap().remove("id");
    train.push_str(&format!("{bare}\n"));
    std::fs::write(dir.join("train.jsonl"), train).unwrap();
    let mut valid = std::fs::read_to_string(dir.join("valid.jsonl")).unwrap();
    valid.push_str(&format!("{bare}\n"));
    std::fs::write(dir.join("valid.jsonl"), valid).unwrap();
    let temps = [dir.join(".train.jsonl.4194305.0.tmp"), root.join(".workspace.toml.4194305.1.tmp")];
    for t in &temps {
        std::fs::write(t, "half a file").unwrap();
    }
    let (code, out, _) = cli(&["dataset", ws, "check"]);
    assert_eq!(code, 1, "the duplicates are findings: {out}");

    let (code, out, err) = cli(&["dataset", ws, "repair"]);
    assert_eq!(code, 0, "{out}{err}");
    // Three copies: the moved one, and both id-less copies of the other (same content as its original).
    assert_eq!(out.matches("healed: ").count(), 3, "{out}");
    let ds = Dataset::load(&dir).unwrap();
    assert_eq!(ds.examples().count(), before, "{out}");
    let moved_id = serde_json::from_str::<Example>(&moved).unwrap().id;
    assert_eq!(ds.examples().filter(|(_, x, _)| x.id == moved_id).map(|(s, ..)| s).collect::<Vec<_>>(), [Split::Train]);
    assert!(temps.iter().all(|t| !t.exists()), "stale temp files are removed");
    let (code, out, _) = cli(&["dataset", ws, "check"]);
    assert!(!out.contains("duplicate") && !out.contains("leak"), "{code}: {out}");

    // Same id, different examples: reported, never guessed; nothing is removed.
    let mut other: Example = serde_json::from_str(test.lines().nth(7).unwrap()).unwrap();
    other.set_turn("assistant", "{\"intent\": \"other\"}".into());
    let train = std::fs::read_to_string(dir.join("train.jsonl")).unwrap() + &other.to_line() + "\n";
    std::fs::write(dir.join("train.jsonl"), &train).unwrap();
    let (code, _, err) = cli(&["dataset", ws, "repair"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("conflict: id {} is used by 2 different examples", other.id)), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("train.jsonl")).unwrap(), train);
}

#[test]
fn a_later_split_heals_the_copies_instead_of_keeping_them() {
    let (_tmp, root) = support::example_copy();
    let dir = root.join("dataset");
    let before = Dataset::load(&dir).unwrap().examples().count();
    let test = std::fs::read_to_string(dir.join("test.jsonl")).unwrap();
    let copies: String = test.lines().take(5).map(|l| format!("{l}\n")).collect();
    let train = std::fs::read_to_string(dir.join("train.jsonl")).unwrap() + &copies;
    std::fs::write(dir.join("train.jsonl"), train).unwrap();
    let (code, out, err) = cli(&["dataset", root.to_str().unwrap(), "split", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("healed: ").count(), 5, "{out}");
    assert_eq!(Dataset::load(&dir).unwrap().examples().count(), before);
}

#[test]
fn re_splitting_split_data_shows_the_moves_and_needs_yes() {
    let (_tmp, root) = support::example_copy();
    let ws = root.to_str().unwrap();
    let curated = files(&root);
    let (code, out, err) = cli(&["dataset", ws, "split"]);
    assert_eq!(code, 2, "{out}{err}");
    let train = Dataset::load(&root.join("dataset")).unwrap().count(Split::Train);
    assert!(out.contains(&format!("train {train} → ")) && out.contains("example(s) would move"), "{out}");
    assert!(out.contains("valid → train"), "curated eval examples would train: {out}");
    assert!(err.contains("already split") && err.contains("--yes"), "{err}");
    assert_eq!(files(&root), curated, "nothing changed");
    let (code, dry, _) = cli(&["dataset", ws, "split", "--dry-run"]);
    assert_eq!((code, files(&root) == curated), (0, true));
    assert_eq!(dry, out, "the dry run shows the same moves");
    let (code, out, err) = cli(&["dataset", ws, "split", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_ne!(files(&root), curated);
    // The same split again moves nothing, so it needs no --yes.
    let (code, out, _) = cli(&["dataset", ws, "split"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 example(s) would move") && out.contains("nothing to change"), "{out}");
    // A first split (everything in train) needs no confirmation.
    let all: Vec<u8> = files(&root).concat();
    std::fs::write(root.join("dataset/train.jsonl"), all).unwrap();
    for s in [Split::Valid, Split::Test] {
        std::fs::remove_file(root.join("dataset").join(s.file_name())).unwrap();
    }
    let (code, out, err) = cli(&["dataset", ws, "split"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("split ") && !out.contains("would move"), "{out}");
}
