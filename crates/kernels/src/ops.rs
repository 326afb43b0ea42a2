//! The element-wise and per-row primitives of the host forward pass: RMSNorm, rope (both pair layouts, on
//! the leading dimensions of each head), the gated MLP's activations, and the tanh soft-cap, written as plain
//! loops over independent lanes so the compiler vectorizes them.

/// How rope pairs a head's dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairs {
    /// `(2i, 2i + 1)` rotate together (llama.cpp's `llama` layout).
    Interleaved,
    /// `(i, i + dims/2)` rotate together (Hugging Face's and llama.cpp's NEOX layout).
    Halves,
}

/// The gate's activation in a gated MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Silu,
    /// GELU, tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
}

/// Σ v² of a row, in eight independent lanes.
fn sum_squares(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k] * c[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out = x / √(mean(x²) + eps) · w` for every row of `x` (rows of `w.len()`).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let scale = 1.0 / (sum_squares(xr) / d as f32 + eps).sqrt();
        for ((o, v), g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

/// `rms_norm` in place.
pub fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let d = w.len();
    for xr in x.chunks_exact_mut(d) {
        let scale = 1.0 / (sum_squares(xr) / d as f32 + eps).sqrt();
        for (v, g) in xr.iter_mut().zip(w) {
            *v = *v * scale * g;
        }
    }
}

/// Rotates the leading `dims` dimensions of every head in `x` (one position: `[heads, head_dim]`) by that
/// position's `cos` and `sin` rows (`dims / 2` each); the other dimensions pass through.
pub fn rope(x: &mut [f32], head_dim: usize, dims: usize, cos: &[f32], sin: &[f32], pairs: Pairs) {
    let half = dims / 2;
    for head in x.chunks_exact_mut(head_dim) {
        match pairs {
            Pairs::Interleaved => {
                for (p, (c, s)) in head[..dims].chunks_exact_mut(2).zip(cos.iter().zip(sin)) {
                    let (a, b) = (p[0], p[1]);
                    p[0] = a * c - b * s;
                    p[1] = a * s + b * c;
                }
            }
            Pairs::Halves => {
                let (lo, hi) = head[..dims].split_at_mut(half);
                for (((a, b), c), s) in lo.iter_mut().zip(hi.iter_mut()).zip(cos).zip(sin) {
                    let (x0, x1) = (*a, *b);
                    *a = x0 * c - x1 * s;
                    *b = x0 * s + x1 * c;
                }
            }
        }
    }
}

/// `gate[i] = act(gate[i]) · up[i]`.
pub fn gated(act: Act, gate: &mut [f32], up: &[f32]) {
    match act {
        Act::Silu => crate::simd::silu_mul(gate, up),
        Act::GeluTanh => {
            const SQRT_2_OVER_PI: f32 = 0.797_884_6;
            for (g, u) in gate.iter_mut().zip(up) {
                let v = *g;
                *g = 0.5 * v * (1.0 + (SQRT_2_OVER_PI * v * (1.0 + 0.044715 * v * v)).tanh()) * u;
            }
        }
    }
}

/// `x = cap · tanh(x / cap)`.
pub fn soft_cap(x: &mut [f32], cap: f32) {
    for v in x {
        *v = (*v / cap).tanh() * cap;
    }
}

/// `Σ a·b` in eight independent lanes.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += x` (the residual add).
pub fn add(y: &mut [f32], x: &[f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += v;
    }
}

/// `x *= s`.
pub fn scale(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

/// `y += t · x`.
pub fn axpy(t: f32, x: &[f32], y: &mut [f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += t * v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f64], tol: f64) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((f64::from(*x) - y).abs() <= tol * (1.0 + y.abs()), "element {i}: {x} vs {y}");
        }
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 500.0 - 2.0).collect()
    }

    #[test]
    fn rms_norm_matches_the_formula_on_odd_widths() {
        for d in [1, 7, 64, 577] {
            let x = values(3 * d, 1);
            let w = values(d, 2);
            let mut out = vec![0f32; 3 * d];
            rms_norm(&x, &w, 1e-6, &mut out);
            let mut want = Vec::new();
            for r in x.chunks(d) {
                let ms = r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / d as f64;
                want.extend(r.iter().zip(&w).map(|(v, g)| f64::from(*v) / (ms + 1e-6).sqrt() * f64::from(*g)));
            }
            close(&out, &want, 1e-5);
            let mut inplace = x.clone();
            rms_norm_in_place(&mut inplace, &w, 1e-6);
            assert_eq!(inplace, out);
        }
    }

    #[test]
    fn rope_rotates_the_leading_dims_of_each_head_in_both_layouts() {
        let (heads, hd, dims) = (3, 10, 6);
        let x = values(heads * hd, 3);
        let angles: Vec<f64> = (0..dims / 2).map(|i| 0.3 + i as f64).collect();
        let cos: Vec<f32> = angles.iter().map(|a| a.cos() as f32).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin() as f32).collect();
        for pairs in [Pairs::Interleaved, Pairs::Halves] {
            let mut got = x.clone();
            rope(&mut got, hd, dims, &cos, &sin, pairs);
            let mut want: Vec<f64> = x.iter().map(|v| f64::from(*v)).collect();
            for h in 0..heads {
                for (i, a) in angles.iter().enumerate() {
                    let (p, q) = match pairs {
                        Pairs::Interleaved => (h * hd + 2 * i, h * hd + 2 * i + 1),
                        Pairs::Halves => (h * hd + i, h * hd + i + dims / 2),
                    };
                    let (x0, x1) = (f64::from(x[p]), f64::from(x[q]));
                    want[p] = x0 * a.cos() - x1 * a.sin();
                    want[q] = x0 * a.sin() + x1 * a.cos();
                }
            }
            close(&got, &want, 1e-6);
        }
    }

    #[test]
    fn activations_and_soft_cap_match_their_formulas() {
        let g = values(37, 4);
        let u = values(37, 5);
        for act in [Act::Silu, Act::GeluTanh] {
            let mut got = g.clone();
            gated(act, &mut got, &u);
            let want: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(&x, &u)| {
                    let (x, u) = (f64::from(x), f64::from(u));
                    let a = match act {
                        Act::Silu => x / (1.0 + (-x).exp()),
                        Act::GeluTanh => {
                            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
                        }
                    };
                    a * u
                })
                .collect();
            close(&got, &want, 1e-5);
        }
        let mut x = values(37, 6);
        let want: Vec<f64> = x.iter().map(|&v| (f64::from(v) / 1.5).tanh() * 1.5).collect();
        soft_cap(&mut x, 1.5);
        close(&x, &want, 1e-6);
    }

    #[test]
    fn dot_and_axpy_on_odd_lengths() {
        for n in [0, 1, 9, 64, 67] {
            let (a, b) = (values(n, 7), values(n, 8));
            let want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-4 * (1.0 + want.abs()));
            let mut y = b.clone();
            axpy(0.5, &a, &mut y);
            let mut sum = b.clone();
            add(&mut sum, &a);
            scale(&mut sum, 2.0);
            let twice: Vec<f64> = a.iter().zip(&b).map(|(x, y)| 2.0 * (f64::from(*x) + f64::from(*y))).collect();
            close(&sum, &twice, 1e-6);
            let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| 0.5 * f64::from(*x) + f64::from(*y)).collect();
            close(&y, &want, 1e-6);
        }
    }
}
