//! The decoder's forward pass on the host, over every family the decoder runs (`decoder/mod.rs` is the
//! reference it reproduces): embeddings, per layer norm → q/k/v → q/k norm → rope → KV cache → attention →
//! o → post-norm → residual → norm → gate/up → activation → down → post-norm → residual, then the final norm,
//! the output head and its soft-cap, on raw buffers with tunebench-kernels.

use std::sync::Arc;

use tunebench_kernels::attention::{self, Attention};
use tunebench_kernels::matmul::{self, Linear};
use tunebench_kernels::ops::{self, Act, Pairs};
use tunebench_kernels::pool;

use super::base::HostBase;
use super::cache::{HostCache, fit};
use crate::engine::local::decoder::{Activation, Family, Norm, Projections, QkNorm, RopePairs, SoftCaps};
use crate::engine::local::weights::Config;
use crate::engine::local::{Lin, LocalError, Result};

/// The layers a forward reads: per layer in the family's module order, then the output head.
pub struct Layers<'a> {
    pub layers: &'a [Vec<Arc<dyn Lin>>],
    pub lm_head: &'a dyn Lin,
}

fn host<'a>(l: &'a Arc<dyn Lin>, what: &str) -> Result<Linear<'a>> {
    l.host().ok_or_else(|| LocalError::Run(format!("{what} has no host form")))
}

