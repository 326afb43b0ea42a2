//! `out [n, rows] = x [n, cols] · Wᵀ (+ bias) (+ LoRA)` over the thread pool, for one weight or several that
//! read the same input (q/k/v, gate/up) in one pool call: each input row is quantized once per activation
//! format into reused scratch, the weights' rows are split over the pool's parts, and each weight row meets
//! the activation rows `MAX_ROWS` at a time while it is hot in cache.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub use crate::lora::{Factor, Lora};
use crate::pool::{Pool, split};
use crate::quant::{ActKind, GROUP, MAX_ROWS, Weights};

#[path = "matmul_buffers.rs"]
mod buffers;

use buffers::Out;
pub use buffers::Scratch;

/// The most weights one call multiplies (q, k and v).
pub const MAX_LINEARS: usize = 3;

/// Rows of output a part takes at a time: 16 f32 fill a cache line, so parts never write the same line.
const ALIGN: usize = 16;

/// The most multiply-adds of `x Aᵀ` a call fuses with its B update (decode: r · in per LoRA): the `x Aᵀ`
/// rows go in units to the first parts to start and each part adds the B update to the output rows it has
/// just computed, so the call needs one pool round instead of two. Above it (prefill) `x Aᵀ` is split over
/// the pool and the B update takes a second call, as every part needs all r values of a row first.
const SERIAL_XA: usize = 1 << 16;

/// Rows of `x Aᵀ` per unit of a fused call (a repacked group), and the most units (larger ranks take the
/// second-call path).
const XA_UNIT: usize = GROUP;
const MAX_XA_UNITS: usize = 64;

/// Parts a fused call can defer B updates for, 64 a word (more parts wait instead).
const DEFER_WORDS: usize = 4;

