//! Single-thread throughput of the dot kernels on SmolLM2-135M's shapes: a whole weight matrix against 1
//! activation row (decode) and 4 rows (a prefill tile), for the SIMD kernel and the scalar reference.
//! Prints weight GB/s (bytes of the matrix ÷ time) and activation-rows × weight-rows per µs. Time is this
//! thread's CPU time (wall time where the OS has no such clock), so that on a shared machine the time spent
//! descheduled does not count; what other processes do to the caches still does.
//!
//! `cargo bench -p tunebench-kernels --bench dot [-- FILTER]` (FILTER matches the kind, e.g. Q4_1).

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tunebench_kernels::quant::{self, Kernel, Kind};

/// (rows, cols): ffn_up/gate (1536×576), ffn_down (576×1536), the tied lm_head (49152×576), and all 30
/// layers' 576-wide rows end to end (from DRAM: larger than the L3), as a decode streams them.
const SHAPES: [(usize, usize, &str); 4] =
    [(1536, 576, "ffn_up"), (576, 1536, "ffn_down"), (49152, 576, "lm_head"), (30 * 6144, 576, "model")];

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

/// Seconds of CPU this thread has run (Linux, macOS), else of wall time since the first call.
fn now() -> f64 {
    #[cfg(unix)]
    {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec, which `t` is.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0 {
            return t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9;
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
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
    median_pass(|| pass(&mut out))
}

/// Median seconds of `pass` after one warm-up: at least 5 runs, then more for up to 300 ms (200 at most).
fn median_pass(mut pass: impl FnMut()) -> f64 {
    pass();
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (start.elapsed() < Duration::from_millis(300) && samples.len() < 200) {
        let t = now();
        pass();
        samples.push(now() - t);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// GB/s of the plainest read of `bytes` (a sum of u64 words): the memory's speed, the bound for decode.
fn read_speed(bytes: &[u8]) -> f64 {
    let pass =
        || bytes.chunks_exact(8).fold(0u64, |s, c| s.wrapping_add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))));
    black_box(pass());
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let t = now();
            black_box(pass());
            now() - t
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    bytes.len() as f64 / samples[3] / 1e9
}

/// ns to quantize one 576-wide activation row (SmolLM2's hidden size) to Q8_0 and Q8_1, dispatched vs scalar.
fn quantize_speed() {
    let x: Vec<f32> = (0..576).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
    for act in [quant::ActKind::Q8_0, quant::ActKind::Q8_1] {
        let mut out = vec![0u8; act.row_bytes(x.len())];
        let per_row = |f: fn(quant::ActKind, &[f32], &mut [u8]), out: &mut [u8]| {
            let reps = 20_000;
            let t = now();
            for _ in 0..reps {
                f(act, black_box(&x), out);
                black_box(&*out);
            }
            (now() - t) / reps as f64 * 1e9
        };
        let fast = per_row(quant::quantize_row, &mut out);
        let scalar = per_row(quant::quantize_row_reference, &mut out);
        println!("quantize 576 to {act:?}: {fast:.0} ns (scalar {scalar:.0} ns)");
    }
}

/// The repacked-group kernels (the host engine's decode path for legacy formats), and the two-group kernel
/// where the CPU has AVX-512: weight GB/s against 1 and 4 activation rows, and what 4 rows cost over 1 (1.0:
/// the fourth row is free; 4.0: no reuse at all).
fn packed(filter: Option<&str>) {
    let mut rng = StdRng::seed_from_u64(1);
    println!("{:<5} {:<8} {:<10} {:>9} {:>9} {:>8}", "kind", "shape", "kernel", "1 GB/s", "4 GB/s", "4 ÷ 1");
    for kind in [Kind::Q4_0, Kind::Q4_1, Kind::Q5_0, Kind::Q8_0] {
        if filter.is_some_and(|f| !format!("{kind:?}").eq_ignore_ascii_case(f) && !f.eq_ignore_ascii_case("packed")) {
            continue;
        }
        for (rows, cols, name) in SHAPES {
            // Random rows, repacked as the engine holds them: the speed does not depend on which byte is where,
            // only each block's scale (and Q4_1's minimum) must be sane.
            let (_, bb) = kind.block();
            let mut bytes = vec![0u8; rows * kind.row_bytes(cols).unwrap_or(0)];
            rng.fill(&mut bytes[..]);
            let heads = if kind == Kind::Q4_1 { 2 } else { 1 };
            let scale = half::f16::from_f32(0.01).to_le_bytes();
            bytes
                .chunks_exact_mut(bb)
                .for_each(|b| b[..2 * heads].chunks_exact_mut(2).for_each(|h| h.copy_from_slice(&scale)));
            let Ok(w) = quant::Weights::with_layout(kind, rows, cols, &bytes, true) else { continue };
            // The group kernels on the layout they run on alone (a CPU without the two-group kernel's).
            let Ok(alone) = quant::Weights::without_pair_kernel(kind, rows, cols, &bytes) else { continue };
            let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-1f32..1.0)).collect();
            let mut a = vec![0u8; quant::ActKind::Q8_0S.row_bytes(cols)];
            quant::quantize_row(quant::ActKind::Q8_0S, &x, &mut a);
            let groups = rows / quant::GROUP;
            // The group kernels, then the two-group kernel (AVX-512), each call handed its group (or pair) with
            // the bytes after it as the matmul hands them (the kernel prefetches them).
            let singles = quant::group_kernels(kind).into_iter().map(|(label, f)| (label, Some(f), None));
            let pairs = quant::pair_kernel(kind).map(|f| ("pair512", None, Some(f)));
            for (label, group, pair) in singles.chain(pairs) {
                let t = |n: usize| {
                    let acts = vec![a.as_slice(); n];
                    let mut out = vec![[0f32; quant::GROUP]; 2 * n];
                    let pass = |out: &mut [[f32; quant::GROUP]]| {
                        for g in 0..groups {
                            if let Some(f) = pair {
                                if let Some((gw, _)) = w.pair_reaching(g, groups).filter(|_| g % 2 == 0) {
                                    f(cols, gw, &acts, out);
                                }
                            } else if let (Some(f), Some((gw, lay, _))) = (group, alone.group_reaching(g, groups)) {
                                f(cols, gw, lay, &acts, &mut out[..n]);
                            }
                            black_box(&*out);
                        }
                    };
                    median_pass(|| pass(&mut out))
                };
                let (one, four) = (t(1), t(4));
                let gbs = |t: f64| w.bytes() as f64 / t / 1e9;
                let k = format!("{kind:?}");
                println!("{k:<5} {name:<8} {label:<10} {:>9.2} {:>9.2} {:>8.2}", gbs(one), gbs(four), four / one);
            }
        }
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.as_deref().is_none_or(|f| f.eq_ignore_ascii_case("packed") || f.starts_with('Q')) {
        packed(filter.as_deref());
    }
    if filter.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("packed")) {
        return;
    }
    if filter.as_deref().is_none_or(|f| f.eq_ignore_ascii_case("quantize")) {
        quantize_speed();
    }
    let mut rng = StdRng::seed_from_u64(0);
    println!(
        "{:<5} {:<8} {:>4}  {:<10} {:>7} {:>8} {:>6}",
        "kind", "shape", "acts", "kernel", "GB/s", "rows/µs", "× ref"
    );
    for kind in [Kind::Q4_0, Kind::Q4_1, Kind::Q5_0, Kind::Q5_1, Kind::Q8_0, Kind::F32, Kind::F16, Kind::BF16] {
        if filter.as_ref().is_some_and(|f| !format!("{kind:?}").eq_ignore_ascii_case(f)) {
            continue;
        }
        for (rows, cols, name) in SHAPES {
            if matches!(name, "lm_head" | "model") && !matches!(kind, Kind::Q8_0 | Kind::Q4_1) {
                continue;
            }
            let w = weights(kind, rows, cols, &mut rng);
            if name == "model" {
                println!(
                    "      (reading the {} MB of {kind:?} \"model\" rows as u64 sums: {:.2} GB/s)",
                    w.len() >> 20,
                    read_speed(&w)
                );
            }
            let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-1f32..1.0)).collect();
            let mut a = vec![0u8; kind.acts().row_bytes(cols)];
            quant::quantize_row(kind.acts(), &x, &mut a);
            for n in [1, 4] {
                let acts = vec![a.as_slice(); n];
                let scalar = time(quant::reference(kind), kind, rows, cols, &w, &acts);
                let mut all = vec![("reference", scalar)];
                for (label, kern) in quant::simd_kernels(kind) {
                    all.push((label, time(kern, kind, rows, cols, &w, &acts)));
                }
                for (label, t) in all {
                    let (gbs, per_us) = (w.len() as f64 / t / 1e9, (rows * n) as f64 / t / 1e6);
                    let k = format!("{kind:?}");
                    println!("{k:<5} {name:<8} {n:>4}  {label:<10} {gbs:>7.2} {per_us:>8.1} {:>6.1}", scalar / t);
                }
            }
        }
    }
}
