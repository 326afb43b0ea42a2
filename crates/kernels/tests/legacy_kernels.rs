//! The legacy block kernels (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) on random rows: the dispatched kernel (AVX2 where
//! the CPU has it), the scalar reference and an f64 sum over independently decoded values agree.
//!
//! Tolerance: with `M = Σ_c (|d·q_c| + |m|)·|a_c|` (the size of the sum before cancellation), every kernel is
//! within `1e-5·M` of the f64 sum, plus, for the formats with a minimum, `|m|·|s − d·Σq|` per block: the
//! kernels read the activation block's sum as the f16 `s` the Q8_1 block stores (rounded from the unrounded
//! scale, as ggml does), where the f64 sum reads the dequantized activations.

use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tunebench_kernels::quant::{self, ActKind, Kernel, Kind};

const LEGACY: [Kind; 5] = [Kind::Q4_0, Kind::Q4_1, Kind::Q5_0, Kind::Q5_1, Kind::Q8_0];

/// The kernels under test: the scalar reference, the SIMD kernel where this CPU runs one, and the dispatched.
fn candidates(kind: Kind) -> Vec<(&'static str, Kernel)> {
    let mut all = vec![("reference", quant::reference(kind)), ("dispatched", quant::kernel(kind))];
    all.extend(quant::simd_kernels(kind));
    all
}

#[test]
#[cfg(target_arch = "x86_64")]
fn this_x86_cpu_runs_the_simd_kernels() {
    let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
    let simd = avx2 && std::arch::is_x86_feature_detected!("f16c");
    assert_eq!(quant::simd(Kind::Q4_1).is_some(), simd);
    // Both instruction sets' kernels are under test where the CPU runs them.
    let vnni = std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512vl");
    let names: Vec<&str> = quant::simd_kernels(Kind::Q4_1).iter().map(|(n, _)| *n).collect();
    let want: &[&str] = match (simd, vnni) {
        (false, _) => &[],
        (true, false) => &["avx2"],
        (true, true) => &["avx2", "avx512vnni"],
    };
    assert_eq!(names, want);
}

/// One block decoded from the ggml spec, element by element: (d, m, quants).
fn decode(kind: Kind, b: &[u8]) -> (f64, f64, [i32; 32]) {
    let h = |at: usize| f64::from(f16::from_le_bytes([b[at], b[at + 1]]).to_f32());
    let mut q = [0i32; 32];
    let (d, m, qs, qh, off) = match kind {
        Kind::Q4_0 => (h(0), 0.0, &b[2..18], None, 8),
        Kind::Q4_1 => (h(0), h(2), &b[4..20], None, 0),
        Kind::Q5_0 => (h(0), 0.0, &b[6..22], Some(&b[2..6]), 16),
        Kind::Q5_1 => (h(0), h(2), &b[8..24], Some(&b[4..8]), 0),
        _ => {
            for (j, v) in q.iter_mut().enumerate() {
                *v = i32::from(b[2 + j] as i8);
            }
            return (h(0), 0.0, q);
        }
    };
    for (j, v) in q.iter_mut().enumerate() {
        let low = if j < 16 { qs[j] & 0x0F } else { qs[j - 16] >> 4 };
        let fifth = qh.map_or(0, |qh| (qh[j / 8] >> (j % 8)) & 1);
        *v = i32::from(low) + 16 * i32::from(fifth) - off;
    }
    (d, m, q)
}

fn random_f16(rng: &mut StdRng, style: u8) -> [u8; 2] {
    let v = match style {
        0 => 0.0,
        1 => 65504.0 * if rng.random::<bool>() { 1.0 } else { -1.0 },
        2 => 6e-8 * f32::from(rng.random_range(1u8..40)),
        _ => rng.random_range(-1.0f32..1.0),
    };
    f16::from_f32(v).to_le_bytes()
}

