//! Attention of `n` new queries at positions `pos..` over one layer's host KV cache: grouped-query, causal,
//! an optional sliding window (a query sees itself and the `w − 1` keys before it, as transformers and
//! llama.cpp count it), a scale, an optional tanh soft-cap on the scores, softmax, and the weighted sum of
//! the values; parallel over kv heads × query rows (a long decode row's keys split in segments).

use half::f16;

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
    pub k: Kv<'a>,
    pub v: Kv<'a>,
    pub capacity: usize,
}

/// A layer's keys or values as a cache holds them: f32, or f16 (half the bytes every decode step reads).
#[derive(Clone, Copy)]
pub enum Kv<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl Kv<'_> {
    pub fn len(&self) -> usize {
        match self {
            Kv::F32(v) => v.len(),
            Kv::F16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes `rows` (`[n, kv_heads · head_dim]`: n positions' keys or values) into one layer's cache
/// `[kv_heads, capacity, head_dim]` at positions `pos..pos + n`.
pub fn store(cache: &mut [f32], kv_heads: usize, head_dim: usize, capacity: usize, pos: usize, rows: &[f32]) {
    store_with(cache, kv_heads, head_dim, capacity, pos, rows, |dst, src| dst.copy_from_slice(src));
}

/// `store` into an f16 cache (each value rounded to the nearest f16).
pub fn store_f16(cache: &mut [f16], kv_heads: usize, head_dim: usize, capacity: usize, pos: usize, rows: &[f32]) {
    use half::slice::HalfFloatSliceExt;
    store_with(cache, kv_heads, head_dim, capacity, pos, rows, |dst, src| dst.convert_from_f32_slice(src));
}

fn store_with<T>(
    cache: &mut [T],
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    pos: usize,
    rows: &[f32],
    put: impl Fn(&mut [T], &[f32]),
) {
    let width = kv_heads * head_dim;
    for (t, row) in rows.chunks_exact(width).enumerate() {
        for (h, src) in row.chunks_exact(head_dim).enumerate() {
            let at = (h * capacity + pos + t) * head_dim;
            put(&mut cache[at..at + head_dim], src);
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
/// `..pos + n` are written. `scores` is scratch of at least `scratch_len` values.
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

/// Positions one unit of a decode row covers at most. A decode step has few units (a lane's kv heads), so a
/// longer context is split into segments whose partial softmaxes are merged after (flash-decoding): the units
/// spread over every thread, and each segment of K and V is read once for all the query heads that share it.
pub const SEGMENT: usize = 256;

/// The segments of a lane's rows: a decode row (`n == 1`) is split by `SEGMENT`; a prefill row never is.
fn segments(a: &Attention, l: &Lane<'_>) -> usize {
    if l.n != 1 {
        return 1;
    }
    let lo = a.window.map_or(0, |w| (l.pos + 1).saturating_sub(w));
    (l.pos + 1 - lo).div_ceil(SEGMENT).max(1)
}

/// Units of a lane: (kv head, row) for a prefill, (kv head, segment) for a decode row.
fn units(a: &Attention, l: &Lane<'_>) -> usize {
    a.kv_heads * if l.n == 1 { segments(a, l) } else { l.n }
}

/// The partial results of a lane's split rows: per query head and segment, the unnormalized weighted sum
/// (`head_dim`), the scores' max and the sum of their exponentials.
fn partial_len(a: &Attention, l: &Lane<'_>) -> usize {
    match segments(a, l) {
        1 => 0,
        s => a.heads * s * (a.head_dim + 2),
    }
}

/// The scratch `attend_lanes` needs: each part's scores of one unit, then the split rows' partial results.
pub fn scratch_len(a: &Attention, lanes: &[Lane<'_>], parts: usize) -> usize {
    parts * part_len(a, lanes) + lanes.iter().map(|l| partial_len(a, l)).sum::<usize>()
}

/// Scores a part holds at once: those of the query heads one pass serves, over the longest run of keys.
fn part_len(a: &Attention, lanes: &[Lane<'_>]) -> usize {
    let longest = lanes.iter().map(|l| l.pos + l.n).max().unwrap_or(0);
    longest * (a.heads / a.kv_heads.max(1)).clamp(1, rows::HEADS)
}

/// `attend` for several lanes at once, their query rows one lane after another in `q` and `out`: one pool
/// call, its units every lane's (kv head, row) pairs (a decode row's split in segments), each unit taking
/// every query head of its kv head. `scores` holds `scratch_len`. A lane's results are those of its own call.
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
        if matches!((l.cache.k, l.cache.v), (Kv::F32(_), Kv::F16(_)) | (Kv::F16(_), Kv::F32(_))) {
            return Err("attention: keys and values held in different types".into());
        }
    }
    if scores.len() < scratch_len(a, lanes, parts) {
        return Err(format!("attention: scratch of {} for {parts} parts of {longest}", scores.len()));
    }
    let rep = a.heads / a.kv_heads;
    let total: usize = lanes.iter().map(|l| units(a, l)).sum();
    let (out_p, scores_p) = (Ptr(out.as_mut_ptr()), Ptr(scores.as_mut_ptr()));
    let per_part = part_len(a, lanes);
    let partials = parts * per_part;
    pool.run(&|part, parts| {
        // SAFETY: each part owns its `per_part`-long slice of scores (checked: scores holds parts × per_part).
        let sc = unsafe { std::slice::from_raw_parts_mut(scores_p.at(part * per_part), per_part) };
        // Units run lane by lane; `first` is the lane's first row in q and out, `at` its partials' offset.
        let (mut lane, mut lane_units, mut first, mut at) = (0, 0, 0, partials);
        for u in split(total, part, parts, 1) {
            while let Some(l) = lanes.get(lane)
                && u >= lane_units + units(a, l)
            {
                lane_units += units(a, l);
                first += l.n;
                at += partial_len(a, l);
                lane += 1;
            }
            let Some(l) = lanes.get(lane) else { return };
            let (v, segs) = (u - lane_units, segments(a, l));
            let (g, i, s) = if l.n == 1 { (v / segs, 0, v % segs) } else { (v / l.n, v % l.n, 0) };
            let p = l.pos + i;
            let lo = a.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let (start, end) =
                if segs == 1 { (lo, p + 1) } else { (lo + s * SEGMENT, (lo + (s + 1) * SEGMENT).min(p + 1)) };
            let base = g * l.cache.capacity * hd;
            let (from, to) = (base + start * hd, base + end * hd);
            let len = end - start;
            let dst = Dst { out: out_p, scores: scores_p, row: (first + i) * width, segs, s, at };
            let heads = g * rep..(g + 1) * rep;
            // The two caches' element agree (checked above).
            match (l.cache.k, l.cache.v) {
                (Kv::F32(k), Kv::F32(v)) => unit(a, q, heads, (&k[from..to], &v[from..to]), len, sc, &dst),
                (Kv::F16(k), Kv::F16(v)) => unit(a, q, heads, (&k[from..to], &v[from..to]), len, sc, &dst),
                _ => {}
            }
        }
    });
    // The split rows: each head's segments merged, scaled to the largest max.
    let (mut first, mut at) = (0, partials);
    for l in lanes {
        let segs = segments(a, l);
        if segs > 1 {
            for h in 0..a.heads {
                let part = &scores[at + h * segs * (hd + 2)..at + (h + 1) * segs * (hd + 2)];
                let max = part.chunks_exact(hd + 2).fold(f32::NEG_INFINITY, |m, c| m.max(c[hd]));
                let o = &mut out[first * width + h * hd..first * width + (h + 1) * hd];
                o.fill(0.0);
                let mut sum = 0f32;
                for c in part.chunks_exact(hd + 2) {
                    let w = (c[hd] - max).exp();
                    sum += w * c[hd + 1];
                    for (x, y) in o.iter_mut().zip(&c[..hd]) {
                        *x += w * y;
                    }
                }
                for x in o.iter_mut() {
                    *x /= sum;
                }
            }
        }
        first += l.n;
        at += partial_len(a, l);
    }
    Ok(())
}

/// Where a unit writes: its row's outputs (`row`, the row's first value in `out`), or, for a split decode row,
/// its segment `s` of `segs` in the partial results at `at`.
struct Dst {
    out: Ptr,
    scores: Ptr,
    row: usize,
    segs: usize,
    s: usize,
    at: usize,
}

/// One unit: query heads `heads` (one kv head's) of one row against `len` keys and values, up to `HEADS` heads
/// at once (their scores in one pass over the keys, their sums in one pass over the values; each head's numbers
/// those it gets alone). `sc` holds `HEADS · len` scores.
fn unit<T: rows::Elem>(
    a: &Attention,
    q: &[f32],
    heads: std::ops::Range<usize>,
    (keys, values): (&[T], &[T]),
    len: usize,
    sc: &mut [f32],
    d: &Dst,
) {
    let hd = a.head_dim;
    let mut h0 = heads.start;
    while h0 < heads.end {
        let r = (heads.end - h0).min(rows::HEADS);
        let row = |h: usize| d.row + h * hd;
        let qs: [&[f32]; rows::HEADS] =
            std::array::from_fn(|j| if j < r { &q[row(h0 + j)..row(h0 + j) + hd] } else { &[][..] });
        let mut chunks = sc[..r * len].chunks_exact_mut(len);
        let mut seen: [&mut [f32]; rows::HEADS] = std::array::from_fn(|_| chunks.next().unwrap_or_default());
        rows::dots_heads(&qs[..r], keys, hd, &mut seen[..r]);
        let mut stats = [(0f32, 0f32); rows::HEADS];
        for (s, st) in seen.iter_mut().zip(&mut stats).take(r) {
            let max = match a.cap {
                None => scale_max(s, a.scale),
                Some(c) => s.iter_mut().fold(f32::NEG_INFINITY, |max, s| {
                    *s = (*s * a.scale / c).tanh() * c;
                    max.max(*s)
                }),
            };
            let sum = exp_sub_sum(s, max);
            if d.segs == 1 {
                for v in s.iter_mut() {
                    *v /= sum;
                }
            }
            *st = (max, sum);
        }
        let ws: [&[f32]; rows::HEADS] = std::array::from_fn(|j| &seen[j][..]);
        let mut outs: [&mut [f32]; rows::HEADS] = std::array::from_fn(|j| {
            let h = h0 + j;
            if j >= r {
                &mut [][..]
            } else if d.segs == 1 {
                // SAFETY: this row's head h of `out` belongs to this unit alone (units are disjoint).
                unsafe { std::slice::from_raw_parts_mut(d.out.at(row(h)), hd) }
            } else {
                // SAFETY: head h, segment s of this lane's partials: this unit's alone, inside the scratch
                // (`scratch_len` counted it).
                unsafe { std::slice::from_raw_parts_mut(d.scores.at(d.at + (h * d.segs + d.s) * (hd + 2)), hd + 2) }
            }
        });
        rows::weighted_heads(&ws[..r], values, hd, &mut outs[..r]);
        if d.segs > 1 {
            for (o, &(max, sum)) in outs.iter_mut().zip(&stats).take(r) {
                (o[hd], o[hd + 1]) = (max, sum);
            }
        }
        h0 += r;
    }
}

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
