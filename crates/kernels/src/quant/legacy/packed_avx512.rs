//! The repacked legacy kernels on 512-bit registers (AVX-512 F, BW and VNNI): two neighbouring groups at
//! once (an interleaved pair, or Q8_0's groups g and g + 1), g's block in the low 256 bits and g + 1's in the
//! high ones, so that one broadcast activation dword and one `vpdpbusd` serve sixteen rows. An interleaved
//! pair's fields already sit side by side (see `packed`): each register is one load. Lane for lane these are
//! the integer sums and the float steps of the 256-bit VNNI kernel in `packed_avx2`, in the same order: the
//! same bits, so a row's value does not depend on whether its group was computed alone or in a pair.

use std::arch::x86_64::*;

use crate::quant::{MAX_ROWS, PREFETCH_AHEAD};

use super::packed::{GROUP, interleaved};
use super::packed_avx2::{AB, Packed};

/// Whether this CPU runs the pair kernels.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

/// An interleaved pair's eight quant registers for both groups, from the pair's block at `b` (fields as
/// `packed` lays them: each 32-byte register of group 2p beside group 2p + 1's), the same values as
/// `F::quants` gives each group.
///
/// # Safety
/// AVX-512 F and BW; `b` points at a whole pair block of an interleaved kind.
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn pair_quants<F: Packed>(b: *const u8) -> [__m512i; 8] {
    let m = _mm512_set1_epi8(0x0F);
    // The nibbles' four registers, each the pair's two halves in one load (a field at `off` in a group's own
    // block sits at `2·off` in the pair's).
    let nibbles = |q: usize| -> [__m512i; 8] {
        // SAFETY: the caller's bound: four 64-byte fields from `2q` on lie in the pair's block.
        let p: [__m512i; 4] = std::array::from_fn(|k| unsafe { _mm512_loadu_si512(b.add(2 * (q + 32 * k)).cast()) });
        [
            _mm512_and_si512(p[0], m),
            _mm512_and_si512(p[1], m),
            _mm512_and_si512(p[2], m),
            _mm512_and_si512(p[3], m),
            _mm512_and_si512(_mm512_srli_epi16::<4>(p[0]), m),
            _mm512_and_si512(_mm512_srli_epi16::<4>(p[1]), m),
            _mm512_and_si512(_mm512_srli_epi16::<4>(p[2]), m),
            _mm512_and_si512(_mm512_srli_epi16::<4>(p[3]), m),
        ]
    };
    if F::KIND != crate::quant::Kind::Q5_0 {
        return nibbles(F::Q);
    }
    // Q5_0: the fifth bits' register, then the nibbles (as `P50::quants`, on both halves at once).
    // SAFETY: as above, the fifth bits' 64-byte field.
    let h = unsafe { _mm512_loadu_si512(b.add(2 * F::Q).cast()) };
    let n = nibbles(F::Q + 32);
    let t = _mm512_set1_epi8(0x10);
    let fifth = |k: __m512i| _mm512_and_si512(k, t);
    [
        _mm512_or_si512(n[0], fifth(_mm512_slli_epi16::<4>(h))),
        _mm512_or_si512(n[1], fifth(_mm512_slli_epi16::<3>(h))),
        _mm512_or_si512(n[2], fifth(_mm512_slli_epi16::<2>(h))),
        _mm512_or_si512(n[3], fifth(_mm512_slli_epi16::<1>(h))),
        _mm512_or_si512(n[4], fifth(h)),
        _mm512_or_si512(n[5], fifth(_mm512_srli_epi16::<1>(h))),
        _mm512_or_si512(n[6], fifth(_mm512_srli_epi16::<2>(h))),
        _mm512_or_si512(n[7], fifth(_mm512_srli_epi16::<3>(h))),
    ]
}

