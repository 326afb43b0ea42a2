//! The unlabeled inputs a teacher answers: a folder of .txt files, a text file with one input per line, or
//! a JSONL of `{"input": …}` or chat records (the first user turn); each kept with where it came from.

use std::path::{Path, PathBuf};

use crate::dataset::DatasetError;

/// One input and where it was read (`file:line`, or the file for a folder's .txt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub text: String,
    pub origin: String,
}

/// Reads every input at `path`, in order (a folder's files in natural order). Blank lines and empty files
/// are not inputs; a JSONL line that is not a record with an input is an error naming its line and field.
pub fn read(path: &Path) -> Result<Vec<Input>, DatasetError> {
    let meta = std::fs::metadata(path).map_err(|e| DatasetError::io(path, e))?;
    if meta.is_dir() {
        return folder(path);
    }
    let text = crate::workspace::store::read_text(path).map_err(|e| DatasetError::io(path, e))?;
    let jsonl = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let origin = format!("{}:{}", path.display(), i + 1);
        let text = if jsonl {
            record_input(line).map_err(|m| DatasetError::Invalid { where_: origin.clone(), message: m })?
        } else {
            line.trim().into()
        };
        out.push(Input { text, origin });
    }
    Ok(out)
}

fn folder(dir: &Path) -> Result<Vec<Input>, DatasetError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DatasetError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("txt"))
        })
        .collect();
    files.sort_by_cached_key(|p| crate::lora::found::natural(&p.to_string_lossy()));
    if files.is_empty() {
        return Err(DatasetError::Refused(format!("{}: no .txt files (one input per file)", dir.display())));
    }
    let mut out = Vec::new();
    for f in files {
        let text = crate::workspace::store::read_text(&f).map_err(|e| DatasetError::io(&f, e))?;
        if !text.trim().is_empty() {
            out.push(Input { text: text.trim().to_string(), origin: f.display().to_string() });
        }
    }
    Ok(out)
}

/// The input of one JSONL record: `input` (a string), else the first user turn of `messages`.
fn record_input(line: &str) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object (give {\"input\": …} or {\"messages\": […]})")?;
    if let Some(input) = obj.get("input") {
        return match input.as_str().map(str::trim) {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err("`input`: must be a non-empty string".into()),
        };
    }
    let Some(messages) = obj.get("messages") else {
        return Err("no `input` and no `messages` (give {\"input\": …} or a chat record)".into());
    };
    let turns = messages.as_array().ok_or("`messages`: must be an array")?;
    let user = turns.iter().find(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"));
    match user.and_then(|m| m.get("content")).and_then(|c| c.as_str()).map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        Some(_) => Err("`messages`: the user turn's `content` is empty".into()),
        None => Err("`messages`: no user turn with a string `content`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_give_their_input_or_say_which_field_is_wrong() {
        assert_eq!(record_input(r#"{"input": " hi "}"#).as_deref(), Ok("hi"));
        let chat = r#"{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}"#;
        assert_eq!(record_input(chat).as_deref(), Ok("q"));
        assert!(record_input(r#"{"input": 3}"#).unwrap_err().starts_with("`input`"));
        assert!(
            record_input(r#"{"messages": [{"role": "assistant", "content": "a"}]}"#)
                .unwrap_err()
                .contains("no user turn")
        );
        assert!(record_input("[1]").unwrap_err().contains("not a JSON object"));
        assert!(record_input("{").unwrap_err().starts_with("not JSON"));
        assert!(record_input(r#"{"text": "x"}"#).unwrap_err().contains("no `input`"));
    }
}
