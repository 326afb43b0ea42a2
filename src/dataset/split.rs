//! `dataset split`: a deterministic re-split of every example into train/valid/test, near-duplicates kept
//! together so a split never leaks into another.

use std::collections::{BTreeMap, HashSet};

use super::check::NEAR;
use super::text::{normalized, shingles, similar_pairs};
use super::{Dataset, DatasetError, Entry, Result, Split};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitPlan {
    pub valid: f64,
    pub test: f64,
    pub seed: u64,
}

/// Re-splits the dataset as `plan` says and writes it.
pub fn resplit(ds: &Dataset, plan: SplitPlan) -> Result<Dataset> {
    ds.commit(planned_split(ds, plan)?)
}

/// Each example whose split would change: (id, from, to), in id order.
pub fn moves(old: &Dataset, new: &Dataset) -> Vec<(String, Split, Split)> {
    let before: BTreeMap<&str, Split> = old.examples().map(|(s, x, _)| (x.id.as_str(), s)).collect();
    let mut out: Vec<(String, Split, Split)> = new
        .examples()
        .filter_map(|(to, x, _)| {
            before.get(x.id.as_str()).filter(|&&from| from != to).map(|&from| (x.id.clone(), from, to))
        })
        .collect();
    out.sort();
    out
}

/// The dataset `resplit` would write, nothing written. The same examples and seed give the same split
/// whatever order the files had: groups are ordered by a seeded hash of their smallest id.
pub fn planned_split(ds: &Dataset, plan: SplitPlan) -> Result<Dataset> {
    let ok = |f: f64| f.is_finite() && (0.0..1.0).contains(&f);
    if !ok(plan.valid) || !ok(plan.test) || plan.valid + plan.test >= 1.0 {
        return Err(DatasetError::Refused(format!(
            "--valid {} and --test {} must be fractions ≥ 0 that leave some examples for training",
            plan.valid, plan.test
        )));
    }
    if let Some((s, m)) = ds.malformed().next() {
        return Err(DatasetError::Refused(format!(
            "{}:{}: not an example ({}); fix or remove it before splitting",
            s.file_name(),
            m.line,
            m.error
        )));
    }
    // Identical copies a killed rewrite left count once, or they would skew the split sizes.
    let mut pool = ds.files.clone();
    super::heal(&mut pool);
    let all: Vec<_> = pool
        .into_values()
        .flatten()
        .filter_map(|e| if let Entry::Example(x, _) = e { Some(x) } else { None })
        .collect();
    let groups = groups(&all);
    let mut order: Vec<(u64, Vec<usize>)> = groups
        .into_iter()
        .map(|g| {
            let key = g.iter().map(|&i| all[i].id.as_str()).min().unwrap_or_default();
            (keyed(plan.seed, key), g)
        })
        .collect();
    order.sort();
    let n = all.len();
    // At least one example always trains.
    let want_test = ((n as f64 * plan.test).round() as usize).min(n.saturating_sub(1));
    let want_valid = ((n as f64 * plan.valid).round() as usize).min(n.saturating_sub(1) - want_test);
    let mut files: BTreeMap<Split, Vec<Entry>> = BTreeMap::new();
    let (mut test, mut valid) = (0, 0);
    // First fit: a group joins test (then valid) only while it fits, so one big near-duplicate cluster
    // cannot swamp an eval split; what does not fit trains.
    for (_, group) in order {
        let k = group.len();
        let split = if test + k <= want_test {
            test += k;
            Split::Test
        } else if valid + k <= want_valid {
            valid += k;
            Split::Valid
        } else {
            Split::Train
        };
        for i in group {
            files.entry(split).or_default().push(Entry::Example(all[i].clone(), 0));
        }
    }
    let mut next = Dataset::planned(&ds.dir, files);
    // Within a split, examples keep a stable order (by id) so reruns give byte-identical files.
    for lines in next.files.values_mut() {
        lines.sort_by(|a, b| match (a, b) {
            (Entry::Example(x, _), Entry::Example(y, _)) => x.id.cmp(&y.id),
            _ => std::cmp::Ordering::Equal,
        });
    }
    for split in Split::ALL {
        next.files.entry(split).or_default();
    }
    Ok(next)
}

/// Examples connected by equal or near-duplicate inputs (union-find over the similar pairs).
fn groups(all: &[super::Example]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..all.len()).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let sets: Vec<HashSet<u64>> = all.iter().map(|x| shingles(x.user())).collect();
    let mut pairs: Vec<(usize, usize)> = similar_pairs(&sets, NEAR).into_iter().map(|(i, j, _)| (i, j)).collect();
    let mut by_text: BTreeMap<String, usize> = BTreeMap::new();
    for (i, x) in all.iter().enumerate() {
        if let Some(&j) = by_text.get(&normalized(x.user())) {
            pairs.push((j, i));
        } else {
            by_text.insert(normalized(x.user()), i);
        }
    }
    for (i, j) in pairs {
        let (a, b) = (root(&mut parent, i), root(&mut parent, j));
        parent[a] = b;
    }
    let mut out: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..all.len() {
        let r = root(&mut parent, i);
        out.entry(r).or_default().push(i);
    }
    out.into_values().collect()
}

/// SplitMix64 of the seed mixed with the id's bytes: stable across runs, platforms and Rust versions.
fn keyed(seed: u64, id: &str) -> u64 {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for b in id.bytes() {
        h = mix(h ^ u64::from(b));
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
