//! AVX2+FMA dot products of K-quant weight rows against 1..=4 Q8_K activation rows. Each super-block is
//! unpacked once into 8 vectors of unsigned quants (32 each) with its 16 sub-block scales and offsets, then
//! multiplied against every activation row: `maddubs` (u8 × i8 pairs), `madd` by the sub-block scale, and the
//! offsets (mins, or the fixed bias of Q3_K/Q6_K) through the activation's block sums.

use std::arch::x86_64::*;

use super::blocks::{ACT_BYTES, QK};
use crate::quant::Kind;

type DotFn = fn(usize, &[u8], &[&[u8]], &mut [f32]);

/// The AVX2 dot product of `kind`, if it has one and the CPU converts f16 in hardware (as every AVX2 CPU
/// does; checked here as well, so these kernels never rest on what a caller checked).
pub fn dot_fn(kind: Kind) -> Option<DotFn> {
    if !std::arch::is_x86_feature_detected!("f16c") {
        return None;
    }
    Some(match kind {
        Kind::Q2_K => dot::<Q2K>,
        Kind::Q3_K => dot::<Q3K>,
        Kind::Q4_K => dot::<Q4K>,
        Kind::Q5_K => dot::<Q5K>,
        Kind::Q6_K => dot::<Q6K>,
        _ => return None,
    })
}

/// One super-block unpacked for the SIMD loop: element `e = 32c + l` is `d · sc[e/16] · u[c][l] − dmin ·
/// off[e/16]` (for Q3_K and Q6_K, `dmin = d` and `off` is the bias times the scale, subtracted in
/// integers).
struct Block {
    u: [__m256i; 8],
    /// 16 × i16: the scale of each 16-element sub-block, split: even sub-blocks in the low lane, odd ones
    /// in the high lane (see `split_scales`).
    sc: __m256i,
    /// 16 × i16: the offset of each sub-block.
    off: __m256i,
    d: f32,
    dmin: f32,
}

trait Format {
    const BYTES: usize;
    /// Whether the offset shares the scale `d` (subtract it in integers) or has its own `dmin`.
    const INT_OFFSET: bool;
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    unsafe fn unpack(b: &[u8]) -> Block;
}

