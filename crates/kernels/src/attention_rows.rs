//! One query's attention inner loops over a run of keys and values laid out contiguously (`[keys, head_dim]`):
//! the scores `q·k`, eight keys at a time with one horizontal reduction per four, and the weighted sum of
//! the values with the output held in registers, 64 dimensions at a time (AVX2+FMA; per-key loops elsewhere).

use crate::simd::{axpy, dot};

/// `out[t] = q · keys[t]` for every `t < out.len()`, each key `hd` values.
pub(super) fn dots(q: &[f32], keys: &[f32], hd: usize, out: &mut [f32]) {
    let hd_ok = hd.is_multiple_of(8) && q.len() >= hd && keys.len() >= out.len() * hd;
    #[cfg(target_arch = "x86_64")]
    if hd_ok && crate::quant::simd_available() {
        // SAFETY: AVX2 and FMA are present (checked at run time above); the lengths are checked above.
        return unsafe { x86::dots(q, keys, hd, out) };
    }
    let _ = hd_ok;
    for (t, o) in out.iter_mut().enumerate() {
        *o = dot(&q[..hd], &keys[t * hd..(t + 1) * hd]);
    }
}

/// `o = Σ_t w[t] · values[t]` (overwritten), each value row `hd` values.
pub(super) fn weighted(w: &[f32], values: &[f32], hd: usize, o: &mut [f32]) {
    let hd_ok = hd.is_multiple_of(8) && o.len() >= hd && values.len() >= w.len() * hd;
    #[cfg(target_arch = "x86_64")]
    if hd_ok && crate::quant::simd_available() {
        // SAFETY: AVX2 and FMA are present (checked at run time above); the lengths are checked above.
        return unsafe { x86::weighted(w, values, hd, o) };
    }
    let _ = hd_ok;
    let o = &mut o[..hd];
    o.fill(0.0);
    for (t, &wt) in w.iter().enumerate() {
        axpy(wt, &values[t * hd..(t + 1) * hd], o);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// SAFETY: AVX2 and FMA; `hd % 8 == 0`, `q.len() >= hd`, `keys.len() >= out.len() · hd`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots(q: &[f32], keys: &[f32], hd: usize, out: &mut [f32]) {
        let (qp, kp, n) = (q.as_ptr(), keys.as_ptr(), out.len());
        let mut t = 0;
        // Eight keys at a time keep eight FMA chains in flight (four leave half the FMA units idle); each
        // four's reduction is the same, so a key's score does not depend on which loop took it.
        while t + 8 <= n {
            // SAFETY: keys t..t + 8 are whole (t + 8 <= n); the caller's bounds.
            unsafe { scores::<8>(qp, kp, hd, t, out) };
            t += 8;
        }
        while t + 4 <= n {
            // SAFETY: as above, t + 4 <= n.
            unsafe { scores::<4>(qp, kp, hd, t, out) };
            t += 4;
        }
        while t < n {
            let mut a = _mm256_setzero_ps();
            let mut d = 0;
            while d < hd {
                // SAFETY: d + 8 <= hd; key t is whole.
                unsafe { a = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(d)), _mm256_loadu_ps(kp.add(t * hd + d)), a) };
                d += 8;
            }
            let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            out[t] = _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)));
            t += 1;
        }
    }

    /// `out[t..t + K] = q · keys[t..t + K]` in K accumulators, each four reduced pairwise, then the two halves.
    /// SAFETY: AVX2 and FMA; `hd % 8 == 0`, `q` holds `hd` values, keys `t..t + K` are whole, `t + K <= out.len()`,
    /// `K % 4 == 0`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scores<const K: usize>(qp: *const f32, kp: *const f32, hd: usize, t: usize, out: &mut [f32]) {
        let mut acc = [_mm256_setzero_ps(); K];
        let mut d = 0;
        while d < hd {
            // SAFETY: d + 8 <= hd; keys t..t + K are whole (the caller's bound).
            unsafe {
                let qv = _mm256_loadu_ps(qp.add(d));
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kp.add((t + i) * hd + d)), *a);
                }
            }
            d += 8;
        }
        for (g, a) in acc.chunks_exact(4).enumerate() {
            let h = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
            let s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
            // SAFETY: t + 4g + 4 <= t + K <= out.len().
            unsafe { _mm_storeu_ps(out.as_mut_ptr().add(t + 4 * g), s) };
        }
    }

    /// SAFETY: AVX2 and FMA; `hd % 8 == 0`, `o.len() >= hd`, `values.len() >= w.len() · hd`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted(w: &[f32], values: &[f32], hd: usize, o: &mut [f32]) {
        let mut c = 0;
        while c < hd {
            // SAFETY: columns c.. of width (hd − c).min(64), a multiple of 8, inside every row and o.
            unsafe {
                match (hd - c).min(64) / 8 {
                    8 => chunk::<8>(w, values, hd, c, o),
                    7 => chunk::<7>(w, values, hd, c, o),
                    6 => chunk::<6>(w, values, hd, c, o),
                    5 => chunk::<5>(w, values, hd, c, o),
                    4 => chunk::<4>(w, values, hd, c, o),
                    3 => chunk::<3>(w, values, hd, c, o),
                    2 => chunk::<2>(w, values, hd, c, o),
                    _ => chunk::<1>(w, values, hd, c, o),
                }
            }
            c += 64;
        }
    }

    /// Columns `c..c + 8K` of the weighted sum, accumulated in K registers.
    /// SAFETY: AVX2 and FMA; those columns lie inside every value row and `o`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn chunk<const K: usize>(w: &[f32], values: &[f32], hd: usize, c: usize, o: &mut [f32]) {
        let mut acc = [_mm256_setzero_ps(); K];
        let vp = values.as_ptr();
        for (t, &wt) in w.iter().enumerate() {
            let wv = _mm256_set1_ps(wt);
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: row t's columns c + 8k.. (the caller's bound).
                *a = _mm256_fmadd_ps(wv, unsafe { _mm256_loadu_ps(vp.add(t * hd + c + 8 * k)) }, *a);
            }
        }
        for (k, a) in acc.iter().enumerate() {
            // SAFETY: o's columns c + 8k.. (the caller's bound).
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(c + 8 * k), *a) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 2654435761usize + seed * 97) % 20001) as f32 / 10000.0 - 1.0).collect()
    }

    #[test]
    fn dots_match_f64_for_every_key_count_and_take_the_same_bits_in_any_longer_run() {
        for hd in [8, 64, 72] {
            let q = values(hd, 1);
            let keys = values(29 * hd, 2);
            let mut longest = vec![0f32; 29];
            dots(&q, &keys, hd, &mut longest);
            for n in 0..=29 {
                let mut out = vec![0f32; n];
                dots(&q, &keys, hd, &mut out);
                for (t, &o) in out.iter().enumerate() {
                    let terms = (0..hd).map(|d| f64::from(q[d]) * f64::from(keys[t * hd + d]));
                    let (want, norm) = (terms.clone().sum::<f64>(), terms.map(f64::abs).sum::<f64>());
                    assert!((f64::from(o) - want).abs() <= 1e-6 * norm, "hd {hd} n {n} key {t}: {o} vs {want}");
                    // A key in a whole group of four scores the same bits whatever else is in the run.
                    if t < n / 4 * 4 {
                        assert_eq!(o.to_bits(), longest[t].to_bits(), "hd {hd} n {n} key {t}");
                    }
                }
            }
        }
    }
}