fn run_err(e: String) -> LocalError {
    LocalError::Run(e)
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
    let Family { name: _, norm, bias: _, qk_norm, activation, soft_caps, rope_pairs, projections } = cfg.family;
    let Norm::Rms = norm;
    let (n, d, hd) = (ids.len(), cfg.hidden, cfg.head_dim);
    let (nq, nkv) = (cfg.heads * hd, cfg.kv_heads * hd);
    let eps = cfg.rms_eps as f32;
    if n == 0 {
        return Err(LocalError::Run("no tokens to run".into()));
    }
    if pos + n > cache.capacity {
        return Err(LocalError::Run(format!(
            "KV cache full: {} positions allocated, {} needed",
            cache.capacity,
            pos + n
        )));
    }
    if let Some(id) = ids.iter().find(|&&id| id as usize >= base.embed.rows) {
        return Err(LocalError::Run(format!("token id {id} is not below the vocabulary size {}", base.embed.rows)));
    }
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
    let seq_len = cache.capacity.max(pos + n);
    let (capacity, layers_k, layers_v) = (cache.capacity, &mut cache.k, &mut cache.v);
    let b = &mut cache.bufs;
    let x = fit(&mut b.x, n * d);
    for (row, &id) in x.chunks_exact_mut(d).zip(ids) {
        base.embed.dequantize_row(id as usize, row);
        if let Some(s) = cfg.embed_scale {
            ops::scale(row, s);
        }
    }
    for (i, ((lins_i, hl), plan)) in lins.layers.iter().zip(&base.layers).zip(&cfg.layer_plan).enumerate() {
        let h = fit(&mut b.h, n * d);
        ops::rms_norm(x, &hl.attn_norm, eps, h);
        let (q, k, v) = (fit(&mut b.q, n * nq), fit(&mut b.k, n * nkv), fit(&mut b.v, n * nkv));
        match projections {
            Projections::Separate => {
                let l = [host(&lins_i[0], "q_proj")?, host(&lins_i[1], "k_proj")?, host(&lins_i[2], "v_proj")?];
                matmul::run(pool, &mut b.mm, h, n, &l, &mut [&mut *q, &mut *k, &mut *v]).map_err(run_err)?;
            }
            Projections::Fused => {
                let qkv = fit(&mut b.att, n * (nq + 2 * nkv));
                let l = [host(&lins_i[0], "qkv_proj")?];
                matmul::run(pool, &mut b.mm, h, n, &l, &mut [&mut *qkv]).map_err(run_err)?;
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
        if let Some(r) = plan.rope {
            let r = cfg.rope_switch.map_or(r, |s| s.table(r, seq_len));
            let (cos, sin) = &base.ropes[r];
            let dims = cfg.ropes[r].dims;
            let half = dims / 2;
            if (pos + n) * half > cos.len() {
                return Err(LocalError::Run(format!("position {} is past the rope table", pos + n - 1)));
            }
            for t in 0..n {
                let p = pos + t;
                let (c, s) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
                ops::rope(&mut q[t * nq..(t + 1) * nq], hd, dims, c, s, pairs);
                ops::rope(&mut k[t * nkv..(t + 1) * nkv], hd, dims, c, s, pairs);
            }
        }
        attention::store(&mut layers_k[i], cfg.kv_heads, hd, capacity, pos, k);
        attention::store(&mut layers_v[i], cfg.kv_heads, hd, capacity, pos, v);
        let a = Attention {
            heads: cfg.heads,
            kv_heads: cfg.kv_heads,
            head_dim: hd,
            scale: cfg.attn_scale as f32,
            cap: attn_cap,
            window: plan.window,
        };
        let att = fit(&mut b.att, n * nq);
        let scores = fit(&mut b.scores, pool.parts() * (pos + n));
        let kv = attention::Cache { k: &layers_k[i], v: &layers_v[i], capacity };
        attention::attend(pool, &a, q, kv, pos, n, att, scores).map_err(run_err)?;
        let (o, down) = match projections {
            Projections::Separate => (&lins_i[3], &lins_i[6]),
            Projections::Fused => (&lins_i[1], &lins_i[3]),
        };
        let y = fit(&mut b.y, n * d);
        matmul::run(pool, &mut b.mm, att, n, &[host(o, "o_proj")?], &mut [&mut *y]).map_err(run_err)?;
        if let Some(w) = &hl.post_attn_norm {
            ops::rms_norm_in_place(y, w, eps);
        }
        ops::add(x, y);
        ops::rms_norm(x, &hl.ffn_norm, eps, h);
        let ffn = match projections {
            Projections::Separate => lins_i[4].host().map_or(0, |l| l.w.rows),
            Projections::Fused => lins_i[2].host().map_or(0, |l| l.w.rows / 2),
        };
        let gate = fit(&mut b.gate, n * ffn);
        let up = fit(&mut b.up, n * ffn);
        match projections {
            Projections::Separate => {
                let l = [host(&lins_i[4], "gate_proj")?, host(&lins_i[5], "up_proj")?];
                matmul::run(pool, &mut b.mm, h, n, &l, &mut [&mut *gate, &mut *up]).map_err(run_err)?;
            }
            Projections::Fused => {
                let gu = fit(&mut b.k, n * 2 * ffn);
                let l = [host(&lins_i[2], "gate_up_proj")?];
                matmul::run(pool, &mut b.mm, h, n, &l, &mut [&mut *gu]).map_err(run_err)?;
                for t in 0..n {
                    gate[t * ffn..(t + 1) * ffn].copy_from_slice(&gu[2 * t * ffn..(2 * t + 1) * ffn]);
                    up[t * ffn..(t + 1) * ffn].copy_from_slice(&gu[(2 * t + 1) * ffn..(2 * t + 2) * ffn]);
                }
            }
        }
        ops::gated(act, gate, up);
        matmul::run(pool, &mut b.mm, gate, n, &[host(down, "down_proj")?], &mut [&mut *y]).map_err(run_err)?;
        if let Some(w) = &hl.post_ffn_norm {
            ops::rms_norm_in_place(y, w, eps);
        }
        ops::add(x, y);
    }
    let rows = if all { n } else { 1 };
    let last = &x[(n - rows) * d..];
    let h = fit(&mut b.h, rows * d);
    ops::rms_norm(last, &base.norm, eps, h);
    let head = lins.lm_head.host().ok_or_else(|| LocalError::Run("lm_head has no host form".into()))?;
    let logits = fit(&mut b.logits, rows * head.w.rows);
    matmul::run(pool, &mut b.mm, h, rows, &[head], &mut [&mut *logits]).map_err(run_err)?;
    if let Some(c) = logit_cap {
        ops::soft_cap(logits, c);
    }
    Ok(rows * head.w.rows)
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
