//! Healing what a killed rewrite left behind: a rewrite adds to the destination before it removes from the
//! source, so a kill in between leaves an example twice. Identical copies collapse (judged on the content,
//! not the id: an id derived from split and line differs between copies); one id on different examples is
//! reported, never guessed.

use std::collections::{BTreeMap, HashMap};

use super::{Entry, Example, Split};

/// What a repair did or would do.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Healing {
    /// One line per removed copy: where it was and where the kept one is.
    pub collapsed: Vec<String>,
    /// One line per id shared by different examples: left as they are for a person to decide.
    pub conflicts: Vec<String>,
}

impl Healing {
    pub fn is_empty(&self) -> bool {
        self.collapsed.is_empty() && self.conflicts.is_empty()
    }
}

/// The example as it would be stored, without its id.
fn content_key(x: &Example) -> String {
    let mut y = x.clone();
    y.id.clear();
    y.to_line()
}

fn line_of(e: &Entry, index: usize) -> usize {
    match e {
        Entry::Example(_, line) if *line > 0 => *line,
        _ => index + 1,
    }
}

/// Removes every identical copy but one from `files` and says what went and what conflicts. The copy kept
/// is the first in train → valid → test order, then file order: an eval split never keeps a copy of an
/// example that trains, so the eval stays honest whichever way the interrupted move was going.
pub fn heal(files: &mut BTreeMap<Split, Vec<Entry>>) -> Healing {
    let mut out = Healing::default();
    let mut kept: HashMap<String, (Split, usize, String)> = HashMap::new();
    let mut drop: Vec<(Split, usize)> = Vec::new();
    for (&split, entries) in files.iter() {
        for (i, e) in entries.iter().enumerate() {
            let Entry::Example(x, _) = e else { continue };
            let key = content_key(x);
            let at = format!("{}:{}", split.file_name(), line_of(e, i));
            match kept.get(&key) {
                Some((_, _, first)) => {
                    out.collapsed.push(format!("{at}: {} is an identical copy of {first}; removed", x.id));
                    drop.push((split, i));
                }
                None => {
                    kept.insert(key, (split, i, format!("{} ({at})", x.id)));
                }
            }
        }
    }
    for (split, i) in drop.into_iter().rev() {
        if let Some(entries) = files.get_mut(&split) {
            entries.remove(i);
        }
    }
    let mut by_id: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (&split, entries) in files.iter() {
        for (i, e) in entries.iter().enumerate() {
            if let Entry::Example(x, _) = e {
                by_id.entry(&x.id).or_default().push(format!("{}:{}", split.file_name(), line_of(e, i)));
            }
        }
    }
    for (id, at) in by_id.into_iter().filter(|(_, at)| at.len() > 1) {
        out.conflicts.push(format!(
            "id {id} is used by {} different examples ({}); keep one (F3: d deletes) or give one another id",
            at.len(),
            at.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Meta;

    #[test]
    fn identical_copies_collapse_to_the_training_one_and_conflicts_are_only_reported() {
        let x = |id: &str, user: &str| Example::chat(id.into(), "S", user, "{}", Meta::default());
        let mut files = BTreeMap::new();
        let e = |x: Example, line| Entry::Example(x, line);
        files.insert(Split::Test, vec![e(x("ex_derived_t", "a"), 1), e(x("ex_c", "c two"), 2)]);
        files.insert(Split::Train, vec![e(x("ex_a", "a"), 1), e(x("ex_c", "c one"), 2), e(x("ex_a", "a"), 3)]);
        let h = heal(&mut files);
        assert_eq!(h.collapsed.len(), 2, "{h:?}");
        assert!(h.collapsed[0].starts_with("train.jsonl:3: ex_a is an identical copy of ex_a (train.jsonl:1)"));
        assert!(h.collapsed[1].starts_with("test.jsonl:1: ex_derived_t"), "{h:?}");
        assert_eq!(files[&Split::Train].len(), 2);
        assert_eq!(files[&Split::Test].len(), 1);
        assert_eq!(h.conflicts.len(), 1);
        assert!(h.conflicts[0].contains("ex_c") && h.conflicts[0].contains("train.jsonl:2, test.jsonl:2"), "{h:?}");
    }
}