/// One linear layer as the host runs it.
#[derive(Clone, Copy)]
pub struct Linear<'a> {
    pub w: &'a Weights,
    /// `[rows]`, added to every output row.
    pub bias: Option<&'a [f32]>,
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
    /// Column offset in `out` of this weight's rows.
    offset: usize,
    start: usize,
    /// A LoRA whose `x Aᵀ` is already in scratch at this column: its B update follows each chunk of rows.
    update: Option<(Lora<'a>, usize)>,
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
    if lins.len() != outs.len() || lins.is_empty() || lins.len() > MAX_LINEARS {
        return Err(format!("matmul: {} weights with {} outputs (1..={MAX_LINEARS})", lins.len(), outs.len()));
    }
    let cols = lins[0].w.cols;
    if x.len() != n * cols {
        return Err(format!("matmul: input of {} values is not {n} rows of {cols}", x.len()));
    }
    let rank_total: usize = lins.iter().filter_map(|l| l.lora).map(|l| l.rank).sum();
    for (l, o) in lins.iter().zip(outs.iter()) {
        let rows = l.w.rows;
        if l.w.cols != cols || o.len() != n * rows || l.bias.is_some_and(|b| b.len() != rows) {
            return Err(format!(
                "matmul: a [{rows}, {}] weight with {} outputs for {n} rows of {cols}",
                l.w.cols,
                o.len()
            ));
        }
        if let Some(lo) = l.lora
            && (lo.a.len() != lo.rank * cols || lo.b.len() != lo.rank * rows)
        {
            return Err(format!(
                "matmul: LoRA A [{}, {}], B of {} for a [{rows}, {cols}] weight",
                lo.rank,
                lo.a.len() / lo.rank.max(1),
                lo.b.len()
            ));
        }
    }
    if scratch.xa.len() < n * rank_total {
        scratch.xa.resize(n * rank_total, 0.0);
    }
    let unit_total: usize = lins.iter().filter_map(|l| l.lora).map(|l| l.rank.div_ceil(XA_UNIT)).sum();
    let fused = n * rank_total * cols <= SERIAL_XA && unit_total <= MAX_XA_UNITS;
    let mut segs: [Option<Seg<'_>>; 2 * MAX_LINEARS] = [None; 2 * MAX_LINEARS];
    // Fused: each LoRA's `x Aᵀ` rows (its own segment, not in the call's row space) in units of XA_UNIT rows,
    // claimed by whichever parts start first (see the job).
    let mut a_segs: [Option<Seg<'_>>; MAX_LINEARS] = [None; MAX_LINEARS];
    let mut units: [Option<(usize, usize)>; MAX_XA_UNITS] = [None; MAX_XA_UNITS];
    let mut unit_count = 0;
    let mut total = 0;
    let mut xa_at = 0;
    let xa = Out(scratch.xa.as_mut_ptr(), scratch.xa.len());
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
    for (i, (l, o)) in lins.iter().zip(outs.iter_mut()).enumerate() {
        let acts = quantized(scratch, l.w.acts());
        let out = Out(o.as_mut_ptr(), o.len());
        let w = Rows::Blocks(l.w);
        let update = l.lora.filter(|_| fused).map(|lo| (lo, xa_at));
        let stride = l.w.rows;
        segs[2 * i] = Some(Seg { w, bias: l.bias, acts, out, stride, offset: 0, start: total, update });
        total += l.w.rows;
        if let Some(lo) = l.lora {
            // A Q8_0 A multiplies the quantized input as a base weight does; f32/f16 ones the input itself.
            let (w, acts) = match lo.a {
                Factor::Q8(w) => (Rows::Blocks(w), quantized(scratch, w.acts())),
                a => (Rows::Factor { a, rows: lo.rank }, 0),
            };
            let (stride, offset, update) = (rank_total, xa_at, None);
            let seg = Seg { w, bias: None, acts, out: xa, stride, offset, start: total, update };
            if fused {
                a_segs[i] = Some(Seg { start: 0, ..seg });
                for first in (0..lo.rank).step_by(XA_UNIT) {
                    if let Some(slot) = units.get_mut(unit_count) {
                        *slot = Some((i, first));
                        unit_count += 1;
                    }
                }
            } else {
                segs[2 * i + 1] = Some(seg);
                total += lo.rank;
            }
            xa_at += lo.rank;
        }
    }
    let acts: [&[u8]; 8] = std::array::from_fn(|i| scratch.acts.get(i).map_or(&[][..], |(_, b)| &b[..]));
    let segs = &segs;
    let (units, a_segs) = (&units[..unit_count], &a_segs);
    let (next_unit, units_done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let deferred: [AtomicU64; DEFER_WORDS] = std::array::from_fn(|_| AtomicU64::new(0));
    // The B updates of the rows in `range`, once every `x Aᵀ` value is in.
    let updates = |range: std::ops::Range<usize>| {
        for seg in segs.iter().flatten() {
            let Some((lora, col)) = seg.update else { continue };
            let (lo, hi) = (range.start.max(seg.start), range.end.min(seg.start + seg.w.rows()));
            if lo >= hi {
                continue;
            }
            let rows = lo - seg.start..hi - seg.start;
            for j in 0..n {
                // SAFETY: the x Aᵀ values of row j, complete (the caller's acquire saw every unit done) and no
                // longer written during this call.
                let t = unsafe { xa.read(j * rank_total + col, lora.rank) };
                // SAFETY: row j's columns `rows` of an [n, stride] output: this part's (or, deferred, the last
                // part's, every other part being done) alone, in bounds.
                let o = unsafe { seg.out.slice(j * seg.stride + rows.start, rows.len()) };
                lora.b.update(t, seg.stride, rows.start, o);
            }
        }
    };
    pool.run(&|part, parts| {
        // The x Aᵀ units go to the first parts to start, so that they are done long before any part finishes
        // its base rows; nobody waits for them (see below).
        while next_unit.load(Ordering::Relaxed) < unit_count {
            let u = next_unit.fetch_add(1, Ordering::Relaxed);
            let Some(&Some((i, first))) = units.get(u) else { break };
            if let Some(seg) = &a_segs[i] {
                // Rows first.. of this LoRA's x Aᵀ: this unit's alone (units never share a row).
                rows_of(seg, first..(first + XA_UNIT).min(seg.w.rows()), acts[seg.acts], x, n, cols);
            }
            units_done.fetch_add(1, Ordering::Release);
        }
        let range = split(total, part, parts, ALIGN);
        for seg in segs.iter().flatten() {
            let lo = range.start.max(seg.start);
            let hi = range.end.min(seg.start + seg.w.rows());
            if lo < hi {
                rows_of(seg, lo - seg.start..hi - seg.start, acts[seg.acts], x, n, cols);
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
    if rank_total == 0 || fused {
        return Ok(());
    }
    // The B update, every LoRA of the call in one pool call: out[j, r] += Σ_k xa[j, k] · b[k, r].
    let xa = &scratch.xa[..n * rank_total];
    let mut updates: [Option<(Lora<'_>, Out, usize, usize)>; MAX_LINEARS] = [None; MAX_LINEARS];
    let mut at = 0;
    for ((l, o), u) in lins.iter().zip(outs.iter_mut()).zip(&mut updates) {
        if let Some(lo) = l.lora {
            *u = Some((lo, Out(o.as_mut_ptr(), o.len()), l.w.rows, at));
            at += lo.rank;
        }
    }
    let updates = &updates;
    pool.run(&|part, parts| {
        for &(lo, out, rows, col) in updates.iter().flatten() {
            let range = split(rows, part, parts, ALIGN);
            if range.is_empty() {
                continue;
            }
            for j in 0..n {
                let xj = &xa[j * rank_total + col..j * rank_total + col + lo.rank];
                // SAFETY: row j's columns `range` of an [n, rows] output: this part's alone, in bounds.
                let o = unsafe { out.slice(j * rows + range.start, range.len()) };
                lo.b.update(xj, rows, range.start, o);
            }
        }
    });
    Ok(())
}

/// Weight rows `rows` of `seg` against every activation row, `MAX_ROWS` at a time.
fn rows_of(seg: &Seg<'_>, rows: std::ops::Range<usize>, acts: &[u8], x: &[f32], n: usize, cols: usize) {
    let w = match seg.w {
        Rows::Blocks(w) => w,
        Rows::Factor { a, .. } => {
            for r in rows {
                for j in 0..n {
                    let v = a.dot(r, cols, &x[j * cols..(j + 1) * cols]);
                    // SAFETY: element (j, offset + r) of an [n, stride] buffer; r lies in this part's range.
                    unsafe { seg.out.add(j * seg.stride + seg.offset + r, v, true) };
                }
            }
            return;
        }
    };
    let rb = w.acts().row_bytes(cols);
    let tile = |j: usize, k: usize| -> [&[u8]; MAX_ROWS] {
        std::array::from_fn(|i| {
            let row = j + i.min(k - 1);
            &acts[row * rb..(row + 1) * rb]
        })
    };
    if w.group(0).is_some() {
        // Repacked: whole groups of GROUP rows; a group the range cuts is computed whole and only the
        // range's rows written (the neighbouring part writes the others).
        let mut tmp = [[0f32; GROUP]; MAX_ROWS];
        for g in rows.start / GROUP..rows.end.div_ceil(GROUP) {
            let Some((gw, kernel)) = w.group(g) else { continue };
            let lanes = (g * GROUP).max(rows.start)..((g + 1) * GROUP).min(rows.end);
            let mut j = 0;
            while j < n {
                let k = (n - j).min(MAX_ROWS);
                kernel(cols, gw, &tile(j, k)[..k], &mut tmp[..k]);
                for (i, vals) in tmp[..k].iter().enumerate() {
                    let at = (j + i) * seg.stride + seg.offset + lanes.start;
                    // SAFETY: elements (j + i, offset + lanes) of an [n, stride] buffer; lanes lie in this part's
                    // range.
                    let o = unsafe { seg.out.slice(at, lanes.len()) };
                    let vals = &vals[lanes.start - g * GROUP..lanes.end - g * GROUP];
                    match seg.bias {
                        Some(b) => {
                            for ((o, v), b) in o.iter_mut().zip(vals).zip(&b[lanes.clone()]) {
                                *o = v + b;
                            }
                        }
                        None => o.copy_from_slice(vals),
                    }
                }
                j += k;
            }
        }
        return;
    }
    let kernel = w.kernel();
    let mut tmp = [0f32; MAX_ROWS];
    for r in rows {
        let Some(w) = w.row(r) else { continue };
        let bias = seg.bias.map_or(0.0, |b| b[r]);
        let mut j = 0;
        while j < n {
            let k = (n - j).min(MAX_ROWS);
            (kernel.dot)(cols, w, &tile(j, k)[..k], &mut tmp[..k]);
            for (i, v) in tmp[..k].iter().enumerate() {
                // SAFETY: element (j + i, offset + r) of an [n, stride] buffer; r lies in this part's range.
                unsafe { seg.out.add((j + i) * seg.stride + seg.offset + r, v + bias, true) };
            }
            j += k;
        }
    }
}

#[cfg(test)]
#[path = "matmul_tests.rs"]
mod tests;
