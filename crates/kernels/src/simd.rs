//! f32 vector loops the host forward runs per element (attention's dot products and weighted sums, softmax's
//! exponentials, the SiLU gate): AVX2+FMA where the CPU has them (checked once at run time), plain loops
//! elsewhere. The exponential is Cephes' `expf` (range reduction by ln 2, degree-6 polynomial): within 2 ulp
//! of libm's over the range softmax and SiLU use.

use std::sync::OnceLock;

fn avx2() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(crate::quant::simd_available)
}

/// `Σ a·b`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 and FMA are present (checked at run time above).
        return unsafe { x86::dot(a, b) };
    }
    crate::ops::dot(a, b)
}

/// `y += t · x`.
pub fn axpy(t: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 and FMA are present (checked at run time above).
        return unsafe { x86::axpy(t, x, y) };
    }
    crate::ops::axpy(t, x, y)
}

/// `x[i] = exp(x[i] − max)` for every element; returns their sum (softmax's numerator and denominator).
pub fn exp_sub_sum(x: &mut [f32], max: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 and FMA are present (checked at run time above).
        return unsafe { x86::exp_sub_sum(x, max) };
    }
    let mut sum = 0f32;
    for v in x {
        *v = (*v - max).exp();
        sum += *v;
    }
    sum
}

/// `x[i] *= scale` for every element; returns the largest result (attention's scaled scores and their max).
pub fn scale_max(x: &mut [f32], scale: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 and FMA are present (checked at run time above).
        return unsafe { x86::scale_max(x, scale) };
    }
    let mut max = f32::NEG_INFINITY;
    for v in x {
        *v *= scale;
        max = max.max(*v);
    }
    max
}

