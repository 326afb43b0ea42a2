//! The decoder's forward pass on the host, over every family the decoder runs (`decoder/mod.rs` is the
//! reference it reproduces): embeddings, per layer norm → q/k/v → q/k norm → rope → KV cache → attention →
//! o → post-norm → residual → norm → gate/up → activation → down → post-norm → residual, then the final norm,
//! the output head and its soft-cap, on raw buffers with tunebench-kernels. One pass runs a batch: the rows of
//! every lane on one base (each its own tokens, positions, KV cache and adapter), the base weights read once.

use std::sync::Arc;

use tunebench_kernels::attention::{self, Attention};
use tunebench_kernels::matmul::{self, Linear, MAX_LINEARS, MAX_ROW_LORAS, RowLora, RowLoras};
use tunebench_kernels::ops::{self, Act, Pairs};
use tunebench_kernels::pool;

use super::base::HostBase;
use super::cache::{Bufs, HostCache, KvLayer, fit};
use crate::engine::local::decoder::{Activation, Family, Norm, Projections, QkNorm, RopePairs, SoftCaps};
use crate::engine::local::weights::Config;
use crate::engine::local::{Lin, LocalError, Result};

/// The layers a forward reads: per layer in the family's module order, then the output head.
#[derive(Clone, Copy)]
pub struct Layers<'a> {
    pub layers: &'a [Vec<Arc<dyn Lin>>],
    pub lm_head: &'a dyn Lin,
}

fn run_err(e: String) -> LocalError {
    LocalError::Run(e)
}

/// The most lanes one batched pass takes (each adds a LoRA per linear to a call).
pub const MAX_BATCH: usize = MAX_ROW_LORAS / MAX_LINEARS;

/// One lane's part of a batched pass: its layers (its adapter's view of the shared base), the tokens it runs
/// at positions `pos..`, its KV cache, and whether every position's logits are wanted or the last one's.
pub struct Row<'a> {
    pub lins: Layers<'a>,
    pub ids: &'a [u32],
    pub pos: usize,
    pub cache: &'a mut HostCache,
    pub all: bool,
}

/// Runs `ids` at positions `pos..`, leaving the final-normed hidden rows' logits in the cache's scratch
/// (`logits`): every position's (`all`) or the last one's, `[rows, vocab]`; returns their count.
pub fn forward(
    cfg: &Config,
    base: &HostBase,
    lins: &Layers<'_>,
    ids: &[u32],
    pos: usize,
    cache: &mut HostCache,
    all: bool,
) -> Result<usize> {
    let mut bufs = std::mem::take(&mut cache.bufs);
    let done = forward_batch(cfg, base, &mut bufs, &mut [Row { lins: *lins, ids, pos, cache, all }]);
    cache.bufs = bufs;
    done.map(|spans| spans[0].1)
}

