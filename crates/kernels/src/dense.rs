//! f32 matrix products over strided views for training's host step (frozen weights, LoRA factors,
//! attention), with gemm's packed kernels, the output split into blocks over the host pool — the one pool,
//! so no second set of threads spins against it — and row-parallel loops for the element-wise passes.

use std::ops::Range;

use crate::pool::{Pool, split};

/// A read-only `[rows, cols]` matrix inside a slice: element `(r, c)` at `r·rs + c·cs`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self { data, rs: cols, cs: 1 }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self { data: self.data, rs: self.cs, cs: self.rs }
    }

    /// The view from column `c` on (a head's block of a row-major matrix).
    pub fn from_col(self, c: usize) -> Self {
        Self { data: &self.data[(c * self.cs).min(self.data.len())..], ..self }
    }

    fn holds(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// A raw pointer the pool's parts share; each part touches only its own disjoint range.
#[derive(Clone, Copy)]
pub struct Ptr(pub *mut f32);
// SAFETY: used only to hand disjoint ranges of one live buffer to the parts of one pool call.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

impl Ptr {
    pub fn of(s: &mut [f32]) -> Self {
        Self(s.as_mut_ptr())
    }

    /// The pointer `n` elements on.
    ///
    /// # Safety
    /// The result stays inside the buffer `self` came from.
    pub unsafe fn add(self, n: usize) -> Self {
        // SAFETY: the caller's contract.
        Self(unsafe { self.0.add(n) })
    }

    /// # Safety
    /// `r` lies inside the buffer `self` came from, which outlives `'a`, and no other live slice overlaps it.
    pub unsafe fn slice<'a>(self, r: Range<usize>) -> &'a mut [f32] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(r.start), r.len()) }
    }
}

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MACS: usize = 1 << 18;

/// `dst[m, n] = beta · a[m, k] · b[k, n]`, plus `dst` when `accumulate`; `dst` row-major with row stride `ld`.
/// Panics when a view or `dst` is too short for its shape (a caller's bug, never data-dependent).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    pool: &Pool,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    ld: usize,
    a: View,
    b: View,
    beta: f32,
    accumulate: bool,
) {
    assert!(m == 0 || n == 0 || (m - 1) * ld + n <= dst.len(), "matmul: dst is shorter than its shape");
    let out = Ptr::of(dst);
    // SAFETY: dst holds the shape (asserted above); each part writes only its own block of it.
    let block =
        |rows: Range<usize>, cols: Range<usize>| unsafe { matmul_raw(out, rows, cols, k, ld, a, b, beta, accumulate) };
    if pool.threads() == 1 || m * n * k < PARALLEL_MACS {
        block(0..m, 0..n);
    } else if n >= m {
        pool.run(&|p, parts| block(0..m, split(n, p, parts, 16)));
    } else {
        pool.run(&|p, parts| block(split(m, p, parts, 4), 0..n));
    }
}

/// The block `rows × cols` of `matmul`'s product, on the calling thread, written through `dst` (the
/// product's `[0, 0]`, row stride `ld`).
///
/// # Safety
/// `dst` points into a live buffer holding every element of the block, which no other thread touches
/// meanwhile. (The views are checked here.)
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_raw(
    dst: Ptr,
    rows: Range<usize>,
    cols: Range<usize>,
    k: usize,
    ld: usize,
    a: View,
    b: View,
    beta: f32,
    accumulate: bool,
) {
    assert!(a.holds(rows.end, k) && b.holds(k, cols.end), "matmul: a view is shorter than its shape");
    if rows.is_empty() || cols.is_empty() {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in rows {
                // SAFETY: the caller's contract.
                unsafe { dst.slice(r * ld + cols.start..r * ld + cols.end) }.fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the views hold their shapes (asserted above); the block lies in dst (the caller's contract).
    unsafe {
        gemm::gemm(
            rows.len(),
            cols.len(),
            k,
            dst.0.add(rows.start * ld + cols.start),
            1,
            ld as isize,
            accumulate,
            a.data.as_ptr().add(rows.start * a.rs),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(cols.start * b.cs),
            b.cs as isize,
            b.rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Runs `f` over the pool's share of `0..rows`, each part a disjoint range.
pub fn par_rows(pool: &Pool, rows: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
    if pool.threads() == 1 || rows < 8 {
        f(0..rows);
    } else {
        pool.run(&|p, parts| {
            let r = split(rows, p, parts, 1);
            if !r.is_empty() {
                f(r)
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn plain(m: usize, n: usize, k: usize, a: View, b: View) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|l| a.data[i * a.rs + l * a.cs] * b.data[l * b.rs + j * b.cs]).sum();
            }
        }
        out
    }

    #[test]
    fn products_over_transposed_views_match_a_plain_loop_split_or_not() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for threads in [1, 3] {
            let pool = Pool::new(threads);
            for (m, n, k) in [(1, 1, 1), (7, 13, 5), (70, 129, 33), (300, 40, 90), (5, 3, 0)] {
                let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
                let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
                // a as [m, k] row-major; b stored as [n, k] and read transposed.
                let (av, bv) = (View::rows(&a, k), View::rows(&b, k).t());
                let want = plain(m, n, k, av, bv);
                let mut got = vec![1.0; m * n];
                matmul(&pool, m, n, k, &mut got, n, av, bv, 2.0, true);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - (1.0 + 2.0 * w)).abs() < 1e-4, "{m}x{n}x{k}: {g} vs {}", 1.0 + 2.0 * w);
                }
                matmul(&pool, m, n, k, &mut got, n, av, bv, 1.0, false);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-4, "{m}x{n}x{k} (overwrite): {g} vs {w}");
                }
            }
        }
    }
}
