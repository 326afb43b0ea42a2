//! The matmul driver against a plain f64 sum of dequantized weights and dequantized activations.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::quant::{Kind, dequantize_row, quantize_row};

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

/// Q4_1 in rows reads Q8_1 activations, whose block sum is rounded to f16 as ggml stores it: each block's
/// m·s term is off by up to |m|·|s|·2⁻¹¹ (here |m| = 0.15, |s| up to ~30 per block, 18 blocks for 576
/// columns: up to ~4e-3 summed). Repacked Q4_1 reads the exact integer sum (Q8_0S).
fn tolerance(w: &Weights) -> f64 {
    if w.kind == Kind::Q4_1 && w.group(0).is_none() { 8e-3 } else { 1e-4 }
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
            // 40 and 136 rows repack (Q8_0, Q4_1) into groups of eight; the others stay in rows.
            for (rows, cols) in [(1, 32), (37, 96), (40, 96), (130, 160), (136, 160), (19, 576)] {
                let w = weights(kind, rows, cols, &mut rng);
                for n in 1..=9 {
                    let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
                    let mut out = vec![f32::NAN; n * rows];
                    let mut s = Scratch::default();
                    run(pool, &mut s, &x, n, &[Linear::plain(&w)], &mut [&mut out]).unwrap();
                    close(&out, &reference(&w, &x, n), tolerance(&w), &format!("{kind:?} [{rows}, {cols}] n {n}"));
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
    // n = 420: 420 · 10 · 64 multiply-adds of x·Aᵀ exceed SERIAL_XA, so the two-call path runs too.
    assert!(420 * 10 * cols > SERIAL_XA && 7 * 10 * cols <= SERIAL_XA);
    for n in [1, 4, 7, 420] {
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
            close(&outs[i], &want, tolerance(&ws[i]), &format!("weight {i} n {n}"));
        }
    }
}

/// Repacked weights placed after a segment of odd rows, so that the parts' row ranges cut their groups, with
/// 8-bit LoRAs (Q8_0 A repacked, `QCols` B) fused (decode) and in two calls (prefill), on 1..3 threads.
#[test]
fn cut_groups_and_8_bit_loras_match_the_reference() {
    let mut rng = StdRng::seed_from_u64(21);
    let cols = 96;
    let ws: Vec<Weights> = [(17, Kind::F16), (48, Kind::Q4_1), (40, Kind::Q8_0)]
        .iter()
        .map(|&(rows, k)| weights(k, rows, cols, &mut rng))
        .collect();
    assert!(ws[1].group(0).is_some() == crate::quant::simd_available());
    // Rank 40: three x·Aᵀ units a LoRA (16, 16, 8 rows), whose last one quantizes the rows for the B updates.
    for rank in [8, 40] {
        cut_groups_at_rank(&ws, rank, &mut rng);
    }
}

fn cut_groups_at_rank(ws: &[Weights], rank: usize, rng: &mut StdRng) {
    let cols = 96;
    let a: Vec<Weights> = ws.iter().map(|_| weights(Kind::Q8_0, rank, cols, rng)).collect();
    let b_vals: Vec<Vec<f32>> =
        ws.iter().map(|w| (0..w.rows * rank).map(|_| rng.random_range(-0.5..0.5)).collect()).collect();
    let b: Vec<Option<crate::lora::QCols>> =
        ws.iter().zip(&b_vals).map(|(w, v)| crate::lora::QCols::new(v, w.rows, rank)).collect();
    assert!(b[0].is_none() && b[1].is_some() && b[2].is_some(), "17 outputs are not whole groups of 8");
    for pool in [Pool::new(1), Pool::new(2), Pool::new(3)] {
        let mut s = Scratch::default();
        for n in [1, 4, 103] {
            let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
            let lins: Vec<Linear<'_>> = (0..3)
                .map(|i| Linear {
                    w: &ws[i],
                    bias: None,
                    lora: b[i].as_ref().map(|b| Lora { a: Factor::Q8(&a[i]), rank, b: Factor::Cols(b) }),
                })
                .collect();
            let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![f32::NAN; n * w.rows]).collect();
            let [o0, o1, o2] = &mut outs[..] else { unreachable!() };
            run(&pool, &mut s, &x, n, &lins, &mut [o0, o1, o2]).unwrap();
            for i in 0..3 {
                let mut want = reference(&ws[i], &x, n);
                let rows = ws[i].rows;
                let mut slack = vec![0f64; n * rows];
                if let Some(bq) = &b[i] {
                    let xa = reference(&a[i], &x, n);
                    for j in 0..n {
                        let t = &xa[j * rank..(j + 1) * rank];
                        let tmax = t.iter().fold(0f64, |m, v| m.max(v.abs()));
                        for r in 0..rows {
                            let held = |k: usize| f64::from(bq.value(r, k));
                            want[j * rows + r] += (0..rank).map(|k| t[k] * held(k)).sum::<f64>();
                            // The update rounds x·Aᵀ to i8 (half a step of its largest value per rank).
                            slack[j * rows + r] = (0..rank).map(|k| held(k).abs()).sum::<f64>() * tmax / 254.0;
                        }
                    }
                }
                for (e, (g, w)) in outs[i].iter().zip(&want).enumerate() {
                    let tol = tolerance(&ws[i]) * (1.0 + w.abs()) + slack[e] * 1.01;
                    assert!((f64::from(*g) - w).abs() <= tol, "weight {i} n {n} element {e}: {g} vs {w}");
                }
            }
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

/// Lanes batched on one base: rows of several groups, each with its own 8-bit LoRA (or none), in one call give
/// each group's rows the very bits of the group run alone with its LoRA on every row (decode rows, a prefill
/// chunk, both paths of the B update), on 1..3 threads.
#[test]
fn row_loras_give_each_group_the_bits_of_its_own_call() {
    let mut rng = StdRng::seed_from_u64(33);
    let cols = 96;
    let ws: Vec<Weights> =
        [(48, Kind::Q4_1), (40, Kind::Q8_0)].iter().map(|&(rows, k)| weights(k, rows, cols, &mut rng)).collect();
    let rank = 8;
    let adapters: Vec<(Vec<Weights>, Vec<crate::lora::QCols>)> = (0..2)
        .map(|_| {
            let a = ws.iter().map(|_| weights(Kind::Q8_0, rank, cols, &mut rng)).collect();
            let b = ws
                .iter()
                .map(|w| {
                    let v: Vec<f32> = (0..w.rows * rank).map(|_| rng.random_range(-0.5..0.5)).collect();
                    crate::lora::QCols::new(&v, w.rows, rank).unwrap()
                })
                .collect();
            (a, b)
        })
        .collect();
    let lora = |g: usize, i: usize| -> Option<Lora<'_>> {
        let (a, b) = adapters.get(g)?;
        Some(Lora { a: Factor::Q8(&a[i]), rank, b: Factor::Cols(&b[i]) })
    };
    // Groups: adapter 0 decoding (1 row), no adapter decoding (1 row), adapter 1 prefilling (counts vary);
    // then lanes that share an adapter side by side (one LoRA of the call over their rows).
    let cases = [1, 3, 64].map(|p| (p, [0, 2, 1])).into_iter().chain([1, 3, 64].map(|p| (p, [0, 0, 0])));
    for (prefill, adapter_of) in cases.chain([(1, [1, 0, 0]), (5, [1, 1, 0])]) {
        let counts = [1, 1, prefill];
        let n: usize = counts.iter().sum();
        let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        for pool in [Pool::new(1), Pool::new(2), Pool::new(3)] {
            let mut s = Scratch::default();
            let plain: Vec<Linear<'_>> = ws.iter().map(Linear::plain).collect();
            let mut row_loras = Vec::new();
            let mut first = 0;
            for (g, &count) in counts.iter().enumerate() {
                for i in 0..ws.len() {
                    if let Some(lora) = lora(adapter_of[g], i) {
                        row_loras.push(RowLora { linear: i, lora, first, count });
                    }
                }
                first += count;
            }
            let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![f32::NAN; n * w.rows]).collect();
            let [o0, o1] = &mut outs[..] else { unreachable!() };
            run_rows(&pool, &mut s, &x, &counts, &plain, &row_loras, &mut [o0, o1]).unwrap();
            let mut first = 0;
            for (g, &count) in counts.iter().enumerate() {
                let xg = &x[first * cols..(first + count) * cols];
                let lins: Vec<Linear<'_>> = ws
                    .iter()
                    .enumerate()
                    .map(|(i, w)| Linear { lora: lora(adapter_of[g], i), ..Linear::plain(w) })
                    .collect();
                let mut alone: Vec<Vec<f32>> = ws.iter().map(|w| vec![f32::NAN; count * w.rows]).collect();
                let [a0, a1] = &mut alone[..] else { unreachable!() };
                run(&pool, &mut Scratch::default(), xg, count, &lins, &mut [a0, a1]).unwrap();
                for (i, w) in ws.iter().enumerate() {
                    let got = &outs[i][first * w.rows..(first + count) * w.rows];
                    let same = got.iter().zip(&alone[i]).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "group {g} of {adapter_of:?} weight {i} prefill {prefill} threads {}", pool.parts());
                }
                first += count;
            }
        }
    }
    // A row LoRA past the call's rows, or beside a whole-call one, is refused.
    let mut s = Scratch::default();
    let x = vec![0f32; 2 * cols];
    let mut out = vec![0f32; 2 * ws[0].rows];
    let bad = [RowLora { linear: 0, lora: lora(0, 0).unwrap(), first: 1, count: 2 }];
    assert!(run_rows(&Pool::new(1), &mut s, &x, &[2], &[Linear::plain(&ws[0])], &bad, &mut [&mut out]).is_err());
    let both = [Linear { lora: lora(0, 0), ..Linear::plain(&ws[0]) }];
    assert!(run_rows(&Pool::new(1), &mut s, &x, &[2], &both, &[], &mut [&mut out]).is_err());
}

