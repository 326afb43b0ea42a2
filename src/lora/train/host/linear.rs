//! The host step's linear layers — a frozen `[out, in]` weight (and bias) plus, where adapted, a LoRA pair —
//! forward and backward over row blocks, and the row-parallel norm and activation passes around them.

use tunebench_kernels::dense::{Ptr, View, matmul, par_rows};
use tunebench_kernels::ops::{self, Act};
use tunebench_kernels::{grad, pool::Pool};

/// One frozen base layer on the host.
pub struct Linear {
    /// `[out, in]` row-major.
    pub w: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub out: usize,
    pub inp: usize,
    /// Index of its LoRA pair in the model's pairs (`TrainModel::lora` order), when adapted.
    pub lora: Option<usize>,
}

/// A LoRA pair's current values, read from its vars at the start of a step.
pub struct Pair {
    /// `[r, in]`.
    pub a: Vec<f32>,
    /// `[out, r]`.
    pub b: Vec<f32>,
    pub rank: usize,
    pub scale: f32,
}

/// A pair's gradients, accumulated over a step's passes.
pub struct PairGrad {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

impl Linear {
    /// `y [n, out] = x Wᵀ (+ bias) + scale · (x Aᵀ) Bᵀ`; returns `x Aᵀ` `[n, r]` (kept for the backward) when
    /// adapted.
    pub fn forward(&self, pool: &Pool, pairs: &[Pair], x: &[f32], n: usize, y: &mut [f32]) -> Option<Vec<f32>> {
        let (inp, out) = (self.inp, self.out);
        matmul(pool, n, out, inp, y, out, View::rows(x, inp), View::rows(&self.w, inp).t(), 1.0, false);
        if let Some(b) = &self.bias {
            y[..n * out].chunks_exact_mut(out).for_each(|row| ops::add(row, b));
        }
        let p = &pairs[self.lora?];
        let r = p.rank;
        let mut u = vec![0f32; n * r];
        matmul(pool, n, r, inp, &mut u, r, View::rows(x, inp), View::rows(&p.a, inp).t(), 1.0, false);
        matmul(pool, n, out, r, y, out, View::rows(&u, r), View::rows(&p.b, r).t(), p.scale, true);
        Some(u)
    }

    /// From `dy [n, out]`: the input's gradient into `dx` (added when `accumulate`; skipped without `dx`) and
    /// the pair's gradients added to `grads`. `x` and `u` are the forward's input and `x Aᵀ`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        pool: &Pool,
        pairs: &[Pair],
        grads: &mut [PairGrad],
        x: &[f32],
        u: Option<&[f32]>,
        dy: &[f32],
        n: usize,
        mut dx: Option<&mut [f32]>,
        accumulate: bool,
    ) {
        let (inp, out) = (self.inp, self.out);
        if let Some(dx) = dx.as_deref_mut() {
            matmul(pool, n, inp, out, dx, inp, View::rows(dy, out), View::rows(&self.w, inp), 1.0, accumulate);
        }
        let (Some(i), Some(u)) = (self.lora, u) else { return };
        let (p, g) = (&pairs[i], &mut grads[i]);
        let r = p.rank;
        let mut dyb = vec![0f32; n * r];
        matmul(pool, n, r, out, &mut dyb, r, View::rows(dy, out), View::rows(&p.b, r), 1.0, false);
        if let Some(dx) = dx {
            matmul(pool, n, inp, r, dx, inp, View::rows(&dyb, r), View::rows(&p.a, inp), p.scale, true);
        }
        matmul(pool, out, r, n, &mut g.b, r, View::rows(dy, out).t(), View::rows(u, r), p.scale, true);
        matmul(pool, r, inp, n, &mut g.a, inp, View::rows(&dyb, r).t(), View::rows(x, inp), p.scale, true);
    }
}

/// Rows of width `d` in `out` from a row function, in parallel.
fn rows_into(pool: &Pool, out: &mut [f32], d: usize, f: &(dyn Fn(std::ops::Range<usize>, &mut [f32]) + Sync)) {
    let rows = out.len() / d;
    let p = Ptr::of(out);
    // SAFETY: par_rows hands each part a disjoint range of rows, all inside `out`.
    par_rows(pool, rows, &|r| f(r.clone(), unsafe { p.slice(r.start * d..r.end * d) }));
}

/// `out = rms_norm(x)` row by row (rows of `w.len()`).
pub fn norm(pool: &Pool, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    rows_into(pool, out, d, &|r, o| ops::rms_norm(&x[r.start * d..r.end * d], w, eps, o));
}

/// `dx (+)= rms_norm'(x)ᵀ dy` row by row.
pub fn norm_back(pool: &Pool, x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32], accumulate: bool) {
    let d = w.len();
    rows_into(pool, dx, d, &|r, o| {
        let span = r.start * d..r.end * d;
        grad::rms_norm_back(&x[span.clone()], w, eps, &dy[span], o, accumulate)
    });
}

/// `gate = act(gate) · up`, in parallel.
pub fn gated(pool: &Pool, act: Act, gate: &mut [f32], up: &[f32], width: usize) {
    rows_into(pool, gate, width, &|r, g| ops::gated(act, g, &up[r.start * width..r.end * width]));
}

/// `gated`'s backward in place: `gate` and `up` (the forward's inputs) become their gradients.
pub fn gated_back(pool: &Pool, act: Act, gate: &mut [f32], up: &mut [f32], d: &[f32], width: usize) {
    let u = Ptr::of(up);
    rows_into(pool, gate, width, &|r, g| {
        let span = r.start * width..r.end * width;
        // SAFETY: the same disjoint rows of `up` as of `gate`.
        grad::gated_back(act, g, unsafe { u.slice(span.clone()) }, &d[span])
    });
}
