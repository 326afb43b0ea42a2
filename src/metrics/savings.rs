//! The savings projection: each lane against a reference lane, per run, per month and to break-even.

/// One lane's side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Side {
    pub prompt_tokens: u64,
    pub estimated: bool,
    /// Cost of one run in nano-dollars on the basis below; None when the price is unknown.
    pub cost_nanos: Option<u64>,
}

/// What the dollar figures rest on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Both lanes' finished runs on this input: prompt, output and cached tokens as reported.
    Runs,
    /// The live prompt counts at input prices only (no output, no prompt caching assumed).
    Prompts,
}

impl Basis {
    /// The assumption, said in words next to the figures.
    pub fn caveat(self) -> &'static str {
        match self {
            Self::Runs => "from the last runs; cached input priced where the provider reported it",
            Self::Prompts => "prompt tokens only, no prompt caching assumed; run both lanes for output and caching",
        }
    }
}

/// A lane against the reference; negative savings mean the lane costs more.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Saving {
    pub tokens_saved: i64,
    /// Share of the reference's prompt saved, in percent.
    pub pct_saved: f64,
    pub per_run_nanos: Option<i64>,
    pub per_month_nanos: Option<i64>,
    /// Runs after which the one-off fine-tuning cost is paid back (None: no cost given, or no saving).
    pub break_even_runs: Option<u64>,
}

pub fn project(reference: &Side, lane: &Side, monthly_runs: u64, finetune_cost_usd: Option<f64>) -> Saving {
    let tokens_saved = reference.prompt_tokens as i64 - lane.prompt_tokens as i64;
    let pct_saved =
        if reference.prompt_tokens == 0 { 0.0 } else { 100.0 * tokens_saved as f64 / reference.prompt_tokens as f64 };
    let per_run_nanos = match (reference.cost_nanos, lane.cost_nanos) {
        (Some(r), Some(l)) => Some(r as i64 - l as i64),
        _ => None,
    };
    let per_month_nanos = per_run_nanos.map(|n| n.saturating_mul(monthly_runs as i64));
    let break_even_runs = match (finetune_cost_usd, per_run_nanos) {
        (Some(usd), Some(saved)) if saved > 0 => Some(((usd * 1e9).round() as u64).div_ceil(saved as u64)),
        _ => None,
    };
    Saving { tokens_saved, pct_saved, per_run_nanos, per_month_nanos, break_even_runs }
}

/// Input-only cost of a prompt at a token price, in nano-dollars.
pub fn prompt_cost_nanos(tokens: u64, input_per_mtok: f64) -> u64 {
    (tokens as f64 * input_per_mtok * 1000.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_worked_projection() {
        // gpt-4o-mini input $0.15/Mtok: 1,375 tokens = $0.00020625; 123 tokens = $0.00001845.
        let long = Side { prompt_tokens: 1375, estimated: false, cost_nanos: Some(prompt_cost_nanos(1375, 0.15)) };
        let short = Side { prompt_tokens: 123, estimated: false, cost_nanos: Some(prompt_cost_nanos(123, 0.15)) };
        assert_eq!((long.cost_nanos, short.cost_nanos), (Some(206_250), Some(18_450)));
        let s = project(&long, &short, 100_000, Some(25.0));
        assert_eq!(s.tokens_saved, 1252);
        assert!((s.pct_saved - 91.05).abs() < 0.01, "{}", s.pct_saved);
        // $0.0001878 a run, $18.78 a month at 100,000 runs; $25 pays back after ⌈25 / 0.0001878⌉ = ⌈133,120.3⌉ = 133,121 runs.
        assert_eq!(s.per_run_nanos, Some(187_800));
        assert_eq!(s.per_month_nanos, Some(18_780_000_000));
        assert_eq!(s.break_even_runs, Some(133_121));
    }

    #[test]
    fn unknown_prices_and_losses() {
        let a = Side { prompt_tokens: 100, estimated: true, cost_nanos: None };
        let b = Side { prompt_tokens: 150, estimated: false, cost_nanos: Some(10) };
        let s = project(&a, &b, 1000, Some(5.0));
        assert_eq!((s.tokens_saved, s.per_run_nanos, s.break_even_runs), (-50, None, None));
        let s = project(&Side { cost_nanos: Some(5), ..a }, &b, 1000, Some(5.0));
        assert_eq!((s.per_run_nanos, s.per_month_nanos, s.break_even_runs), (Some(-5), Some(-5000), None));
    }
}
