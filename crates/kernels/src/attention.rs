//! Attention of `n` new queries at positions `pos..` over one layer's host KV cache: grouped-query, causal,
//! an optional sliding window (a query sees itself and the `w − 1` keys before it, as transformers and
//! llama.cpp count it), a scale, an optional tanh soft-cap on the scores, softmax, and the weighted sum of
//! the values; parallel over heads × query rows.

use crate::pool::{Pool, split};
use crate::simd::{exp_sub_sum, scale_max};

#[path = "attention_rows.rs"]
mod rows;

/// The shape and rules of one layer's attention.
#[derive(Debug, Clone, Copy)]
pub struct Attention {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies q·k before the cap and the softmax.
    pub scale: f32,
    /// `c · tanh(s / c)` on the scores.
    pub cap: Option<f32>,
    /// Keys a query sees, itself included; None: every earlier key.
    pub window: Option<usize>,
}

/// One layer's keys and values, each `[kv_heads, capacity, head_dim]`.
#[derive(Clone, Copy)]
pub struct Cache<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub capacity: usize,
}

/// Writes `rows` (`[n, kv_heads · head_dim]`: n positions' keys or values) into one layer's cache
/// `[kv_heads, capacity, head_dim]` at positions `pos..pos + n`.
pub fn store(cache: &mut [f32], kv_heads: usize, head_dim: usize, capacity: usize, pos: usize, rows: &[f32]) {
    let width = kv_heads * head_dim;
    for (t, row) in rows.chunks_exact(width).enumerate() {
        for (h, src) in row.chunks_exact(head_dim).enumerate() {
            let at = (h * capacity + pos + t) * head_dim;
            cache[at..at + head_dim].copy_from_slice(src);
        }
    }
}

#[derive(Clone, Copy)]
struct Ptr(*mut f32);
// SAFETY: parts write disjoint ranges (their own query-head rows of `out`, their own slice of `scores`).
unsafe impl Send for Ptr {}
// SAFETY: as above.
unsafe impl Sync for Ptr {}

impl Ptr {
    /// A method rather than `.0`, so closures capture the whole (Sync) wrapper.
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// `out [n, heads · head_dim]` from `q [n, heads · head_dim]` (already rotated) and the cache, whose positions
/// `..pos + n` are written. `scores` is scratch of at least `pool.parts() × (pos + n)` values.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    pool: &Pool,
    a: &Attention,
    q: &[f32],
    cache: Cache<'_>,
    pos: usize,
    n: usize,
    out: &mut [f32],
    scores: &mut [f32],
) -> Result<(), String> {
    attend_lanes(pool, a, q, &[Lane { cache, pos, n }], out, scores)
}

/// One lane's part of a batched attention: its cache, and its `n` query rows at positions `pos..`.
#[derive(Clone, Copy)]
pub struct Lane<'a> {
    pub cache: Cache<'a>,
    pub pos: usize,
    pub n: usize,
}

