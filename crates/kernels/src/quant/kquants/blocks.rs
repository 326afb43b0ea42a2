//! The K-quant super-block layouts (as ggml-common.h packs them), unpacked in plain Rust: `dequantize` and
//! the scalar reference dot products against Q8_K, integer sums per block as ggml's generic kernels do.

use half::f16;

use crate::quant::Kind;

/// Elements per super-block (ggml's QK_K).
pub const QK: usize = 256;
/// Bytes of one Q8_K activation block: f32 d, i8 qs[256], i16 bsums[16].
pub const ACT_BYTES: usize = 292;

/// One super-block unpacked: element `e` is `(d · sc[e/16]) · q[e] − (dmin · m[e/16])`, the very
/// expression (and rounding) of ggml's `dequantize_row_*`.
pub struct Unpacked {
    pub q: [i8; QK],
    pub sc: [i32; 16],
    pub m: [i32; 16],
    pub d: f32,
    pub dmin: f32,
}

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The 6-bit scale and min of 32-element sub-block `j` from Q4_K/Q5_K's 12 packed bytes
/// (ggml's `get_scale_min_k4`).
pub fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Q3_K's sixteen 6-bit scales (stored biased by 32): low nibbles in bytes 0..8, high bit pairs in 8..12.
pub fn scales_q3k(s: &[u8]) -> [i32; 16] {
    let mut out = [0i32; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let lo = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        let hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = i32::from(lo | (hi << 4)) - 32;
    }
    out
}

/// Unpacks one super-block of `kind` (`b` is exactly its bytes).
pub fn unpack(kind: Kind, b: &[u8]) -> Unpacked {
    let mut u = Unpacked { q: [0; QK], sc: [0; 16], m: [0; 16], d: 0.0, dmin: 0.0 };
    match kind {
        Kind::Q2_K => {
            // scales[16] (low nibble scale, high nibble min), qs[64], d, dmin
            let (scales, qs) = (&b[..16], &b[16..80]);
            u.d = half(b, 80);
            u.dmin = half(b, 82);
            for ((sc, m), &s) in u.sc.iter_mut().zip(&mut u.m).zip(scales) {
                *sc = i32::from(s & 0xF);
                *m = i32::from(s >> 4);
            }
            for (e, q) in u.q.iter_mut().enumerate() {
                let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
                *q = ((qs[32 * h + l] >> (2 * k)) & 3) as i8;
            }
        }
        Kind::Q3_K => {
            // hmask[32], qs[64], scales[12], d; a clear high bit means the quant is 4 lower
            let (hmask, qs) = (&b[..32], &b[32..96]);
            u.sc = scales_q3k(&b[96..108]);
            u.d = half(b, 108);
            for (e, q) in u.q.iter_mut().enumerate() {
                let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
                let low = ((qs[32 * h + l] >> (2 * k)) & 3) as i8;
                let high = (hmask[l] >> (4 * h + k)) & 1;
                *q = low - if high == 0 { 4 } else { 0 };
            }
        }
        Kind::Q4_K | Kind::Q5_K => {
            // d, dmin, scales[12], (Q5_K: qh[32]), qs[128]
            u.d = half(b, 0);
            u.dmin = half(b, 2);
            let scales = &b[4..16];
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, scales);
                u.sc[2 * j..2 * j + 2].fill(i32::from(sc));
                u.m[2 * j..2 * j + 2].fill(i32::from(m));
            }
            let (qh, qs) = if kind == Kind::Q5_K { (Some(&b[16..48]), &b[48..176]) } else { (None, &b[16..144]) };
            for (e, q) in u.q.iter_mut().enumerate() {
                let (j, l) = (e / 64, e % 64);
                let byte = qs[32 * j + l % 32];
                let mut v = if l < 32 { byte & 0xF } else { byte >> 4 };
                if let Some(qh) = qh {
                    v |= ((qh[e % 32] >> (e / 32)) & 1) << 4;
                }
                *q = v as i8;
            }
        }
        _ => {
            // Q6_K: ql[128], qh[64], scales[16] (i8), d; quants stored biased by 32
            let (ql, qh) = (&b[..128], &b[128..192]);
            for j in 0..16 {
                u.sc[j] = i32::from(b[192 + j] as i8);
            }
            u.d = half(b, 208);
            for (e, q) in u.q.iter_mut().enumerate() {
                let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
                let byte = ql[64 * h + 32 * (k % 2) + l];
                let low = if k < 2 { byte & 0xF } else { byte >> 4 };
                let high = (qh[32 * h + l] >> (2 * k)) & 3;
                *q = (low | (high << 4)) as i8 - 32;
            }
        }
    }
    u
}

/// One weight row of `kind` to f32, bit-exact with ggml's `dequantize_row_*` (and gguf-py's).
pub fn dequantize(kind: Kind, w: &[u8], out: &mut [f32]) {
    let bytes = kind.block().1;
    for (b, o) in w.chunks_exact(bytes).zip(out.chunks_exact_mut(QK)) {
        let u = unpack(kind, b);
        for (j, (oj, qj)) in o.chunks_exact_mut(16).zip(u.q.chunks_exact(16)).enumerate() {
            let (dl, ml) = (u.d * u.sc[j] as f32, u.dmin * u.m[j] as f32);
            for (x, &q) in oj.iter_mut().zip(qj) {
                *x = dl * f32::from(q) - ml;
            }
        }
    }
}

/// The Q8_K block's scale, quants and sums of each 16.
pub fn act_block(a: &[u8]) -> (f32, &[u8], [i32; 16]) {
    let d = f32::from_le_bytes([a[0], a[1], a[2], a[3]]);
    let mut bsums = [0i32; 16];
    for (j, s) in bsums.iter_mut().enumerate() {
        *s = i32::from(i16::from_le_bytes([a[260 + 2 * j], a[261 + 2 * j]]));
    }
    (d, &a[4..260], bsums)
}

/// The scalar dot product of one weight row against each activation row: per block an exact integer sum
/// per 16-element sub-block, scaled by `d · d8`, less the mins through the activation's block sums.
pub fn dot(kind: Kind, cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    let bytes = kind.block().1;
    let nb = cols / QK;
    if !super::shapes_fit(cols, bytes, nb, w, acts, out) {
        out.fill(f32::NAN);
        return;
    }
    out[..acts.len()].fill(0.0);
    for (i, b) in w.chunks_exact(bytes).take(nb).enumerate() {
        let u = unpack(kind, b);
        for (o, a) in out.iter_mut().zip(acts) {
            let (d8, q8, bsums) = act_block(&a[i * ACT_BYTES..(i + 1) * ACT_BYTES]);
            let mut isum = 0i32;
            let mut msum = 0i32;
            for j in 0..16 {
                let part: i32 = (0..16).map(|l| i32::from(u.q[16 * j + l]) * i32::from(q8[16 * j + l] as i8)).sum();
                isum += u.sc[j] * part;
                msum += u.m[j] * bsums[j];
            }
            *o += d8 * u.d * isum as f32 - d8 * u.dmin * msum as f32;
        }
    }
}
