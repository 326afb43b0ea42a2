//! Choosing the next token: greedy at temperature 0, else top-k / top-p sampling; repetition penalty; seeded.

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};

use super::Result;
use crate::workspace::Sampling as Params;

/// How many recent tokens the repetition penalty looks at (llama.cpp's default window).
const PENALTY_WINDOW: usize = 64;

pub struct Sampler {
    proc: LogitsProcessor,
    penalty: f32,
}

impl Sampler {
    pub fn new(p: &Params) -> Self {
        let t = p.temperature;
        let sampling = if t <= 0.0 {
            Sampling::ArgMax
        } else {
            match (p.top_k, p.top_p < 1.0) {
                (Some(k), true) => Sampling::TopKThenTopP { k: k as usize, p: p.top_p, temperature: t },
                (Some(k), false) => Sampling::TopK { k: k as usize, temperature: t },
                (None, true) => Sampling::TopP { p: p.top_p, temperature: t },
                (None, false) => Sampling::All { temperature: t },
            }
        };
        // Same seed → same text; no seed → a fresh one per run.
        let seed = p.seed.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        });
        Self { proc: LogitsProcessor::from_sampling(seed, sampling), penalty: p.repetition_penalty as f32 }
    }

    /// Picks the next id from `[vocab]` logits, given the ids so far (prompt and answer).
    pub fn next(&mut self, logits: &Tensor, context: &[u32]) -> Result<u32> {
        let logits = logits.to_dtype(candle_core::DType::F32)?;
        let logits = if (self.penalty - 1.0).abs() > f32::EPSILON {
            let start = context.len().saturating_sub(PENALTY_WINDOW);
            candle_transformers::utils::apply_repeat_penalty(&logits, self.penalty, &context[start..])?
        } else {
            logits
        };
        Ok(self.proc.sample(&logits)?)
    }
}