/// `attend` for several lanes at once, their query rows one lane after another in `q` and `out`: one pool
/// call, its units every lane's (head, row) pairs. `scores` holds `pool.parts() ×` the longest lane's
/// `pos + n`. A lane's results are those of its own call.
pub fn attend_lanes(
    pool: &Pool,
    a: &Attention,
    q: &[f32],
    lanes: &[Lane<'_>],
    out: &mut [f32],
    scores: &mut [f32],
) -> Result<(), String> {
    let (hd, width) = (a.head_dim, a.heads * a.head_dim);
    let rows: usize = lanes.iter().map(|l| l.n).sum();
    let longest = lanes.iter().map(|l| l.pos + l.n).max().unwrap_or(0);
    let parts = pool.parts();
    if a.kv_heads == 0 || !a.heads.is_multiple_of(a.kv_heads) || q.len() != rows * width || out.len() != rows * width {
        return Err(format!(
            "attention: {} heads over {} kv heads, q {} and out {} for {rows} rows",
            a.heads,
            a.kv_heads,
            q.len(),
            out.len()
        ));
    }
    for l in lanes {
        let (total, kv_len) = (l.pos + l.n, a.kv_heads * l.cache.capacity * hd);
        if total > l.cache.capacity || l.cache.k.len() != kv_len || l.cache.v.len() != kv_len {
            return Err(format!("attention: {total} positions in a cache of {}", l.cache.capacity));
        }
    }
    if scores.len() < parts * longest {
        return Err(format!("attention: scratch of {} for {parts} parts of {longest}", scores.len()));
    }
    let rep = a.heads / a.kv_heads;
    let (out_p, scores_p) = (Ptr(out.as_mut_ptr()), Ptr(scores.as_mut_ptr()));
    pool.run(&|part, parts| {
        // SAFETY: each part owns its `longest`-long slice of scores (checked: scores holds parts × longest).
        let sc = unsafe { std::slice::from_raw_parts_mut(scores_p.at(part * longest), longest) };
        // Units run lane by lane, (head, row) within a lane; `first` is the lane's first row in q and out.
        let (mut lane, mut lane_units, mut first) = (0, 0, 0);
        for u in split(a.heads * rows, part, parts, 1) {
            while let Some(l) = lanes.get(lane)
                && u >= lane_units + a.heads * l.n
            {
                lane_units += a.heads * l.n;
                first += l.n;
                lane += 1;
            }
            let Some(&Lane { cache, pos, n }) = lanes.get(lane) else { return };
            let v = u - lane_units;
            let (h, i) = (v / n, v % n);
            let p = pos + i;
            let lo = a.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let row = (first + i) * width + h * hd;
            let qv = &q[row..row + hd];
            let base = (h / rep) * cache.capacity * hd;
            let seen = &mut sc[..p + 1 - lo];
            let (from, to) = (base + lo * hd, base + (p + 1) * hd);
            rows::dots(qv, &cache.k[from..to], hd, seen);
            let max = match a.cap {
                None => scale_max(seen, a.scale),
                Some(c) => seen.iter_mut().fold(f32::NEG_INFINITY, |max, s| {
                    *s = (*s * a.scale / c).tanh() * c;
                    max.max(*s)
                }),
            };
            let sum = exp_sub_sum(seen, max);
            // SAFETY: row first + i, head h of `out` belongs to this part alone (units are split disjointly).
            let o = unsafe { std::slice::from_raw_parts_mut(out_p.at(row), hd) };
            // The weights' sum divides the head_dim outputs, not every one of the (many more) weights.
            rows::weighted(seen, &cache.v[from..to], hd, o);
            for x in o.iter_mut() {
                *x /= sum;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Naive attention in f64, straight from the definition.
    fn naive(a: &Attention, q: &[f32], k: &[f32], v: &[f32], cap: usize, pos: usize, n: usize) -> Vec<f64> {
        let hd = a.head_dim;
        let mut out = vec![0f64; n * a.heads * hd];
        for i in 0..n {
            for h in 0..a.heads {
                let kvh = h / (a.heads / a.kv_heads);
                let p = pos + i;
                let seen: Vec<usize> = (0..=p).filter(|&j| a.window.is_none_or(|w| p - j < w)).collect();
                let scores: Vec<f64> = seen
                    .iter()
                    .map(|&j| {
                        let s: f64 = (0..hd)
                            .map(|d| f64::from(q[(i * a.heads + h) * hd + d]) * f64::from(k[(kvh * cap + j) * hd + d]))
                            .sum::<f64>()
                            * f64::from(a.scale);
                        a.cap.map_or(s, |c| (s / f64::from(c)).tanh() * f64::from(c))
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for (w, &j) in e.iter().zip(&seen) {
                    for d in 0..hd {
                        out[(i * a.heads + h) * hd + d] += w / sum * f64::from(v[(kvh * cap + j) * hd + d]);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn grouped_causal_windowed_capped_attention_matches_the_naive_one() {
        let pools = [Pool::new(1), Pool::new(2), Pool::new(3)];
        for pool in &pools {
            for (heads, kv_heads, hd) in [(9, 3, 64), (4, 4, 8), (2, 1, 6), (2, 1, 96), (4, 2, 128)] {
                for window in [None, Some(1), Some(3)] {
                    for cap in [None, Some(2.0)] {
                        for (pos, n) in [(0, 1), (0, 7), (5, 1), (5, 4)] {
                            let capacity = pos + n + 2;
                            let a = Attention { heads, kv_heads, head_dim: hd, scale: 0.4, cap, window };
                            let q = values(n * heads * hd, 1);
                            let k = values(kv_heads * capacity * hd, 2);
                            let v = values(kv_heads * capacity * hd, 3);
                            let mut out = vec![f32::NAN; n * heads * hd];
                            let mut scores = vec![0f32; pool.parts() * (pos + n)];
                            let cache = Cache { k: &k, v: &v, capacity };
                            attend(pool, &a, &q, cache, pos, n, &mut out, &mut scores).unwrap();
                            let want = naive(&a, &q, &k, &v, capacity, pos, n);
                            for (x, y) in out.iter().zip(&want) {
                                assert!((f64::from(*x) - y).abs() < 1e-5, "{a:?} pos {pos} n {n}: {x} vs {y}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lanes_in_one_call_get_the_bits_of_their_own_calls() {
        let pool = Pool::new(2);
        let a = Attention { heads: 9, kv_heads: 3, head_dim: 64, scale: 0.125, cap: None, window: None };
        let width = a.heads * a.head_dim;
        let shapes = [(37, 1, 40), (0, 9, 12), (5, 1, 7), (100, 3, 110)];
        let ks: Vec<Vec<f32>> =
            shapes.iter().enumerate().map(|(s, &(_, _, c))| values(3 * c * 64, s as u64 + 10)).collect();
        let vs: Vec<Vec<f32>> =
            shapes.iter().enumerate().map(|(s, &(_, _, c))| values(3 * c * 64, s as u64 + 20)).collect();
        let rows: usize = shapes.iter().map(|s| s.1).sum();
        let q = values(rows * width, 7);
        let lanes: Vec<Lane<'_>> = shapes
            .iter()
            .zip(ks.iter().zip(&vs))
            .map(|(&(pos, n, capacity), (k, v))| Lane { cache: Cache { k, v, capacity }, pos, n })
            .collect();
        let mut out = vec![f32::NAN; rows * width];
        let mut scores = vec![0f32; pool.parts() * 103];
        attend_lanes(&pool, &a, &q, &lanes, &mut out, &mut scores).unwrap();
        let mut first = 0;
        for l in &lanes {
            let mut alone = vec![f32::NAN; l.n * width];
            let qs = &q[first * width..(first + l.n) * width];
            attend(&pool, &a, qs, l.cache, l.pos, l.n, &mut alone, &mut scores).unwrap();
            let got = &out[first * width..(first + l.n) * width];
            assert!(got.iter().zip(&alone).all(|(x, y)| x.to_bits() == y.to_bits()), "lane at row {first}");
            first += l.n;
        }
    }

    #[test]
    fn store_puts_each_head_row_at_its_position() {
        let (kv_heads, hd, cap) = (2, 3, 5);
        let mut cache = vec![0f32; kv_heads * cap * hd];
        let rows: Vec<f32> = (0..2 * kv_heads * hd).map(|i| i as f32 + 1.0).collect();
        store(&mut cache, kv_heads, hd, cap, 3, &rows);
        for t in 0..2 {
            for h in 0..kv_heads {
                let at = (h * cap + 3 + t) * hd;
                assert_eq!(&cache[at..at + hd], &rows[(t * kv_heads + h) * hd..(t * kv_heads + h + 1) * hd]);
            }
        }
        assert_eq!(cache.iter().filter(|v| **v != 0.0).count(), rows.len());
    }

    #[test]
    fn a_cache_too_small_is_refused() {
        let pool = Pool::new(1);
        let a = Attention { heads: 2, kv_heads: 1, head_dim: 4, scale: 1.0, cap: None, window: None };
        let (k, v) = (vec![0f32; 8], vec![0f32; 8]);
        let (q, mut out, mut scores) = (vec![0f32; 8], vec![0f32; 8], vec![0f32; 8]);
        let cache = Cache { k: &k, v: &v, capacity: 2 };
        assert!(attend(&pool, &a, &q, cache, 2, 1, &mut out, &mut scores).is_err());
    }
}
