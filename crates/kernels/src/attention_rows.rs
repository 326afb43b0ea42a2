//! Attention's inner loops over a run of keys and values laid out contiguously (`[keys, head_dim]`): the
//! scores `q·k`, four keys at a time with one horizontal reduction per four, and the weighted sum of the
//! values with the output held in registers; for up to `HEADS` query heads of one kv head at once, so each
//! key and value is read once for all of them (AVX2+FMA, wider blocks with AVX-512; per-key loops elsewhere).
//! A head's numbers are the same bits whichever heads share its pass, and those of the one-head loops.

use half::f16;

use crate::simd::{axpy, dot};

/// An element a cache holds: f32, or f16 (widened exactly on load, so an f16 cache gives the bits of an f32
/// one holding the same values).
pub(super) trait Elem: Copy {
    fn to_f32(self) -> f32;
    /// Eight elements at `p` as f32.
    ///
    /// # Safety
    /// AVX2 and F16C; eight elements readable at `p`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
    /// Sixteen elements at `p` as f32.
    ///
    /// # Safety
    /// AVX-512F; sixteen elements readable at `p`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;
}

impl Elem for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: as the caller promised.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        // SAFETY: as the caller promised.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }
}

impl Elem for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: as the caller promised (F16C among the features of every caller).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: as the caller promised.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
}

/// `out[t] = q · keys[t]` for every `t < out.len()`, each key `hd` values.
pub(super) fn dots<T: Elem>(q: &[f32], keys: &[T], hd: usize, out: &mut [f32]) {
    let hd_ok = hd.is_multiple_of(8) && q.len() >= hd && keys.len() >= out.len() * hd;
    #[cfg(target_arch = "x86_64")]
    if hd_ok && crate::quant::simd_available() {
        // SAFETY: AVX2, FMA and F16C are present (checked at run time above); the lengths are checked above.
        return unsafe { x86::dots(q, keys, hd, out) };
    }
    let _ = hd_ok;
    let mut key = vec![0f32; hd];
    for (t, o) in out.iter_mut().enumerate() {
        for (k, e) in key.iter_mut().zip(&keys[t * hd..(t + 1) * hd]) {
            *k = e.to_f32();
        }
        *o = dot(&q[..hd], &key);
    }
}

/// `o = Σ_t w[t] · values[t]` (overwritten), each value row `hd` values.
pub(super) fn weighted<T: Elem>(w: &[f32], values: &[T], hd: usize, o: &mut [f32]) {
    let hd_ok = hd.is_multiple_of(8) && o.len() >= hd && values.len() >= w.len() * hd;
    #[cfg(target_arch = "x86_64")]
    if hd_ok && crate::quant::simd_available() {
        // SAFETY: AVX2, FMA and F16C are present (checked at run time above); the lengths are checked above.
        return unsafe { x86::weighted(w, values, hd, o) };
    }
    let _ = hd_ok;
    let o = &mut o[..hd];
    o.fill(0.0);
    let mut row = vec![0f32; hd];
    for (t, &wt) in w.iter().enumerate() {
        for (r, e) in row.iter_mut().zip(&values[t * hd..(t + 1) * hd]) {
            *r = e.to_f32();
        }
        axpy(wt, &row, o);
    }
}

/// Query heads one pass over a unit's keys and values serves: four keys' accumulators a head fill the sixteen
/// AVX2 registers (AVX-512's 32 take eight keys, or 64 value dimensions, a head).
pub(super) const HEADS: usize = 3;

