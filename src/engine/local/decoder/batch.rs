//! Lanes on one base in one pass: each row its own decoder (the base plus its adapter, or none), tokens,
//! positions and KV cache; the base weights are read once for all of them. The host engine runs the pass on
//! the CPU; candle's ops run it on a GPU (`pass.rs`).

use std::sync::Arc;

use candle_core::{D, Device, Tensor};

use super::pass::{Seg, run_rows};
use super::{Decoder, ensure_finite, host_finite};
use crate::engine::local::cache::KvCache;
use crate::engine::local::cpu::{self, Bufs};
use crate::engine::local::linear::Lin;
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
    /// Whether `other` can share this decoder's batched passes: both over the very same base weights (adapters
    /// may differ), both run by the host engine or both by candle's inference ops.
    pub fn batches_with(&self, other: &Decoder) -> bool {
        Arc::ptr_eq(&self.base, &other.base)
            && if self.host { other.host } else { !other.host && self.shares && other.shares }
    }

    /// One pass over every row: each row's last logits `[vocab]`, as `forward_last` gives them for that lane
    /// alone, or that row's own error (non-finite values). An error for the whole pass (rows that do not share
    /// a base, a full cache) is the outer one.
    pub fn forward_batch(batch: &mut Batch, rows: &mut [BatchRow<'_>]) -> Result<Vec<Result<Tensor>>> {
        let Some(first) = rows.first().map(|r| r.decoder) else { return Ok(Vec::new()) };
        if let Some(r) = rows.iter().find(|r| !first.batches_with(r.decoder)) {
            let why = if Arc::ptr_eq(&first.base, &r.decoder.base) {
                "a decoder run another way (host engine, candle, training)"
            } else {
                "another base model"
            };
            return Err(LocalError::Run(format!("a batched pass cannot take {why}")));
        }
        if !first.host {
            return candle_batch(first, rows);
        }
        let host = first.base.host.as_ref().ok_or_else(|| LocalError::Run("the model has no host form".into()))?;
        // The lanes of one decoder (one adapter) side by side, so that the kernels read its factors once for all
        // of them; a row's numbers do not depend on where it sits in the pass.
        let mut sorted: Vec<(usize, &mut BatchRow<'_>)> = rows.iter_mut().enumerate().collect();
        sorted.sort_by_key(|(_, r)| std::ptr::from_ref(r.decoder) as usize);
        // Each pass row's caller index and last position.
        let mut placed = Vec::with_capacity(sorted.len());
        let mut cpu_rows = Vec::with_capacity(sorted.len());
        for (i, r) in sorted {
            let KvCache::Host(cache) = &mut *r.cache else {
                return Err(LocalError::Run("a batched pass needs host KV caches".into()));
            };
            placed.push((i, r.pos + r.ids.len() - 1));
            let lins = cpu::Layers { layers: &r.decoder.layers, lm_head: &*r.decoder.lm_head };
            cpu_rows.push(cpu::Row { lins, ids: r.ids, pos: r.pos, cache, all: false });
        }
        let spans = cpu::forward_batch(&first.base.cfg, host, &mut batch.bufs, &mut cpu_rows)?;
        let hidden = first.base.cfg.hidden;
        let mut out: Vec<(usize, Result<Tensor>)> = placed
            .iter()
            .zip(&spans)
            .enumerate()
            .map(|(k, (&(i, position), &(at, len)))| {
                let checked = host_finite(&batch.bufs.h[k * hidden..(k + 1) * hidden], "hidden state", position)
                    .and_then(|()| {
                        let logits = &batch.bufs.logits[at..at + len];
                        host_finite(logits, "logits", position)?;
                        Ok(Tensor::from_slice(logits, len, &Device::Cpu)?)
                    });
                (i, checked)
            })
            .collect();
        // Back in the caller's order.
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }
}

/// The candle pass: rows ordered decode before prefill and by decoder (so that one base call serves every
/// decode row and one update call each adapter's adjacent decode rows), their last positions through the head
/// together.
fn candle_batch(first: &Decoder, rows: &mut [BatchRow<'_>]) -> Result<Vec<Result<Tensor>>> {
    if rows.iter().any(|r| r.ids.is_empty()) {
        return Err(LocalError::Run("a batched pass got a row with no tokens".into()));
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rows[i].ids.len() > 1, rows[i].decoder.layers.as_ptr() as usize, i));
    let ids: Vec<u32> = order.iter().flat_map(|&i| rows[i].ids.iter().copied()).collect();
    let positions: Vec<usize> = order.iter().map(|&i| rows[i].pos + rows[i].ids.len() - 1).collect();
    let mut by_order: Vec<Option<&mut BatchRow<'_>>> = rows.iter_mut().map(Some).collect();
    let mut picked: Vec<&mut BatchRow<'_>> = order.iter().filter_map(|&i| by_order[i].take()).collect();
    let heads: Vec<Arc<dyn Lin>> = picked.iter().map(|r| r.decoder.lm_head.clone()).collect();
    let mut segs: Vec<Seg<'_>> = picked
        .iter_mut()
        .map(|r| Seg { lins: &r.decoder.layers, pos: r.pos, n: r.ids.len(), cache: Some(&mut *r.cache) })
        .collect();
    let h = first.hidden_rows(&ids, &mut segs)?;
    // Each row's last position, then the head over all of them (one token a row: the decode form, as alone).
    let mut last = Vec::with_capacity(segs.len());
    let mut at = 0;
    for s in &segs {
        at += s.n;
        last.push((at - 1) as u32);
    }
    let last = h.index_select(&Tensor::new(last.as_slice(), first.device())?, 1)?;
    let head_rows: Vec<(&Arc<dyn Lin>, usize)> = heads.iter().map(|l| (l, 1)).collect();
    let logits = first.cap_logits(run_rows(&head_rows, &last)?)?.squeeze(0)?;
    // One number a row leaves the device when all is well; a row with NaN or infinity is described alone.
    let h_sums = last.squeeze(0)?.sum(D::Minus1)?.to_vec1::<f32>()?;
    let l_sums = logits.sum(D::Minus1)?.to_vec1::<f32>()?;
    let mut out: Vec<Option<Result<Tensor>>> = (0..rows.len()).map(|_| None).collect();
    for (k, &i) in order.iter().enumerate() {
        let row = || -> Result<Tensor> {
            let position = positions[k];
            if !h_sums[k].is_finite() {
                ensure_finite(&last.squeeze(0)?.get(k)?, "hidden state", position)?;
            }
            let l = logits.get(k)?;
            if !l_sums[k].is_finite() {
                ensure_finite(&l, "logits", position)?;
            }
            Ok(l)
        };
        out[i] = Some(row());
    }
    Ok(out.into_iter().map(|r| r.unwrap_or_else(|| Err(LocalError::Run("a row was not computed".into())))).collect())
}
