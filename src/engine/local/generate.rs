//! One lane's generation as a resumable job: prefill in chunks, then one token per step, so a device
//! worker can interleave lanes and honour cancellation between steps.

use std::sync::Arc;

use candle_core::Tensor;

use super::decoder::{BatchRow, Llama};
use super::sampler::Sampler;
use super::stream::{Piece, TextStream};
use super::tokenizer::Tokenizer;
use super::{LocalError, Result};
use crate::engine::{LaneSink, Usage};
use crate::workspace::{KvCacheType, Sampling};

/// Prompt tokens per prefill step on the CPU: long enough to be efficient, short enough that Esc and the
/// other lanes never wait long.
pub const PREFILL_CHUNK: usize = 64;

/// On a GPU: a step there costs its kernel launches more than its tokens, so a long prompt prefills sooner in
/// fewer, longer steps (1,344 tokens of a 0.5B model on an H200: 81 ms in 512-token steps, 209 ms in 64-token
/// ones), and a short prompt beside it waits at most one such step.
pub const GPU_PREFILL_CHUNK: usize = 512;

/// Prompt tokens per prefill step on `device`.
pub fn prefill_chunk(device: &candle_core::Device) -> usize {
    if device.is_cpu() { PREFILL_CHUNK } else { GPU_PREFILL_CHUNK }
}

pub struct Job {
    model: Arc<Llama>,
    tok: Arc<Tokenizer>,
    cache: super::cache::KvCache,
    /// Prompt, then the answer as it grows.
    ids: Vec<u32>,
    prompt_len: usize,
    /// Positions already in the cache.
    done: usize,
    max_tokens: usize,
    /// The model's context, not max_tokens, limits this answer.
    context_bound: bool,
    sampler: Sampler,
    stream: TextStream,
    pub sink: LaneSink,
}

pub enum Step {
    More,
    Finished(Result<Usage>),
}

impl Job {
    /// A run of `prompt` with its KV cache in `kv`'s element (where the engine holds it so, see
    /// `Decoder::holds_kv`).
    pub fn new(
        model: Arc<Llama>,
        tok: Arc<Tokenizer>,
        prompt: Vec<u32>,
        (s, kv): (&Sampling, KvCacheType),
        sink: LaneSink,
    ) -> Result<Self> {
        let ctx = model.base.cfg.context;
        if prompt.is_empty() {
            return Err(LocalError::Run("the prompt encodes to no tokens".into()));
        }
        if prompt.len() >= ctx {
            return Err(LocalError::Run(format!(
                "the prompt is {} tokens; the model's context is {ctx}: shorten the prompt or the input",
                prompt.len()
            )));
        }
        let max_tokens = (s.max_tokens as usize).min(ctx - prompt.len());
        let context_bound = max_tokens < s.max_tokens as usize;
        let cache = model.new_cache_of(prompt.len() + max_tokens, kv)?;
        Ok(Self {
            model,
            tok,
            cache,
            prompt_len: prompt.len(),
            ids: prompt,
            done: 0,
            max_tokens,
            context_bound,
            sampler: Sampler::new(s),
            stream: TextStream::new(&s.stop),
            sink,
        })
    }

    /// Prompt tokens not yet in the cache (0 once it decodes).
    pub fn prefill_left(&self) -> usize {
        self.prompt_len - self.done.min(self.prompt_len)
    }

    /// Advances by one prefill chunk or one decoded token.
    pub fn step(&mut self) -> Step {
        let end = self.step_end();
        let logits = self.model.forward_last(&self.ids[self.done..end], self.done, &mut self.cache);
        self.advance(logits)
    }

    /// Where the next step's tokens end: the next prefill chunk's end, or the last token sampled.
    fn step_end(&self) -> usize {
        if self.done < self.prompt_len {
            (self.done + prefill_chunk(self.model.device())).min(self.prompt_len)
        } else {
            self.ids.len()
        }
    }

    /// The decoder this run steps with (a batched pass takes runs whose decoders batch together).
    pub fn decoder(&self) -> &Llama {
        &self.model
    }

    /// The next step as one row of a batched pass; the pass's logits for it go to `advance`.
    pub fn row(&mut self) -> BatchRow<'_> {
        let end = self.step_end();
        BatchRow { decoder: &self.model, ids: &self.ids[self.done..end], pos: self.done, cache: &mut self.cache }
    }

    /// Tokens the next step runs (its share of a batched pass's work).
    pub fn step_tokens(&self) -> usize {
        self.step_end() - self.done
    }

    /// Takes the last logits of the step `row` described (or its error) and advances.
    pub fn advance(&mut self, logits: Result<Tensor>) -> Step {
        match logits.and_then(|l| self.after(l)) {
            Ok(Some(usage)) => Step::Finished(Ok(usage)),
            Ok(None) => Step::More,
            Err(e) => Step::Finished(Err(e)),
        }
    }

    fn after(&mut self, logits: Tensor) -> Result<Option<Usage>> {
        self.done = self.step_end();
        if self.done < self.prompt_len {
            self.sink.progress(self.done as u64, self.prompt_len as u64);
            return Ok(None); // more prompt to prefill
        }
        let answer_len = self.ids.len() - self.prompt_len;
        let id = self.sampler.next(&logits, &self.ids)?;
        self.ids.push(id);
        if self.tok.is_stop(id) {
            return Ok(Some(self.finish()));
        }
        match self.stream.push(&self.tok, id) {
            Piece::Stop(before) => {
                if !before.is_empty() {
                    self.sink.token(before);
                }
                return Ok(Some(self.usage()));
            }
            Piece::Text(t) if !t.is_empty() => self.sink.token(t),
            Piece::Text(_) => {}
        }
        if answer_len + 1 >= self.max_tokens {
            if self.context_bound {
                let ctx = self.model.base.cfg.context;
                self.sink.warning(format!("the answer reached the end of the model's {ctx}-token context"));
            }
            return Ok(Some(self.finish()));
        }
        Ok(None)
    }

    fn finish(&mut self) -> Usage {
        let rest = self.stream.flush(&self.tok);
        if !rest.is_empty() {
            self.sink.token(rest);
        }
        self.usage()
    }

    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: Some(self.prompt_len as u64),
            completion_tokens: Some((self.ids.len() - self.prompt_len) as u64),
            cached_prompt_tokens: None,
            reasoning_tokens: None,
            cache_write_tokens: None,
            estimated: false,
        }
    }
}
