//! scale·Bᵀ of a LoRA held in 8 bits for the host's rank-r update: B `[out, r]` (PEFT's own layout) as i8
//! with one f32 scale per output, repacked eight outputs to a group so that the update is a tiny quantized
//! matmul: `t = x Aᵀ` (r values) is quantized to i8 with one scale, and one u8×i8 dot instruction gives four
//! of the r products for eight outputs at once (the layout idea of `quant::legacy::packed`). Rounding: each
//! output's r values to 1/127 of their largest, `t` to 1/127 of its largest (both half a step at most).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::huge::HostBytes;

/// Outputs per group.
const GROUP: usize = 8;

/// The most rank an update quantizes `t` for on the stack.
const MAX_RANK: usize = 256;

/// scale·Bᵀ in groups of eight outputs: per group, 8 × f32 scales, then `rank / 4` × 32 bytes (dword q of
/// lane i = output i's k = 4q..4q+4, as `q + 128`).
pub struct QCols {
    pub outputs: usize,
    pub rank: usize,
    data: HostBytes,
}

impl QCols {
    /// `b` is `[outputs, rank]` row-major (PEFT's B, scale folded in). None unless outputs is a multiple of
    /// 8 and rank of 4 (1..=256).
    pub fn new(b: &[f32], outputs: usize, rank: usize) -> Option<Self> {
        if !outputs.is_multiple_of(GROUP)
            || !rank.is_multiple_of(4)
            || rank == 0
            || rank > MAX_RANK
            || b.len() != outputs * rank
        {
            return None;
        }
        let gb = Self::group_bytes(rank);
        let data = HostBytes::filled(outputs / GROUP * gb, |data| {
            for (g, dst) in data.chunks_exact_mut(gb).enumerate() {
                for i in 0..GROUP {
                    let row = &b[(g * GROUP + i) * rank..][..rank];
                    let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let d = amax / 127.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    dst[4 * i..4 * i + 4].copy_from_slice(&d.to_le_bytes());
                    for (k, v) in row.iter().enumerate() {
                        let q = ((v * id).round() as i32).clamp(-127, 127) as i8;
                        dst[32 + 32 * (k / 4) + 4 * i + k % 4] = (q as u8) ^ 0x80;
                    }
                }
            }
        });
        Some(Self { outputs, rank, data })
    }

    fn group_bytes(rank: usize) -> usize {
        32 + 8 * rank
    }

