//! One decoder layer of the host step, forward (keeping what the backward reads) and backward, for every
//! family the decoder runs: the same block as `decoder/mod.rs` — norm → q/k/v → q/k norm → rope → attention
//! → o → post-norm → residual → norm → gate/up → activation → down → post-norm → residual.

use tunebench_kernels::attention_grad::{self as attn, Shape};
use tunebench_kernels::ops::{self, Act, Pairs};
use tunebench_kernels::pool::Pool;

use super::linear::{self, Linear, Pair, PairGrad};
use crate::engine::local::Projections;

/// A layer's frozen weights on the host.
pub struct Layer {
    /// In the family's module order.
    pub lins: Vec<Linear>,
    pub attn_norm: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    pub post_attn_norm: Option<Vec<f32>>,
    pub post_ffn_norm: Option<Vec<f32>>,
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    pub window: Option<usize>,
}

/// What one pass shares across layers.
pub struct Pass<'a> {
    pub pool: &'a Pool,
    pub pairs: &'a [Pair],
    /// `(first row, len)` per sequence.
    pub spans: &'a [(usize, usize)],
    pub eps: f32,
    pub projections: Projections,
    pub act: Act,
    pub rope_pairs: Pairs,
    pub attn: Shape,
    pub hidden: usize,
    pub ffn: usize,
}

/// A layer's rope per sequence: `(cos, sin, −sin)` tables `[positions, dims/2]` and the rotated dims.
pub type Rope<'a> = Option<(Vec<(&'a [f32], &'a [f32], &'a [f32])>, usize)>;

/// What the forward keeps for the backward.
pub struct Saved {
    x_in: Vec<f32>,
    h1: Vec<f32>,
    /// q and k before their norm (families with q/k norms).
    qk_pre: Option<(Vec<f32>, Vec<f32>)>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    probs: Vec<f32>,
    att: Vec<f32>,
    o_pre: Option<Vec<f32>>,
    x_mid: Vec<f32>,
    h2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
    down_pre: Option<Vec<f32>>,
    /// `x Aᵀ` per module (family order), where adapted.
    u: Vec<Option<Vec<f32>>>,
}

/// A post-norm (Gemma's, on a block's output before the residual add) in place; returns its input for the
/// backward, or None where the family has none.
fn post_norm(w: &Option<Vec<f32>>, y: &mut [f32], eps: f32) -> Option<Vec<f32>> {
    let w = w.as_ref()?;
    let pre = y.to_vec();
    ops::rms_norm_in_place(y, w, eps);
    Some(pre)
}

/// The gradient at a post-norm's input from `dy` at its output (`dy` itself where there is none).
fn post_norm_back(pool: &Pool, w: &Option<Vec<f32>>, pre: Option<&[f32]>, dy: &[f32], eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; dy.len()];
    match (w, pre) {
        (Some(w), Some(pre)) => linear::norm_back(pool, pre, w, eps, dy, &mut out, false),
        _ => out.copy_from_slice(dy),
    }
    out
}

/// Applies each sequence's rope (or its inverse) to every row of `x` (rows of `heads · head_dim`).
fn rotate(x: &mut [f32], spans: &[(usize, usize)], rope: &Rope<'_>, hd: usize, pairs: Pairs, inverse: bool) {
    let Some((tables, dims)) = rope else { return };
    let (width, half) = (x.len() / spans.iter().map(|s| s.1).sum::<usize>().max(1), dims / 2);
    for (&(first, n), &(cos, sin, neg)) in spans.iter().zip(tables) {
        for t in 0..n {
            let row = &mut x[(first + t) * width..(first + t + 1) * width];
            let s = if inverse { neg } else { sin };
            ops::rope(row, hd, *dims, &cos[t * half..(t + 1) * half], &s[t * half..(t + 1) * half], pairs);
        }
    }
}

