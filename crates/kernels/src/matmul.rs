//! `out [n, rows] = x [n, cols] · Wᵀ (+ bias) (+ LoRA)` over the thread pool, for one weight or several that
//! read the same input (q/k/v, gate/up) in one pool call: each input row is quantized once per activation
//! format into reused scratch, the weights' rows are split over the pool's parts, and each weight row meets
//! the activation rows `MAX_ROWS` at a time while it is hot in cache.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use smallvec::SmallVec;

pub use crate::lora::{Factor, Lora};
use crate::lora::{QCols, QuantT, quantize_t};
use crate::pool::{Pool, split};
use crate::quant::{ActKind, GROUP, Weights};

#[path = "matmul_buffers.rs"]
mod buffers;
#[path = "matmul_loras.rs"]
mod loras;
#[path = "matmul_rows.rs"]
mod rows;

pub use buffers::Scratch;
use buffers::{Out, QOut};
pub use loras::{MAX_ROW_LORAS, RowLora, RowLoras};
use rows::rows_of;

/// The most weights one call multiplies (q, k and v).
pub const MAX_LINEARS: usize = 3;

/// Rows of output a part takes at a time: 16 f32 fill a cache line, so parts never write the same line.
const ALIGN: usize = 16;

/// The most multiply-adds of `x Aᵀ` a call fuses with its B update (decode: r · in per LoRA and lane): the
/// `x Aᵀ` rows go in units to the first parts to start and each part adds the B update to the output rows it
/// has just computed, so the call needs one pool round instead of two, and the B bytes arrive beside the base
/// rows instead of in a second pass of short reads. Four decoding lanes with adapters (q/k/v: 9 · 16 · 576, a
/// third of this) stay fused; a prefill chunk (64 rows: 590k per LoRA) splits `x Aᵀ` over the pool and takes
/// the B update in a second call, as every part needs all r values of a row first.
const SERIAL_XA: usize = 1 << 18;

/// Rows of `x Aᵀ` per unit of a fused call (two repacked groups: an r=16 LoRA is one unit, so a call hands
/// out one unit per LoRA, and the threads trade half the claims and counts they did with one group a unit),
/// and the most units (more take the second-call path).
const XA_UNIT: usize = 2 * GROUP;
const MAX_XA_UNITS: usize = 64;

/// Parts a fused call can defer B updates for, 64 a word (more parts wait instead).
const DEFER_WORDS: usize = 4;

/// One linear layer as the host runs it.
#[derive(Clone, Copy)]
pub struct Linear<'a> {
    pub w: &'a Weights,
    /// `[rows]`, added to every output row.
    pub bias: Option<&'a [f32]>,
    /// Added to every row of the call; `run_rows` takes per-row ones instead.
    pub lora: Option<Lora<'a>>,
}

impl<'a> Linear<'a> {
    pub fn plain(w: &'a Weights) -> Self {
        Self { w, bias: None, lora: None }
    }
}

/// A segment's weight rows: in a block format, or a LoRA's A (against the f32 input itself).
#[derive(Clone, Copy)]
enum Rows<'a> {
    Blocks(&'a Weights),
    Factor { a: Factor<'a>, rows: usize },
}

impl Rows<'_> {
    fn rows(&self) -> usize {
        match self {
            Rows::Blocks(w) => w.rows,
            Rows::Factor { rows, .. } => *rows,
        }
    }
}

/// One weight of a call: its activation buffer, output, and where its rows start in the call's row space.
#[derive(Clone, Copy)]
struct Seg<'a> {
    w: Rows<'a>,
    bias: Option<&'a [f32]>,
    acts: usize,
    out: Out,
    /// Row stride of `out` (the weight's rows, or a LoRA's rank for its `x Aᵀ` rows).
    stride: usize,
    /// Offset in `out` of this weight's first value.
    offset: usize,
    start: usize,
    /// The activation rows it meets, `(first, count)`; output row `j` is activation row `first + j`.
    window: (usize, usize),
    /// Its LoRAs' 8-bit B factors in the call's `pre` list (`start..end`), prefetched beside its rows.
    pre: (usize, usize),
    /// The window's rows per lane (empty: one lane), so that a lane's row tiles are the ones it has alone.
    lanes: &'a [usize],
}

