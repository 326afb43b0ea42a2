//! The dataset folder on disk: split files read line by line (a bad line is kept and reported, never
//! dropped), fsync'd appends, and rewrites ordered so that a crash can duplicate an example but never lose one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::{DatasetError, Example, Result, Split, new_id, normalized};
use crate::workspace::store::{append_line, write_atomic};

/// A line of a split file that is not an example: kept byte for byte through rewrites.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    /// 1-based.
    pub line: usize,
    pub raw: Vec<u8>,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // almost every entry is an example: boxing them would cost more
pub enum Entry {
    /// An example and its 1-based line in the file as it now stands.
    Example(Example, usize),
    Malformed(Malformed),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub dir: PathBuf,
    pub files: BTreeMap<Split, Vec<Entry>>,
    /// Physical lines in each file (blank ones included), for the line number of the next append.
    lines_on_disk: BTreeMap<Split, usize>,
}

impl Dataset {
    /// Reads `dir/{train,valid,test}.jsonl`; missing files are empty splits.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut files = BTreeMap::new();
        let mut lines_on_disk = BTreeMap::new();
        for split in Split::ALL {
            let path = dir.join(split.file_name());
            let bytes = match crate::workspace::store::read_regular(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(DatasetError::io(&path, e)),
            };
            let (entries, physical) = parse_lines(&bytes, split);
            files.insert(split, entries);
            lines_on_disk.insert(split, physical);
        }
        Ok(Self { dir: dir.to_path_buf(), files, lines_on_disk })
    }

    /// An empty dataset in `dir` laid out as `files` (used to plan a rewrite).
    pub fn planned(dir: &Path, files: BTreeMap<Split, Vec<Entry>>) -> Self {
        Self { dir: dir.to_path_buf(), files, lines_on_disk: BTreeMap::new() }
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

    /// The one example with `id`; an id used twice (hand-copied lines) is refused rather than guessed.
    fn unique(&self, id: &str) -> Result<(Split, &Example, usize)> {
        let all: Vec<_> = self.examples().filter(|(_, x, _)| x.id == id).collect();
        match all.as_slice() {
            [one] => Ok(*one),
            [] => Err(DatasetError::Refused(format!("no example `{id}` in the dataset (changed on disk meanwhile?)"))),
            many => {
                let at: Vec<String> = many.iter().map(|(s, _, l)| format!("{}:{l}", s.file_name())).collect();
                Err(DatasetError::Refused(format!(
                    "id {id} is used by {} examples ({}); give one of them another id first",
                    many.len(),
                    at.join(", ")
                )))
            }
        }
    }

    /// An example whose user turn is the same text (case and spacing aside) as `user`.
    pub fn same_input(&self, user: &str) -> Option<(Split, &Example, usize)> {
        let key = normalized(user);
        self.examples().find(|(_, x, _)| normalized(x.user()) == key)
    }

    pub fn fresh_id(&self, text: &str) -> String {
        new_id(text, &|id| self.find(id).is_some())
    }

    /// Appends one new example (fsync'd); refused when its input is already in the dataset.
    pub fn append(&mut self, split: Split, ex: Example) -> Result<String> {
        let (mut ids, mut refused) = self.append_all(split, vec![ex])?;
        match (ids.pop(), refused.pop()) {
            (Some(id), _) => Ok(id),
            (None, Some(why)) => Err(DatasetError::Refused(why)),
            (None, None) => Err(DatasetError::Refused("nothing to add".into())),
        }
    }

    /// Appends every example whose input is not already present (in the dataset or earlier in `xs`) with one
    /// fsync'd write; returns the new ids and, for each one left out, why.
    pub fn append_all(&mut self, split: Split, xs: Vec<Example>) -> Result<(Vec<String>, Vec<String>)> {
        let mut seen: HashMap<String, String> = self
            .examples()
            .map(|(s, x, line)| (normalized(x.user()), format!("example {} ({}:{line})", x.id, s.file_name())))
            .collect();
        let mut taken: std::collections::HashSet<String> = self.examples().map(|(_, x, _)| x.id.clone()).collect();
        let (mut added, mut refused, mut text) = (Vec::new(), Vec::new(), String::new());
        let first_line = self.lines_on_disk.get(&split).copied().unwrap_or(0) + 1;
        for mut x in xs {
            let key = normalized(x.user());
            if let Some(old) = seen.get(&key) {
                refused.push(format!("not added: this input is already {old}; edit that one instead (F3)"));
                continue;
            }
            if x.id.is_empty() || taken.contains(&x.id) {
                x.id = new_id(x.user(), &|id| taken.contains(id));
            }
            let line = first_line + added.len();
            seen.insert(key, format!("example {} ({}:{line})", x.id, split.file_name()));
            taken.insert(x.id.clone());
            text.push_str(&x.to_line());
            text.push('\n');
            added.push((x, line));
        }
        if added.is_empty() {
            return Ok((Vec::new(), refused));
        }
        let path = self.path(split);
        // An unterminated last line is ended first; it was already counted, so the numbers hold.
        append_line(&path, text.trim_end_matches('\n'))?;
        let mut ids = Vec::with_capacity(added.len());
        for (x, line) in added {
            ids.push(x.id.clone());
            self.files.entry(split).or_default().push(Entry::Example(x, line));
        }
        *self.lines_on_disk.entry(split).or_default() += ids.len();
        Ok((ids, refused))
    }

    /// Replaces the example with `ex.id` in place (its split and position kept).
    pub fn replace(&self, ex: Example) -> Result<Self> {
        let (split, _, line) = self.unique(&ex.id)?;
        let mut next = self.clone();
        for e in next.files.entry(split).or_default() {
            if let Entry::Example(x, l) = e
                && *l == line
            {
                *x = ex;
                break;
            }
        }
        self.commit(next)
    }

    /// Moves an example to the end of another split.
    pub fn move_to(&self, id: &str, to: Split) -> Result<Self> {
        let (from, ex, line) = self.unique(id)?;
        if from == to {
            return Ok(self.clone());
        }
        let ex = ex.clone();
        let mut next = self.clone();
        next.remove(from, line);
        next.files.entry(to).or_default().push(Entry::Example(ex, 0));
        self.commit(next)
    }

    pub fn delete(&self, id: &str) -> Result<Self> {
        let (split, _, line) = self.unique(id)?;
        let mut next = self.clone();
        next.remove(split, line);
        self.commit(next)
    }

    fn remove(&mut self, split: Split, line: usize) {
        if let Some(lines) = self.files.get_mut(&split) {
            lines.retain(|e| !matches!(e, Entry::Example(_, l) if *l == line));
        }
    }

    /// What `repair` would do: identical copies (a killed rewrite's leftovers) to collapse, shared ids.
    pub fn healing(&self) -> super::Healing {
        super::heal(&mut self.files.clone())
    }

    /// Collapses identical copies of an example (a killed rewrite leaves them) and reports ids shared by
    /// different examples; every other write does the same on the way.
    pub fn repair(&self) -> Result<(Self, super::Healing)> {
        let healing = self.healing();
        let next = if healing.collapsed.is_empty() { self.clone() } else { self.commit(self.clone())? };
        Ok((next, healing))
    }

    /// Writes `next` over this dataset's files. First every file gains the examples it will hold (so each
    /// example is on disk at least once), then files lose what moved away; unchanged files are not touched.
    /// Identical copies a killed rewrite left are collapsed on the way (see `heal`).
    pub fn commit(&self, mut next: Self) -> Result<Self> {
        super::heal(&mut next.files);
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
            write_atomic(&self.path(split), &render(union.into_iter()))?;
        }
        next.lines_on_disk = self.lines_on_disk.clone();
        for split in Split::ALL {
            let now = next.files.entry(split).or_default();
            if now.iter().eq(self.files.get(&split).into_iter().flatten()) {
                continue;
            }
            write_atomic(&self.path(split), &render(now.iter()))?;
            // Line numbers as the rewritten file now stands (untouched files keep theirs).
            for (i, e) in now.iter_mut().enumerate() {
                match e {
                    Entry::Example(_, line) => *line = i + 1,
                    Entry::Malformed(m) => m.line = i + 1,
                }
            }
            next.lines_on_disk.insert(split, now.len());
        }
        Ok(next)
    }
}

