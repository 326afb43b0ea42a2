//! AVX2+FMA(+F16C) kernels of the float formats: 8 weights widened to f32 per load (f16 by F16C, bf16 by a
//! 16-bit shift), multiplied into 1..=4 activation rows, with independent accumulators to hide the FMA
//! latency, and no allocation.

use std::arch::x86_64::*;

use super::{Kernel, Kind, MAX_ROWS, plain};

/// A float weight format: its width and how 8 of its values become 8 f32.
trait Float {
    const KIND: Kind;
    const BYTES: usize;
    /// # Safety
    /// `p` points at `8 * BYTES` readable bytes.
    unsafe fn load8(p: *const u8) -> __m256;
}

struct F32;
struct F16;
struct Bf16;

impl Float for F32 {
    const KIND: Kind = Kind::F32;
    const BYTES: usize = 4;
    #[target_feature(enable = "avx2")]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: 32 readable bytes, as the caller promised; loadu has no alignment need.
        unsafe { _mm256_loadu_ps(p.cast()) }
    }
}

impl Float for F16 {
    const KIND: Kind = Kind::F16;
    const BYTES: usize = 2;
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: 16 readable bytes, as the caller promised.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
    }
}

impl Float for Bf16 {
    const KIND: Kind = Kind::BF16;
    const BYTES: usize = 2;
    #[target_feature(enable = "avx2")]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: 16 readable bytes, as the caller promised.
        let h = unsafe { _mm_loadu_si128(p.cast()) };
        // A bf16 is the top half of its f32.
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
    }
}

#[target_feature(enable = "avx2")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// `out[r] = Σ_c w[c]·acts[r][c]` over `cols`; the last `cols % 8` in scalar.
///
/// # Safety
/// `w` holds `cols` weights and every `acts[r]` `cols` f32.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows<L: Float, const N: usize>(cols: usize, w: *const u8, acts: [*const u8; N], out: &mut [f32]) {
    // Accumulators per row so that about four FMA chains are in flight whatever N is.
    const { assert!(N >= 1 && N <= MAX_ROWS) };
    let unroll = (4 / N).max(1);
    let mut acc = [[_mm256_setzero_ps(); N]; 4];
    let step = 8 * unroll;
    let mut c = 0;
    while c + step <= cols {
        for (u, acc) in acc.iter_mut().enumerate().take(unroll) {
            let at = c + 8 * u;
            // SAFETY: at + 8 <= cols, inside every row.
            let x = unsafe { L::load8(w.add(at * L::BYTES)) };
            for r in 0..N {
                // SAFETY: as above, for activation row r.
                let a = unsafe { _mm256_loadu_ps(acts[r].cast::<f32>().add(at)) };
                acc[r] = _mm256_fmadd_ps(x, a, acc[r]);
            }
        }
        c += step;
    }
    while c + 8 <= cols {
        // SAFETY: c + 8 <= cols.
        let x = unsafe { L::load8(w.add(c * L::BYTES)) };
        for r in 0..N {
            // SAFETY: as above.
            let a = unsafe { _mm256_loadu_ps(acts[r].cast::<f32>().add(c)) };
            acc[0][r] = _mm256_fmadd_ps(x, a, acc[0][r]);
        }
        c += 8;
    }
    let mut total = [0f32; N];
    for (r, t) in total.iter_mut().enumerate() {
        let mut v = acc[0][r];
        for acc in acc.iter().take(unroll).skip(1) {
            v = _mm256_add_ps(v, acc[r]);
        }
        *t = hsum(v);
    }
    for c in c..cols {
        // SAFETY: c < cols, inside every row; the weight and f32 reads have no alignment need.
        let x = unsafe {
            let p = w.add(c * L::BYTES);
            match L::KIND {
                Kind::F16 => half::f16::from_bits(std::ptr::read_unaligned(p.cast::<u16>())).to_f32(),
                Kind::BF16 => half::bf16::from_bits(std::ptr::read_unaligned(p.cast::<u16>())).to_f32(),
                _ => std::ptr::read_unaligned(p.cast::<f32>()),
            }
        };
        for (r, t) in total.iter_mut().enumerate() {
            // SAFETY: as above.
            *t += x * unsafe { std::ptr::read_unaligned(acts[r].cast::<f32>().add(c)) };
        }
    }
    for (o, t) in out.iter_mut().zip(total) {
        *o = t;
    }
}

/// Dispatches on the row count, 4 rows at a time; columns past the shortest input are not read.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot<L: Float>(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    let shortest = acts.iter().map(|a| a.len() / 4).min().unwrap_or(0);
    let cols = cols.min(w.len() / L::BYTES).min(shortest);
    for (a, o) in acts.chunks(MAX_ROWS).zip(out.chunks_mut(MAX_ROWS)) {
        let p = |r: usize| a[r].as_ptr();
        // SAFETY: cols elements fit in w and in every activation row (checked above).
        unsafe {
            match a.len().min(o.len()) {
                1 => rows::<L, 1>(cols, w.as_ptr(), [p(0)], o),
                2 => rows::<L, 2>(cols, w.as_ptr(), [p(0), p(1)], o),
                3 => rows::<L, 3>(cols, w.as_ptr(), [p(0), p(1), p(2)], o),
                _ => rows::<L, 4>(cols, w.as_ptr(), [p(0), p(1), p(2), p(3)], o),
            }
        }
    }
}

/// One row to f32, 8 at a time; the tail through the scalar reference.
#[target_feature(enable = "avx2,f16c")]
fn dequantize<L: Float>(w: &[u8], out: &mut [f32]) {
    let n = out.len().min(w.len() / L::BYTES);
    let whole = n / 8 * 8;
    for (c, o) in (0..whole).step_by(8).zip(out.chunks_exact_mut(8)) {
        // SAFETY: c + 8 <= n elements of w; o holds 8 f32.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), L::load8(w.as_ptr().add(c * L::BYTES))) };
    }
    (plain::reference(L::KIND).dequantize)(&w[whole * L::BYTES..], &mut out[whole..]);
}

macro_rules! kernels {
    ($($kind:ident => $fmt:ty, $dot:ident, $deq:ident;)*) => {
        $(
            fn $dot(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
                // SAFETY: `kernel` hands these out only once `simd_available()` found AVX2, FMA and F16C.
                unsafe { dot::<$fmt>(cols, w, acts, out) }
            }
            fn $deq(w: &[u8], out: &mut [f32]) {
                // SAFETY: as above.
                unsafe { dequantize::<$fmt>(w, out) }
            }
        )*

        /// The AVX2 kernel of a float `kind`; only called once `simd_available()` said yes.
        pub fn kernel(kind: Kind) -> Kernel {
            match kind {
                $(Kind::$kind => Kernel { dot: $dot, dequantize: $deq },)*
                _ => plain::reference(kind),
            }
        }
    };
}

kernels! {
    F32 => F32, dot_f32, deq_f32;
    F16 => F16, dot_f16, deq_f16;
    BF16 => Bf16, dot_bf16, deq_bf16;
}