/// `gate[i] = silu(gate[i]) · up[i]`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 and FMA are present (checked at run time above).
        return unsafe { x86::silu_mul(gate, up) };
    }
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Asks the caches for every line of `bytes`, without waiting: data a kernel reads soon after a stall-free
/// stretch of other work (a LoRA's factors, read in short runs that the hardware prefetcher never ramps up on).
#[inline]
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = bytes.as_ptr();
        let last = bytes.len().saturating_sub(1);
        // The last byte too: an unaligned slice spans one more line than its length says.
        for at in (0..bytes.len()).step_by(64).chain((!bytes.is_empty()).then_some(last)) {
            // SAFETY: a prefetch of an address inside `bytes`; it reads nothing and cannot fault.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.add(at).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// SAFETY: the caller checked AVX2 and FMA; loads stay within `n = min(len)` elements.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY: i + 16 <= n for both slices.
        unsafe {
            while i + 16 <= n {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), s1);
                i += 16;
            }
            if i + 8 <= n {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
                i += 8;
            }
        }
        let mut sum = hsum(_mm256_add_ps(s0, s1));
        for j in i..n {
            sum += a[j] * b[j];
        }
        sum
    }

    /// SAFETY: the caller checked AVX2 and FMA; loads and stores stay within `n = min(len)` elements.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy(t: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let tv = _mm256_set1_ps(t);
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let mut i = 0;
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            while i + 8 <= n {
                let v = _mm256_fmadd_ps(tv, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
                _mm256_storeu_ps(py.add(i), v);
                i += 8;
            }
        }
        for j in i..n {
            y[j] += t * x[j];
        }
    }

    /// Cephes' expf on 8 lanes (inputs clamped to ±88.4, where f32's exp over/underflows).
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.376_26)), _mm256_set1_ps(88.376_26));
        // n = round(x / ln 2); r = x − n·ln 2 in two steps for precision.
        let n = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let r2 = _mm256_mul_ps(r, r);
        let p = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
        // 2^n through the exponent bits (n within f32's normal range after the clamp).
        let e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
        _mm256_mul_ps(p, _mm256_castsi256_ps(e))
    }

    /// SAFETY: the caller checked AVX2 and FMA; loads and stores stay within `x`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_sub_sum(x: &mut [f32], max: f32) -> f32 {
        let n = x.len();
        let (m, p) = (_mm256_set1_ps(max), x.as_mut_ptr());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: i + 8 <= n.
        unsafe {
            while i + 8 <= n {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), m));
                _mm256_storeu_ps(p.add(i), e);
                acc = _mm256_add_ps(acc, e);
                i += 8;
            }
        }
        let mut sum = hsum(acc);
        for v in &mut x[i..] {
            *v = (*v - max).exp();
            sum += *v;
        }
        sum
    }

    /// SAFETY: the caller checked AVX2 and FMA; loads and stores stay within `x`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scale_max(x: &mut [f32], scale: f32) -> f32 {
        let n = x.len();
        let (s, p) = (_mm256_set1_ps(scale), x.as_mut_ptr());
        let mut acc = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        // SAFETY: i + 8 <= n.
        unsafe {
            while i + 8 <= n {
                let v = _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), s);
                _mm256_storeu_ps(p.add(i), v);
                acc = _mm256_max_ps(acc, v);
                i += 8;
            }
        }
        let mut lanes = [0f32; 8];
        // SAFETY: lanes holds 8 f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut max = lanes.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for v in &mut x[i..] {
            *v *= scale;
            max = max.max(*v);
        }
        max
    }

    /// SAFETY: the caller checked AVX2 and FMA; loads and stores stay within `n = min(len)` elements.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
        let n = gate.len().min(up.len());
        let (pg, pu) = (gate.as_mut_ptr(), up.as_ptr());
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            while i + 8 <= n {
                let g = _mm256_loadu_ps(pg.add(i));
                let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
                let s = _mm256_div_ps(g, _mm256_add_ps(one, e));
                _mm256_storeu_ps(pg.add(i), _mm256_mul_ps(s, _mm256_loadu_ps(pu.add(i))));
                i += 8;
            }
        }
        for j in i..n {
            gate[j] = gate[j] / (1.0 + (-gate[j]).exp()) * up[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, spread: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 2654435761usize % 20001) as f32 / 10000.0 - 1.0) * spread).collect()
    }

    #[test]
    fn dot_and_axpy_match_f64_on_odd_lengths() {
        for n in [0, 1, 7, 8, 15, 16, 17, 64, 333] {
            let (a, b) = (values(n, 3.0), values(n + 5, 2.0)[5..].to_vec());
            let want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-4 * (1.0 + want.abs()), "dot n {n}");
            let mut y = b.clone();
            axpy(-0.7, &a, &mut y);
            for ((o, x), y0) in y.iter().zip(&a).zip(&b) {
                assert!((f64::from(*o) - (-0.7 * f64::from(*x) + f64::from(*y0))).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn scale_max_scales_every_value_exactly_and_finds_the_largest() {
        for n in [0, 1, 7, 8, 9, 16, 23, 1301] {
            let x = values(n, 40.0);
            let mut got = x.clone();
            let max = scale_max(&mut got, 0.125);
            let want: Vec<f32> = x.iter().map(|v| v * 0.125).collect();
            assert_eq!(got, want, "n {n}");
            assert_eq!(max, want.iter().cloned().fold(f32::NEG_INFINITY, f32::max), "n {n}");
        }
        // The largest in the tail, past the last whole eight.
        let mut x = vec![-1f32; 19];
        x[18] = 5.0;
        assert_eq!(scale_max(&mut x, 2.0), 10.0);
    }

    #[test]
    fn exp_and_silu_stay_within_a_few_ulp_of_f64() {
        for n in [1, 9, 100] {
            for spread in [1.0, 30.0, 200.0] {
                let x = values(n, spread);
                let mut e = x.clone();
                let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let sum = exp_sub_sum(&mut e, max);
                // The difference is taken in f32 (as the kernel does), its exponential held to f64's.
                let want: Vec<f64> = x.iter().map(|v| f64::from(*v - max).exp()).collect();
                for (g, w) in e.iter().zip(&want) {
                    assert!(
                        (f64::from(*g) - w).abs() <= 3e-7 * w + 1e-38,
                        "exp({}) spread {spread}: {g} vs {w}",
                        w.ln()
                    );
                }
                let ws: f64 = want.iter().sum();
                assert!((f64::from(sum) - ws).abs() < 1e-5 * ws);
                let up = values(n, 1.5);
                let mut g = x.clone();
                silu_mul(&mut g, &up);
                for ((o, v), u) in g.iter().zip(&x).zip(&up) {
                    let (v, u) = (f64::from(*v), f64::from(*u));
                    let want = v / (1.0 + (-v).exp()) * u;
                    assert!(
                        (f64::from(*o) - want).abs() <= 1e-6 * (1.0 + want.abs()),
                        "silu({v}) · {u}: {o} vs {want}"
                    );
                }
            }
        }
    }
}