/// A random weight row of `blocks` blocks: most blocks ordinary, some all zero, some with extreme scales.
fn weight_row(kind: Kind, blocks: usize, rng: &mut StdRng) -> Vec<u8> {
    let (_, bytes) = kind.block();
    let mut row = vec![0u8; blocks * bytes];
    for b in row.chunks_exact_mut(bytes) {
        let style = rng.random_range(0u8..8);
        if style == 0 {
            continue;
        }
        rng.fill(&mut b[..]);
        let heads = if matches!(kind, Kind::Q4_1 | Kind::Q5_1) { 2 } else { 1 };
        for k in 0..heads {
            let s = random_f16(rng, style);
            b[2 * k..2 * k + 2].copy_from_slice(&s);
        }
    }
    row
}

/// A random activation row quantized to `act`, with some zero blocks and some of large or tiny magnitude.
fn act_row(act: ActKind, blocks: usize, rng: &mut StdRng) -> (Vec<u8>, Vec<f32>) {
    let mut x = vec![0f32; blocks * 32];
    for xb in x.chunks_exact_mut(32) {
        let scale = match rng.random_range(0u8..6) {
            0 => 0.0,
            1 => 1000.0,
            2 => 1e-3,
            _ => 1.0,
        };
        for v in xb.iter_mut() {
            *v = scale * rng.random_range(-1.0f32..1.0);
        }
    }
    let mut q = vec![0u8; act.row_bytes(x.len())];
    quant::quantize_row(act, &x, &mut q);
    let mut back = vec![0f32; x.len()];
    quant::dequantize_row(act, &q, &mut back);
    (q, back)
}

/// The f64 dot product of a weight row with one activation row, and the tolerance a kernel must meet.
/// `act_bytes`: the Q8_1 row whose f16 sums the row kernels read (None: the exact sums of Q8_0S).
fn expected(kind: Kind, w: &[u8], act_bytes: Option<&[u8]>, act: &[f32]) -> (f64, f64) {
    let (_, bytes) = kind.block();
    let (_, abytes) = kind.acts().block();
    let (mut sum, mut size, mut slack) = (0f64, 0f64, 0f64);
    for (i, wb) in w.chunks_exact(bytes).enumerate() {
        let (d, m, q) = decode(kind, wb);
        for (j, &qj) in q.iter().enumerate() {
            let a = f64::from(act[i * 32 + j]);
            sum += (d * f64::from(qj) + m) * a;
            size += ((d * f64::from(qj)).abs() + m.abs()) * a.abs();
        }
        if let Some(act_bytes) = act_bytes.filter(|_| m != 0.0) {
            let ab = &act_bytes[i * abytes..];
            let s = f64::from(f16::from_le_bytes([ab[2], ab[3]]).to_f32());
            let from_values: f64 = act[i * 32..(i + 1) * 32].iter().map(|&a| f64::from(a)).sum();
            slack += m.abs() * (s - from_values).abs();
        }
    }
    (sum, 1e-5 * size + slack + 1e-30)
}