fn dot<F: Format>(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    let nb = cols / QK;
    if !super::shapes_fit(cols, F::BYTES, nb, w, acts, out) {
        out.fill(f32::NAN);
        return;
    }
    // SAFETY: `dot_fn` is reached only through `quant::fast`, after `simd_available()` found AVX2 and FMA
    // and `dot_fn` found F16C; `shapes_fit` checked that every slice holds `nb` blocks, and the kernels
    // read only within them.
    unsafe {
        match acts.len() {
            1 => rows::<F, 1>(nb, w, acts, out),
            2 => rows::<F, 2>(nb, w, acts, out),
            // three rows' share of the unpacked block spilled more than it saved (measured slower than two
            // rows and then one); four still gain over two and two
            3 => {
                rows::<F, 2>(nb, w, &acts[..2], &mut out[..2]);
                rows::<F, 1>(nb, w, &acts[2..], &mut out[2..]);
            }
            _ => rows::<F, 4>(nb, w, acts, out),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn load(b: &[u8], at: usize) -> __m256i {
    let s = &b[at..at + 32];
    // SAFETY: `s` is 32 bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn load16(b: &[u8], at: usize) -> __m128i {
    let s = &b[at..at + 16];
    // SAFETY: `s` is 16 bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn half_at(b: &[u8], at: usize) -> f32 {
    let bits = u16::from_le_bytes([b[at], b[at + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The shuffle that `chunk_scale` uses for chunk `c`: word `c` of each lane across that lane.
const PICK: [[u8; 32]; 8] = {
    let mut t = [[0u8; 32]; 8];
    let mut c = 0;
    while c < 8 {
        let mut i = 0;
        while i < 32 {
            t[c][i] = (2 * c + i % 2) as u8;
            i += 1;
        }
        c += 1;
    }
    t
};

/// The i16 scales of chunk `c` (elements 32c..32c+32) from the split layout: sub-block 2c's scale across
/// the low lane, 2c+1's across the high lane, in one in-lane shuffle.
#[target_feature(enable = "avx2,fma,f16c")]
fn chunk_scale(split: __m256i, c: usize) -> __m256i {
    // SAFETY: PICK[c] is 32 bytes (`c` < 8 indexes it, checked).
    let pick = unsafe { _mm256_loadu_si256(PICK[c].as_ptr().cast()) };
    _mm256_shuffle_epi8(split, pick)
}

/// Sixteen i16 scales in sub-block order to the split layout `chunk_scale` reads: the even sub-blocks'
/// scales in the low lane, the odd ones' in the high lane.
#[target_feature(enable = "avx2,fma,f16c")]
fn split_scales(sc: __m256i) -> __m256i {
    // per lane: the even words, then the odd ones; then the lanes' even halves together, and odd halves
    let evens_odds = _mm256_setr_epi8(
        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
    );
    _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(sc, evens_odds))
}

/// # Safety
/// The CPU must have AVX2, FMA and F16C; `w` holds `nb` blocks of `F`, every `acts[r]` (`N` of them) `nb`
/// Q8_K blocks, and `out` at least `N` slots.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows<F: Format, const N: usize>(nb: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); N];
    let mut base = [std::ptr::null::<u8>(); N];
    for (p, a) in base.iter_mut().zip(acts) {
        *p = a.as_ptr();
    }
    for i in 0..nb {
        // SAFETY: AVX2, FMA and F16C are enabled here, as the caller promised.
        let b = unsafe { F::unpack(&w[i * F::BYTES..(i + 1) * F::BYTES]) };
        // SAFETY: every activation row holds `nb` blocks of ACT_BYTES (the caller's promise), so block `i`
        // starts within it; the reads below stay inside that block (quants at 4..260, sums at 260..292).
        let a: [*const u8; N] = std::array::from_fn(|r| unsafe { base[r].add(i * ACT_BYTES) });
        let mut sumi = [_mm256_setzero_si256(); N];
        for c in 0..8 {
            let scale = chunk_scale(b.sc, c);
            for r in 0..N {
                // SAFETY: bytes 4 + 32c .. 36 + 32c of block `i` (see above).
                let q8 = unsafe { _mm256_loadu_si256(a[r].add(4 + 32 * c).cast()) };
                // no saturation or overflow: quants are below 64, so a maddubs pair is at most 2·63·128,
                // and a madd by a scale of at most 128 in magnitude stays far inside i32
                let p = _mm256_maddubs_epi16(b.u[c], q8);
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(scale, p));
            }
        }
        for r in 0..N {
            // SAFETY: the block's f32 scale (bytes 0..4) and its sixteen i16 sums (260..292).
            let (d8, sums) = unsafe { (a[r].cast::<f32>().read_unaligned(), _mm256_loadu_si256(a[r].add(260).cast())) };
            let off = _mm256_madd_epi16(b.off, sums);
            if F::INT_OFFSET {
                let s = _mm256_sub_epi32(sumi[r], off);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d8 * b.d), _mm256_cvtepi32_ps(s), acc[r]);
            } else {
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d8 * b.d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(-d8 * b.dmin), _mm256_cvtepi32_ps(off), acc[r]);
            }
        }
    }
    for r in 0..N {
        out[r] = hsum(acc[r]);
    }
}

/// Eight 6-bit values from Q4_K/Q5_K's packed 12 bytes, for the two 16-element halves of each 32-element
/// sub-block: the scales in the split layout (the same eight in both lanes), the mins in sub-block order.
#[target_feature(enable = "avx2,fma,f16c")]
fn scales_mins_k4(s: &[u8]) -> (__m256i, __m256i) {
    let word = |k: usize| u32::from_le_bytes([s[4 * k], s[4 * k + 1], s[4 * k + 2], s[4 * k + 3]]);
    let (w0, w1, w2) = (word(0), word(1), word(2));
    // the bytes of ggml's get_scale_min_k4, four at a time
    let sc_lo = w0 & 0x3f3f_3f3f;
    let sc_hi = (w2 & 0x0f0f_0f0f) | (((w0 >> 6) & 0x0303_0303) << 4);
    let m_lo = w1 & 0x3f3f_3f3f;
    let m_hi = ((w2 >> 4) & 0x0f0f_0f0f) | (((w1 >> 6) & 0x0303_0303) << 4);
    let v = _mm_setr_epi32(sc_lo as i32, sc_hi as i32, m_lo as i32, m_hi as i32);
    let sc = _mm_cvtepu8_epi16(v);
    let m = _mm_cvtepu8_epi16(_mm_srli_si128::<8>(v));
    (_mm256_set_m128i(sc, sc), _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m)))
}

struct Q4K;
impl Format for Q4K {
    const BYTES: usize = 144;
    const INT_OFFSET: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(b: &[u8]) -> Block {
        let nib = _mm256_set1_epi8(0xF);
        let (sc, off) = scales_mins_k4(&b[4..16]);
        let mut u = [_mm256_setzero_si256(); 8];
        for j in 0..4 {
            let q = load(b, 16 + 32 * j);
            u[2 * j] = _mm256_and_si256(q, nib);
            u[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(q), nib);
        }
        Block { u, sc, off, d: half_at(b, 0), dmin: half_at(b, 2) }
    }
}

