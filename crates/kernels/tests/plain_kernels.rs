//! The float kernels (f32, f16, bf16 weights against f32 activations): the SIMD kernel where the CPU has
//! one and the scalar reference agree with an f64 sum for 1..=4 rows at lengths that are and are not
//! multiples of the SIMD width; dequantize is exact.
//!
//! Tolerance: an f32 sum of `n` products is within `n·2⁻²³·Σ|w·a|` of the exact sum (the classic bound for
//! any summation order), so the kernels must be within that of the f64 sum.

use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tunebench_kernels::quant::{self, Kernel, Kind};

fn candidates(kind: Kind) -> Vec<(&'static str, Kernel)> {
    let mut all = vec![("reference", quant::reference(kind)), ("dispatched", quant::kernel(kind))];
    all.extend(quant::simd(kind).map(|k| ("simd", k)));
    all
}

/// `cols` random values (some zero, some large) in `kind`'s bytes, and the values they hold.
fn row(kind: Kind, cols: usize, rng: &mut StdRng) -> (Vec<u8>, Vec<f64>) {
    let (mut bytes, mut values) = (Vec::new(), Vec::new());
    for _ in 0..cols {
        let v = match rng.random_range(0u8..10) {
            0 => 0.0,
            1 => rng.random_range(-3e4f32..3e4),
            _ => rng.random_range(-1f32..1.0),
        };
        let back = match kind {
            Kind::F16 => {
                bytes.extend(f16::from_f32(v).to_le_bytes());
                f16::from_f32(v).to_f32()
            }
            Kind::BF16 => {
                bytes.extend(bf16::from_f32(v).to_le_bytes());
                bf16::from_f32(v).to_f32()
            }
            _ => {
                bytes.extend(v.to_le_bytes());
                v
            }
        };
        values.push(f64::from(back));
    }
    (bytes, values)
}

#[test]
fn float_kernels_match_the_f64_sum_for_one_to_four_rows() {
    let mut rng = StdRng::seed_from_u64(3);
    for kind in [Kind::F32, Kind::F16, Kind::BF16] {
        for cols in [1, 7, 8, 9, 31, 33, 64, 576, 1003] {
            for rows in 1..=quant::MAX_ROWS {
                let (w, wv) = row(kind, cols, &mut rng);
                let acts: Vec<(Vec<u8>, Vec<f64>)> = (0..rows).map(|_| row(Kind::F32, cols, &mut rng)).collect();
                let views: Vec<&[u8]> = acts.iter().map(|(b, _)| b.as_slice()).collect();
                for (name, kern) in candidates(kind) {
                    let mut got = vec![f32::NAN; rows];
                    (kern.dot)(cols, &w, &views, &mut got);
                    for (r, (_, av)) in acts.iter().enumerate() {
                        let want: f64 = wv.iter().zip(av).map(|(x, a)| x * a).sum();
                        let size: f64 = wv.iter().zip(av).map(|(x, a)| (x * a).abs()).sum();
                        let tol = cols as f64 * 2f64.powi(-23) * size;
                        let err = (f64::from(got[r]) - want).abs();
                        assert!(
                            err <= tol,
                            "{kind:?} {name} {cols} cols row {r}/{rows}: {} vs {want} (err {err:e})",
                            got[r]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn float_dequantize_is_exact() {
    let mut rng = StdRng::seed_from_u64(4);
    for kind in [Kind::F32, Kind::F16, Kind::BF16] {
        for cols in [1, 8, 13, 576] {
            let (w, wv) = row(kind, cols, &mut rng);
            for (name, kern) in candidates(kind) {
                let mut out = vec![f32::NAN; cols];
                (kern.dequantize)(&w, &mut out);
                for (c, (&o, &v)) in out.iter().zip(&wv).enumerate() {
                    assert_eq!(f64::from(o), v, "{kind:?} {name} element {c}");
                }
            }
        }
    }
}