    /// Asks the caches for the bytes of groups `g..g + count` (outputs 8g..8(g + count)), which an update of
    /// those outputs reads: one run of lines.
    pub fn prefetch(&self, g: usize, count: usize) {
        let gb = Self::group_bytes(self.rank);
        if let Some(groups) = self.data.get(g * gb..((g + count) * gb).min(self.data.len())) {
            crate::simd::prefetch(groups);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The held value of output `o`, rank index `k`.
    pub fn value(&self, o: usize, k: usize) -> f32 {
        let g = &self.data[o / GROUP * Self::group_bytes(self.rank)..];
        let i = o % GROUP;
        let d = f32::from_le_bytes([g[4 * i], g[4 * i + 1], g[4 * i + 2], g[4 * i + 3]]);
        d * f32::from((g[32 + 32 * (k / 4) + 4 * i + k % 4] ^ 0x80) as i8)
    }

    /// `out[c] += Σ_k t[k] · self[start + c, k]` for every `c < out.len()` (nothing where `t` is not `rank`
    /// long or the columns run past the outputs).
    pub fn update(&self, t: &[f32], start: usize, out: &mut [f32]) {
        if t.len() != self.rank || t.len() > MAX_RANK {
            return;
        }
        let mut v = [0i8; MAX_RANK];
        let q = quantize_t(t, &mut v[..t.len()]);
        self.update_quantized(&v[..t.len()], q, start, out);
    }

    /// `update` with `t` already quantized (`quantize_t`): a call that updates many output ranges with the
    /// same `t` quantizes it once.
    pub fn update_quantized(&self, v: &[i8], q: QuantT, start: usize, out: &mut [f32]) {
        if v.len() != self.rank || start + out.len() > self.outputs {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if crate::quant::simd_available() {
            // SAFETY: AVX2 (and, for the VNNI form, AVX-512 VNNI) checked at run time; v is rank long, rank a
            // multiple of 4, and start + out.len() ≤ outputs (checked above).
            unsafe {
                if vnni() {
                    update_vnni512(self, v, q.sum, q.d, start, out)
                } else {
                    update_avx2(self, v, q.sum, q.d, start, out)
                }
            };
            return;
        }
        let gb = Self::group_bytes(self.rank);
        let mut lanes = [0f32; GROUP];
        for g in start / GROUP..(start + out.len()).div_ceil(GROUP) {
            group_plain(&self.data[g * gb..(g + 1) * gb], v, &mut lanes);
            add_lanes(g, &lanes, q.d, start, out);
        }
    }
}

/// The scale and exact sum of a quantized `t` (`quantize_t`).
#[derive(Clone, Copy, Default)]
pub struct QuantT {
    pub d: f32,
    pub sum: i32,
}

/// `t` to i8 in `v` (as long as `t`) with one scale, to 1/127 of its largest value; the u8 quants of B carry
/// +128, so the update also needs the exact sum.
pub fn quantize_t(t: &[f32], v: &mut [i8]) -> QuantT {
    let amax = t.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE4.1 is checked at run time (every AVX2 CPU has it).
    let sum = if std::arch::is_x86_feature_detected!("sse4.1") {
        unsafe { quantize_sse41(t, id, v) }
    } else {
        quantize(t, id, v)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let sum = quantize(t, id, v);
    QuantT { d, sum }
}

/// The group loop of `update` with whole-group outputs added in registers, stamped out per instruction set
/// (`$features`, and the group kernel `$group` of `(group, v, sum)`).
///
/// # Safety (of each)
/// The CPU has `$features`; `v` is `b.rank` long; `start + out.len() ≤ b.outputs`.
#[cfg(target_arch = "x86_64")]
macro_rules! update_loop {
    ($name:ident, $features:tt, $group:expr) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(b: &QCols, v: &[i8], sum: i32, d: f32, start: usize, out: &mut [f32]) {
            let gb = QCols::group_bytes(b.rank);
            let mut lanes = [0f32; GROUP];
            for g in start / GROUP..(start + out.len()).div_ceil(GROUP) {
                let group = &b.data[g * gb..(g + 1) * gb];
                // SAFETY: as the caller promised; group holds 32 + 8·rank bytes.
                let r = unsafe { $group(group, v, sum) };
                let first = g * GROUP;
                if first >= start && first + GROUP <= start + out.len() {
                    // SAFETY: outputs first..first + 8 lie in out (checked just above).
                    unsafe {
                        let o = out.as_mut_ptr().add(first - start);
                        _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_set1_ps(d), r, _mm256_loadu_ps(o)));
                    }
                } else {
                    // SAFETY: lanes holds 8 f32.
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), r) };
                    add_lanes(g, &lanes, d, start, out);
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
update_loop!(update_avx2, "avx2,fma", |g, v, _| group_avx2(g, v));
#[cfg(target_arch = "x86_64")]
update_loop!(update_vnni, "avx2,fma,avx512vnni,avx512vl", group_vnni);

/// `update` two groups at a time on 512-bit registers (group g in the low half, g + 1 in the high one), the
/// groups the range cuts one at a time: lane for lane the integer sums and float steps of `group_vnni`, in
/// its order, so the same bits.
///
/// # Safety
/// The CPU has AVX-512 F and VNNI (and what `update_vnni` needs); `v` is `b.rank` long; `start + out.len() ≤
/// b.outputs`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vnni,avx512vl")]
unsafe fn update_vnni512(b: &QCols, v: &[i8], sum: i32, d: f32, start: usize, out: &mut [f32]) {
    let gb = QCols::group_bytes(b.rank);
    let end = start + out.len();
    // The first group wholly inside the range; whole pairs from there.
    let mut g = start.div_ceil(GROUP);
    if g * GROUP > start {
        // SAFETY: as the caller promised, for the outputs before group g.
        unsafe { update_vnni(b, v, sum, d, start, &mut out[..(g * GROUP).min(end) - start]) };
    }
    let (bias, dv) = (_mm512_set1_epi32(128 * sum), _mm512_set1_ps(d));
    while (g + 2) * GROUP <= end {
        // SAFETY: groups g and g + 1 lie in the data (their outputs are below end ≤ outputs).
        let p = unsafe { b.data.as_ptr().add(g * gb) };
        // The same 32 bytes of both groups.
        // SAFETY: off + 32 ≤ gb.
        let both = |off: usize| unsafe {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(p.add(off).cast())),
                _mm256_loadu_si256(p.add(gb + off).cast()),
            )
        };
        let (mut a0, mut a1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        for q in 0..v.len() / 4 {
            // SAFETY: dword q of v.
            let y = _mm512_set1_epi32(unsafe { std::ptr::read_unaligned(v.as_ptr().add(4 * q).cast::<i32>()) });
            if q % 2 == 0 {
                a0 = _mm512_dpbusd_epi32(a0, both(32 + 32 * q), y);
            } else {
                a1 = _mm512_dpbusd_epi32(a1, both(32 + 32 * q), y);
            }
        }
        let acc = _mm512_sub_epi32(_mm512_add_epi32(a0, a1), bias);
        let r = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_castsi512_ps(both(0)));
        // SAFETY: outputs g·8..g·8 + 16 lie in start..end.
        unsafe {
            let o = out.as_mut_ptr().add(g * GROUP - start);
            _mm512_storeu_ps(o, _mm512_fmadd_ps(dv, r, _mm512_loadu_ps(o)));
        }
        g += 2;
    }
    if g * GROUP < end {
        let from = (g * GROUP).max(start);
        // SAFETY: as the caller promised, for the outputs from group g on.
        unsafe { update_vnni(b, v, sum, d, from, &mut out[from - start..]) };
    }
}

/// `v[k] = round(t[k] · id)` (half away from zero) clamped to ±127; returns Σv.
#[inline(always)]
fn quantize(t: &[f32], id: f32, v: &mut [i8]) -> i32 {
    let mut sum = 0i32;
    for (q, x) in v.iter_mut().zip(t) {
        *q = ((x * id).round() as i32).clamp(-127, 127) as i8;
        sum += i32::from(*q);
    }
    sum
}

/// `quantize` where rounding is an instruction, not a libm call per value.
///
/// # Safety
/// The CPU has SSE4.1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
unsafe fn quantize_sse41(t: &[f32], id: f32, v: &mut [i8]) -> i32 {
    quantize(t, id, v)
}

/// `out[c] += d · lanes[l]` for the lanes of group `g` that fall in `start..start + out.len()`, fused as the
/// whole groups' vector form is: an output gets the same bits whether a range cuts its group or not.
fn add_lanes(g: usize, lanes: &[f32; GROUP], d: f32, start: usize, out: &mut [f32]) {
    for (l, &val) in lanes.iter().enumerate() {
        if let Some(o) = (g * GROUP + l).checked_sub(start).and_then(|c| out.get_mut(c)) {
            *o = d.mul_add(val, *o);
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn vnni() -> bool {
    static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VNNI.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512f")
    })
}

/// `lanes[i] = scale_i · Σ_k q_ik · v_k` for one group: the reference.
fn group_plain(group: &[u8], v: &[i8], lanes: &mut [f32; GROUP]) {
    for (i, l) in lanes.iter_mut().enumerate() {
        let d = f32::from_le_bytes([group[4 * i], group[4 * i + 1], group[4 * i + 2], group[4 * i + 3]]);
        let s: i32 = v
            .iter()
            .enumerate()
            .map(|(k, &x)| i32::from((group[32 + 32 * (k / 4) + 4 * i + k % 4] ^ 0x80) as i8) * i32::from(x))
            .sum();
        *l = d * s as f32;
    }
}

/// # Safety
/// AVX2, FMA and F16C; `group` holds 32 + 8·v.len() bytes, v.len() a multiple of 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn group_avx2(group: &[u8], v: &[i8]) -> __m256 {
    let p = group.as_ptr();
    let mut acc = _mm256_setzero_si256();
    let flip = _mm256_set1_epi8(0x80_u8 as i8);
    for q in 0..v.len() / 4 {
        // SAFETY: dword q of v and block q of the group are in bounds (see the function's contract).
        let (w, y) = unsafe {
            (
                _mm256_xor_si256(_mm256_loadu_si256(p.add(32 + 32 * q).cast()), flip),
                _mm256_set1_epi32(std::ptr::read_unaligned(v.as_ptr().add(4 * q).cast::<i32>())),
            )
        };
        // |w| × (y signed by w): i16 pairs of at most 2·128·127, no saturation.
        let prod = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(y, w));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(prod, _mm256_set1_epi16(1)));
    }
    // SAFETY: the group's first 32 bytes are its 8 scales.
    _mm256_mul_ps(_mm256_cvtepi32_ps(acc), unsafe { _mm256_loadu_ps(p.cast()) })
}