fn example_id(e: &Entry) -> Option<&str> {
    match e {
        Entry::Example(x, _) => Some(&x.id),
        Entry::Malformed(_) => None,
    }
}

fn render<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        match e {
            Entry::Example(x, _) => out.extend_from_slice(x.to_line().as_bytes()),
            Entry::Malformed(m) => out.extend_from_slice(&m.raw),
        }
        out.push(b'\n');
    }
    out
}

/// Parses a split file; returns its entries and physical line count. A line that is not an example (bad
/// JSON, bad UTF-8, a wrong shape) is kept as `Malformed` with the reason; blank lines carry nothing and are
/// dropped on the next rewrite. A line without an id gets one derived from its split, line and content, so
/// it is the same on every read until the file is next written (which then stores it).
pub fn parse_lines(bytes: &[u8], split: Split) -> (Vec<Entry>, usize) {
    let mut out = Vec::new();
    // A final newline ends the last line; it does not start another.
    let physical = if bytes.is_empty() {
        0
    } else {
        bytes.iter().filter(|&&b| b == b'\n').count() + usize::from(!bytes.ends_with(b"\n"))
    };
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        // A BOM (Windows editors write one) carries nothing; the first rewrite drops it.
        let raw = if line == 1 { raw.strip_prefix(crate::workspace::store::BOM).unwrap_or(raw) } else { raw };
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = std::str::from_utf8(raw)
            .map_err(|e| format!("byte {} (0x{:02X}) is not UTF-8", e.valid_up_to() + 1, raw[e.valid_up_to()]))
            .and_then(|text| serde_json::from_str::<Example>(text).map_err(|e| describe(&e)));
        match parsed {
            Ok(mut x) => {
                if x.id.is_empty() {
                    let seed = format!("{}:{line}:{}", split.name(), String::from_utf8_lossy(raw));
                    x.id = super::example::hashed_id(&[seed.as_bytes()]);
                }
                out.push(Entry::Example(x, line));
            }
            Err(error) => out.push(Entry::Malformed(Malformed { line, raw: raw.to_vec(), error })),
        }
    }
    (out, physical)
}

