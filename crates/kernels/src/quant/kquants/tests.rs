//! K-quant kernels against an f64 reference on random blocks: every kind, 1..=4 activation rows, odd block
//! counts, all-zero blocks and extreme scales; the Q8_K quantizer's SIMD form bit-for-bit against its
//! scalar form.

use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::blocks::{ACT_BYTES, QK};
use crate::quant::{ActKind, Kernel, Kind, dequantize_row, quantize_row};

const KINDS: [Kind; 5] = [Kind::Q2_K, Kind::Q3_K, Kind::Q4_K, Kind::Q5_K, Kind::Q6_K];

/// Byte offsets of each kind's f16 `d` and (where it has one) `dmin`.
fn scale_offsets(kind: Kind) -> (usize, Option<usize>) {
    match kind {
        Kind::Q2_K => (80, Some(82)),
        Kind::Q3_K => (108, None),
        Kind::Q4_K | Kind::Q5_K => (0, Some(2)),
        _ => (208, None),
    }
}

/// How a test block's super-scales are chosen.
#[derive(Clone, Copy, Debug)]
enum Scales {
    Sane,
    /// The largest f16 (65504): products must not overflow f32.
    Huge,
    /// Subnormal f16s.
    Tiny,
    /// Every byte zero.
    Zero,
}

fn random_row(kind: Kind, nb: usize, scales: Scales, rng: &mut StdRng) -> Vec<u8> {
    let bytes = kind.block().1;
    let mut w = vec![0u8; nb * bytes];
    if let Scales::Zero = scales {
        return w;
    }
    rng.fill(&mut w[..]);
    let (d_at, dmin_at) = scale_offsets(kind);
    for b in w.chunks_exact_mut(bytes) {
        let mut pick = || match scales {
            Scales::Sane => rng.random_range(-0.02f32..0.02),
            Scales::Huge => 65504.0,
            _ => f16::from_bits(rng.random_range(1..0x400)).to_f32(),
        };
        b[d_at..d_at + 2].copy_from_slice(&f16::from_f32(pick()).to_le_bytes());
        if let Some(at) = dmin_at {
            b[at..at + 2].copy_from_slice(&f16::from_f32(pick()).to_le_bytes());
        }
    }
    w
}

/// A Q8_K activation row; `zero_block` (if any) is all zeros, `magnitude` scales every value.
fn random_acts(nb: usize, magnitude: f32, zero_block: Option<usize>, rng: &mut StdRng) -> Vec<u8> {
    let mut x: Vec<f32> = (0..nb * QK).map(|_| rng.random_range(-1.0f32..1.0) * magnitude).collect();
    if let Some(z) = zero_block {
        x[z * QK..(z + 1) * QK].fill(0.0);
    }
    let mut a = vec![0u8; nb * ACT_BYTES];
    quantize_row(ActKind::Q8_K, &x, &mut a);
    a
}

/// The f64 sum of the dequantized weight row times each dequantized activation row, and the sum of the
/// terms' magnitudes (split into the scale part and the min part, which can cancel) that bounds f32 error.
fn reference_sum(kernel: Kernel, kind: Kind, cols: usize, w: &[u8], a: &[u8]) -> (f64, f64) {
    let mut wf = vec![0f32; cols];
    (kernel.dequantize)(w, &mut wf);
    let mut no_min = w.to_vec();
    if let (_, Some(at)) = scale_offsets(kind) {
        for b in no_min.chunks_exact_mut(kind.block().1) {
            b[at..at + 2].fill(0);
        }
    }
    let mut scaled = vec![0f32; cols];
    (kernel.dequantize)(&no_min, &mut scaled);
    let mut af = vec![0f32; cols];
    dequantize_row(ActKind::Q8_K, a, &mut af);
    let mut sum = 0f64;
    let mut mag = 0f64;
    for i in 0..cols {
        let (x, s, y) = (f64::from(wf[i]), f64::from(scaled[i]), f64::from(af[i]));
        sum += x * y;
        mag += (s.abs() + (s - x).abs()) * y.abs();
    }
    (sum, mag)
}