/// # Safety
/// As `group_avx2`, and AVX-512 VNNI with VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
#[inline]
unsafe fn group_vnni(group: &[u8], v: &[i8], sum: i32) -> __m256 {
    let p = group.as_ptr();
    let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let mut q = 0;
    while q < v.len() / 4 {
        // SAFETY: as in group_avx2.
        let (w, y) = unsafe {
            (
                _mm256_loadu_si256(p.add(32 + 32 * q).cast()),
                _mm256_set1_epi32(std::ptr::read_unaligned(v.as_ptr().add(4 * q).cast::<i32>())),
            )
        };
        if q % 2 == 0 {
            a0 = _mm256_dpbusd_epi32(a0, w, y);
        } else {
            a1 = _mm256_dpbusd_epi32(a1, w, y);
        }
        q += 1;
    }
    // The quants carry +128: Σ (q + 128)·v = Σ q·v + 128·Σv.
    let acc = _mm256_sub_epi32(_mm256_add_epi32(a0, a1), _mm256_set1_epi32(128 * sum));
    // SAFETY: as in group_avx2.
    _mm256_mul_ps(_mm256_cvtepi32_ps(acc), unsafe { _mm256_loadu_ps(p.cast()) })
}

#[cfg(test)]
#[path = "q8_tests.rs"]
mod tests;