/// serde_json's message without its " at line 1 column N" (the line is the file's): the column stays.
pub fn describe(e: &serde_json::Error) -> String {
    let what = e.to_string();
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
    fn bad_lines_survive_rewrites_byte_for_byte_and_ids_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let train = dir.path().join("train.jsonl");
        let bad: &[u8] = b"not json \xff\xfe";
        let mut bytes = b"{\"messages\": [{\"role\":\"user\",\"content\":\"a b\"}]}\n\n".to_vec();
        bytes.extend_from_slice(bad);
        std::fs::write(&train, &bytes).unwrap();
        let mut d = Dataset::load(dir.path()).unwrap();
        let found: Vec<_> = d.malformed().collect();
        assert_eq!((found.len(), found[0].1.line), (1, 3), "{found:?}");
        assert_eq!(found[0].1.error, "byte 10 (0xFF) is not UTF-8");
        let first = d.examples().next().unwrap().1.id.clone();
        let id = d.append(Split::Train, ex("second input")).unwrap();
        assert_eq!(d.find(&id).unwrap().2, 4, "after the unterminated line 3, which got its newline");
        let d = d.move_to(&id, Split::Test).unwrap();
        let text = std::fs::read(&train).unwrap();
        assert!(text.windows(bad.len()).any(|w| w == bad), "the bad line is kept as it was");
        let again = Dataset::load(dir.path()).unwrap();
        assert_eq!(again.find(&id).unwrap().0, Split::Test);
        assert_eq!(again.find(&first).unwrap().0, Split::Train, "a derived id is stored once written");
        assert_eq!(again.files, d.files);
    }

    #[test]
    fn a_duplicate_input_is_refused_and_a_shared_id_is_never_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Dataset::load(dir.path()).unwrap();
        d.append(Split::Valid, ex("My lamp  flickers")).unwrap();
        let err = d.append(Split::Train, ex("my lamp flickers")).unwrap_err().to_string();
        assert!(err.contains("already example") && err.contains("valid.jsonl:1"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join("valid.jsonl")).unwrap().lines().count(), 1);
        let mut twin = ex("other");
        twin.id = "ex_same".into();
        let line = twin.to_line();
        std::fs::write(dir.path().join("train.jsonl"), format!("{line}\n")).unwrap();
        std::fs::write(dir.path().join("test.jsonl"), format!("{line}\n")).unwrap();
        let d = Dataset::load(dir.path()).unwrap();
        let err = d.delete("ex_same").unwrap_err().to_string();
        assert!(err.contains("used by 2 examples") && err.contains("test.jsonl:1"), "{err}");
    }
}
