//! Saved inputs: one text file each under `inputs/`, listed in name order.

use std::path::{Path, PathBuf};

use super::WorkspaceError;
use super::store::write_atomic;

#[derive(Debug, Clone, PartialEq)]
pub struct SavedInput {
    pub name: String,
    pub path: PathBuf,
    pub text: String,
}

/// Reads every `*.txt` / `*.md` file of the folder; a missing folder is an empty list.
pub fn load_inputs(dir: &Path) -> Result<Vec<SavedInput>, WorkspaceError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(WorkspaceError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| WorkspaceError::io(dir, e))?.path();
        let is_text = path.extension().is_some_and(|x| x == "txt" || x == "md");
        if !path.is_file() || !is_text {
            continue;
        }
        let text = super::store::read_text(&path).map_err(|e| WorkspaceError::io(&path, e))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        out.push(SavedInput { name, path, text: input_from_file(&text) });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The input a file holds, one rule for the TUI's saved inputs and `run`/`count --input-file`: line ends are
/// LF (files written on Windows keep CRLF; pastes and the editor use LF), and the file's final line end ends
/// the file, it is not part of the input (editors add one; `save_new_input` writes one). Blank lines typed
/// before it stay, so the same file sends the same prompt tokens everywhere.
pub fn input_from_file(raw: &str) -> String {
    let text = raw.replace("\r\n", "\n");
    match text.strip_suffix('\n') {
        Some(body) => body.to_string(),
        None => text,
    }
}

/// Saves `text` as the next numbered input (`NN-first-words.txt`) and returns it.
pub fn save_new_input(dir: &Path, existing: &[SavedInput], text: &str) -> Result<SavedInput, WorkspaceError> {
    let next = existing.iter().filter_map(|i| i.name.split('-').next()?.parse::<u32>().ok()).max().unwrap_or(0) + 1;
    let slug = slug(text);
    let mut name = format!("{next:02}-{slug}");
    let mut n = 2;
    while dir.join(format!("{name}.txt")).exists() {
        name = format!("{next:02}-{slug}-{n}");
        n += 1;
    }
    let path = dir.join(format!("{name}.txt"));
    let mut body = text.to_string();
    body.push('\n');
    write_atomic(&path, body.as_bytes())?;
    Ok(SavedInput { name, path, text: text.to_string() })
}

fn slug(text: &str) -> String {
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(4).map(str::to_lowercase).collect();
    if words.is_empty() { "input".into() } else { words.join("-") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_inputs_are_numbered_after_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let a = save_new_input(dir.path(), &[], "Hello there, my order!").unwrap();
        assert_eq!(a.name, "01-hello-there-my-order");
        let list = load_inputs(dir.path()).unwrap();
        let b = save_new_input(dir.path(), &list, "???").unwrap();
        assert_eq!(b.name, "02-input");
        let list = load_inputs(dir.path()).unwrap();
        assert_eq!(list.iter().map(|i| i.text.as_str()).collect::<Vec<_>>(), ["Hello there, my order!", "???"]);
    }

    #[test]
    fn a_saved_input_round_trips_with_its_own_trailing_lines() {
        let dir = tempfile::tempdir().unwrap();
        save_new_input(dir.path(), &[], "two blank lines follow\n\n").unwrap();
        assert_eq!(load_inputs(dir.path()).unwrap()[0].text, "two blank lines follow\n\n");
        assert_eq!(input_from_file("a\r\nb\r\n"), "a\nb");
        assert_eq!(input_from_file("no line end"), "no line end");
    }
}
