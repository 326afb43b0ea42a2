//! Run metrics: cost from prices in integer nano-dollars, and the compact formats panes and reports show.

pub mod count;
pub mod format;
pub mod history;
pub mod prices;
mod report;
pub mod savings;

pub use count::{Count, Counters};
pub use format::{fmt_cost_nanos, fmt_count, fmt_count_compact, fmt_duration, fmt_usd, fmt_usd_nanos};
pub use report::{LaneReport, Outcome, RunRecord};

use crate::engine::{Timings, Usage};
use crate::workspace::Price;

/// Cost of one run in nano-dollars (1e-9 $), or None when any needed count or price is unknown.
pub fn cost_nanos(price: Option<&Price>, usage: &Usage) -> Option<u64> {
    let price = price?;
    let prompt = usage.prompt_tokens?;
    let completion = usage.completion_tokens?;
    let cached = usage.cached_prompt_tokens.unwrap_or(0).min(prompt);
    let written = usage.cache_write_tokens.unwrap_or(0).min(prompt - cached);
    let cached_rate = price.cached_input_per_mtok.unwrap_or(price.input_per_mtok);
    let write_rate = price.cache_write_per_mtok.unwrap_or(price.input_per_mtok);
    // $ per Mtok is nano-dollars per 1e-3 token: tokens × rate × 1000 nano-dollars.
    let nanos = |tokens: u64, per_mtok: f64| (tokens as f64 * per_mtok * 1000.0).round() as u64;
    Some(
        nanos(prompt - cached - written, price.input_per_mtok)
            + nanos(cached, cached_rate)
            + nanos(written, write_rate)
            + nanos(completion, price.output_per_mtok),
    )
}

pub fn nanos_to_usd(n: u64) -> f64 {
    n as f64 / 1e9
}

/// Metrics of a finished run, in the units reports use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunFigures {
    pub ttft_ms: Option<f64>,
    pub total_ms: f64,
    pub tokens_per_s: Option<f64>,
    pub cost_nanos: Option<u64>,
}

/// What a run cost at a lane's rate: tokens at token prices, or busy time at a machine's hourly rate.
pub fn run_cost_nanos(rate: Option<prices::Rate>, usage: &Usage, timings: &Timings) -> Option<u64> {
    match rate? {
        prices::Rate::Tokens(p) => cost_nanos(Some(&p), usage),
        prices::Rate::GpuHour(usd) => {
            let busy = timings.busy.unwrap_or(timings.total);
            Some((busy.as_secs_f64() * usd / 3600.0 * 1e9).round() as u64)
        }
    }
}

impl RunFigures {
    pub fn new(usage: &Usage, timings: &Timings, rate: Option<prices::Rate>) -> Self {
        let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        Self {
            ttft_ms: timings.ttft.map(ms),
            total_ms: ms(timings.total),
            // Thinking happens before the first visible token, so the decode rate counts the answer only.
            tokens_per_s: timings
                .tokens_per_s(usage.completion_tokens.map(|n| n.saturating_sub(usage.reasoning_tokens.unwrap_or(0))))
                .map(|r| (r * 10.0).round() / 10.0),
            cost_nanos: run_cost_nanos(rate, usage, timings),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cost_uses_cached_rate_and_three_figures() {
        let price = Price {
            input_per_mtok: 0.15,
            output_per_mtok: 0.60,
            cached_input_per_mtok: Some(0.075),
            cache_write_per_mtok: None,
        };
        let usage = Usage {
            prompt_tokens: Some(1198),
            completion_tokens: Some(70),
            cached_prompt_tokens: None,
            reasoning_tokens: None,
            cache_write_tokens: None,
            estimated: false,
        };
        // 1198 × 0.15e-6 + 70 × 0.6e-6 = 0.0001797 + 0.000042 = 0.0002217 $
        assert_eq!(cost_nanos(Some(&price), &usage), Some(221_700));
        let cached = Usage { cached_prompt_tokens: Some(1024), ..usage.clone() };
        assert_eq!(cost_nanos(Some(&price), &cached), Some(26_100 + 76_800 + 42_000));
        assert_eq!(cost_nanos(None, &usage), None);
        // Anthropic: 2,000 prompt tokens of which 1,500 written to the cache at $3.75 (sonnet at $3 / $15):
        // 500 × 3 + 1,500 × 3.75 + 100 × 15 = 8,625 $/M-token units = $0.008625.
        let sonnet = prices::lookup(prices::shipped(), "claude-sonnet-4-5").copied();
        let write = Usage {
            prompt_tokens: Some(2000),
            completion_tokens: Some(100),
            cache_write_tokens: Some(1500),
            ..Usage::default()
        };
        assert_eq!(cost_nanos(sonnet.as_ref(), &write), Some(8_625_000));
        // A local lane at $2.40 per GPU-hour busy for 1.5 s: 2.4 / 3600 × 1.5 = $0.001.
        let t = Timings { ttft: None, total: Duration::from_millis(1500), busy: None, shared_lanes: None };
        assert_eq!(run_cost_nanos(Some(prices::Rate::GpuHour(2.4)), &usage, &t), Some(1_000_000));
        assert_eq!(run_cost_nanos(None, &usage, &t), None);
        // Priced by the run's own compute time when the backend measured it (other lanes' turns excluded).
        let shared = Timings { busy: Some(Duration::from_millis(750)), ..t };
        assert_eq!(run_cost_nanos(Some(prices::Rate::GpuHour(2.4)), &usage, &shared), Some(500_000));
    }

    #[test]
    fn decode_rate_excludes_first_token() {
        let t = Timings {
            ttft: Some(Duration::from_millis(500)),
            total: Duration::from_millis(1500),
            busy: None,
            shared_lanes: None,
        };
        assert_eq!(t.tokens_per_s(Some(51)), Some(50.0));
        assert_eq!(t.tokens_per_s(Some(1)), None);
        assert_eq!(
            Timings { ttft: None, total: Duration::from_secs(1), busy: None, shared_lanes: None }.tokens_per_s(Some(5)),
            None
        );
        // A reasoning model's thinking tokens came before the first visible one: not part of the decode rate.
        let u = Usage { completion_tokens: Some(251), reasoning_tokens: Some(200), ..Usage::default() };
        assert_eq!(RunFigures::new(&u, &t, None).tokens_per_s, Some(50.0));
    }
}
