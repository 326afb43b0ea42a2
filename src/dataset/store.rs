//! The dataset folder on disk: split files read line by line (a bad line is kept and reported, never
//! dropped), fsync'd appends, and rewrites ordered so that a crash can duplicate an example but never lose one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{DatasetError, Example, Result, Split, new_id, normalized};
use crate::workspace::store::{append_line, write_atomic};

/// A line of a split file that is not an example: kept verbatim through rewrites.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    /// 1-based.
    pub line: usize,
    pub raw: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// An example and its 1-based line in the file as read.
    Example(Example, usize),
    Malformed(Malformed),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub dir: PathBuf,
    pub files: BTreeMap<Split, Vec<Entry>>,
}

impl Dataset {
    /// Reads `dir/{train,valid,test}.jsonl`; missing files are empty splits.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut files = BTreeMap::new();
        for split in Split::ALL {
            let path = dir.join(split.file_name());
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(DatasetError::io(&path, e)),
            };
            files.insert(split, parse_lines(&text));
        }
        Ok(Self { dir: dir.to_path_buf(), files })
    }

    pub fn path(&self, split: Split) -> PathBuf {
        self.dir.join(split.file_name())
    }

    /// Every example with its split, in split then file order.
    pub fn examples(&self) -> impl Iterator<Item = (Split, &Example, usize)> {
        self.files.iter().flat_map(|(&s, lines)| {
            lines.iter().filter_map(move |e| match e {
                Entry::Example(x, line) => Some((s, x, *line)),
                Entry::Malformed(_) => None,
            })
        })
    }

    pub fn malformed(&self) -> impl Iterator<Item = (Split, &Malformed)> {
        self.files.iter().flat_map(|(&s, lines)| {
            lines.iter().filter_map(move |e| match e {
                Entry::Malformed(m) => Some((s, m)),
                Entry::Example(..) => None,
            })
        })
    }

    pub fn count(&self, split: Split) -> usize {
        self.examples().filter(|(s, ..)| *s == split).count()
    }

    pub fn find(&self, id: &str) -> Option<(Split, &Example, usize)> {
        self.examples().find(|(_, x, _)| x.id == id)
    }

    /// An example whose user turn is the same text (case and spacing aside) as `user`.
    pub fn same_input(&self, user: &str) -> Option<(Split, &Example, usize)> {
        let key = normalized(user);
        self.examples().find(|(_, x, _)| normalized(x.user()) == key)
    }

    pub fn fresh_id(&self, text: &str) -> String {
        new_id(text, &|id| self.find(id).is_some())
    }

    /// Appends a new example (fsync'd); refused when its input is already in the dataset.
    pub fn append(&mut self, split: Split, mut ex: Example) -> Result<String> {
        if let Some((s, old, line)) = self.same_input(ex.user()) {
            return Err(DatasetError::Refused(format!(
                "not added: this input is already example {} ({}:{line}); edit that one instead (F3)",
                old.id,
                s.file_name()
            )));
        }
        if ex.id.is_empty() || self.find(&ex.id).is_some() {
            ex.id = self.fresh_id(ex.user());
        }
        let path = self.path(split);
        append_line(&path, &ex.to_line())?;
        let line = self.files.get(&split).map_or(0, Vec::len) + 1;
        let id = ex.id.clone();
        self.files.entry(split).or_default().push(Entry::Example(ex, line));
        Ok(id)
    }

    /// Replaces the example with `ex.id` in place (its split and position kept).
    pub fn replace(&self, ex: Example) -> Result<Self> {
        let mut next = self.clone();
        let slot = next.files.values_mut().flatten().find(|e| matches!(e, Entry::Example(x, _) if x.id == ex.id));
        match slot {
            Some(Entry::Example(x, _)) => *x = ex,
            _ => return Err(unknown(&ex.id)),
        }
        self.commit(next)
    }

    /// Moves an example to the end of another split.
    pub fn move_to(&self, id: &str, to: Split) -> Result<Self> {
        let (from, ex, _) = self.find(id).ok_or_else(|| unknown(id))?;
        if from == to {
            return Ok(self.clone());
        }
        let ex = ex.clone();
        let mut next = self.clone();
        next.remove(id);
        next.files.entry(to).or_default().push(Entry::Example(ex, 0));
        self.commit(next)
    }

    pub fn delete(&self, id: &str) -> Result<Self> {
        let mut next = self.clone();
        if !next.remove(id) {
            return Err(unknown(id));
        }
        self.commit(next)
    }

    fn remove(&mut self, id: &str) -> bool {
        for lines in self.files.values_mut() {
            if let Some(i) = lines.iter().position(|e| matches!(e, Entry::Example(x, _) if x.id == id)) {
                lines.remove(i);
                return true;
            }
        }
        false
    }

    /// Writes `next` over this dataset's files. First every file gains the examples it will hold (so each
    /// example is on disk at least once), then files lose what moved away; unchanged files are not touched.
    pub fn commit(&self, mut next: Self) -> Result<Self> {
        let ids = |d: &Self, s: Split| -> Vec<String> {
            d.files.get(&s).into_iter().flatten().filter_map(|e| example_id(e).map(str::to_string)).collect()
        };
        for split in Split::ALL {
            let old = ids(self, split);
            let gained: Vec<&Entry> = next
                .files
                .get(&split)
                .into_iter()
                .flatten()
                .filter(|e| example_id(e).is_some_and(|id| !old.iter().any(|o| o == id)))
                .collect();
            if gained.is_empty() {
                continue;
            }
            let mut union: Vec<&Entry> = self.files.get(&split).into_iter().flatten().collect();
            union.extend(gained);
            write_atomic(&self.path(split), render(union.into_iter()).as_bytes())?;
        }
        for split in Split::ALL {
            let now = next.files.get(&split).into_iter().flatten();
            let before = self.files.get(&split).into_iter().flatten();
            if now.clone().eq(before) {
                continue;
            }
            write_atomic(&self.path(split), render(now).as_bytes())?;
        }
        // Line numbers as the files now stand.
        for lines in next.files.values_mut() {
            for (i, e) in lines.iter_mut().enumerate() {
                match e {
                    Entry::Example(_, line) => *line = i + 1,
                    Entry::Malformed(m) => m.line = i + 1,
                }
            }
        }
        Ok(next)
    }
}

