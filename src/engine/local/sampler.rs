//! Choosing the next token: greedy at temperature 0, else top-k / top-p sampling; repetition penalty; seeded.

use candle_core::{Storage, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

use super::Result;
use crate::workspace::Sampling as Params;

/// How many recent tokens the repetition penalty looks at (llama.cpp's default window).
const PENALTY_WINDOW: usize = 64;

pub struct Sampler {
    proc: LogitsProcessor,
    penalty: f32,
    greedy: bool,
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
        Self {
            proc: LogitsProcessor::from_sampling(seed, sampling),
            penalty: p.repetition_penalty as f32,
            greedy: t <= 0.0,
        }
    }

    /// Picks the next id from `[vocab]` logits, given the ids so far (prompt and answer).
    pub fn next(&mut self, logits: &Tensor, context: &[u32]) -> Result<u32> {
        if self.greedy && (self.penalty - 1.0).abs() <= f32::EPSILON {
            // Host logits are read in place: a lane sharing a batched step otherwise spends a copy and a generic
            // reduction of the whole vocabulary on every token.
            let (storage, layout) = logits.storage_and_layout();
            if let (Storage::Cpu(cpu), Some((from, to))) = (&*storage, layout.contiguous_offsets())
                && let Ok(values) = cpu.as_slice::<f32>()
                && let Some(id) = argmax(&values[from..to])
            {
                return Ok(id);
            }
        }
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

/// The index of the first largest value (candle's `argmax`: a later equal value never wins), None for an empty
/// slice or one holding NaN (left to candle's path, which decides those as it always has). Two passes the
/// compiler vectorizes: the maximum over sixteen lanes, then the first index holding it.
fn argmax(values: &[f32]) -> Option<u32> {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut nan = false;
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            nan |= v.is_nan();
            *m = if v > *m { v } else { *m };
        }
    }
    for &v in rest {
        nan |= v.is_nan();
        lanes[0] = if v > lanes[0] { v } else { lanes[0] };
    }
    if nan || values.is_empty() {
        return None;
    }
    let max = lanes.iter().copied().fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
    values.iter().position(|&v| v == max).map(|i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_largest_value_as_candle_does() {
        let mut v: Vec<f32> = (0..49_157).map(|i| ((i * 7919 % 10_007) as f32 - 5_000.0) / 97.0).collect();
        let cases: Vec<Vec<f32>> = vec![
            v.clone(),
            {
                // ties: the first of three equal maxima, one in the tail past the last whole chunk
                let top = v.iter().copied().fold(f32::NEG_INFINITY, f32::max) + 1.0;
                let n = v.len();
                v[n - 1] = top;
                v[1234] = top;
                v[40_000] = top;
                v.clone()
            },
            vec![-0.0, 0.0, -1.0],
            vec![f32::NEG_INFINITY, f32::NEG_INFINITY],
            vec![-3.0; 17],
            vec![f32::INFINITY, 1.0, f32::INFINITY],
        ];
        for values in cases {
            let t = Tensor::from_slice(&values, values.len(), &candle_core::Device::Cpu).unwrap();
            let candle: u32 = t.argmax(0).unwrap().to_scalar().unwrap();
            assert_eq!(argmax(&values), Some(candle), "{:?}", &values[..values.len().min(4)]);
        }
        assert_eq!(argmax(&[1.0, f32::NAN]), None);
        assert_eq!(argmax(&[]), None);
    }
}