/// Two groups' eight f16 values at byte `at` of their blocks `b0` and `b1`, as sixteen f32.
///
/// # Safety
/// AVX-512 F; 16 bytes readable at `b0 + at` and at `b1 + at`.
#[target_feature(enable = "avx512f,avx2,f16c")]
unsafe fn halves(b0: *const u8, b1: *const u8, at: usize) -> __m512 {
    // SAFETY: the caller's bound.
    let (lo, hi) = unsafe { (_mm_loadu_si128(b0.add(at).cast()), _mm_loadu_si128(b1.add(at).cast())) };
    _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi))
}

/// `out[r]` (group g) and `out[N + r]` (group g + 1) for activation row r, over `nb` blocks: an interleaved
/// pair's block b at `b · step` from `w` (`step`: `2 · BYTES`), or Q8_0's block b of g there and of g + 1
/// `second` bytes after it (a group's length); the `reach` bytes from `w` on may be prefetched.
///
/// # Safety
/// The features enabled below; `w` holds both groups' first `nb` blocks so placed; every `acts[r]` holds `nb`
/// Q8_0S blocks; `reach` bytes from `w` are one allocation; `out` holds `2N` entries.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn pair<F: Packed, const N: usize>(
    (nb, step, second): (usize, usize, usize),
    w: *const u8,
    reach: usize,
    acts: [*const u8; N],
    out: &mut [[f32; GROUP]],
) {
    let mut acc = [_mm512_setzero_ps(); N];
    for b in 0..nb {
        // Both groups' blocks `PREFETCH_AHEAD` bytes on (together they cover the bytes up to the next pair's),
        // non-temporal as in the group kernel: one run of lines where the pair is interleaved.
        let at = b * step + PREFETCH_AHEAD;
        if interleaved(F::KIND) {
            if at + 2 * F::BYTES <= reach {
                let mut line = 0;
                while line < 2 * F::BYTES {
                    // SAFETY: inside the `reach` bytes the caller handed over; a prefetch reads nothing.
                    unsafe { _mm_prefetch::<_MM_HINT_NTA>(w.add(at + line).cast()) };
                    line += 64;
                }
            }
        } else {
            for at in [at, at + second] {
                if at + F::BYTES <= reach {
                    let mut line = 0;
                    while line < F::BYTES {
                        // SAFETY: as above.
                        unsafe { _mm_prefetch::<_MM_HINT_NTA>(w.add(at + line).cast()) };
                        line += 64;
                    }
                }
            }
        }
        // SAFETY: b < nb: whole blocks of both groups, their 8 scales (and minimums) first.
        let (dw, mw, u) = unsafe {
            let b0 = w.add(b * step);
            if interleaved(F::KIND) {
                // The pair's block: both groups' scales (then minimums) in one 32-byte field, each quant
                // register's two halves in one 64-byte one.
                let both = |off: usize| _mm512_cvtph_ps(_mm256_loadu_si256(b0.add(2 * off).cast()));
                let mw = if F::MIN { both(16) } else { _mm512_setzero_ps() };
                (both(0), mw, pair_quants::<F>(b0))
            } else {
                let b1 = b0.add(second);
                let mw = if F::MIN { halves(b0, b1, 16) } else { _mm512_setzero_ps() };
                let (lo, hi) = (F::quants::<0>(b0), F::quants::<0>(b1));
                let u: [__m512i; 8] =
                    std::array::from_fn(|k| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo[k]), hi[k]));
                (halves(b0, b1, 0), mw, u)
            }
        };
        for r in 0..N {
            // SAFETY: b < nb: a whole activation block (head, then 32 quants).
            let (ab, y) = unsafe {
                let ab = acts[r].add(b * AB);
                (ab, ab.add(12).cast::<i32>())
            };
            // SAFETY: dword k < 8 of the block's 32 quants.
            let bc = |k: usize| unsafe { _mm512_set1_epi32(std::ptr::read_unaligned(y.add(k))) };
            let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            s0 = _mm512_dpbusd_epi32(s0, u[0], bc(0));
            s1 = _mm512_dpbusd_epi32(s1, u[1], bc(1));
            s0 = _mm512_dpbusd_epi32(s0, u[2], bc(2));
            s1 = _mm512_dpbusd_epi32(s1, u[3], bc(3));
            s0 = _mm512_dpbusd_epi32(s0, u[4], bc(4));
            s1 = _mm512_dpbusd_epi32(s1, u[5], bc(5));
            s0 = _mm512_dpbusd_epi32(s0, u[6], bc(6));
            s1 = _mm512_dpbusd_epi32(s1, u[7], bc(7));
            let mut sum = _mm512_add_epi32(s0, s1);
            if F::BIAS != 0 {
                // SAFETY: the block's i16 Σy at byte 2.
                let ysum = i32::from(unsafe { std::ptr::read_unaligned(ab.add(2).cast::<i16>()) });
                sum = _mm512_sub_epi32(sum, _mm512_set1_epi32(F::BIAS * ysum));
            }
            // SAFETY: the block's f32 d at byte 4 and d·Σy at byte 8.
            let da = unsafe { _mm512_set1_ps(std::ptr::read_unaligned(ab.add(4).cast::<f32>())) };
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, da), acc[r]);
            if F::MIN {
                // SAFETY: as above.
                let ys = unsafe { _mm512_set1_ps(std::ptr::read_unaligned(ab.add(8).cast::<f32>())) };
                acc[r] = _mm512_fmadd_ps(mw, ys, acc[r]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let (lo, hi) = out.split_at_mut(N);
        // SAFETY: each entry holds GROUP = 8 f32; out holds 2N entries (the caller's bound).
        unsafe {
            _mm256_storeu_ps(lo[r].as_mut_ptr(), _mm512_castps512_ps256(*a));
            // The high half through the f64 view: AVX-512 F alone (the f32x8 extract needs DQ).
            _mm256_storeu_ps(hi[r].as_mut_ptr(), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*a))));
        }
    }
}

