//! Text similarity against the expected answer: chrF (character n-gram F-score) and ROUGE-L (word LCS F1).

use std::collections::HashMap;

/// chrF (Popović 2015): character 1- to 6-gram precision and recall averaged over the orders, whitespace
/// removed, recall weighted β = 2; scaled to 0–1 rather than 0–100. Identical texts score 1, texts sharing no
/// character 0. Orders longer than either text are left out, as sacreBLEU does.
pub fn chrf(hypothesis: &str, reference: &str) -> f64 {
    const ORDER: usize = 6;
    const BETA: f64 = 2.0;
    let hyp: Vec<char> = hypothesis.chars().filter(|c| !c.is_whitespace()).collect();
    let refr: Vec<char> = reference.chars().filter(|c| !c.is_whitespace()).collect();
    if hyp.is_empty() || refr.is_empty() {
        return if hyp.is_empty() && refr.is_empty() { 1.0 } else { 0.0 };
    }
    let (mut precision, mut recall, mut orders) = (0.0, 0.0, 0usize);
    for n in 1..=ORDER {
        let (h, r) = (ngrams(&hyp, n), ngrams(&refr, n));
        let (h_total, r_total): (usize, usize) = (h.values().sum(), r.values().sum());
        if h_total == 0 || r_total == 0 {
            continue;
        }
        let matched: usize = h.iter().map(|(g, &c)| c.min(r.get(g).copied().unwrap_or(0))).sum();
        precision += matched as f64 / h_total as f64;
        recall += matched as f64 / r_total as f64;
        orders += 1;
    }
    if orders == 0 {
        return 0.0;
    }
    let (p, r) = (precision / orders as f64, recall / orders as f64);
    let b2 = BETA * BETA;
    if p + r == 0.0 { 0.0 } else { (1.0 + b2) * p * r / (b2 * p + r) }
}

fn ngrams(chars: &[char], n: usize) -> HashMap<&[char], usize> {
    let mut m = HashMap::new();
    for w in chars.windows(n) {
        *m.entry(w).or_insert(0) += 1;
    }
    m
}

/// ROUGE-L F1 over lower-cased words (letters and digits), the longest common subsequence's precision and recall.
pub fn rouge_l(hypothesis: &str, reference: &str) -> f64 {
    let (h, r) = (words(hypothesis), words(reference));
    if h.is_empty() || r.is_empty() {
        return if h.is_empty() && r.is_empty() { 1.0 } else { 0.0 };
    }
    let lcs = lcs_len(&h, &r) as f64;
    if lcs == 0.0 {
        return 0.0;
    }
    let (p, rc) = (lcs / h.len() as f64, lcs / r.len() as f64);
    2.0 * p * rc / (p + rc)
}

pub fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// One row of the dynamic-programming table at a time: answers can be long, the table need not be.
pub fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_texts_score_one_and_disjoint_ones_zero() {
        assert!((chrf("the lamp buzzes", "the lamp buzzes") - 1.0).abs() < 1e-12);
        assert_eq!(chrf("xyz", "abc"), 0.0);
        assert!((rouge_l("The lamp buzzes.", "the LAMP buzzes") - 1.0).abs() < 1e-12);
        assert_eq!(rouge_l("one two", "three four"), 0.0);
    }

    #[test]
    fn chrf_matches_a_hand_computed_case() {
        // "ab" vs "abc": 1-grams P 2/2 R 2/3, 2-grams P 1/1 R 1/2; higher orders absent in the hypothesis.
        let (p, r) = ((1.0 + 1.0) / 2.0, (2.0 / 3.0 + 0.5) / 2.0);
        let want = 5.0 * p * r / (4.0 * p + r);
        assert!((chrf("ab", "abc") - want).abs() < 1e-12, "{} vs {want}", chrf("ab", "abc"));
    }

    #[test]
    fn rouge_l_uses_the_longest_common_subsequence() {
        // LCS of "a b c d" and "a c d e" is "a c d": P 3/4, R 3/4.
        assert!((rouge_l("a b c d", "a c d e") - 0.75).abs() < 1e-12);
        assert_eq!(lcs_len(&[1, 2, 3], &[3, 2, 1]), 1);
    }
}
