//! The LoRA factors as the host holds them (f32, f16, or Q8_0 blocks: decode reads both every token, so their
//! bytes are most of their cost) and their products: `x · Aᵀ` rows, and the rank-r update of a chunk of one
//! output row. AVX2+FMA+F16C where the CPU has them, plain loops elsewhere.

use half::f16;

mod q8;

pub use q8::{QCols, QuantT, quantize_t};

use crate::quant::Weights;

/// `Σ a·x`, f16 `a` against f32 `x` (over `min(len)` elements).
pub fn dot_f16(a: &[f16], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::simd_available() {
        // SAFETY: AVX2, FMA and F16C are present (checked at run time above).
        return unsafe { x86::dot_f16(a, x) };
    }
    a.iter().zip(x).map(|(a, x)| a.to_f32() * x).sum()
}

/// `out[c] += Σ_k t[k] · b[k · stride + start + c]` for every `c < out.len()`: the update `(x Aᵀ) · (scale·Bᵀ)`
/// of output columns `start..start + out.len()` of one row, `b` being `[t.len(), stride]`.
///
/// Panics if `b` is shorter than `(t.len() − 1) · stride + start + out.len()` (the caller checked the shapes).
pub fn update_f16(t: &[f32], b: &[f16], stride: usize, start: usize, out: &mut [f32]) {
    if let Some(last) = t.len().checked_sub(1) {
        assert!(last * stride + start + out.len() <= b.len(), "LoRA update: B of {} values too short", b.len());
    }
    #[cfg(target_arch = "x86_64")]
    if crate::quant::simd_available() {
        // SAFETY: AVX2, FMA and F16C are present (checked at run time above); the bound is asserted above.
        return unsafe { x86::update_f16(t, b, stride, start, out) };
    }
    for (c, o) in out.iter_mut().enumerate() {
        let mut acc = *o;
        for (k, &tk) in t.iter().enumerate() {
            acc += tk * b[k * stride + start + c].to_f32();
        }
        *o = acc;
    }
}

/// A low-rank update `scale · (x Aᵀ) Bᵀ` added to a base weight's output.
#[derive(Clone, Copy)]
pub struct Lora<'a> {
    /// A, row-major `[r, in]`.
    pub a: Factor<'a>,
    pub rank: usize,
    /// scale · Bᵀ, row-major `[r, out]`.
    pub b: Factor<'a>,
}

impl Lora<'_> {
    /// Whether `other` holds the very same factors (one adapter, on another lane's rows).
    pub fn same(&self, other: &Lora<'_>) -> bool {
        self.rank == other.rank && self.a.same(&other.a) && self.b.same(&other.b)
    }
}