/// Groups g and g + 1 of an interleaved pair (`w`: the pair, then any bytes that may be prefetched) against
/// up to `MAX_ROWS` activation rows: `out[r]` is group g's rows against activation row r, `out[n + r]` group
/// g + 1's, for the `n` rows computed (every activation row, at most `MAX_ROWS` and half of `out`); blocks
/// past the shortest input are not read.
///
/// # Safety
/// `available()` said yes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot<F: Packed>(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [[f32; GROUP]]) {
    let shortest = acts.iter().map(|a| a.len() / AB).min().unwrap_or(0);
    // One group's bytes: where group g + 1 starts unless the pair is interleaved.
    let len = (cols / 32) * F::BYTES;
    let (step, second) = if interleaved(F::KIND) { (2 * F::BYTES, F::BYTES) } else { (F::BYTES, len) };
    // Block b of g + 1 ends at b · step + second + BYTES.
    let fit = w.len().checked_sub(second + F::BYTES).map_or(0, |room| room / step + 1);
    let nb = (cols / 32).min(shortest).min(fit);
    let n = acts.len().min(MAX_ROWS).min(out.len() / 2);
    let p = |r: usize| acts[r].as_ptr();
    let out = &mut out[..2 * n];
    let at = (nb, step, second);
    // SAFETY: nb blocks of each group fit in w and nb in every activation row (checked above); out holds 2n
    // entries.
    unsafe {
        match n {
            0 => {}
            1 => pair::<F, 1>(at, w.as_ptr(), w.len(), [p(0)], out),
            2 => pair::<F, 2>(at, w.as_ptr(), w.len(), [p(0), p(1)], out),
            3 => pair::<F, 3>(at, w.as_ptr(), w.len(), [p(0), p(1), p(2)], out),
            _ => pair::<F, 4>(at, w.as_ptr(), w.len(), [p(0), p(1), p(2), p(3)], out),
        }
    }
}
