//! Counts and token lengths per split, in the adapter lane's tokenizer (what training will see).

use super::{Dataset, Example, Split};

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct SplitStats {
    pub split: &'static str,
    pub examples: usize,
    /// Whole examples (chat format, answer included) in tokens: min, mean, p50, p95, max.
    pub tokens_min: Option<usize>,
    pub tokens_mean: Option<f64>,
    pub tokens_p50: Option<usize>,
    pub tokens_p95: Option<usize>,
    pub tokens_max: Option<usize>,
    /// Total tokens of the split (one epoch).
    pub tokens_total: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Stats {
    pub splits: Vec<SplitStats>,
    pub malformed: usize,
    /// Why token figures are missing (no local lane, the model file not found …).
    pub tokens_error: Option<String>,
}

/// Per-split figures; `tokens` measures one example (None: counts only).
pub fn stats(ds: &Dataset, tokens: Option<super::CountTokens<'_>>) -> Stats {
    let mut out = Stats { malformed: ds.malformed().count(), ..Stats::default() };
    for split in Split::ALL {
        let examples: Vec<&Example> = ds.examples().filter(|(s, ..)| *s == split).map(|(_, x, _)| x).collect();
        let mut s = SplitStats { split: split.name(), examples: examples.len(), ..SplitStats::default() };
        if let Some(count) = tokens.filter(|_| out.tokens_error.is_none()) {
            let lens: Result<Vec<usize>, String> = examples.iter().map(|x| count(x)).collect();
            match lens {
                Ok(mut lens) if !lens.is_empty() => {
                    lens.sort_unstable();
                    let total: usize = lens.iter().sum();
                    let at = |q: f64| lens[((lens.len() - 1) as f64 * q).round() as usize];
                    s.tokens_min = lens.first().copied();
                    s.tokens_max = lens.last().copied();
                    s.tokens_mean = Some(total as f64 / lens.len() as f64);
                    s.tokens_p50 = Some(at(0.5));
                    s.tokens_p95 = Some(at(0.95));
                    s.tokens_total = Some(total);
                }
                Ok(_) => {}
                Err(e) => out.tokens_error = Some(e),
            }
        }
        out.splits.push(s);
    }
    out
}

impl Stats {
    /// A fixed-width table, one row per split.
    pub fn table(&self) -> String {
        let mut t = format!(
            "{:<6} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9}\n",
            "split", "examples", "min", "mean", "p50", "p95", "max", "total"
        );
        let n = |v: Option<usize>| v.map_or("—".to_string(), |v| v.to_string());
        for s in &self.splits {
            let mean = s.tokens_mean.map_or("—".to_string(), |m| format!("{m:.0}"));
            t.push_str(&format!(
                "{:<6} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9}\n",
                s.split,
                s.examples,
                n(s.tokens_min),
                mean,
                n(s.tokens_p50),
                n(s.tokens_p95),
                n(s.tokens_max),
                n(s.tokens_total)
            ));
        }
        t
    }
}
