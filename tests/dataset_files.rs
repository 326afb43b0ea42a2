//! Dataset files from outside and after a crash: imports held to `check`'s rules, BOMs and bad UTF-8
//! located, exports that never write what `check` rejects, duplicates a killed rewrite left healed, and
//! re-splitting curated data only when asked.

use std::path::Path;

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
