//! Scalar reference kernels of the legacy formats: each weight block decoded to its integer quants, an
//! integer dot product with the Q8 activation block, scaled once per block in f32 (as ggml's generic
//! `ggml_vec_dot_q4_0_q8_0` and siblings). Plain Rust, no SIMD: the truth the AVX2 kernels are tested against.

use super::{QK, f16_at};
use crate::quant::{Kernel, Kind};

/// Decodes one weight block into `q` (value_j = d·q_j + m) and returns `(d, m)`; `m` is 0 for the
/// symmetric formats. Low nibbles hold elements 0..16 and high nibbles 16..32; the Q5 fifth bits sit in a
/// little-endian u32 `qh`, bit j for element j.
pub(crate) fn decode(kind: Kind, b: &[u8], q: &mut [i8; QK]) -> (f32, f32) {
    let bits = |at: usize| b.get(at..at + 4).map_or(0, |h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
    match kind {
        Kind::Q4_0 => {
            nibbles(b.get(2..18), 0, -8, q);
            (f16_at(b, 0), 0.0)
        }
        Kind::Q4_1 => {
            nibbles(b.get(4..20), 0, 0, q);
            (f16_at(b, 0), f16_at(b, 2))
        }
        Kind::Q5_0 => {
            nibbles(b.get(6..22), bits(2), -16, q);
            (f16_at(b, 0), 0.0)
        }
        Kind::Q5_1 => {
            nibbles(b.get(8..24), bits(4), 0, q);
            (f16_at(b, 0), f16_at(b, 2))
        }
        _ => {
            for (o, &x) in q.iter_mut().zip(b.get(2..34).unwrap_or_default()) {
                *o = x as i8;
            }
            (f16_at(b, 0), 0.0)
        }
    }
}

/// 16 bytes of nibbles (plus the fifth bits `qh`, 0 for the 4-bit formats) to 32 quants, offset by `off`.
fn nibbles(qs: Option<&[u8]>, qh: u32, off: i8, q: &mut [i8; QK]) {
    let Some(qs) = qs else {
        q.fill(0);
        return;
    };
    let half = QK / 2;
    for (j, &byte) in qs.iter().enumerate().take(half) {
        let hi_lo = ((qh >> j) & 1) as u8;
        let hi_hi = ((qh >> (j + half)) & 1) as u8;
        q[j] = ((byte & 0x0F) | (hi_lo << 4)) as i8 + off;
        q[j + half] = ((byte >> 4) | (hi_hi << 4)) as i8 + off;
    }
}

/// Whether the format carries a block minimum `m` (read against the Q8_1 sum `s = d·Σqs`).
fn has_min(kind: Kind) -> bool {
    matches!(kind, Kind::Q4_1 | Kind::Q5_1)
}

#[inline(always)]
fn dot(kind: Kind, cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    let (_, wbytes) = kind.block();
    let (_, abytes) = kind.acts().block();
    let with_min = has_min(kind);
    for o in out.iter_mut() {
        *o = 0.0;
    }
    let mut q = [0i8; QK];
    for (i, wb) in w.chunks_exact(wbytes).take(cols / QK).enumerate() {
        let (d, m) = decode(kind, wb, &mut q);
        for (o, a) in out.iter_mut().zip(acts) {
            let Some(ab) = a.get(i * abytes..(i + 1) * abytes) else { continue };
            let sumi: i32 = q.iter().zip(&ab[abytes - QK..]).map(|(&x, &y)| i32::from(x) * i32::from(y as i8)).sum();
            *o += (d * f16_at(ab, 0)) * sumi as f32;
            if with_min {
                *o += m * f16_at(ab, 2);
            }
        }
    }
}

fn dequantize(kind: Kind, w: &[u8], out: &mut [f32]) {
    let (_, wbytes) = kind.block();
    let mut q = [0i8; QK];
    for (wb, ob) in w.chunks_exact(wbytes).zip(out.chunks_mut(QK)) {
        let (d, m) = decode(kind, wb, &mut q);
        for (o, &x) in ob.iter_mut().zip(&q) {
            *o = d * f32::from(x) + m;
        }
    }
}

macro_rules! kernels {
    ($($kind:ident => $dot:ident, $deq:ident;)*) => {
        $(
            fn $dot(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
                dot(Kind::$kind, cols, w, acts, out)
            }
            fn $deq(w: &[u8], out: &mut [f32]) {
                dequantize(Kind::$kind, w, out)
            }
        )*

        pub fn kernel(kind: Kind) -> Kernel {
            match kind {
                $(Kind::$kind => Kernel { dot: $dot, dequantize: $deq },)*
                _ => crate::quant::plain::reference(kind),
            }
        }
    };
}

kernels! {
    Q4_0 => dot_q4_0, deq_q4_0;
    Q4_1 => dot_q4_1, deq_q4_1;
    Q5_0 => dot_q5_0, deq_q5_0;
    Q5_1 => dot_q5_1, deq_q5_1;
    Q8_0 => dot_q8_0, deq_q8_0;
}
