//! Attention over whole sequences for training's host step: the forward keeps every head's probabilities,
//! the backward turns the output's gradient into q's, k's and v's. Causal, optionally windowed and
//! soft-capped, grouped-query; the work is split over the pool by (sequence, KV head).

pub use crate::attention::Attention as Shape;
use crate::dense::{Ptr, View, matmul_raw};
use crate::pool::{Pool, split};

/// Length of the probabilities buffer for sequences of `spans` (`(first row, len)`): `heads · len²` each.
pub fn probs_len(s: &Shape, spans: &[(usize, usize)]) -> usize {
    spans.iter().map(|&(_, n)| s.heads * n * n).sum()
}

/// Head width, q and kv row widths, query heads per KV head, and the rows of `spans`.
fn dims(s: &Shape, spans: &[(usize, usize)]) -> (usize, usize, usize, usize, usize) {
    let rows = spans.iter().map(|x| x.1).sum();
    (s.head_dim, s.heads * s.head_dim, s.kv_heads * s.head_dim, s.heads / s.kv_heads, rows)
}

/// Visible keys `lo..=i` of query `i`.
fn first_key(s: &Shape, i: usize) -> usize {
    s.window.map_or(0, |w| (i + 1).saturating_sub(w))
}

/// Every (sequence, KV head) task with its offset in the probabilities buffer, run over the pool.
fn tasks(pool: &Pool, s: &Shape, spans: &[(usize, usize)], f: &(dyn Fn(usize, usize, usize) + Sync)) {
    let mut offs = Vec::with_capacity(spans.len());
    let mut off = 0;
    for &(_, n) in spans {
        offs.push(off);
        off += s.heads * n * n;
    }
    let all: Vec<(usize, usize)> = (0..spans.len()).flat_map(|q| (0..s.kv_heads).map(move |g| (q, g))).collect();
    pool.run(&|p, parts| {
        for &(q, g) in &all[split(all.len(), p, parts, 1)] {
            f(q, g, offs[q]);
        }
    });
}

/// `out [N, heads·hd]` = softmax(scale·q kᵀ (capped, masked)) v per sequence and head, from q `[N, heads·hd]`
/// (roped), k and v `[N, kv_heads·hd]`; each head's probabilities `[len, len]` saved in `probs`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    pool: &Pool,
    s: &Shape,
    spans: &[(usize, usize)],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &mut [f32],
    out: &mut [f32],
) {
    let (hd, nq, nkv, rep, rows) = dims(s, spans);
    assert!(probs.len() >= probs_len(s, spans) && out.len() >= rows * nq, "attention: buffers too short");
    let (pp, po) = (Ptr::of(probs), Ptr::of(out));
    tasks(pool, s, spans, &|seq, g, off| {
        let (first, n) = spans[seq];
        let kg = View { data: &k[first * nkv + g * hd..], rs: nkv, cs: 1 };
        let vg = View { data: &v[first * nkv + g * hd..], rs: nkv, cs: 1 };
        for h in g * rep..(g + 1) * rep {
            let qh = View { data: &q[first * nq + h * hd..], rs: nq, cs: 1 };
            let at = off + h * n * n;
            // SAFETY: this task alone writes head h's probabilities of this sequence and its columns of out.
            unsafe {
                matmul_raw(pp.add(at), 0..n, 0..n, hd, n, qh, kg.t(), s.scale, false);
                for i in 0..n {
                    softmax_row(s, i, pp.slice(at + i * n..at + (i + 1) * n));
                }
                let p = View::rows(std::slice::from_raw_parts(pp.add(at).0, n * n), n);
                matmul_raw(po.add(first * nq + h * hd), 0..n, 0..hd, n, nq, p, vg, 1.0, false);
            }
        }
    });
}

/// Row `i` of the scores in place → its probabilities (cap, causal/window mask, softmax).
fn softmax_row(s: &Shape, i: usize, row: &mut [f32]) {
    let lo = first_key(s, i);
    let seen = &mut row[lo..=i];
    if let Some(cap) = s.cap {
        crate::ops::soft_cap(seen, cap);
    }
    let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum = crate::simd::exp_sub_sum(seen, max);
    seen.iter_mut().for_each(|p| *p /= sum);
    row[..lo].fill(0.0);
    row[i + 1..].fill(0.0);
}