struct Q5K;
impl Format for Q5K {
    const BYTES: usize = 176;
    const INT_OFFSET: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(b: &[u8]) -> Block {
        let nib = _mm256_set1_epi8(0xF);
        let sixteen = _mm256_set1_epi8(0x10);
        let (sc, off) = scales_mins_k4(&b[4..16]);
        let qh = load(b, 16);
        // bit c of qh's bytes is the fifth bit of chunk c
        let high = |c: i32| {
            let bit = _mm256_set1_epi8(1 << c);
            _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), sixteen)
        };
        let mut u = [_mm256_setzero_si256(); 8];
        for j in 0..4 {
            let q = load(b, 48 + 32 * j);
            u[2 * j] = _mm256_or_si256(_mm256_and_si256(q, nib), high(2 * j as i32));
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), nib);
            u[2 * j + 1] = _mm256_or_si256(hi, high(2 * j as i32 + 1));
        }
        Block { u, sc, off, d: half_at(b, 0), dmin: half_at(b, 2) }
    }
}

struct Q6K;
impl Format for Q6K {
    const BYTES: usize = 210;
    const INT_OFFSET: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(b: &[u8]) -> Block {
        let nib = _mm256_set1_epi8(0xF);
        let mut u = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let (l1, l2, qh) = (load(b, 64 * h), load(b, 64 * h + 32), load(b, 128 + 32 * h));
            // masks come before shifts, so no bit crosses into the neighbouring byte of a 16-bit lane
            let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)));
            let h1 = _mm256_slli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(0x0C)));
            let h2 = _mm256_and_si256(qh, _mm256_set1_epi8(0x30));
            let h3 = _mm256_srli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(0xC0u8 as i8)));
            u[4 * h] = _mm256_or_si256(_mm256_and_si256(l1, nib), h0);
            u[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l2, nib), h1);
            u[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l1), nib), h2);
            u[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l2), nib), h3);
        }
        let sc = _mm256_cvtepi8_epi16(load16(b, 192));
        // quants are stored biased by 32
        let off = _mm256_slli_epi16::<5>(sc);
        let d = half_at(b, 208);
        Block { u, sc: split_scales(sc), off, d, dmin: d }
    }
}

struct Q3K;
impl Format for Q3K {
    const BYTES: usize = 110;
    const INT_OFFSET: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(b: &[u8]) -> Block {
        let three = _mm256_set1_epi8(3);
        let four = _mm256_set1_epi8(4);
        let hm = load(b, 0);
        let mut u = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let q = load(b, 32 + 32 * h);
            let shifted = [q, _mm256_srli_epi16::<2>(q), _mm256_srli_epi16::<4>(q), _mm256_srli_epi16::<6>(q)];
            for (k, s) in shifted.into_iter().enumerate() {
                let bit = _mm256_set1_epi8(1 << (4 * h + k));
                let high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), four);
                u[4 * h + k] = _mm256_or_si256(_mm256_and_si256(s, three), high);
            }
        }
        // the 16 six-bit scales, low nibbles from bytes 0..8 and high bit pairs from 8..12, four at a time
        let s = &b[96..108];
        let word = |k: usize| u32::from_le_bytes([s[4 * k], s[4 * k + 1], s[4 * k + 2], s[4 * k + 3]]);
        let (a0, a1, t) = (word(0), word(1), word(2));
        let (k2, k1) = (0x0f0f_0f0f, 0x0303_0303);
        let v = _mm_setr_epi32(
            ((a0 & k2) | ((t & k1) << 4)) as i32,
            ((a1 & k2) | (((t >> 2) & k1) << 4)) as i32,
            (((a0 >> 4) & k2) | (((t >> 4) & k1) << 4)) as i32,
            (((a1 >> 4) & k2) | (((t >> 6) & k1) << 4)) as i32,
        );
        let sc = _mm256_sub_epi16(_mm256_cvtepu8_epi16(v), _mm256_set1_epi16(32));
        // a quant is its three bits less 4
        let off = _mm256_slli_epi16::<2>(sc);
        let d = half_at(b, 108);
        Block { u, sc: split_scales(sc), off, d, dmin: d }
    }
}

struct Q2K;
impl Format for Q2K {
    const BYTES: usize = 84;
    const INT_OFFSET: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(b: &[u8]) -> Block {
        let three = _mm256_set1_epi8(3);
        let mut u = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let q = load(b, 16 + 32 * h);
            u[4 * h] = _mm256_and_si256(q, three);
            u[4 * h + 1] = _mm256_and_si256(_mm256_srli_epi16::<2>(q), three);
            u[4 * h + 2] = _mm256_and_si256(_mm256_srli_epi16::<4>(q), three);
            u[4 * h + 3] = _mm256_and_si256(_mm256_srli_epi16::<6>(q), three);
        }
        let s = load16(b, 0);
        let nib = _mm_set1_epi8(0xF);
        let sc = _mm256_cvtepu8_epi16(_mm_and_si128(s, nib));
        let off = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(s), nib));
        Block { u, sc: split_scales(sc), off, d: half_at(b, 80), dmin: half_at(b, 82) }
    }
}