/// Runs `kernel` over every kind × 1..=4 rows × 1, 3, 5 blocks × scale regimes and checks each output
/// against the f64 reference within `rel` of the terms' magnitude.
fn check_against_f64(kernel_of: fn(Kind) -> Kernel, rel: f64) {
    let mut rng = StdRng::seed_from_u64(17);
    for kind in KINDS {
        let kernel = kernel_of(kind);
        let reference = super::reference(kind);
        for nb in [1, 3, 5] {
            let cols = nb * QK;
            for scales in [Scales::Sane, Scales::Huge, Scales::Tiny, Scales::Zero] {
                let w = random_row(kind, nb, scales, &mut rng);
                for rows in 1..=4 {
                    let acts: Vec<Vec<u8>> = (0..rows)
                        .map(|r| {
                            let magnitude = [1.0, 1e-3, 3e4, 1.0][r];
                            random_acts(nb, magnitude, (r == 3).then_some(nb / 2), &mut rng)
                        })
                        .collect();
                    let refs: Vec<&[u8]> = acts.iter().map(|a| a.as_slice()).collect();
                    let mut out = vec![f32::NAN; rows];
                    (kernel.dot)(cols, &w, &refs, &mut out);
                    for (r, a) in acts.iter().enumerate() {
                        let (want, mag) = reference_sum(reference, kind, cols, &w, a);
                        let got = f64::from(out[r]);
                        let tol = rel * mag + 1e-30;
                        assert!(
                            (got - want).abs() <= tol,
                            "{kind:?} {scales:?} nb={nb} rows={rows} row {r}: got {got}, want {want} (tol {tol})"
                        );
                        if let Scales::Zero = scales {
                            assert_eq!(got, 0.0, "{kind:?}: an all-zero weight row gives exactly 0");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn scalar_kernels_match_the_f64_reference() {
    check_against_f64(super::reference, 1e-5);
}

#[test]
fn kernels_answer_nan_to_mismatched_shapes() {
    let w = vec![0u8; 2 * 144];
    let a = vec![0u8; 2 * ACT_BYTES];
    let short = vec![0u8; ACT_BYTES];
    type Case<'a> = (&'a str, usize, &'a [u8], Vec<&'a [u8]>, usize);
    let cases: [Case; 6] = [
        ("weights one block short", 3 * QK, &w, vec![&a], 1),
        ("activations one block short", 2 * QK, &w, vec![&short], 1),
        ("columns not whole blocks", 2 * QK - 32, &w, vec![&a], 1),
        ("no activation rows", 2 * QK, &w, vec![], 1),
        ("five activation rows", 2 * QK, &w, vec![&a; 5], 5),
        ("no output slot", 2 * QK, &w, vec![&a, &a], 1),
    ];
    for kernel in [super::reference(Kind::Q4_K), crate::quant::kernel(Kind::Q4_K)] {
        for (what, cols, w, acts, slots) in &cases {
            let mut out = vec![0f32; *slots];
            (kernel.dot)(*cols, w, acts, &mut out);
            assert!(out.iter().all(|v| v.is_nan()), "{what}: {out:?}");
        }
    }
}

#[test]
fn q8_k_quantizer_rounds_ties_to_even_and_sums_each_sixteen() {
    // a largest value of -127 makes the scale exactly 1 (iscale = -127 / max): the values land on the quants, halves on ties
    let mut x: Vec<f32> = (0..QK).map(|i| (i % 64) as f32 - 32.0 + 0.5).collect();
    x[7] = -127.0;
    let mut q = vec![0u8; ACT_BYTES];
    super::q8k::quantize_scalar(&x, &mut q);
    assert_eq!(f32::from_le_bytes([q[0], q[1], q[2], q[3]]), 1.0);
    for (i, &v) in x.iter().enumerate() {
        assert_eq!(q[4 + i] as i8, v.round_ties_even() as i8, "element {i} ({v})");
    }
    for j in 0..16 {
        let want: i16 = q[4 + 16 * j..4 + 16 * (j + 1)].iter().map(|&b| i16::from(b as i8)).sum();
        assert_eq!(i16::from_le_bytes([q[260 + 2 * j], q[261 + 2 * j]]), want);
    }
}

#[test]
fn simd_kernels_match_the_f64_reference() {
    if !crate::quant::simd_available() {
        eprintln!("no AVX2+FMA on this CPU: the SIMD kernels are not reachable here");
        return;
    }
    check_against_f64(crate::quant::kernel, 1e-5);
}

#[test]
fn simd_q8_k_quantizer_is_bit_identical_to_the_scalar_one() {
    if !crate::quant::simd_available() {
        eprintln!("no AVX2+FMA on this CPU: the SIMD quantizer is not reachable here");
        return;
    }
    let mut rng = StdRng::seed_from_u64(8);
    let nb = 7;
    for magnitude in [1.0f32, 1e-30, 3e30, 127.0] {
        let mut x: Vec<f32> = (0..nb * QK).map(|_| rng.random_range(-1.0f32..1.0) * magnitude).collect();
        // block 1 all zeros; block 2 on exact halves (ties); block 3 with its largest magnitude twice, of
        // both signs (the first wins); block 4 a single non-zero value
        x[QK..2 * QK].fill(0.0);
        for (i, v) in x[2 * QK..3 * QK].iter_mut().enumerate() {
            *v = (i % 100) as f32 - 49.5;
        }
        x[2 * QK + 5] = 127.0;
        x[3 * QK + 9] = -2.0 * magnitude;
        x[3 * QK + 200] = 2.0 * magnitude;
        x[4 * QK..5 * QK].fill(0.0);
        x[4 * QK + 77] = -magnitude;
        let mut scalar = vec![0u8; nb * ACT_BYTES];
        let mut simd = vec![1u8; nb * ACT_BYTES];
        super::q8k::quantize_scalar(&x, &mut scalar);
        super::quantize_q8_k(&x, &mut simd);
        for (b, (s, v)) in scalar.chunks_exact(ACT_BYTES).zip(simd.chunks_exact(ACT_BYTES)).enumerate() {
            assert_eq!(s, v, "magnitude {magnitude}, block {b}");
        }
    }
}

/// The Q8_K quantizer's speed, AVX2 against scalar (ignored: a measurement; run it in release with
/// `--ignored --nocapture`): the best of 41 timings of a 4864-wide row (Qwen2.5-0.5B's ffn width).
#[test]
#[ignore = "a speed measurement: run with --ignored --nocapture, in release"]
fn q8_k_quantizer_throughput() {
    let mut rng = StdRng::seed_from_u64(3);
    let x: Vec<f32> = (0..19 * QK).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut out = vec![0u8; 19 * ACT_BYTES];
    let mut best = |f: fn(&[f32], &mut [u8])| {
        (0..41)
            .map(|_| {
                let t = std::time::Instant::now();
                f(&x, &mut out);
                std::hint::black_box(&out);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let (simd, scalar) = (best(super::quantize_q8_k), best(super::q8k::quantize_scalar));
    println!("Q8_K quantize, 4864 values: dispatched {:.0} ns, scalar {:.0} ns", simd * 1e9, scalar * 1e9);
    assert!(simd > 0.0 && scalar > 0.0);
}
