//! The matmul driver against a plain f64 sum of dequantized weights and dequantized activations.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::quant::{Kind, dequantize_row};

/// Random weights of `kind` `[rows, cols]`, built from f32 values where the kind's bytes are known.
fn weights(kind: Kind, rows: usize, cols: usize, rng: &mut StdRng) -> Weights {
    let vals: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
    let bytes: Vec<u8> = match kind {
        Kind::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Kind::F16 => vals.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
        Kind::BF16 => vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
        Kind::Q8_0 => vals
            .chunks_exact(32)
            .flat_map(|b| {
                let mut out = half::f16::from_f32(0.01).to_le_bytes().to_vec();
                out.extend(b.iter().map(|v| ((v * 127.0) as i8) as u8));
                out
            })
            .collect(),
        Kind::Q4_1 => vals
            .chunks_exact(32)
            .flat_map(|b| {
                let mut out = half::f16::from_f32(0.02).to_le_bytes().to_vec();
                out.extend(half::f16::from_f32(-0.15).to_le_bytes());
                out.extend(b[..16].iter().zip(&b[16..]).map(|(lo, hi)| {
                    let nib = |v: f32| ((v + 1.0) * 7.99) as u8 & 15;
                    nib(*lo) | (nib(*hi) << 4)
                }));
                out
            })
            .collect(),
        other => panic!("no test weights for {other:?}"),
    };
    Weights::new(kind, rows, cols, &bytes).unwrap()
}

/// `x · Wᵀ` as the kernels see it: both sides dequantized, summed in f64.
fn reference(w: &Weights, x: &[f32], n: usize) -> Vec<f64> {
    let cols = w.cols;
    let kind = w.kind.acts();
    let mut out = vec![0f64; n * w.rows];
    let mut row = vec![0f32; cols];
    let mut q = vec![0u8; kind.row_bytes(cols)];
    let mut xd = vec![0f32; cols];
    for j in 0..n {
        quantize_row(kind, &x[j * cols..(j + 1) * cols], &mut q);
        dequantize_row(kind, &q, &mut xd);
        for r in 0..w.rows {
            w.dequantize_row(r, &mut row);
            out[j * w.rows + r] = row.iter().zip(&xd).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        }
    }
    out
}

/// Q4_1 against Q8_1 reads the activation block's sum as ggml stores it, rounded to f16 (about 1e-3 of it).
fn tolerance(kind: Kind) -> f64 {
    if kind == Kind::Q4_1 { 3e-3 } else { 1e-4 }
}

fn close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(*g) - w).abs() <= tol * (1.0 + w.abs()), "{what}: element {i}: {g} vs {w}");
    }
}

#[test]
fn every_row_count_and_odd_shape_matches_the_reference() {
    let mut rng = StdRng::seed_from_u64(7);
    let pools = [Pool::new(1), Pool::new(2), Pool::new(3)];
    for pool in &pools {
        for kind in [Kind::F32, Kind::F16, Kind::BF16, Kind::Q8_0, Kind::Q4_1] {
            for (rows, cols) in [(1, 32), (37, 96), (130, 160), (19, 576)] {
                let w = weights(kind, rows, cols, &mut rng);
                for n in 1..=9 {
                    let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
                    let mut out = vec![f32::NAN; n * rows];
                    let mut s = Scratch::default();
                    run(pool, &mut s, &x, n, &[Linear::plain(&w)], &mut [&mut out]).unwrap();
                    close(&out, &reference(&w, &x, n), tolerance(kind), &format!("{kind:?} [{rows}, {cols}] n {n}"));
                }
            }
        }
    }
}

#[test]
fn several_weights_biases_and_loras_in_one_call() {
    let mut rng = StdRng::seed_from_u64(9);
    let pool = Pool::new(2);
    let cols = 64;
    let ws: Vec<Weights> = [(48, Kind::Q4_1), (17, Kind::F16), (33, Kind::Q8_0)]
        .iter()
        .map(|&(rows, k)| weights(k, rows, cols, &mut rng))
        .collect();
    let rank = 5;
    // The host holds A and scale·Bᵀ in f16: the reference reads the same f16 values (exactly) in f64.
    let a: Vec<Weights> = ws.iter().map(|_| weights(Kind::F16, rank, cols, &mut rng)).collect();
    let a_f16: Vec<Vec<half::f16>> = a
        .iter()
        .map(|w| {
            let mut v = vec![0f32; rank * cols];
            for (r, row) in v.chunks_exact_mut(cols).enumerate() {
                w.dequantize_row(r, row);
            }
            v.into_iter().map(half::f16::from_f32).collect()
        })
        .collect();
    let b: Vec<Vec<half::f16>> = ws
        .iter()
        .map(|w| (0..rank * w.rows).map(|_| half::f16::from_f32(rng.random_range(-0.5..0.5))).collect())
        .collect();
    // The same numbers in f32: weight 2's LoRA runs on them, weight 0's on the f16 ones.
    let a_f32: Vec<Vec<f32>> = a_f16.iter().map(|v| v.iter().map(|h| h.to_f32()).collect()).collect();
    let b_f32: Vec<Vec<f32>> = b.iter().map(|v| v.iter().map(|h| h.to_f32()).collect()).collect();
    let bias: Vec<Vec<f32>> = ws.iter().map(|w| (0..w.rows).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
    let mut s = Scratch::default();
    // n = 103: 103 · 10 · 64 multiply-adds of x·Aᵀ exceed SERIAL_XA, so the two-call path runs too.
    assert!(103 * 10 * cols > SERIAL_XA && 7 * 10 * cols <= SERIAL_XA);
    for n in [1, 4, 7, 103] {
        let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        let lins: Vec<Linear<'_>> = (0..3)
            .map(|i| Linear {
                w: &ws[i],
                bias: Some(&bias[i]),
                lora: match i {
                    0 => Some(Lora { a: Factor::F16(&a_f16[i]), rank, b: Factor::F16(&b[i]) }),
                    2 => Some(Lora { a: Factor::F32(&a_f32[i]), rank, b: Factor::F32(&b_f32[i]) }),
                    _ => None,
                },
            })
            .collect();
        let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![f32::NAN; n * w.rows]).collect();
        let [o0, o1, o2] = &mut outs[..] else { unreachable!() };
        run(&pool, &mut s, &x, n, &lins, &mut [o0, o1, o2]).unwrap();
        for i in 0..3 {
            let mut want = reference(&ws[i], &x, n);
            let xa = reference(&a[i], &x, n);
            let rows = ws[i].rows;
            for j in 0..n {
                for r in 0..rows {
                    let e = &mut want[j * rows + r];
                    *e += f64::from(bias[i][r]);
                    if i != 1 {
                        *e += (0..rank).map(|k| xa[j * rank + k] * b[i][k * rows + r].to_f64()).sum::<f64>();
                    }
                }
            }
            close(&outs[i], &want, tolerance(ws[i].kind), &format!("weight {i} n {n}"));
        }
    }
}

#[test]
fn mismatched_shapes_are_refused_not_run() {
    let mut rng = StdRng::seed_from_u64(1);
    let pool = Pool::new(1);
    let w = weights(Kind::F32, 8, 32, &mut rng);
    let mut s = Scratch::default();
    let x = vec![0f32; 31];
    let mut out = vec![0f32; 8];
    assert!(run(&pool, &mut s, &x, 1, &[Linear::plain(&w)], &mut [&mut out]).is_err());
    let x = vec![0f32; 32];
    let mut short = vec![0f32; 7];
    assert!(run(&pool, &mut s, &x, 1, &[Linear::plain(&w)], &mut [&mut short]).is_err());
}
