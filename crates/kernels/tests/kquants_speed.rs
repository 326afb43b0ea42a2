//! Micro-bench of the K-quant dot products (ignored: run it on purpose, in release, on a quiet machine):
//! `cargo test --release -p tunebench-kernels --test kquants_speed -- --ignored --nocapture`.
//! One thread multiplies a whole weight matrix by 1 (decode) and 4 (prefill tile) activation rows; the
//! figure is weight bytes streamed per second (the median of 7 timings), AVX2 against the scalar reference.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tunebench_kernels::quant::{ActKind, Kernel, Kind, kernel, quantize_row, reference, simd_available};

fn random_weights(kind: Kind, rows: usize, cols: usize, rng: &mut StdRng) -> Vec<u8> {
    let (_, bytes) = kind.block();
    let mut w = vec![0u8; kind.row_bytes(cols).unwrap_or(0) * rows];
    rng.fill(&mut w[..]);
    // sane f16 super-scales (d, and dmin where the kind has one) so no value is inf or NaN
    let at: &[usize] = if kind == Kind::Q4_K { &[0, 2] } else { &[208] };
    for b in w.chunks_exact_mut(bytes) {
        for &o in at {
            b[o..o + 2].copy_from_slice(&half::f16::from_f32(rng.random_range(-0.01..0.01)).to_le_bytes());
        }
    }
    w
}

/// Seconds for one pass over the matrix (the median and the fastest of 41 single passes: on a shared
/// machine the fastest is the kernel's own speed, the median what it gets), and the outputs' checksum.
fn time(k: Kernel, rows: usize, cols: usize, w: &[u8], acts: &[&[u8]], row_bytes: usize) -> (f64, f64, f32) {
    let mut out = vec![0f32; acts.len()];
    let mut pass = || {
        let mut sum = 0f32;
        for r in 0..rows {
            (k.dot)(cols, &w[r * row_bytes..(r + 1) * row_bytes], acts, &mut out);
            sum += out.iter().sum::<f32>();
        }
        sum
    };
    let checksum = pass();
    let mut timings: Vec<f64> = (0..41)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(pass());
            t.elapsed().as_secs_f64()
        })
        .collect();
    timings.sort_by(f64::total_cmp);
    (timings[20], timings[0], checksum)
}

#[test]
#[ignore = "a speed measurement: run with --ignored --nocapture, in release"]
fn kquant_dot_throughput() {
    assert!(simd_available(), "this bench compares the AVX2 kernels with the scalar ones");
    let mut rng = StdRng::seed_from_u64(5);
    println!("kind  rows x cols   acts  AVX2 GB/s (best)  scalar GB/s  speed-up  AVX2 ns/row (best)");
    for kind in [Kind::Q4_K, Kind::Q6_K] {
        // SmolLM2's ffn_down, gemma-3-270m's ffn_down, Qwen2.5-0.5B's ffn_down: the whole-block shapes
        for (rows, cols) in [(576, 1536), (640, 2048), (896, 4864)] {
            let w = random_weights(kind, rows, cols, &mut rng);
            let row_bytes = w.len() / rows;
            for n in [1, 2, 3, 4] {
                let acts: Vec<Vec<u8>> = (0..n)
                    .map(|_| {
                        let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                        let mut a = vec![0u8; ActKind::Q8_K.row_bytes(cols)];
                        quantize_row(ActKind::Q8_K, &x, &mut a);
                        a
                    })
                    .collect();
                let refs: Vec<&[u8]> = acts.iter().map(|a| a.as_slice()).collect();
                let (fast, best, c1) = time(kernel(kind), rows, cols, &w, &refs, row_bytes);
                let (slow, _, c2) = time(reference(kind), rows, cols, &w, &refs, row_bytes);
                assert!((c1 - c2).abs() <= 1e-3 * c2.abs().max(1.0), "{kind:?}: checksums {c1} vs {c2}");
                let gbs = |t: f64| w.len() as f64 / t / 1e9;
                let per_row = |t: f64| t / rows as f64 * 1e9;
                println!(
                    "{kind:?}  {rows:>4} x {cols:<5}  {n}     {:>6.2} ({:>5.2})   {:>7.2}     {:>6.1}x   {:>7.1} ({:>6.1})",
                    gbs(fast),
                    gbs(best),
                    gbs(slow),
                    slow / fast,
                    per_row(fast),
                    per_row(best)
                );
            }
        }
    }
}