/// The gradients `dq [N, heads·hd]`, `dk` and `dv [N, kv_heads·hd]` (overwritten) from the output's `dout`,
/// with the forward's inputs and saved probabilities.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    pool: &Pool,
    s: &Shape,
    spans: &[(usize, usize)],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let (hd, nq, nkv, rep, rows) = dims(s, spans);
    assert!(dq.len() >= rows * nq && dk.len() >= rows * nkv && dv.len() >= rows * nkv, "attention: buffers too short");
    let (pq, pk, pv) = (Ptr::of(dq), Ptr::of(dk), Ptr::of(dv));
    tasks(pool, s, spans, &|seq, g, off| {
        let (first, n) = spans[seq];
        let kg = View { data: &k[first * nkv + g * hd..], rs: nkv, cs: 1 };
        let vg = View { data: &v[first * nkv + g * hd..], rs: nkv, cs: 1 };
        let mut ds = vec![0f32; n * n];
        let mut scores = if s.cap.is_some() { vec![0f32; n * n] } else { Vec::new() };
        let (kvo, dsp) = (first * nkv + g * hd, Ptr::of(&mut ds));
        for (j, h) in (g * rep..(g + 1) * rep).enumerate() {
            let qh = View { data: &q[first * nq + h * hd..], rs: nq, cs: 1 };
            let doh = View { data: &dout[first * nq + h * hd..], rs: nq, cs: 1 };
            let p = &probs[off + h * n * n..off + (h + 1) * n * n];
            // SAFETY: this task alone writes head h's columns of dq and KV head g's columns of dk and dv for
            // this sequence; ds and scores are its own.
            unsafe {
                matmul_raw(dsp, 0..n, 0..n, hd, n, doh, vg.t(), 1.0, false);
                matmul_raw(pv.add(kvo), 0..n, 0..hd, n, nkv, View::rows(p, n).t(), doh, 1.0, j > 0);
                if let Some(cap) = s.cap {
                    matmul_raw(Ptr::of(&mut scores), 0..n, 0..n, hd, n, qh, kg.t(), s.scale, false);
                    scores.iter_mut().for_each(|x| *x = (*x / cap).tanh());
                }
            }
            for i in 0..n {
                let (pr, dr) = (&p[i * n..(i + 1) * n], &mut ds[i * n..(i + 1) * n]);
                let dot = crate::simd::dot(&pr[..=i], &dr[..=i]);
                for (d, pv) in dr.iter_mut().zip(pr) {
                    *d = pv * (*d - dot);
                }
                if s.cap.is_some() {
                    for (d, t) in dr.iter_mut().zip(&scores[i * n..(i + 1) * n]) {
                        *d *= 1.0 - t * t;
                    }
                }
            }
            let dsv = View::rows(&ds, n);
            // SAFETY: as above.
            unsafe {
                matmul_raw(pq.add(first * nq + h * hd), 0..n, 0..hd, n, nq, dsv, kg, s.scale, false);
                matmul_raw(pk.add(kvo), 0..n, 0..hd, n, nkv, dsv.t(), qh, s.scale, j > 0);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The loss `Σ out·w` for one sequence, computed by plain loops.
    fn loss(s: &Shape, n: usize, q: &[f32], k: &[f32], v: &[f32], w: &[f32]) -> f64 {
        let (hd, rep) = (s.head_dim, s.heads / s.kv_heads);
        let (nq, nkv) = (s.heads * hd, s.kv_heads * hd);
        let mut total = 0f64;
        for h in 0..s.heads {
            let g = h / rep;
            for i in 0..n {
                let lo = first_key(s, i);
                let mut sc: Vec<f64> = (lo..=i)
                    .map(|j| {
                        let d: f64 = (0..hd).map(|c| (q[i * nq + h * hd + c] * k[j * nkv + g * hd + c]) as f64).sum();
                        let d = d * s.scale as f64;
                        s.cap.map_or(d, |c| (d / c as f64).tanh() * c as f64)
                    })
                    .collect();
                let max = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                sc.iter_mut().for_each(|x| *x = (*x - max).exp());
                let sum: f64 = sc.iter().sum();
                for c in 0..hd {
                    let o: f64 = (lo..=i).zip(&sc).map(|(j, p)| p / sum * v[j * nkv + g * hd + c] as f64).sum();
                    total += o * w[i * nq + h * hd + c] as f64;
                }
            }
        }
        total
    }

    #[test]
    fn gradients_match_finite_differences_with_groups_windows_and_caps() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for (cap, window) in [(None, None), (Some(1.5), Some(3))] {
            let s = Shape { heads: 4, kv_heads: 2, head_dim: 3, scale: 0.7, cap, window };
            let spans = [(0, 5), (5, 2)];
            let rows = 7;
            let (nq, nkv) = (12, 6);
            let mut r = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0..1.0)).collect() };
            let (q, k, v, w) = (r(rows * nq), r(rows * nkv), r(rows * nkv), r(rows * nq));
            let pool = Pool::new(2);
            let mut probs = vec![0.0; probs_len(&s, &spans)];
            let mut out = vec![0.0; rows * nq];
            forward(&pool, &s, &spans, &q, &k, &v, &mut probs, &mut out);
            let total = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
                spans
                    .iter()
                    .map(|&(f, n)| {
                        let sl = |t: &[f32], wd: usize| t[f * wd..(f + n) * wd].to_vec();
                        loss(&s, n, &sl(q, nq), &sl(k, nkv), &sl(v, nkv), &sl(&w, nq))
                    })
                    .sum()
            };
            let got: f64 = out.iter().zip(&w).map(|(a, b)| (a * b) as f64).sum();
            assert!((got - total(&q, &k, &v)).abs() < 1e-4, "forward: {got} vs {}", total(&q, &k, &v));
            let (mut dq, mut dk, mut dv) = (vec![9.0; rows * nq], vec![9.0; rows * nkv], vec![9.0; rows * nkv]);
            backward(&pool, &s, &spans, &q, &k, &v, &probs, &w, &mut dq, &mut dk, &mut dv);
            let h = 1e-3;
            for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
                for i in 0..grad.len() {
                    let bump = |d: f32| {
                        let (mut q2, mut k2, mut v2) = (q.clone(), k.clone(), v.clone());
                        [&mut q2, &mut k2, &mut v2][which][i] += d;
                        total(&q2, &k2, &v2)
                    };
                    let num = (bump(h) - bump(-h)) / (2.0 * h as f64);
                    let g = grad[i] as f64;
                    assert!((num - g).abs() < 1e-3 * (1.0 + num.abs()), "cap {cap:?}: grad {which}[{i}]: {num} vs {g}");
                }
            }
        }
    }
}