#[test]
fn every_kernel_matches_the_f64_sum_for_one_to_four_rows_and_odd_block_counts() {
    let mut rng = StdRng::seed_from_u64(17);
    for kind in LEGACY {
        let kernels = candidates(kind);
        for blocks in [1, 3, 7, 18, 48] {
            for rows in 1..=quant::MAX_ROWS {
                for _trial in 0..4 {
                    let cols = blocks * 32;
                    let w = weight_row(kind, blocks, &mut rng);
                    let acts: Vec<(Vec<u8>, Vec<f32>)> =
                        (0..rows).map(|_| act_row(kind.acts(), blocks, &mut rng)).collect();
                    let views: Vec<&[u8]> = acts.iter().map(|(q, _)| q.as_slice()).collect();
                    for (name, kern) in &kernels {
                        let mut got = vec![f32::NAN; rows];
                        (kern.dot)(cols, &w, &views, &mut got);
                        for (r, &got) in got.iter().enumerate() {
                            let (want, tol) = expected(kind, &w, Some(&acts[r].0), &acts[r].1);
                            let err = (f64::from(got) - want).abs();
                            assert!(
                                err <= tol,
                                "{kind:?} {name} {blocks} blocks row {r}/{rows}: {got} vs {want} (err {err:e} > {tol:e})"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn dequantize_gives_the_independently_decoded_values() {
    let mut rng = StdRng::seed_from_u64(5);
    for kind in LEGACY {
        for blocks in [1, 7, 18] {
            let w = weight_row(kind, blocks, &mut rng);
            let (_, bytes) = kind.block();
            for (_, kern) in candidates(kind) {
                let mut out = vec![f32::NAN; blocks * 32];
                (kern.dequantize)(&w, &mut out);
                for (i, wb) in w.chunks_exact(bytes).enumerate() {
                    let (d, m, q) = decode(kind, wb);
                    for (j, &qj) in q.iter().enumerate() {
                        let want = (d * f64::from(qj) + m) as f32;
                        assert_eq!(out[i * 32 + j].to_bits(), want.to_bits(), "{kind:?} block {i} element {j}");
                    }
                }
            }
        }
    }
}

#[test]
fn all_zero_weights_give_zero_and_the_output_is_overwritten() {
    for kind in LEGACY {
        let blocks = 3;
        let w = vec![0u8; kind.row_bytes(blocks * 32).unwrap_or(0)];
        let mut rng = StdRng::seed_from_u64(1);
        let (a, _) = act_row(kind.acts(), blocks, &mut rng);
        let views = [a.as_slice(); 4];
        for (name, kern) in candidates(kind) {
            let mut out = [7f32; 4];
            (kern.dot)(blocks * 32, &w, &views, &mut out);
            assert_eq!(out, [0.0; 4], "{kind:?} {name}");
        }
    }
}

#[test]
fn real_and_gguf_py_blocks_dequantize_to_the_values_gguf_py_gives() {
    // fixtures/legacy_blocks.txt: blocks of the real SmolLM2 Q4_1 file and gguf-py quantizations, with the
    // values gguf-py's dequantize gives (made by fixtures/legacy_blocks.py).
    let text = include_str!("fixtures/legacy_blocks.txt");
    let mut seen = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut fields = line.split_whitespace();
        let (kind, source, hex) = (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap());
        let kind = *LEGACY.iter().find(|k| format!("{k:?}") == kind).unwrap();
        let bytes: Vec<u8> =
            (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
        assert_eq!(bytes.len(), kind.block().1, "{source}");
        let want: Vec<f32> = fields.map(|v| v.parse().unwrap()).collect();
        assert_eq!(want.len(), 32, "{source}");
        for (name, kern) in candidates(kind) {
            let mut out = [f32::NAN; 32];
            (kern.dequantize)(&bytes, &mut out);
            assert_eq!(out.as_slice(), want.as_slice(), "{kind:?} {name} {source}");
        }
        seen.push(kind);
    }
    for kind in LEGACY {
        assert!(seen.contains(&kind), "the fixture has no {kind:?} block");
    }
}

#[test]
fn short_or_mismatched_inputs_never_panic() {
    let mut rng = StdRng::seed_from_u64(9);
    for kind in LEGACY {
        let w = weight_row(kind, 5, &mut rng);
        let (a, _) = act_row(kind.acts(), 5, &mut rng);
        let short_a = &a[..a.len() - 7];
        for (name, kern) in candidates(kind) {
            for (cols, w, acts) in [
                (5 * 32, &w[..w.len() - 3], vec![a.as_slice()]),
                (5 * 32, &w[..], vec![short_a, a.as_slice()]),
                (7 * 32, &w[..], vec![a.as_slice(); 6]),
                (5 * 32, &w[..], vec![]),
            ] {
                for out_len in [0, 1, 6] {
                    let mut out = vec![0f32; out_len];
                    (kern.dot)(cols, w, &acts, &mut out);
                    assert!(out.iter().all(|v| v.is_finite()), "{kind:?} {name}");
                }
            }
            let mut out = vec![0f32; 7 * 32];
            (kern.dequantize)(&w[..w.len() - 1], &mut out);
        }
    }
}

/// The repacked formats: every group kernel this CPU runs (AVX2, and AVX-512 VNNI where the CPU has it) and
/// the weights' own choice, on groups of random rows against Q8_0S activations, meet the same f64 bound as
/// the row kernels; a repacked row dequantizes to the file's values.
#[test]
fn repacked_group_kernels_match_the_f64_sum_and_dequantize_exactly() {
    let mut rng = StdRng::seed_from_u64(23);
    for kind in [Kind::Q4_0, Kind::Q4_1, Kind::Q5_0, Kind::Q8_0] {
        let variants = quant::group_kernels(kind);
        for blocks in [1, 3, 7, 18, 48] {
            let cols = blocks * 32;
            // A pair of groups (interleaved) and a last, odd group (its blocks one after another).
            let rows: Vec<Vec<u8>> = (0..3 * quant::GROUP).map(|_| weight_row(kind, blocks, &mut rng)).collect();
            let bytes: Vec<u8> = rows.concat();
            let plain = quant::Weights::with_layout(kind, rows.len(), cols, &bytes, false).unwrap();
            assert!(plain.group(0).is_none() && plain.row(3) == Some(&rows[3][..]));
            // As this CPU holds them (pairs field by field where it runs the two-group kernel), and as one
            // without that kernel does (block by block).
            let own = quant::Weights::with_layout(kind, rows.len(), cols, &bytes, true).unwrap();
            let blockwise = quant::Weights::without_pair_kernel(kind, rows.len(), cols, &bytes).unwrap();
            for w in [own, blockwise] {
                assert_eq!(w.group(0).is_some(), !variants.is_empty(), "{kind:?}: repacked where a kernel runs");
                for (r, row) in rows.iter().enumerate() {
                    let (mut got, mut want) = (vec![f32::NAN; cols], vec![f32::NAN; cols]);
                    w.dequantize_row(r, &mut got);
                    (quant::reference(kind).dequantize)(row, &mut want);
                    assert_eq!(
                        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{kind:?} row {r}"
                    );
                }
                if variants.is_empty() {
                    continue;
                }
                assert_eq!(w.acts(), ActKind::Q8_0S);
                for n in 1..=quant::MAX_ROWS + 1 {
                    let acts: Vec<(Vec<u8>, Vec<f32>)> =
                        (0..n).map(|_| act_row(ActKind::Q8_0S, blocks, &mut rng)).collect();
                    let views: Vec<&[u8]> = acts.iter().map(|(q, _)| q.as_slice()).collect();
                    // One group's bytes.
                    let len = bytes.len() / 3;
                    for g in 0..3 {
                        let (bytes, lay, own) = w.group(g).unwrap();
                        // Q8_0's groups lie one after another, the others' in interleaved pairs (both groups handed
                        // the pair's bytes, each told which half it is).
                        let (block, paired) = (len / blocks, kind != Kind::Q8_0 && g < 2);
                        assert_eq!(
                            lay.stride,
                            if paired { 2 * block } else { block },
                            "{kind:?}: group {g}'s blocks apart"
                        );
                        assert_eq!(lay.half, paired.then_some(g % 2), "{kind:?}: group {g}'s half of its pair");
                        assert_eq!(
                            lay.fields,
                            paired && w.pair_reaching(0, 3).is_some(),
                            "{kind:?}: fields with the pair kernel"
                        );
                        assert_eq!(bytes.len(), if paired { 2 * len } else { len }, "to its pair's end");
                        // Handed the groups that follow (to prefetch), a kernel computes the same numbers.
                        let (reaching, _, _) = w.group_reaching(g, 3).unwrap();
                        let tail = if paired { len } else { (2 - g) * len }.min(quant::PREFETCH_AHEAD);
                        assert_eq!(reaching.len(), bytes.len() + tail, "{kind:?}: group {g} reaching the last");
                        assert_eq!(w.group_reaching(g, 0).unwrap().0.len(), bytes.len(), "never less than the group");
                        for (name, kern) in variants.iter().copied().chain([("weights' own", own)]) {
                            let mut got = vec![[f32::NAN; quant::GROUP]; n];
                            kern(cols, bytes, lay, &views, &mut got);
                            let mut far = vec![[f32::NAN; quant::GROUP]; n];
                            kern(cols, reaching, lay, &views, &mut far);
                            assert_eq!(
                                got.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>(),
                                far.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>(),
                                "{kind:?} {name}: group {g} with the next groups handed over"
                            );
                            for (j, lanes) in got.iter().enumerate() {
                                for (i, &v) in lanes.iter().enumerate() {
                                    let r = g * quant::GROUP + i;
                                    let (want, tol) = expected(kind, &rows[r], None, &acts[j].1);
                                    let err = (f64::from(v) - want).abs();
                                    assert!(
                                        err <= tol,
                                        "{kind:?} {name} {blocks} blocks, row {r}, act {j}/{n}: {v} vs {want}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The two-group kernel (where the CPU has AVX-512) gives each of its two groups the bits the group kernel
/// gives it alone, for every repacked format, block count and activation row count, handed the bytes that
/// follow the pair or not; `Weights::pair_reaching` hands out whole pairs only, never the last, odd group.
#[test]
fn pair_kernels_give_each_group_the_bits_of_the_group_kernel() {
    let mut rng = StdRng::seed_from_u64(29);
    for kind in [Kind::Q4_0, Kind::Q4_1, Kind::Q5_0, Kind::Q8_0] {
        if quant::pair_kernel(kind).is_none() {
            eprintln!("{kind:?}: this CPU has no two-group kernel; nothing to compare");
            continue;
        }
        for blocks in [1, 3, 7, 18, 48] {
            let cols = blocks * 32;
            let rows: Vec<Vec<u8>> = (0..5 * quant::GROUP).map(|_| weight_row(kind, blocks, &mut rng)).collect();
            let w = quant::Weights::with_layout(kind, rows.len(), cols, &rows.concat(), true).unwrap();
            for g in if kind == Kind::Q8_0 { &[4][..] } else { &[1, 3, 4] } {
                assert!(w.pair_reaching(*g, 5).is_none(), "{kind:?}: no pair starts at group {g}");
            }
            let len = w.group(4).unwrap().0.len();
            for n in 1..=quant::MAX_ROWS {
                let acts: Vec<(Vec<u8>, Vec<f32>)> =
                    (0..n).map(|_| act_row(ActKind::Q8_0S, blocks, &mut rng)).collect();
                let views: Vec<&[u8]> = acts.iter().map(|(q, _)| q.as_slice()).collect();
                for g in [0, 2] {
                    let (both, f) = w.pair_reaching(g, 5).unwrap();
                    let (alone, _) = w.pair_reaching(g, g + 2).unwrap();
                    assert_eq!(alone.len(), 2 * len, "{kind:?}: the pair's own bytes when nothing follows");
                    assert_eq!(both.len(), (5 * len).min((g + 2) * len + quant::PREFETCH_AHEAD) - g * len);
                    for bytes in [both, alone] {
                        let mut got = vec![[f32::NAN; quant::GROUP]; 2 * n];
                        f(cols, bytes, &views, &mut got);
                        for (half, group) in [g, g + 1].into_iter().enumerate() {
                            let (gw, lay, kern) = w.group(group).unwrap();
                            let mut want = vec![[f32::NAN; quant::GROUP]; n];
                            kern(cols, gw, lay, &views, &mut want);
                            assert_eq!(
                                got[half * n..(half + 1) * n].iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>(),
                                want.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>(),
                                "{kind:?} {blocks} blocks, {n} rows: group {group} of the pair at {g}"
                            );
                        }
                    }
                }
            }
        }
    }
}