/// A LoRA factor's numbers: f32, f16, or 8-bit (a quarter of f32's bytes; decode reads both factors every
/// token). An 8-bit A is Q8_0 `[r, in]` weights multiplied against the quantized input like a base weight's
/// rows (repacked when r is a multiple of the group); an 8-bit scale·Bᵀ is `QCols` (one scale per output).
#[derive(Clone, Copy)]
pub enum Factor<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Q8(&'a Weights),
    Cols(&'a QCols),
}

impl Factor<'_> {
    pub fn len(&self) -> usize {
        match self {
            Factor::F32(v) => v.len(),
            Factor::F16(v) => v.len(),
            Factor::Q8(w) => w.rows * w.cols,
            Factor::Cols(b) => b.outputs * b.rank,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same numbers in the same memory.
    fn same(&self, other: &Factor<'_>) -> bool {
        match (self, other) {
            (Factor::F32(a), Factor::F32(b)) => std::ptr::eq(*a, *b),
            (Factor::F16(a), Factor::F16(b)) => std::ptr::eq(*a, *b),
            (Factor::Q8(a), Factor::Q8(b)) => std::ptr::eq(*a, *b),
            (Factor::Cols(a), Factor::Cols(b)) => std::ptr::eq(*a, *b),
            _ => false,
        }
    }

    /// Whether a row's `x Aᵀ` gets the same bits in a tile of any row count (the repacked group kernels and
    /// the float dots do; the row kernels of a block format in rows do not).
    pub(crate) fn batch_invariant(&self) -> bool {
        match self {
            Factor::Q8(w) => w.group(0).is_some(),
            _ => true,
        }
    }

    /// Row `r` (of `cols`) against the f32 `x` (a Q8_0 A is multiplied against quantized input instead, by
    /// the matmul; here it is dequantized, for completeness).
    pub(crate) fn dot(&self, r: usize, cols: usize, x: &[f32]) -> f32 {
        match self {
            Factor::F32(a) => crate::simd::dot(&a[r * cols..(r + 1) * cols], x),
            Factor::F16(a) => dot_f16(&a[r * cols..(r + 1) * cols], x),
            Factor::Q8(w) => {
                let mut row = vec![0f32; w.cols];
                w.dequantize_row(r, &mut row);
                crate::simd::dot(&row, x)
            }
            Factor::Cols(b) => (0..cols.min(x.len())).map(|c| b.value(c, r) * x[c]).sum(),
        }
    }

    /// `out += Σ_k t[k] · self[k, start..start + out.len()]`, `self` being `[t.len(), stride]`.
    pub(crate) fn update(&self, t: &[f32], stride: usize, start: usize, out: &mut [f32]) {
        match self {
            Factor::F32(b) => {
                for (k, &tk) in t.iter().enumerate() {
                    crate::simd::axpy(tk, &b[k * stride + start..k * stride + start + out.len()], out);
                }
            }
            Factor::F16(b) => update_f16(t, b, stride, start, out),
            Factor::Q8(b) => {
                // A's form: rows of Q8_0 along the input; as B (never built so) its rows are k, blocks along out.
                let mut row = vec![0f32; b.cols];
                for (k, &tk) in t.iter().enumerate().take(b.rows) {
                    b.dequantize_row(k, &mut row);
                    crate::simd::axpy(tk, &row[start..start + out.len()], out);
                }
            }
            Factor::Cols(b) => b.update(t, start, out),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    /// SAFETY: the caller checked AVX2, FMA and F16C; loads stay within `n = min(len)` elements.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(a: &[f16], x: &[f32]) -> f32 {
        let n = a.len().min(x.len());
        let (pa, px) = (a.as_ptr().cast::<u16>(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: i + 32 (then i + 8) <= n for both slices; f16 is 2 bytes, 8 of them one unaligned 128-bit load.
        unsafe {
            while i + 32 <= n {
                for (u, acc) in acc.iter_mut().enumerate() {
                    let w = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i + 8 * u).cast()));
                    *acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(px.add(i + 8 * u)), *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                let w = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i).cast()));
                acc[0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(px.add(i)), acc[0]);
                i += 8;
            }
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let mut sum = _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
        for j in i..n {
            sum += a[j].to_f32() * x[j];
        }
        sum
    }

    /// SAFETY: the caller checked AVX2, FMA and F16C and that `b` holds `(t.len() − 1) · stride + start +
    /// out.len()` values.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn update_f16(t: &[f32], b: &[f16], stride: usize, start: usize, out: &mut [f32]) {
        let n = out.len();
        let (pb, po) = (b.as_ptr().cast::<u16>(), out.as_mut_ptr());
        let mut c = 0;
        // SAFETY: every load of B reads k · stride + start + c + 8·u + 8 <= the asserted length, and every
        // load or store of `out` stays below n.
        unsafe {
            // 32 columns at a time: four accumulators stay in registers across the rank.
            while c + 32 <= n {
                let mut acc: [__m256; 4] = std::array::from_fn(|u| _mm256_loadu_ps(po.add(c + 8 * u)));
                for (k, &tk) in t.iter().enumerate() {
                    let (tv, row) = (_mm256_set1_ps(tk), pb.add(k * stride + start + c));
                    for (u, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(tv, _mm256_cvtph_ps(_mm_loadu_si128(row.add(8 * u).cast())), *acc);
                    }
                }
                for (u, acc) in acc.iter().enumerate() {
                    _mm256_storeu_ps(po.add(c + 8 * u), *acc);
                }
                c += 32;
            }
            while c + 8 <= n {
                let mut acc = _mm256_loadu_ps(po.add(c));
                for (k, &tk) in t.iter().enumerate() {
                    let w = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(k * stride + start + c).cast()));
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(tk), w, acc);
                }
                _mm256_storeu_ps(po.add(c), acc);
                c += 8;
            }
        }
        for (c, o) in out.iter_mut().enumerate().skip(c) {
            for (k, &tk) in t.iter().enumerate() {
                *o += tk * b[k * stride + start + c].to_f32();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn halves(n: usize, scale: f32, rng: &mut StdRng) -> Vec<f16> {
        (0..n).map(|_| f16::from_f32(rng.random_range(-scale..scale))).collect()
    }

    #[test]
    fn dot_matches_an_f64_sum_at_odd_lengths() {
        let mut rng = StdRng::seed_from_u64(3);
        for n in [0, 1, 7, 8, 31, 33, 100, 577, 1537] {
            let a = halves(n, 1.0, &mut rng);
            let x: Vec<f32> = (0..n).map(|_| rng.random_range(-4.0..4.0)).collect();
            let want: f64 = a.iter().zip(&x).map(|(a, x)| a.to_f64() * *x as f64).sum();
            let norm: f64 = a.iter().zip(&x).map(|(a, x)| (a.to_f64() * *x as f64).abs()).sum();
            let got = dot_f16(&a, &x) as f64;
            // f32 accumulation: a few ulps of the sum of magnitudes.
            assert!((got - want).abs() <= 1e-6 * norm + 1e-12, "n={n}: {got} vs {want}");
        }
        assert_eq!(dot_f16(&[f16::ZERO; 40], &[3.0; 40]), 0.0);
    }

    #[test]
    fn update_matches_an_f64_sum_over_odd_chunks() {
        let mut rng = StdRng::seed_from_u64(4);
        for (rank, stride, start, len) in
            [(16, 576, 0, 576), (5, 37, 3, 29), (1, 9, 0, 9), (3, 100, 41, 59), (16, 1537, 8, 1500)]
        {
            let b = halves(rank * stride, 2.0, &mut rng);
            let t: Vec<f32> = (0..rank).map(|_| rng.random_range(-3.0..3.0)).collect();
            let base: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut out = base.clone();
            update_f16(&t, &b, stride, start, &mut out);
            for c in 0..len {
                let terms = t.iter().enumerate().map(|(k, &tk)| tk as f64 * b[k * stride + start + c].to_f64());
                let want = base[c] as f64 + terms.clone().sum::<f64>();
                let norm = base[c].abs() as f64 + terms.map(f64::abs).sum::<f64>();
                assert!(
                    (out[c] as f64 - want).abs() <= 1e-6 * norm + 1e-12,
                    "rank {rank} col {c}: {} vs {want}",
                    out[c]
                );
            }
        }
        let mut out = vec![1.5f32; 20];
        update_f16(&[7.0, -2.0], &[f16::ZERO; 40], 20, 0, &mut out);
        assert!(out.iter().all(|&v| v == 1.5));
        update_f16(&[], &[], 20, 0, &mut out);
        assert!(out.iter().all(|&v| v == 1.5));
    }

    #[test]
    fn extreme_values_stay_exact_where_f32_is() {
        // f16's largest finite value times a power of two: every product and sum is exact in f32.
        let a = vec![f16::MAX; 33];
        let x = vec![0.5f32; 33];
        assert_eq!(dot_f16(&a, &x), 65504.0 * 0.5 * 33.0);
        let tiny = vec![f16::from_f32(6.0e-8); 40];
        let mut out = vec![0f32; 40];
        update_f16(&[1.0], &tiny, 40, 0, &mut out);
        assert!(out.iter().all(|&v| v == f16::from_f32(6.0e-8).to_f32() && v > 0.0));
    }
}
