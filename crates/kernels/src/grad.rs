//! The backward passes of the host forward's element-wise ops (RMSNorm, the gated activation, the soft-cap)
//! for training's host step: each gives the input's gradient only, as the weights they read are frozen.

use crate::ops::Act;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// RMSNorm's input gradient for every row of `x` (rows of `w.len()`): with `r = 1/√(mean(x²) + eps)` and
/// `g = w·dy`, `dx = r·g − x·r³·mean(x·g)`; added to `dx` when `accumulate`.
pub fn rms_norm_back(x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32], accumulate: bool) {
    let d = w.len();
    for ((xr, dyr), dxr) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
        let (mut ss, mut xg) = (0f32, 0f32);
        for ((v, g), wv) in xr.iter().zip(dyr).zip(w) {
            ss += v * v;
            xg += v * g * wv;
        }
        let r = 1.0 / (ss / d as f32 + eps).sqrt();
        let c = r * r * r * xg / d as f32;
        for (((o, v), g), wv) in dxr.iter_mut().zip(xr).zip(dyr).zip(w) {
            let t = r * g * wv - v * c;
            *o = if accumulate { *o + t } else { t };
        }
    }
}

/// The forward's `act(gate)·up` backward: given the pre-activation `gate`, `up` and the product's gradient
/// `d`, overwrites `gate` with its gradient `d·up·act'(gate)` and `up` with `d·act(gate)`.
pub fn gated_back(act: Act, gate: &mut [f32], up: &mut [f32], d: &[f32]) {
    for ((g, u), dv) in gate.iter_mut().zip(up.iter_mut()).zip(d) {
        let x = *g;
        let (a, da) = match act {
            Act::Silu => {
                let s = 1.0 / (1.0 + (-x).exp());
                (x * s, s * (1.0 + x * (1.0 - s)))
            }
            Act::GeluTanh => {
                let t = (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh();
                let dt = (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
                (0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * dt)
            }
        };
        *g = dv * *u * da;
        *u = dv * a;
    }
}

/// `cap·tanh(x/cap)`'s backward from its output `capped`: `d *= 1 − (capped/cap)²`.
pub fn soft_cap_back(capped: &[f32], cap: f32, d: &mut [f32]) {
    for (dv, c) in d.iter_mut().zip(capped) {
        let t = c / cap;
        *dv *= 1.0 - t * t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Central differences of `f` at `x` against `grad`, element by element.
    fn check(what: &str, x: &[f32], grad: &[f32], f: &dyn Fn(&[f32]) -> f64) {
        for i in 0..x.len() {
            let (mut hi, mut lo) = (x.to_vec(), x.to_vec());
            let h = 1e-2;
            hi[i] += h;
            lo[i] -= h;
            let num = (f(&hi) - f(&lo)) / (2.0 * h as f64);
            assert!((num - grad[i] as f64).abs() < 2e-3 * (1.0 + num.abs()), "{what}[{i}]: {num} vs {}", grad[i]);
        }
    }

    #[test]
    fn backward_passes_match_finite_differences() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.5..1.5)).collect() };
        let (d, eps) = (7, 1e-5);
        let (x, w, dy) = (rand(2 * d), rand(d), rand(2 * d));
        let loss = |x: &[f32]| {
            let mut y = vec![0.0; x.len()];
            crate::ops::rms_norm(x, &w, eps, &mut y);
            y.iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum::<f64>()
        };
        let mut dx = vec![0.0; 2 * d];
        rms_norm_back(&x, &w, eps, &dy, &mut dx, false);
        check("rms_norm", &x, &dx, &loss);

        for act in [Act::Silu, Act::GeluTanh] {
            let (g, u, dv) = (rand(11), rand(11), rand(11));
            let loss = |gu: &[f32]| {
                let (mut g, u) = (gu[..11].to_vec(), &gu[11..]);
                crate::ops::gated(act, &mut g, u);
                g.iter().zip(&dv).map(|(a, b)| (a * b) as f64).sum::<f64>()
            };
            let (mut dg, mut du) = (g.clone(), u.clone());
            gated_back(act, &mut dg, &mut du, &dv);
            check(&format!("{act:?}"), &[g, u].concat(), &[dg, du].concat(), &loss);
        }

        let (x, dy, cap) = (rand(9), rand(9), 1.3);
        let loss = |x: &[f32]| {
            let mut y = x.to_vec();
            crate::ops::soft_cap(&mut y, cap);
            y.iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum::<f64>()
        };
        let mut capped = x.clone();
        crate::ops::soft_cap(&mut capped, cap);
        let mut d = dy.clone();
        soft_cap_back(&capped, cap, &mut d);
        check("soft_cap", &x, &d, &loss);
    }
}