/// Every weight format, repacked or in rows (17 rows stay in rows), float or quantized: a lane's rows in a
/// batch get the bits they get alone, though the row kernels' results depend on a tile's row count.
#[test]
fn every_format_gives_a_lane_its_own_bits_in_a_batch() {
    let mut rng = StdRng::seed_from_u64(5);
    let pool = Pool::new(2);
    let lanes = [1, 3, 1, 6, 2];
    let n: usize = lanes.iter().sum();
    for kind in [Kind::F32, Kind::F16, Kind::BF16, Kind::Q8_0, Kind::Q4_1] {
        for rows in [64, 17] {
            let w = weights(kind, rows, 64, &mut rng);
            let x: Vec<f32> = (0..n * 64).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut all = vec![0f32; n * rows];
            run_rows(&pool, &mut Scratch::default(), &x, &lanes, &[Linear::plain(&w)], &[], &mut [&mut all]).unwrap();
            let mut first = 0;
            for &count in &lanes {
                let mut one = vec![0f32; count * rows];
                let xs = &x[first * 64..(first + count) * 64];
                run(&pool, &mut Scratch::default(), xs, count, &[Linear::plain(&w)], &mut [&mut one]).unwrap();
                let got = &all[first * rows..(first + count) * rows];
                let same = one.iter().zip(got).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{kind:?} rows {rows}: lane at row {first} differs from its own call");
                first += count;
            }
        }
    }
}