impl Layer {
    /// `x [rows, hidden]` → the layer's output, in place; returns what the backward needs.
    pub fn forward(&self, p: &Pass<'_>, rope: &Rope<'_>, x: &mut [f32]) -> Saved {
        let (pool, d, f) = (p.pool, p.hidden, p.ffn);
        let n = x.len() / d;
        let (hd, nq, nkv) = (p.attn.head_dim, p.attn.heads * p.attn.head_dim, p.attn.kv_heads * p.attn.head_dim);
        let mut u: Vec<Option<Vec<f32>>> = (0..self.lins.len()).map(|_| None).collect();
        let x_in = x.to_vec();
        let mut h1 = vec![0f32; n * d];
        linear::norm(pool, x, &self.attn_norm, p.eps, &mut h1);
        let (mut q, mut k, mut v) = (vec![0f32; n * nq], vec![0f32; n * nkv], vec![0f32; n * nkv]);
        let (o, gate_m, down) = match p.projections {
            Projections::Separate => {
                for (m, out) in [&mut q, &mut k, &mut v].into_iter().enumerate() {
                    u[m] = self.lins[m].forward(pool, p.pairs, &h1, n, out);
                }
                (3, 4, 6)
            }
            Projections::Fused => {
                let w = nq + 2 * nkv;
                let mut qkv = vec![0f32; n * w];
                u[0] = self.lins[0].forward(pool, p.pairs, &h1, n, &mut qkv);
                for (t, row) in qkv.chunks_exact(w).enumerate() {
                    q[t * nq..(t + 1) * nq].copy_from_slice(&row[..nq]);
                    k[t * nkv..(t + 1) * nkv].copy_from_slice(&row[nq..nq + nkv]);
                    v[t * nkv..(t + 1) * nkv].copy_from_slice(&row[nq + nkv..]);
                }
                (1, 2, 3)
            }
        };
        let qk_pre = self.qk_norm.as_ref().map(|(qn, kn)| {
            let pre = (q.clone(), k.clone());
            ops::rms_norm_in_place(&mut q, qn, p.eps);
            ops::rms_norm_in_place(&mut k, kn, p.eps);
            pre
        });
        rotate(&mut q, p.spans, rope, hd, p.rope_pairs, false);
        rotate(&mut k, p.spans, rope, hd, p.rope_pairs, false);
        let shape = Shape { window: self.window, ..p.attn };
        let mut probs = vec![0f32; attn::probs_len(&shape, p.spans)];
        let mut att = vec![0f32; n * nq];
        attn::forward(pool, &shape, p.spans, &q, &k, &v, &mut probs, &mut att);
        let mut y = vec![0f32; n * d];
        u[o] = self.lins[o].forward(pool, p.pairs, &att, n, &mut y);
        let o_pre = post_norm(&self.post_attn_norm, &mut y, p.eps);
        ops::add(x, &y);
        let x_mid = x.to_vec();
        let mut h2 = vec![0f32; n * d];
        linear::norm(pool, x, &self.ffn_norm, p.eps, &mut h2);
        let (mut gate, mut up) = (vec![0f32; n * f], vec![0f32; n * f]);
        match p.projections {
            Projections::Separate => {
                u[gate_m] = self.lins[gate_m].forward(pool, p.pairs, &h2, n, &mut gate);
                u[gate_m + 1] = self.lins[gate_m + 1].forward(pool, p.pairs, &h2, n, &mut up);
            }
            Projections::Fused => {
                let mut gu = vec![0f32; n * 2 * f];
                u[gate_m] = self.lins[gate_m].forward(pool, p.pairs, &h2, n, &mut gu);
                for (t, row) in gu.chunks_exact(2 * f).enumerate() {
                    gate[t * f..(t + 1) * f].copy_from_slice(&row[..f]);
                    up[t * f..(t + 1) * f].copy_from_slice(&row[f..]);
                }
            }
        }
        let mut act = gate.clone();
        linear::gated(pool, p.act, &mut act, &up, f);
        u[down] = self.lins[down].forward(pool, p.pairs, &act, n, &mut y);
        let down_pre = post_norm(&self.post_ffn_norm, &mut y, p.eps);
        ops::add(x, &y);
        Saved { x_in, h1, qk_pre, q, k, v, probs, att, o_pre, x_mid, h2, gate, up, act, down_pre, u }
    }