/// `out[j][t] = qs[j] · keys[t]` for every `t < out[j].len()` and every head `j` (at most `HEADS`, the same
/// number of keys each): the bits `dots` gives each head alone, the keys read once for all.
pub(super) fn dots_heads<T: Elem>(qs: &[&[f32]], keys: &[T], hd: usize, out: &mut [&mut [f32]]) {
    let n = out.first().map_or(0, |o| o.len());
    let ok = hd.is_multiple_of(8)
        && qs.len() == out.len()
        && qs.len() <= HEADS
        && qs.iter().all(|q| q.len() >= hd)
        && out.iter().all(|o| o.len() == n)
        && keys.len() >= n * hd;
    #[cfg(target_arch = "x86_64")]
    if ok && crate::quant::simd_available() {
        let q: [*const f32; HEADS] = std::array::from_fn(|j| qs.get(j).map_or(std::ptr::null(), |q| q.as_ptr()));
        let o: [*mut f32; HEADS] =
            std::array::from_fn(|j| out.get_mut(j).map_or(std::ptr::null_mut(), |o| o.as_mut_ptr()));
        // SAFETY: AVX2, FMA and F16C are present (checked at run time above); the lengths are checked above, and only
        // the first `qs.len()` pointers are read.
        unsafe {
            let k = keys.as_ptr();
            match (qs.len(), std::arch::is_x86_feature_detected!("avx512vl")) {
                (1, false) => x86::dots_heads::<T, 1>([q[0]], k, hd, n, [o[0]]),
                (2, false) => x86::dots_heads::<T, 2>([q[0], q[1]], k, hd, n, [o[0], o[1]]),
                (_, false) => x86::dots_heads::<T, 3>([q[0], q[1], q[2]], k, hd, n, [o[0], o[1], o[2]]),
                (1, true) => x86::dots_heads_wide::<T, 1>([q[0]], k, hd, n, [o[0]]),
                (2, true) => x86::dots_heads_wide::<T, 2>([q[0], q[1]], k, hd, n, [o[0], o[1]]),
                (_, true) => x86::dots_heads_wide::<T, 3>([q[0], q[1], q[2]], k, hd, n, [o[0], o[1], o[2]]),
            }
        }
        return;
    }
    let _ = ok;
    for (q, o) in qs.iter().zip(out.iter_mut()) {
        dots(q, keys, hd, o);
    }
}