fn unknown(id: &str) -> DatasetError {
    DatasetError::Refused(format!("no example `{id}` in the dataset (changed on disk meanwhile?)"))
}

fn example_id(e: &Entry) -> Option<&str> {
    match e {
        Entry::Example(x, _) => Some(&x.id),
        Entry::Malformed(_) => None,
    }
}

fn render<'a>(entries: impl Iterator<Item = &'a Entry>) -> String {
    let mut out = String::new();
    for e in entries {
        match e {
            Entry::Example(x, _) => out.push_str(&x.to_line()),
            Entry::Malformed(m) => out.push_str(&m.raw),
        }
        out.push('\n');
    }
    out
}

/// Parses a split file. A line that is not an example is kept as `Malformed` with the reason; blank lines
/// are dropped (they carry nothing). Lines without an id get one derived from their content, so the id is
/// the same on every read until the file is next written (which then stores it).
pub fn parse_lines(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Example>(raw) {
            Ok(mut x) => {
                if x.id.is_empty() {
                    use sha2::{Digest, Sha256};
                    x.id = format!("ex_{}", &crate::metrics::history::hex(&Sha256::digest(raw.as_bytes()))[..10]);
                }
                out.push(Entry::Example(x, line));
            }
            Err(e) => out.push(Entry::Malformed(Malformed { line, raw: raw.to_string(), error: describe(&e) })),
        }
    }
    out
}

fn describe(e: &serde_json::Error) -> String {
    let what = e.to_string();
    // serde_json appends " at line 1 column N"; the line is the file's, so keep only the column.
    match what.rsplit_once(" at line ") {
        Some((msg, pos)) => format!("{msg} (column {})", pos.rsplit(' ').next().unwrap_or("?")),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Meta;

    fn ex(user: &str) -> Example {
        Example::chat(String::new(), "Sys", user, "{}", Meta::default())
    }

    #[test]
    fn bad_lines_survive_rewrites_and_ids_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let train = dir.path().join("train.jsonl");
        std::fs::write(&train, "{\"messages\": [{\"role\":\"user\",\"content\":\"a b\"}]}\nnot json\n").unwrap();
        let mut d = Dataset::load(dir.path()).unwrap();
        let bad: Vec<_> = d.malformed().collect();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].1.line, 2);
        let first = d.examples().next().unwrap().1.id.clone();
        let id = d.append(Split::Train, ex("second input")).unwrap();
        let d = d.move_to(&id, Split::Test).unwrap();
        let text = std::fs::read_to_string(&train).unwrap();
        assert!(text.contains("not json"), "{text}");
        assert!(text.contains(&first), "a derived id is stored once the file is written: {text}");
        let again = Dataset::load(dir.path()).unwrap();
        assert_eq!(again.find(&id).unwrap().0, Split::Test);
        assert_eq!(again.find(&first).unwrap().0, Split::Train);
        assert_eq!(again, d);
    }

    #[test]
    fn a_duplicate_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Dataset::load(dir.path()).unwrap();
        d.append(Split::Valid, ex("My lamp  flickers")).unwrap();
        let err = d.append(Split::Train, ex("my lamp flickers")).unwrap_err().to_string();
        assert!(err.contains("already example") && err.contains("valid.jsonl:1"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join("valid.jsonl")).unwrap().lines().count(), 1);
    }
}