/// `outs[i] [n, lins[i].w.rows] = x [n, cols] · lins[i].wᵀ (+ bias, + LoRA)` for every linear, in one pool call
/// (two when a LoRA's `x Aᵀ` is too large for the caller alone, see `SERIAL_XA`: its rows then run beside the
/// base rows, its B update after).
pub fn run(
    pool: &Pool,
    scratch: &mut Scratch,
    x: &[f32],
    n: usize,
    lins: &[Linear<'_>],
    outs: &mut [&mut [f32]],
) -> Result<(), String> {
    let Some(first) = lins.first().filter(|_| lins.len() <= MAX_LINEARS) else {
        return Err(format!("matmul: {} weights (1..={MAX_LINEARS})", lins.len()));
    };
    let mut plain = [Linear { lora: None, ..*first }; MAX_LINEARS];
    let mut loras: SmallVec<[RowLora<'_>; MAX_LINEARS]> = SmallVec::new();
    for (i, l) in lins.iter().enumerate().take(MAX_LINEARS) {
        plain[i] = Linear { lora: None, ..*l };
        loras.extend(l.lora.map(|lora| RowLora { linear: i, lora, first: 0, count: n }));
    }
    call(pool, scratch, x, (n, &[]), &plain[..lins.len()], &loras, outs)
}

/// As `run` for a batch of lanes, `lanes[l]` rows each, in order: one pass over the base weights for all,
/// the LoRAs added to their own rows only (`lins` carry none). A lane's results are the bits it gets alone.
pub fn run_rows(
    pool: &Pool,
    scratch: &mut Scratch,
    x: &[f32],
    lanes: &[usize],
    lins: &[Linear<'_>],
    row_loras: &[RowLora<'_>],
    outs: &mut [&mut [f32]],
) -> Result<(), String> {
    if lins.iter().any(|l| l.lora.is_some()) || row_loras.len() > MAX_ROW_LORAS {
        return Err(format!("matmul: {} row LoRAs (at most {MAX_ROW_LORAS}) and no whole-call ones", row_loras.len()));
    }
    call(pool, scratch, x, (lanes.iter().sum(), lanes), lins, row_loras, outs)
}

fn call(
    pool: &Pool,
    scratch: &mut Scratch,
    x: &[f32],
    (n, lanes): (usize, &[usize]),
    lins: &[Linear<'_>],
    loras: &[RowLora<'_>],
    outs: &mut [&mut [f32]],
) -> Result<(), String> {
    if lins.len() != outs.len() || lins.is_empty() || lins.len() > MAX_LINEARS {
        return Err(format!("matmul: {} weights with {} outputs (1..={MAX_LINEARS})", lins.len(), outs.len()));
    }
    let merged = loras::merged(loras)?;
    let loras = &merged[..];
    let cols = lins[0].w.cols;
    if x.len() != n * cols {
        return Err(format!("matmul: input of {} values is not {n} rows of {cols}", x.len()));
    }
    for (l, o) in lins.iter().zip(outs.iter()) {
        let rows = l.w.rows;
        if l.w.cols != cols || o.len() != n * rows || l.bias.is_some_and(|b| b.len() != rows) {
            return Err(format!(
                "matmul: a [{rows}, {}] weight with {} outputs for {n} rows of {cols}",
                l.w.cols,
                o.len()
            ));
        }
    }
    // Where each LoRA's x Aᵀ values (`[count, rank]`) lie in scratch.
    let mut xa_at = [0usize; MAX_ROW_LORAS];
    let (mut xa_len, mut unit_total, mut work) = (0, 0, 0);
    for (d, at) in loras.iter().zip(&mut xa_at) {
        let (lo, Some(l)) = (d.lora, lins.get(d.linear)) else {
            return Err(format!("matmul: a LoRA for weight {} of {}", d.linear, lins.len()));
        };
        if lo.a.len() != lo.rank * cols || lo.b.len() != lo.rank * l.w.rows || d.first + d.count > n {
            return Err(format!(
                "matmul: LoRA A [{}, {}], B of {}, rows {}..{} for a [{}, {cols}] weight and {n} rows",
                lo.rank,
                lo.a.len() / lo.rank.max(1),
                lo.b.len(),
                d.first,
                d.first + d.count,
                l.w.rows
            ));
        }
        *at = xa_len;
        xa_len += d.count * lo.rank;
        unit_total += lo.rank.div_ceil(XA_UNIT);
        work += d.count * lo.rank * cols;
    }
    if scratch.xa.len() < xa_len {
        scratch.xa.resize(xa_len, 0.0);
        scratch.qt.resize(xa_len, 0);
        scratch.qts.resize(xa_len, QuantT::default());
    }
    let fused = work <= SERIAL_XA && unit_total <= MAX_XA_UNITS;
    // The call's row space: each weight's segment (index: its linear), then the LoRAs' `x Aᵀ` rows when not
    // fused. Inline vectors, not arrays sized for the largest call: a decode step makes ~120 calls, and
    // initializing and copying tens of KB of unused slots each time cost more than the rest of its setup.
    let mut segs: SmallVec<[Seg<'_>; MAX_LINEARS + MAX_ROW_LORAS]> = SmallVec::new();
    // Fused: each LoRA's `x Aᵀ` rows (its own segment, not in the call's row space) in units of XA_UNIT rows,
    // claimed by whichever parts start first (see the job).
    let mut a_segs: SmallVec<[Seg<'_>; MAX_ROW_LORAS]> = SmallVec::new();
    let mut units: SmallVec<[(usize, usize); MAX_XA_UNITS]> = SmallVec::new();
    let mut total = 0;
    let xa = Out(scratch.xa.as_mut_ptr(), scratch.xa.len());
    let qt = QOut(scratch.qt.as_mut_ptr(), scratch.qts.as_mut_ptr(), scratch.qt.len());
    // Each activation format once per call (q, k and v usually share one).
    let mut done: [Option<(ActKind, usize)>; 2 * MAX_LINEARS] = [None; 2 * MAX_LINEARS];
    let mut quantized = |scratch: &mut Scratch, kind: ActKind| {
        if let Some((_, i)) = done.iter().flatten().find(|(k, _)| *k == kind) {
            return *i;
        }
        let i = scratch.quantize(pool, kind, x, n, cols);
        if let Some(slot) = done.iter_mut().find(|d| d.is_none()) {
            *slot = Some((kind, i));
        }
        i
    };
    // Fused, each part adds the B updates of its rows after computing them: their B groups, read in runs too
    // short for the hardware prefetcher, are asked for beside the base rows, whose loads hide them.
    let mut pre: SmallVec<[&QCols; MAX_ROW_LORAS]> = SmallVec::new();
    for (i, (l, o)) in lins.iter().zip(outs.iter_mut()).enumerate() {
        let acts = quantized(scratch, l.w.acts());
        let out = Out(o.as_mut_ptr(), o.len());
        let (w, stride, window) = (Rows::Blocks(l.w), l.w.rows, (0, n));
        let first = pre.len();
        for d in loras.iter().filter(|d| fused && d.linear == i) {
            if let Factor::Cols(b) = d.lora.b {
                pre.push(b);
            }
        }
        let pre = (first, pre.len());
        segs.push(Seg { w, bias: l.bias, acts, out, stride, offset: 0, start: total, window, lanes, pre });
        total += l.w.rows;
    }
    for (k, d) in loras.iter().enumerate() {
        let lo = d.lora;
        // A Q8_0 A multiplies the quantized input as a base weight does; f32/f16 ones the input itself.
        let (w, acts) = match lo.a {
            Factor::Q8(w) => (Rows::Blocks(w), quantized(scratch, w.acts())),
            a => (Rows::Factor { a, rows: lo.rank }, 0),
        };
        let (stride, offset, window) = (lo.rank, xa_at[k], (d.first, d.count));
        let seg = Seg { w, bias: None, acts, out: xa, stride, offset, start: total, window, lanes: &[], pre: (0, 0) };
        if fused {
            a_segs.push(Seg { start: 0, ..seg });
            units.extend((0..lo.rank).step_by(XA_UNIT).map(|first| (k, first)));
        } else {
            segs.push(seg);
            total += lo.rank;
        }
    }
    let acts: [&[u8]; 8] = std::array::from_fn(|i| scratch.acts.get(i).map_or(&[][..], |(_, b)| &b[..]));
    let (segs, pre) = (&segs[..], &pre[..]);
    let unit_count = units.len();
    let (units, a_segs, xa_at) = (&units[..], &a_segs[..], &xa_at);
    let (next_unit, units_done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let lora_done: [AtomicUsize; MAX_ROW_LORAS] = std::array::from_fn(|_| AtomicUsize::new(0));
    let mut lora_units = [0usize; MAX_ROW_LORAS];
    for (u, d) in lora_units.iter_mut().zip(loras) {
        *u = d.lora.rank.div_ceil(XA_UNIT);
    }
    // An 8-bit B's update reads x Aᵀ quantized: each of LoRA k's rows once per call, not once per part.
    let quantize_rows = |k: usize| {
        // k indexes the merged `loras` as it does `xa_at`.
        let Some(d) = loras.get(k) else { return };
        if !matches!(d.lora.b, Factor::Cols(_)) || d.lora.rank == 0 {
            return;
        }
        for j in 0..d.count {
            let at = xa_at[k] + j * d.lora.rank;
            // SAFETY: row j of LoRA k's x Aᵀ, complete and no longer written; its quantized form is written by
            // this caller alone (the part that finished the LoRA's last unit, or the caller between calls).
            let (t, (v, q)) = unsafe { (xa.read(at, d.lora.rank), qt.row(at, d.lora.rank)) };
            *q = quantize_t(t, v);
        }
    };
    let deferred: [AtomicU64; DEFER_WORDS] = std::array::from_fn(|_| AtomicU64::new(0));
    // The B updates of the rows in `range` (of the call's row space), once every `x Aᵀ` value is in.
    let updates = |range: std::ops::Range<usize>| {
        for (k, d) in loras.iter().enumerate() {
            let Some(seg) = segs.get(d.linear) else { continue };
            let (lo, hi) = (range.start.max(seg.start), range.end.min(seg.start + seg.w.rows()));
            if lo >= hi {
                continue;
            }
            let rows = lo - seg.start..hi - seg.start;
            for j in 0..d.count {
                // SAFETY: the x Aᵀ values of the LoRA's row j, complete (the caller's acquire saw every unit
                // done) and no longer written during this call.
                let t = unsafe { xa.read(xa_at[k] + j * d.lora.rank, d.lora.rank) };
                // SAFETY: row first + j's columns `rows` of an [n, stride] output: this part's (or, deferred,
                // the last part's, every other part being done) alone, in bounds.
                let o = unsafe { seg.out.slice((d.first + j) * seg.stride + rows.start, rows.len()) };
                match d.lora.b {
                    Factor::Cols(b) => {
                        // SAFETY: quantized with the unit, published with it as the values above.
                        let (v, q) = unsafe { qt.read(xa_at[k] + j * d.lora.rank, d.lora.rank) };
                        b.update_quantized(v, q, rows.start, o);
                    }
                    b => b.update(t, seg.stride, rows.start, o),
                }
            }
        }
    };
    pool.run(&|part, parts| {
        // The x Aᵀ units go to the first parts to start, so that they are done long before any part finishes
        // its base rows; nobody waits for them (see below).
        let mut mine = 0;
        while next_unit.load(Ordering::Relaxed) < unit_count {
            let u = next_unit.fetch_add(1, Ordering::Relaxed);
            let Some(&(k, first)) = units.get(u) else { break };
            if let Some(seg) = a_segs.get(k) {
                // Its bytes, asked for at once, arrive in parallel instead of one miss after another.
                if let Rows::Blocks(w) = seg.w {
                    w.prefetch_rows(first..(first + XA_UNIT).min(w.rows));
                }
                // Rows first.. of this LoRA's x Aᵀ: this unit's alone (units never share a row).
                let rows = first..(first + XA_UNIT).min(seg.w.rows());
                rows_of(seg, rows.clone(), rows.end, acts[seg.acts], x, cols, &[]);
            }
            // The LoRA's last unit quantizes its x Aᵀ rows for the parts' B updates (the acquire sees the
            // other units' values; the release below publishes these with the unit). A LoRA of one unit needs
            // no count: every shared counter a part touches is a cache line taken from the other core.
            if lora_units[k] == 1 || lora_done[k].fetch_add(1, Ordering::AcqRel) + 1 == lora_units[k] {
                quantize_rows(k);
            }
            mine += 1;
        }
        // This part's units published at once, before its base rows (which any part may wait on only after
        // its own).
        if mine > 0 {
            units_done.fetch_add(mine, Ordering::Release);
        }
        let range = split(total, part, parts, ALIGN);
        // The parts of one thread's run come one after another: its prefetch may run on into the next ones.
        let reach = split(total, pool.run_end(part) - 1, parts, ALIGN).end;
        for seg in segs {
            let lo = range.start.max(seg.start);
            let hi = range.end.min(seg.start + seg.w.rows());
            if lo < hi {
                let (rows, reach) = (lo - seg.start..hi - seg.start, reach.min(seg.start + seg.w.rows()) - seg.start);
                rows_of(seg, rows, reach, acts[seg.acts], x, cols, &pre[seg.pre.0..seg.pre.1]);
            }
        }
        if unit_count == 0 {
            return;
        }
        // A unit still running (its thread descheduled) defers this part's updates to the caller, after the
        // call, when every part (and so every unit) is done, instead of holding this thread.
        if units_done.load(Ordering::Acquire) == unit_count {
            updates(range);
        } else if let Some(word) = deferred.get(part / 64) {
            word.fetch_or(1 << (part % 64), Ordering::Relaxed);
        } else {
            while units_done.load(Ordering::Acquire) < unit_count {
                std::hint::spin_loop();
            }
            updates(range);
        }
    });
    let parts = pool.parts();
    for p in 0..parts.min(64 * DEFER_WORDS) {
        // The pool's return saw every part finish, so their flags, x Aᵀ values and base rows.
        if deferred[p / 64].load(Ordering::Relaxed) & (1 << (p % 64)) != 0 {
            updates(split(total, p, parts, ALIGN));
        }
    }
    if xa_len == 0 || fused {
        return Ok(());
    }
    // The B update, every LoRA of the call in one pool call: out[j, r] += Σ_k xa[j, k] · b[k, r], each row of
    // x Aᵀ quantized once first for an 8-bit B.
    for k in 0..loras.len() {
        quantize_rows(k);
    }
    let xa = &scratch.xa[..xa_len];
    pool.run(&|part, parts| {
        for (k, d) in loras.iter().enumerate() {
            let Some(seg) = segs.get(d.linear) else { continue };
            let rows = seg.stride;
            let range = split(rows, part, parts, ALIGN);
            if range.is_empty() {
                continue;
            }
            let rank = d.lora.rank;
            for j in 0..d.count {
                let xj = &xa[xa_at[k] + j * rank..xa_at[k] + (j + 1) * rank];
                // SAFETY: row first + j's columns `range` of an [n, rows] output: this part's alone, in bounds.
                let o = unsafe { seg.out.slice((d.first + j) * rows + range.start, range.len()) };
                match d.lora.b {
                    Factor::Cols(b) => {
                        // SAFETY: quantized by the caller before this pool call, read only.
                        let (v, q) = unsafe { qt.read(xa_at[k] + j * rank, rank) };
                        b.update_quantized(v, q, range.start, o);
                    }
                    b => b.update(xj, rows, range.start, o),
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
#[path = "matmul_tests.rs"]
mod tests;
