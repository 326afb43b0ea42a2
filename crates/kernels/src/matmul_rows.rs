//! The inner loop of a matmul call: one segment's weight rows against its activation rows, a tile of
//! `MAX_ROWS` at a time, through the repacked group kernels or the per-row ones.

use super::{Rows, Seg};
use crate::lora::QCols;
use crate::quant::{GROUP, GroupFn, Kind, Lay, MAX_ROWS, PairFn};

/// A repacked weight's kernel for one step: a whole interleaved pair, or one group laid out as its `Lay` says.
#[derive(Clone, Copy)]
enum Kernel {
    Pair(PairFn),
    Group(GroupFn, Lay),
}

/// Weight rows `rows` of `seg` against its window's activation rows, `MAX_ROWS` at a time; the B groups of
/// `pre` for the same rows are prefetched beside them.
pub(super) fn rows_of(
    seg: &Seg<'_>,
    rows: std::ops::Range<usize>,
    reach: usize,
    acts: &[u8],
    x: &[f32],
    cols: usize,
    pre: &[&QCols],
) {
    let (from, n) = seg.window;
    let w = match seg.w {
        Rows::Blocks(w) => w,
        Rows::Factor { a, .. } => {
            for r in rows {
                for j in 0..n {
                    let v = a.dot(r, cols, &x[(from + j) * cols..(from + j + 1) * cols]);
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
            let row = from + j + i.min(k - 1);
            &acts[row * rb..(row + 1) * rb]
        })
    };
    if w.group(0).is_some() {
        // Repacked: whole groups of GROUP rows; a group the range cuts is computed whole and only the
        // range's rows written (the neighbouring part writes the others).
        let mut tmp = [[0f32; GROUP]; 2 * MAX_ROWS];
        let groups = rows.start / GROUP..rows.end.div_ceil(GROUP);
        let reach = reach.max(rows.end).min(w.rows).div_ceil(GROUP);
        // The pair kernel reads an interleaved pair as one stream on 512-bit registers: faster than a group at
        // a time for every format at any row count, except Q8_0 read once (one tile of rows: a decode step's
        // lanes), whose group kernel keeps the memory's speed at four rows while the pair kernel does not
        // (`cargo bench -p tunebench-kernels --bench dot -- packed`, the model-sized rows); a prefill's tiles
        // reuse each group from cache, where the pair kernel is faster for Q8_0 too.
        let pairs = n > MAX_ROWS || w.kind != Kind::Q8_0;
        let mut g = groups.start;
        while g < groups.end {
            // Two groups at once where the CPU has the kernel (the same bits as one at a time). The kernel may
            // prefetch the groups after them up to `reach` (past it they are another thread's, or another
            // matrix).
            let pair = if pairs && g + 1 < groups.end { w.pair_reaching(g, reach) } else { None };
            let (count, gw, kernel) = match pair {
                Some((gw, k)) => (2, gw, Kernel::Pair(k)),
                None => match w.group_reaching(g, reach) {
                    Some((gw, lay, k)) => (1, gw, Kernel::Group(k, lay)),
                    None => {
                        g += 1;
                        continue;
                    }
                },
            };
            for b in pre {
                b.prefetch(g, count);
            }
            let mut j = 0;
            while j < n {
                let k = (n - j).min(MAX_ROWS);
                match kernel {
                    Kernel::Pair(f) => f(cols, gw, &tile(j, k)[..k], &mut tmp[..2 * k]),
                    Kernel::Group(f, lay) => f(cols, gw, lay, &tile(j, k)[..k], &mut tmp[..k]),
                }
                for h in 0..count {
                    let gg = g + h;
                    let lanes = (gg * GROUP).max(rows.start)..((gg + 1) * GROUP).min(rows.end);
                    for (i, vals) in tmp[h * k..(h + 1) * k].iter().enumerate() {
                        let at = (j + i) * seg.stride + seg.offset + lanes.start;
                        // SAFETY: elements (j + i, offset + lanes) of an [n, stride] buffer; lanes lie in this
                        // part's range.
                        let o = unsafe { seg.out.slice(at, lanes.len()) };
                        let vals = &vals[lanes.start - gg * GROUP..lanes.end - gg * GROUP];
                        match seg.bias {
                            Some(b) => {
                                for ((o, v), b) in o.iter_mut().zip(vals).zip(&b[lanes.clone()]) {
                                    *o = v + b;
                                }
                            }
                            None => o.copy_from_slice(vals),
                        }
                    }
                }
                j += k;
            }
            g += count;
        }
        return;
    }
    let kernel = w.kernel();
    let mut tmp = [0f32; MAX_ROWS];
    for r in rows.clone() {
        if r == rows.start || r % GROUP == 0 {
            pre.iter().for_each(|b| b.prefetch(r / GROUP, 1));
        }
        let Some(w) = w.row(r) else { continue };
        let bias = seg.bias.map_or(0.0, |b| b[r]);
        // The row kernels' results depend on the tile's row count: a lane's tiles are the ones it has alone.
        tiles(n, seg.lanes, |j, k| {
            (kernel.dot)(cols, w, &tile(j, k)[..k], &mut tmp[..k]);
            for (i, v) in tmp[..k].iter().enumerate() {
                // SAFETY: element (j + i, offset + r) of an [n, stride] buffer; r lies in this part's range.
                unsafe { seg.out.add((j + i) * seg.stride + seg.offset + r, v + bias, true) };
            }
        });
    }
}

/// `f(first, count)` for each tile of `n` rows, `MAX_ROWS` at a time, never across the end of a lane's rows
/// (`lanes`: their counts, in order; empty: one lane).
fn tiles(n: usize, lanes: &[usize], mut f: impl FnMut(usize, usize)) {
    let one = [n];
    let mut start = 0;
    for &len in if lanes.is_empty() { &one[..] } else { lanes } {
        let end = (start + len).min(n);
        let mut j = start;
        while j < end {
            let k = (end - j).min(MAX_ROWS);
            f(j, k);
            j += k;
        }
        start = end;
    }
}