    /// From `dx`, the gradient of the layer's output, to that of its input (in place; not computed when
    /// `need_dx` is false: the first layer's input is the frozen embeddings); the pairs' gradients are added
    /// to `grads`.
    pub fn backward(
        &self,
        p: &Pass<'_>,
        rope: &Rope<'_>,
        s: Saved,
        dx: &mut [f32],
        grads: &mut [PairGrad],
        need_dx: bool,
    ) {
        let (pool, d, f) = (p.pool, p.hidden, p.ffn);
        let n = dx.len() / d;
        let (hd, nq, nkv) = (p.attn.head_dim, p.attn.heads * p.attn.head_dim, p.attn.kv_heads * p.attn.head_dim);
        let Saved { x_in, h1, qk_pre, mut q, k, v, probs, att, o_pre, x_mid, h2, mut gate, mut up, act, down_pre, u } =
            s;
        let (o, gate_m, down) = match p.projections {
            Projections::Separate => (3, 4, 6),
            Projections::Fused => (1, 2, 3),
        };
        let back = |m: usize, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>, acc: bool, grads: &mut [PairGrad]| {
            self.lins[m].backward(pool, p.pairs, grads, x, u[m].as_deref(), dy, n, dx, acc);
        };
        // The MLP.
        let dy = post_norm_back(pool, &self.post_ffn_norm, down_pre.as_deref(), dx, p.eps);
        let mut d_act = vec![0f32; n * f];
        back(down, &act, &dy, Some(&mut d_act), false, grads);
        linear::gated_back(pool, p.act, &mut gate, &mut up, &d_act, f);
        let mut dh = vec![0f32; n * d];
        match p.projections {
            Projections::Separate => {
                back(gate_m, &h2, &gate, Some(&mut dh), false, grads);
                back(gate_m + 1, &h2, &up, Some(&mut dh), true, grads);
            }
            Projections::Fused => {
                let gu: Vec<f32> =
                    gate.chunks_exact(f).zip(up.chunks_exact(f)).flat_map(|(g, u)| [g, u].concat()).collect();
                back(gate_m, &h2, &gu, Some(&mut dh), false, grads);
            }
        }
        linear::norm_back(pool, &x_mid, &self.ffn_norm, p.eps, &dh, dx, true);
        // The attention.
        let dy = post_norm_back(pool, &self.post_attn_norm, o_pre.as_deref(), dx, p.eps);
        let mut d_att = vec![0f32; n * nq];
        back(o, &att, &dy, Some(&mut d_att), false, grads);
        let shape = Shape { window: self.window, ..p.attn };
        let (mut dq, mut dk, mut dv) = (vec![0f32; n * nq], vec![0f32; n * nkv], vec![0f32; n * nkv]);
        attn::backward(pool, &shape, p.spans, &q, &k, &v, &probs, &d_att, &mut dq, &mut dk, &mut dv);
        rotate(&mut dq, p.spans, rope, hd, p.rope_pairs, true);
        rotate(&mut dk, p.spans, rope, hd, p.rope_pairs, true);
        if let (Some((qn, kn)), Some((q_pre, k_pre))) = (&self.qk_norm, &qk_pre) {
            tunebench_kernels::grad::rms_norm_back(q_pre, qn, p.eps, &dq, &mut q, false);
            dq.copy_from_slice(&q);
            let mut t = vec![0f32; n * nkv];
            tunebench_kernels::grad::rms_norm_back(k_pre, kn, p.eps, &dk, &mut t, false);
            dk = t;
        }
        let mut dh1 = need_dx.then(|| vec![0f32; n * d]);
        match p.projections {
            Projections::Separate => {
                for (m, dy) in [&dq, &dk, &dv].into_iter().enumerate() {
                    back(m, &h1, dy, dh1.as_deref_mut(), m > 0, grads);
                }
            }
            Projections::Fused => {
                let w = nq + 2 * nkv;
                let mut dqkv = vec![0f32; n * w];
                for (t, row) in dqkv.chunks_exact_mut(w).enumerate() {
                    row[..nq].copy_from_slice(&dq[t * nq..(t + 1) * nq]);
                    row[nq..nq + nkv].copy_from_slice(&dk[t * nkv..(t + 1) * nkv]);
                    row[nq + nkv..].copy_from_slice(&dv[t * nkv..(t + 1) * nkv]);
                }
                back(0, &h1, &dqkv, dh1.as_deref_mut(), false, grads);
            }
        }
        if let Some(dh1) = dh1 {
            linear::norm_back(pool, &x_in, &self.attn_norm, p.eps, &dh1, dx, true);
        }
    }
}
