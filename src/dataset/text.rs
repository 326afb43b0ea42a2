//! Text likeness for dedupe and leakage: normalised equality and word 5-gram Jaccard, indexed so a dataset
//! of thousands of examples compares only the pairs that share a shingle.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// Shingle width in words (the near-duplicate rule: word 5-grams).
pub const SHINGLE: usize = 5;

/// Case-folded, whitespace-collapsed text: what "the same text" means for exact duplicates.
pub fn normalized(text: &str) -> String {
    text.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>().join(" ")
}

/// Lower-cased words: runs of letters and digits (punctuation and spacing do not make texts differ).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// The set of hashed word 5-grams; a text shorter than five words is one shingle of all its words.
pub fn shingles(text: &str) -> HashSet<u64> {
    let w = words(text);
    if w.is_empty() {
        return HashSet::new();
    }
    let n = SHINGLE.min(w.len());
    w.windows(n)
        .map(|g| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            g.hash(&mut h);
            h.finish()
        })
        .collect()
}

pub fn jaccard(a: &HashSet<u64>, b: &HashSet<u64>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    let shared = a.intersection(b).count();
    shared as f64 / (a.len() + b.len() - shared) as f64
}

/// Share of `a`'s shingles found in `b`: how much of a short text sits inside a long one.
pub fn containment(a: &HashSet<u64>, b: &HashSet<u64>) -> f64 {
    if a.is_empty() {
        return 0.0;
    }
    a.intersection(b).count() as f64 / a.len() as f64
}

/// Whether `input` is one of `prompt`'s worked examples: a paragraph of the prompt as similar as a near
/// duplicate (`near`), or `near` of the input's 5-grams inside the prompt. Returns (best paragraph Jaccard,
/// share inside) when it is.
pub fn in_prompt(input: &str, prompt: &str, near: f64) -> Option<(f64, f64)> {
    let input = shingles(input);
    let best =
        prompt.split("\n\n").map(shingles).filter(|s| !s.is_empty()).map(|b| jaccard(&input, &b)).fold(0.0, f64::max);
    let inside = containment(&input, &shingles(prompt));
    (best >= near || inside >= near).then_some((best, inside))
}

/// Every pair `(i, j, jaccard)` with `i < j` whose Jaccard is at least `threshold`.
pub fn similar_pairs(sets: &[HashSet<u64>], threshold: f64) -> Vec<(usize, usize, f64)> {
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, s) in sets.iter().enumerate() {
        for &g in s {
            index.entry(g).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for (i, s) in sets.iter().enumerate() {
        let mut shared: HashMap<usize, usize> = HashMap::new();
        for g in s {
            for &j in index.get(g).into_iter().flatten() {
                if j > i {
                    *shared.entry(j).or_default() += 1;
                }
            }
        }
        for (j, n) in shared {
            let score = n as f64 / (s.len() + sets[j].len() - n) as f64;
            if score >= threshold {
                out.push((i, j, score));
            }
        }
    }
    out.sort_by_key(|&(i, j, _)| (i, j));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_and_case_do_not_matter_but_words_do() {
        let a = shingles("My lamp, it flickers every night since Tuesday!");
        let b = shingles("my lamp it flickers every night since tuesday");
        assert_eq!(jaccard(&a, &b), 1.0);
        let c = shingles("my lamp it flickers every night since monday");
        assert!(jaccard(&a, &c) < 0.8);
    }

    #[test]
    fn short_texts_are_one_shingle() {
        assert_eq!(shingles("hello there").len(), 1);
        assert!(shingles("  ...  ").is_empty());
        assert_eq!(jaccard(&shingles("hello there"), &shingles("Hello, there?")), 1.0);
    }

    #[test]
    fn the_index_finds_the_same_pairs_as_brute_force() {
        let texts = [
            "the watch strap broke after two days of normal wear please help",
            "the watch strap broke after two days of normal wear please help me",
            "my headphones crackle on the left side when the volume is high",
            "completely unrelated text about a lamp that is too bright at night",
            "the watch strap broke after two days of normal wear",
        ];
        let sets: Vec<_> = texts.iter().map(|t| shingles(t)).collect();
        let mut brute = Vec::new();
        for i in 0..sets.len() {
            for j in i + 1..sets.len() {
                let s = jaccard(&sets[i], &sets[j]);
                if s >= 0.5 {
                    brute.push((i, j, s));
                }
            }
        }
        assert_eq!(similar_pairs(&sets, 0.5), brute);
        assert!(!brute.is_empty());
    }

    #[test]
    fn containment_measures_a_text_inside_a_longer_one() {
        let ticket = shingles("my lamp arrived cracked and flickers i want my money back");
        let prompt =
            shingles("Examples. Ticket: My lamp arrived cracked and flickers. I want my money back. Answer: …");
        assert_eq!(containment(&ticket, &prompt), 1.0);
        assert!(jaccard(&ticket, &prompt) < 1.0);
    }
}