/// `o[j] = Σ_t w[j][t] · values[t]` (overwritten) for every head `j` (at most `HEADS`, as many weights each):
/// the bits `weighted` gives each head alone, the values read once for all.
pub(super) fn weighted_heads<T: Elem>(w: &[&[f32]], values: &[T], hd: usize, o: &mut [&mut [f32]]) {
    let n = w.first().map_or(0, |w| w.len());
    let ok = hd.is_multiple_of(8)
        && w.len() == o.len()
        && w.len() <= HEADS
        && w.iter().all(|w| w.len() == n)
        && o.iter().all(|o| o.len() >= hd)
        && values.len() >= n * hd;
    // 64 dimensions a pass take R·4 accumulators: the 32 registers of AVX-512 (in 16 the value rows would be
    // read in 32-dimension halves, which measured slower from memory than one head at a time).
    #[cfg(target_arch = "x86_64")]
    if ok && crate::quant::simd_available() && std::arch::is_x86_feature_detected!("avx512f") {
        let wp: [*const f32; HEADS] = std::array::from_fn(|j| w.get(j).map_or(std::ptr::null(), |w| w.as_ptr()));
        let op: [*mut f32; HEADS] =
            std::array::from_fn(|j| o.get_mut(j).map_or(std::ptr::null_mut(), |o| o.as_mut_ptr()));
        // SAFETY: AVX-512F, AVX2 and FMA are present (checked at run time above); the lengths are checked above,
        // and only the first `w.len()` pointers are read.
        unsafe {
            match w.len() {
                1 => x86::weighted_heads::<T, 1>([wp[0]], n, values.as_ptr(), hd, [op[0]]),
                2 => x86::weighted_heads::<T, 2>([wp[0], wp[1]], n, values.as_ptr(), hd, [op[0], op[1]]),
                _ => x86::weighted_heads::<T, 3>([wp[0], wp[1], wp[2]], n, values.as_ptr(), hd, [op[0], op[1], op[2]]),
            }
        }
        return;
    }
    let _ = ok;
    for (w, o) in w.iter().zip(o.iter_mut()) {
        weighted(w, values, hd, o);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Elem;

    /// One key's score alone (the last keys of a run that do not fill a four).
    /// SAFETY: AVX2 and FMA; `hd % 8 == 0`; `q` and `k` hold `hd` values.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn one<T: Elem>(q: *const f32, k: *const T, hd: usize) -> f32 {
        let mut a = _mm256_setzero_ps();
        let mut d = 0;
        while d < hd {
            // SAFETY: d + 8 <= hd (the caller's bound).
            unsafe { a = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(d)), T::load8(k.add(d)), a) };
            d += 8;
        }
        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    /// Four keys' scores from their accumulators, reduced pairwise, then the two halves.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn four(a: &[__m256; 4]) -> __m128 {
        let h = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
        _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h))
    }

    /// `dots` for R heads, four keys a block: each key loaded once and multiplied into every head's accumulator.
    /// SAFETY: AVX2 and FMA; `hd % 8 == 0`; each `q[j]` holds `hd` values and each `out[j]` `n`; the keys hold
    /// `n · hd`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dots_heads<T: Elem, const R: usize>(
        q: [*const f32; R],
        kp: *const T,
        hd: usize,
        n: usize,
        out: [*mut f32; R],
    ) {
        // SAFETY: the caller's bounds.
        unsafe { scores_all::<T, R, 4>(q, kp, hd, n, out) }
    }

    /// `dots_heads` eight keys a block: R·8 accumulators need the 32 registers of AVX-512VL, and twice the
    /// keys in flight at once read a short run of keys from memory faster.
    /// SAFETY: AVX-512F/VL, AVX2 and FMA; as `dots_heads`.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
    pub(super) unsafe fn dots_heads_wide<T: Elem, const R: usize>(
        q: [*const f32; R],
        kp: *const T,
        hd: usize,
        n: usize,
        out: [*mut f32; R],
    ) {
        // SAFETY: the caller's bounds.
        unsafe { scores_all::<T, R, 8>(q, kp, hd, n, out) }
    }

    /// Blocks of B keys, then of four, then single keys: every key's score is its four's reduction (or the
    /// single one's), whatever the block size, so each head's bits are those of `dots`.
    /// SAFETY: AVX2 and FMA; as `dots_heads`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn scores_all<T: Elem, const R: usize, const B: usize>(
        q: [*const f32; R],
        kp: *const T,
        hd: usize,
        n: usize,
        out: [*mut f32; R],
    ) {
        let mut t = 0;
        while t + B <= n {
            // SAFETY: keys t..t + B are whole (t + B <= n).
            unsafe { block::<T, R, B>(q, kp, hd, t, out) };
            t += B;
        }
        while t + 4 <= n {
            // SAFETY: as above, t + 4 <= n.
            unsafe { block::<T, R, 4>(q, kp, hd, t, out) };
            t += 4;
        }
        while t < n {
            for (qj, o) in q.iter().zip(out) {
                // SAFETY: key t < n is whole; t < n entries of the output.
                unsafe { *o.add(t) = one(*qj, kp.add(t * hd), hd) };
            }
            t += 1;
        }
    }

    /// Keys `t..t + B` (B a multiple of 4) against R queries.
    /// SAFETY: AVX2 and FMA; keys `t..t + B` are whole and every output holds `t + B`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn block<T: Elem, const R: usize, const B: usize>(
        q: [*const f32; R],
        kp: *const T,
        hd: usize,
        t: usize,
        out: [*mut f32; R],
    ) {
        let mut acc = [[_mm256_setzero_ps(); B]; R];
        let mut d = 0;
        while d < hd {
            for i in 0..B {
                // SAFETY: key t + i is whole; d + 8 <= hd.
                let k = unsafe { T::load8(kp.add((t + i) * hd + d)) };
                for (a, qj) in acc.iter_mut().zip(q) {
                    // SAFETY: d + 8 <= hd values of this head's query.
                    a[i] = _mm256_fmadd_ps(unsafe { _mm256_loadu_ps(qj.add(d)) }, k, a[i]);
                }
            }
            d += 8;
        }
        for (a, o) in acc.iter().zip(out) {
            for g in 0..B / 4 {
                // SAFETY: entries t + 4g..t + 4g + 4 of this head's output.
                unsafe { _mm_storeu_ps(o.add(t + 4 * g), four(&[a[4 * g], a[4 * g + 1], a[4 * g + 2], a[4 * g + 3]])) };
            }
        }
    }

    /// `weighted` for R heads, 64 dimensions at a time (16 a register): each value row loaded once for every
    /// head.
    /// SAFETY: AVX-512F, AVX2 and FMA; `hd % 8 == 0`; each `w[j]` holds `n` weights and each `o[j]` `hd`
    /// values; the values hold `n · hd`.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) unsafe fn weighted_heads<T: Elem, const R: usize>(
        w: [*const f32; R],
        n: usize,
        vp: *const T,
        hd: usize,
        o: [*mut f32; R],
    ) {
        let mut c = 0;
        while c + 16 <= hd {
            // SAFETY: columns c.. of width 16K ≤ hd − c, inside every row and output.
            unsafe {
                c += 16
                    * match (hd - c) / 16 {
                        1 => columns::<T, R, 1>(w, n, vp, hd, c, o),
                        2 => columns::<T, R, 2>(w, n, vp, hd, c, o),
                        3 => columns::<T, R, 3>(w, n, vp, hd, c, o),
                        _ => columns::<T, R, 4>(w, n, vp, hd, c, o),
                    };
            }
        }
        if c < hd {
            // The last eight (hd is a multiple of 8).
            let mut acc = [_mm256_setzero_ps(); R];
            for t in 0..n {
                // SAFETY: row t's columns c..c + 8 and weight t of each head (the caller's bounds).
                let v = unsafe { T::load8(vp.add(t * hd + c)) };
                for (a, wj) in acc.iter_mut().zip(w) {
                    // SAFETY: as above.
                    *a = _mm256_fmadd_ps(_mm256_set1_ps(unsafe { *wj.add(t) }), v, *a);
                }
            }
            for (a, oj) in acc.iter().zip(o) {
                // SAFETY: output columns c..c + 8.
                unsafe { _mm256_storeu_ps(oj.add(c), *a) };
            }
        }
    }

    /// Columns `c..c + 16K` of R heads' weighted sums, in R·K registers (each column's sum the same chain of
    /// multiply-adds over the keys as `chunk`'s); returns K.
    /// SAFETY: AVX-512F; those columns lie inside every value row and output.
    #[target_feature(enable = "avx512f")]
    unsafe fn columns<T: Elem, const R: usize, const K: usize>(
        w: [*const f32; R],
        n: usize,
        vp: *const T,
        hd: usize,
        c: usize,
        o: [*mut f32; R],
    ) -> usize {
        let mut acc = [[_mm512_setzero_ps(); K]; R];
        for t in 0..n {
            // SAFETY: weight t < n of each head.
            let wv: [__m512; R] = std::array::from_fn(|j| _mm512_set1_ps(unsafe { *w[j].add(t) }));
            for k in 0..K {
                // SAFETY: row t's columns c + 16k.. (the caller's bound).
                let v = unsafe { T::load16(vp.add(t * hd + c + 16 * k)) };
                for (a, wj) in acc.iter_mut().zip(&wv) {
                    a[k] = _mm512_fmadd_ps(*wj, v, a[k]);
                }
            }
        }
        for (a, oj) in acc.iter().zip(o) {
            for (k, v) in a.iter().enumerate() {
                // SAFETY: output columns c + 16k.. (the caller's bound).
                unsafe { _mm512_storeu_ps(oj.add(c + 16 * k), *v) };
            }
        }
        K
    }

    /// SAFETY: AVX2 and FMA; `hd % 8 == 0`, `q.len() >= hd`, `keys.len() >= out.len() · hd`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dots<T: Elem>(q: &[f32], keys: &[T], hd: usize, out: &mut [f32]) {
        // One head's loop is the several heads' one: eight keys a block keep eight FMA chains in flight.
        // SAFETY: the caller's bounds (q holds hd values, the keys out.len() · hd).
        unsafe { scores_all::<T, 1, 8>([q.as_ptr()], keys.as_ptr(), hd, out.len(), [out.as_mut_ptr()]) }
    }

    /// SAFETY: AVX2 and FMA; `hd % 8 == 0`, `o.len() >= hd`, `values.len() >= w.len() · hd`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn weighted<T: Elem>(w: &[f32], values: &[T], hd: usize, o: &mut [f32]) {
        let mut c = 0;
        while c < hd {
            // SAFETY: columns c.. of width (hd − c).min(64), a multiple of 8, inside every row and o.
            unsafe {
                match (hd - c).min(64) / 8 {
                    8 => chunk::<T, 8>(w, values, hd, c, o),
                    7 => chunk::<T, 7>(w, values, hd, c, o),
                    6 => chunk::<T, 6>(w, values, hd, c, o),
                    5 => chunk::<T, 5>(w, values, hd, c, o),
                    4 => chunk::<T, 4>(w, values, hd, c, o),
                    3 => chunk::<T, 3>(w, values, hd, c, o),
                    2 => chunk::<T, 2>(w, values, hd, c, o),
                    _ => chunk::<T, 1>(w, values, hd, c, o),
                }
            }
            c += 64;
        }
    }

    /// Columns `c..c + 8K` of the weighted sum, accumulated in K registers.
    /// SAFETY: AVX2 and FMA; those columns lie inside every value row and `o`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn chunk<T: Elem, const K: usize>(w: &[f32], values: &[T], hd: usize, c: usize, o: &mut [f32]) {
        let mut acc = [_mm256_setzero_ps(); K];
        let vp = values.as_ptr();
        for (t, &wt) in w.iter().enumerate() {
            let wv = _mm256_set1_ps(wt);
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: row t's columns c + 8k.. (the caller's bound).
                *a = _mm256_fmadd_ps(wv, unsafe { T::load8(vp.add(t * hd + c + 8 * k)) }, *a);
            }
        }
        for (k, a) in acc.iter().enumerate() {
            // SAFETY: o's columns c + 8k.. (the caller's bound).
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(c + 8 * k), *a) };
        }
    }
}

#[cfg(test)]
#[path = "attention_rows_tests.rs"]
mod tests;