/// One pass over every row of `rows` in `bufs`: each row's logits (every position's or the last's) land in
/// `bufs.logits`, the rows' one after another; returns each row's `(start, len)` there. A row's numbers are
/// those of its lane run alone (the kernels' results do not depend on the other rows).
pub fn forward_batch(cfg: &Config, base: &HostBase, b: &mut Bufs, rows: &mut [Row<'_>]) -> Result<Vec<(usize, usize)>> {
    let Family { name: _, norm, bias: _, qk_norm, activation, soft_caps, rope_pairs, projections } = cfg.family;
    let Norm::Rms = norm;
    let (d, hd) = (cfg.hidden, cfg.head_dim);
    let (nq, nkv) = (cfg.heads * hd, cfg.kv_heads * hd);
    let eps = cfg.rms_eps as f32;
    if rows.is_empty() || rows.len() > MAX_BATCH {
        return Err(LocalError::Run(format!("a batch of {} lanes (1..={MAX_BATCH})", rows.len())));
    }
    // Each row's span of the pass's rows.
    let mut spans = Vec::with_capacity(rows.len());
    for r in rows.iter() {
        let n = r.ids.len();
        if n == 0 {
            return Err(LocalError::Run("no tokens to run".into()));
        }
        if r.pos + n > r.cache.capacity {
            return Err(LocalError::Run(format!(
                "KV cache full: {} positions allocated, {} needed",
                r.cache.capacity,
                r.pos + n
            )));
        }
        if let Some(id) = r.ids.iter().find(|&&id| id as usize >= base.embed.rows) {
            return Err(LocalError::Run(format!("token id {id} is not below the vocabulary size {}", base.embed.rows)));
        }
        spans.push((spans.last().map_or(0, |&(f, n)| f + n), n));
    }
    let n: usize = spans.iter().map(|s| s.1).sum();
    let pool = pool::global();
    let pairs = match rope_pairs {
        RopePairs::Interleaved => Pairs::Interleaved,
        RopePairs::Halves => Pairs::Halves,
    };
    let act = match activation {
        Activation::Silu => Act::Silu,
        Activation::GeluTanh => Act::GeluTanh,
    };
    let (attn_cap, logit_cap) = match soft_caps {
        SoftCaps::Tanh { attention, logits } => (attention.map(|c| c.0), logits.map(|c| c.0)),
        SoftCaps::None => (None, None),
    };
    let x = fit(&mut b.x, n * d);
    for (r, &(first, len)) in rows.iter().zip(&spans) {
        for (row, &id) in x[first * d..(first + len) * d].chunks_exact_mut(d).zip(r.ids) {
            base.embed.dequantize_row(id as usize, row);
            if let Some(s) = cfg.embed_scale {
                ops::scale(row, s);
            }
        }
    }
    let layers: Vec<Layers<'_>> = rows.iter().map(|r| r.lins).collect();
    let lin = |r: usize, i: usize, m: usize| -> &dyn Lin { &*layers[r].layers[i][m] };
    for (i, (hl, plan)) in base.layers.iter().zip(&cfg.layer_plan).enumerate() {
        let h = fit(&mut b.h, n * d);
        ops::rms_norm(x, &hl.attn_norm, eps, h);
        let (q, k, v) = (fit(&mut b.q, n * nq), fit(&mut b.k, n * nkv), fit(&mut b.v, n * nkv));
        match projections {
            Projections::Separate => {
                let pick = |r: usize, m: usize| lin(r, i, m);
                let names = ["q_proj", "k_proj", "v_proj"];
                project(pool, &mut b.mm, h, &spans, &pick, &names, &mut [&mut *q, &mut *k, &mut *v])?;
            }
            Projections::Fused => {
                let qkv = fit(&mut b.att, n * (nq + 2 * nkv));
                project(pool, &mut b.mm, h, &spans, &|r, _| lin(r, i, 0), &["qkv_proj"], &mut [&mut *qkv])?;
                for t in 0..n {
                    let row = &qkv[t * (nq + 2 * nkv)..(t + 1) * (nq + 2 * nkv)];
                    q[t * nq..(t + 1) * nq].copy_from_slice(&row[..nq]);
                    k[t * nkv..(t + 1) * nkv].copy_from_slice(&row[nq..nq + nkv]);
                    v[t * nkv..(t + 1) * nkv].copy_from_slice(&row[nq + nkv..]);
                }
            }
        }
        match (qk_norm, &hl.qk_norm) {
            (QkNorm::None, None) => {}
            (QkNorm::Rms, Some((qn, kn))) => {
                ops::rms_norm_in_place(q, qn, eps);
                ops::rms_norm_in_place(k, kn, eps);
            }
            _ => return Err(LocalError::Run(format!("layer {i}: q/k norm weights do not match the family"))),
        }
        let a = Attention {
            heads: cfg.heads,
            kv_heads: cfg.kv_heads,
            head_dim: hd,
            scale: cfg.attn_scale as f32,
            cap: attn_cap,
            window: plan.window,
        };
        let att = fit(&mut b.att, n * nq);
        for (r, &(first, len)) in rows.iter_mut().zip(&spans) {
            let (pos, cache) = (r.pos, &mut *r.cache);
            let q = &mut q[first * nq..(first + len) * nq];
            let (k, v) = (&mut k[first * nkv..(first + len) * nkv], &v[first * nkv..(first + len) * nkv]);
            if let Some(ri) = plan.rope {
                let ri = cfg.rope_switch.map_or(ri, |s| s.table(ri, cache.capacity.max(pos + len)));
                let (cos, sin) = &base.ropes[ri];
                let dims = cfg.ropes[ri].dims;
                let half = dims / 2;
                if (pos + len) * half > cos.len() {
                    return Err(LocalError::Run(format!("position {} is past the rope table", pos + len - 1)));
                }
                for t in 0..len {
                    let p = pos + t;
                    let (c, s) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
                    ops::rope(&mut q[t * nq..(t + 1) * nq], hd, dims, c, s, pairs);
                    ops::rope(&mut k[t * nkv..(t + 1) * nkv], hd, dims, c, s, pairs);
                }
            }
            let capacity = cache.capacity;
            for (layer, rows) in [(&mut cache.k[i], &*k), (&mut cache.v[i], v)] {
                match layer {
                    KvLayer::F32(c) => attention::store(c, cfg.kv_heads, hd, capacity, pos, rows),
                    KvLayer::F16(c) => attention::store_f16(c, cfg.kv_heads, hd, capacity, pos, rows),
                }
            }
        }
        // Every lane's queries in one pool call.
        let lanes: Vec<attention::Lane<'_>> = rows
            .iter()
            .map(|r| {
                let (k, v, capacity) = (r.cache.k[i].view(), r.cache.v[i].view(), r.cache.capacity);
                attention::Lane { cache: attention::Cache { k, v, capacity }, pos: r.pos, n: r.ids.len() }
            })
            .collect();
        let scores = fit(&mut b.scores, attention::scratch_len(&a, &lanes, pool.parts()));
        attention::attend_lanes(pool, &a, q, &lanes, att, scores).map_err(run_err)?;
        let (o, down) = match projections {
            Projections::Separate => (3, 6),
            Projections::Fused => (1, 3),
        };
        let y = fit(&mut b.y, n * d);
        project(pool, &mut b.mm, att, &spans, &|r, _| lin(r, i, o), &["o_proj"], &mut [&mut *y])?;
        if let Some(w) = &hl.post_attn_norm {
            ops::rms_norm_in_place(y, w, eps);
        }
        ops::add(x, y);
        ops::rms_norm(x, &hl.ffn_norm, eps, h);
        let ffn = match projections {
            Projections::Separate => lin(0, i, 4).host().map_or(0, |l| l.w.rows),
            Projections::Fused => lin(0, i, 2).host().map_or(0, |l| l.w.rows / 2),
        };
        let gate = fit(&mut b.gate, n * ffn);
        let up = fit(&mut b.up, n * ffn);
        match projections {
            Projections::Separate => {
                let pick = |r: usize, m: usize| lin(r, i, 4 + m);
                project(pool, &mut b.mm, h, &spans, &pick, &["gate_proj", "up_proj"], &mut [&mut *gate, &mut *up])?;
            }
            Projections::Fused => {
                let gu = fit(&mut b.k, n * 2 * ffn);
                project(pool, &mut b.mm, h, &spans, &|r, _| lin(r, i, 2), &["gate_up_proj"], &mut [&mut *gu])?;
                for t in 0..n {
                    gate[t * ffn..(t + 1) * ffn].copy_from_slice(&gu[2 * t * ffn..(2 * t + 1) * ffn]);
                    up[t * ffn..(t + 1) * ffn].copy_from_slice(&gu[(2 * t + 1) * ffn..(2 * t + 2) * ffn]);
                }
            }
        }
        ops::gated(act, gate, up);
        project(pool, &mut b.mm, gate, &spans, &|r, _| lin(r, i, down), &["down_proj"], &mut [&mut *y])?;
        if let Some(w) = &hl.post_ffn_norm {
            ops::rms_norm_in_place(y, w, eps);
        }
        ops::add(x, y);
    }
    // The head reads each row's last position, or every one.
    let mut heads: Vec<(usize, usize, usize)> = Vec::with_capacity(rows.len());
    for (r, &(first, len)) in rows.iter().zip(&spans) {
        let take = if r.all { len } else { 1 };
        heads.push((heads.last().map_or(0, |&(f, n, _)| f + n), take, first + len - take));
    }
    let out_rows: usize = heads.iter().map(|h| h.1).sum();
    let h = fit(&mut b.h, out_rows * d);
    for &(at, take, from) in &heads {
        ops::rms_norm(&x[from * d..(from + take) * d], &base.norm, eps, &mut h[at * d..(at + take) * d]);
    }
    let vocab = layers[0].lm_head.host().ok_or_else(|| LocalError::Run("lm_head has no host form".into()))?.w.rows;
    let logits = fit(&mut b.logits, out_rows * vocab);
    let out_spans: Vec<(usize, usize)> = heads.iter().map(|&(at, take, _)| (at, take)).collect();
    project(pool, &mut b.mm, h, &out_spans, &|r, _| layers[r].lm_head, &["lm_head"], &mut [&mut *logits])?;
    if let Some(c) = logit_cap {
        ops::soft_cap(logits, c);
    }
    Ok(out_spans.iter().map(|&(at, take)| (at * vocab, take * vocab)).collect())
}

/// `outs[m] = x · W_mᵀ` for the `m`-th linear `pick(r, m)` of every batch row `r` over its span of x's rows:
/// the base weights once for all rows, each row's LoRA on its own span.
fn project<'a>(
    pool: &pool::Pool,
    mm: &mut matmul::Scratch,
    x: &[f32],
    spans: &[(usize, usize)],
    pick: &dyn Fn(usize, usize) -> &'a dyn Lin,
    names: &[&str],
    outs: &mut [&mut [f32]],
) -> Result<()> {
    let mut loras = RowLoras::new();
    let mut base: [Option<Linear<'a>>; MAX_LINEARS] = [None; MAX_LINEARS];
    for (m, name) in names.iter().enumerate().take(MAX_LINEARS) {
        for (r, &(first, len)) in spans.iter().enumerate() {
            let l = pick(r, m).host().ok_or_else(|| LocalError::Run(format!("{name} has no host form")))?;
            match &base[m] {
                None => base[m] = Some(Linear { lora: None, ..l }),
                Some(b0) if !std::ptr::eq(b0.w, l.w) => {
                    return Err(LocalError::Run(format!("{name}: lanes batched in one pass must share the base")));
                }
                Some(_) => {}
            }
            if let Some(lora) = l.lora {
                if loras.len() == MAX_ROW_LORAS {
                    return Err(LocalError::Run("too many adapters in one pass".into()));
                }
                loras.push(RowLora { linear: m, lora, first, count: len });
            }
        }
    }
    let Some(first) = base[0] else { return Err(LocalError::Run("no weights to run".into())) };
    let lins: [Linear<'a>; MAX_LINEARS] = std::array::from_fn(|m| base[m].unwrap_or(first));
    let mut lanes = [0usize; MAX_BATCH];
    for (l, s) in lanes.iter_mut().zip(spans) {
        *l = s.1;
    }
    let lanes = &lanes[..spans.len().min(MAX_BATCH)];
    matmul::run_rows(pool, mm, x, lanes, &lins[..names.len().min(MAX_LINEARS)], &loras, outs).map_err(run_err)
}

/// The first `len` logits the last forward wrote.
pub fn logits(cache: &HostCache, len: usize) -> &[f32] {
    &cache.bufs.logits[..len]
}

/// The final-normed hidden row of the last position, as the forward left it in scratch (for the
/// non-finite check before the head).
pub fn last_hidden(cache: &HostCache, hidden: usize) -> &[f32] {
    &cache.bufs.h[..hidden]
}
