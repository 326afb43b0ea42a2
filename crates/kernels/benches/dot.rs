//! Single-thread throughput of the dot kernels on SmolLM2-135M's shapes: a whole weight matrix against 1
//! activation row (decode) and 4 rows (a prefill tile), for the SIMD kernel and the scalar reference.
//! Prints weight GB/s (bytes of the matrix ÷ time) and activation-rows × weight-rows per µs.
//!
//! `cargo bench -p tunebench-kernels --bench dot [-- FILTER]` (FILTER matches the kind, e.g. Q4_1).

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tunebench_kernels::quant::{self, Kernel, Kind};

/// (rows, cols): ffn_up/gate (1536×576), ffn_down (576×1536), the tied lm_head (49152×576).
const SHAPES: [(usize, usize, &str); 3] = [(1536, 576, "ffn_up"), (576, 1536, "ffn_down"), (49152, 576, "lm_head")];

fn weights(kind: Kind, rows: usize, cols: usize, rng: &mut StdRng) -> Vec<u8> {
    let (_, bytes) = kind.block();
    let row_bytes = kind.row_bytes(cols).unwrap_or(0);
    let mut w = vec![0u8; rows * row_bytes];
    rng.fill(&mut w[..]);
    // Sane scales (random bytes would give NaN and inf f16s, which cost the same but read badly).
    let scale = half::f16::from_f32(0.01).to_le_bytes();
    match kind {
        Kind::F32 => w.chunks_exact_mut(4).for_each(|c| c.copy_from_slice(&rng.random_range(-1f32..1.0).to_le_bytes())),
        Kind::F16 | Kind::BF16 => w.chunks_exact_mut(2).for_each(|c| c.copy_from_slice(&scale)),
        _ => w.chunks_exact_mut(bytes).for_each(|b| {
            b[..2].copy_from_slice(&scale);
            if matches!(kind, Kind::Q4_1 | Kind::Q5_1) {
                b[2..4].copy_from_slice(&scale);
            }
        }),
    }
    w
}

/// Median seconds of one pass over every weight row, against `acts`.
fn time(kern: Kernel, kind: Kind, rows: usize, cols: usize, w: &[u8], acts: &[&[u8]]) -> f64 {
    let row_bytes = kind.row_bytes(cols).unwrap_or(0);
    let mut out = vec![0f32; rows * acts.len()];
    let pass = |out: &mut [f32]| {
        for (r, o) in out.chunks_exact_mut(acts.len()).enumerate() {
            (kern.dot)(cols, &w[r * row_bytes..(r + 1) * row_bytes], acts, o);
        }
        black_box(&*out);
    };
    pass(&mut out);
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (start.elapsed() < Duration::from_millis(300) && samples.len() < 200) {
        let t = Instant::now();
        pass(&mut out);
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut rng = StdRng::seed_from_u64(0);
    println!(
        "{:<5} {:<8} {:>4}  {:>9} {:>9}  {:>9} {:>9}  {:>6}",
        "kind", "shape", "acts", "simd GB/s", "rows/µs", "ref GB/s", "rows/µs", "×"
    );
    for kind in [Kind::Q4_0, Kind::Q4_1, Kind::Q5_0, Kind::Q5_1, Kind::Q8_0, Kind::F32, Kind::F16, Kind::BF16] {
        if filter.as_ref().is_some_and(|f| !format!("{kind:?}").eq_ignore_ascii_case(f)) {
            continue;
        }
        for (rows, cols, name) in SHAPES {
            if name == "lm_head" && !matches!(kind, Kind::Q8_0 | Kind::Q4_1) {
                continue;
            }
            let w = weights(kind, rows, cols, &mut rng);
            let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-1f32..1.0)).collect();
            let mut a = vec![0u8; kind.acts().row_bytes(cols)];
            quant::quantize_row(kind.acts(), &x, &mut a);
            for n in [1, 4] {
                let acts = vec![a.as_slice(); n];
                let simd = quant::simd(kind).map(|k| time(k, kind, rows, cols, &w, &acts));
                let scalar = time(quant::reference(kind), kind, rows, cols, &w, &acts);
                let gbs = |t: f64| w.len() as f64 / t / 1e9;
                let per_us = |t: f64| (rows * n) as f64 / t / 1e6;
                let (sg, sr) = simd.map_or((f64::NAN, f64::NAN), |t| (gbs(t), per_us(t)));
                let ratio = simd.map_or(f64::NAN, |t| scalar / t);
                println!(
                    "{:<5} {:<8} {:>4}  {sg:>9.2} {sr:>9.1}  {:>9.2} {:>9.1}  {ratio:>6.1}",
                    format!("{kind:?}"),
                    name,
                    n,
                    gbs(scalar),
                    per_us(scalar)
                );
            }
        }
    }
}
