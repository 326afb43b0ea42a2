//! Lanes on one base in one host pass: each row its own decoder (the base plus its adapter, or none), tokens,
//! positions and KV cache; the base weights are read once for all of them.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::{Decoder, host_finite};
use crate::engine::local::cache::KvCache;
use crate::engine::local::cpu::{self, Bufs};
use crate::engine::local::{LocalError, Result};

/// One lane's step in a batched pass: `ids` at positions `pos..` with its own cache.
pub struct BatchRow<'a> {
    pub decoder: &'a Decoder,
    pub ids: &'a [u32],
    pub pos: usize,
    pub cache: &'a mut KvCache,
}

/// The scratch a worker keeps for its batched passes (grown to the largest batch, then reused).
#[derive(Default)]
pub struct Batch {
    bufs: Bufs,
}

/// The most lanes one batched pass takes.
pub const MAX_BATCH: usize = cpu::MAX_BATCH;

impl Decoder {
    /// Whether `other` can share this decoder's batched passes: both run by the host engine over the very same
    /// base weights (adapters may differ).
    pub fn batches_with(&self, other: &Decoder) -> bool {
        self.host && other.host && Arc::ptr_eq(&self.base, &other.base)
    }

    /// One host pass over every row: each row's last logits `[vocab]`, as `forward_last` gives them for that
    /// lane alone, or that row's own error (non-finite values). An error for the whole pass (rows that do not
    /// share a base, a full cache) is the outer one.
    pub fn forward_batch(batch: &mut Batch, rows: &mut [BatchRow<'_>]) -> Result<Vec<Result<Tensor>>> {
        let Some(first) = rows.first().map(|r| r.decoder) else { return Ok(Vec::new()) };
        if let Some(r) = rows.iter().find(|r| !first.batches_with(r.decoder)) {
            let why = if r.decoder.host { "another base model" } else { "a decoder the host engine does not run" };
            return Err(LocalError::Run(format!("a batched pass cannot take {why}")));
        }
        let host = first.base.host.as_ref().ok_or_else(|| LocalError::Run("the model has no host form".into()))?;
        let mut cpu_rows = Vec::with_capacity(rows.len());
        for r in rows.iter_mut() {
            let KvCache::Host(cache) = &mut *r.cache else {
                return Err(LocalError::Run("a batched pass needs host KV caches".into()));
            };
            let lins = cpu::Layers { layers: &r.decoder.layers, lm_head: &*r.decoder.lm_head };
            cpu_rows.push(cpu::Row { lins, ids: r.ids, pos: r.pos, cache, all: false });
        }
        let spans = cpu::forward_batch(&first.base.cfg, host, &mut batch.bufs, &mut cpu_rows)?;
        let hidden = first.base.cfg.hidden;
        let out = rows
            .iter()
            .zip(spans.iter().enumerate())
            .map(|(r, (i, &(at, len)))| {
                let position = r.pos + r.ids.len() - 1;
                host_finite(&batch.bufs.h[i * hidden..(i + 1) * hidden], "hidden state", position)?;
                let logits = &batch.bufs.logits[at..at + len];
                host_finite(logits, "logits", position)?;
                Ok(Tensor::from_slice(logits, len, &Device::Cpu)?)
            })
            .collect();
        Ok(out)
    }
}
