//! attention rows' tests: the score and sum loops against f64, and several heads in one pass against each alone.
use super::*;

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 2654435761usize + seed * 97) % 20001) as f32 / 10000.0 - 1.0).collect()
}

#[test]
fn dots_match_f64_for_every_key_count_and_take_the_same_bits_in_any_longer_run() {
    for hd in [8, 64, 72] {
        let q = values(hd, 1);
        let keys = values(29 * hd, 2);
        let mut longest = vec![0f32; 29];
        dots(&q, &keys, hd, &mut longest);
        for n in 0..=29 {
            let mut out = vec![0f32; n];
            dots(&q, &keys, hd, &mut out);
            for (t, &o) in out.iter().enumerate() {
                let terms = (0..hd).map(|d| f64::from(q[d]) * f64::from(keys[t * hd + d]));
                let (want, norm) = (terms.clone().sum::<f64>(), terms.map(f64::abs).sum::<f64>());
                assert!((f64::from(o) - want).abs() <= 1e-6 * norm, "hd {hd} n {n} key {t}: {o} vs {want}");
                // A key in a whole group of four scores the same bits whatever else is in the run.
                if t < n / 4 * 4 {
                    assert_eq!(o.to_bits(), longest[t].to_bits(), "hd {hd} n {n} key {t}");
                }
            }
        }
    }
}

#[test]
fn several_heads_in_one_pass_get_the_bits_each_gets_alone() {
    for hd in [8, 64, 72, 128] {
        let keys = values(37 * hd, 5);
        for heads in 1..=HEADS {
            let q: Vec<Vec<f32>> = (0..heads).map(|j| values(hd, 10 + j)).collect();
            let qs: Vec<&[f32]> = q.iter().map(Vec::as_slice).collect();
            for n in 0..=37 {
                let mut got = vec![vec![f32::NAN; n]; heads];
                let mut outs: Vec<&mut [f32]> = got.iter_mut().map(Vec::as_mut_slice).collect();
                dots_heads(&qs, &keys, hd, &mut outs);
                let w: Vec<Vec<f32>> = (0..heads).map(|j| values(n, 20 + j)).collect();
                let ws: Vec<&[f32]> = w.iter().map(Vec::as_slice).collect();
                let mut sums = vec![vec![f32::NAN; hd]; heads];
                let mut outs: Vec<&mut [f32]> = sums.iter_mut().map(Vec::as_mut_slice).collect();
                weighted_heads(&ws, &keys, hd, &mut outs);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                // The four-key blocks CPUs without AVX-512VL take.
                #[cfg(target_arch = "x86_64")]
                let narrow = crate::quant::simd_available().then(|| {
                    let mut v = vec![vec![f32::NAN; n]; heads];
                    let p: Vec<*mut f32> = v.iter_mut().map(|o| o.as_mut_ptr()).collect();
                    let k = keys.as_ptr();
                    // SAFETY: AVX2 and FMA are present; hd % 8 == 0, each query holds hd, each output n, the
                    // keys 37 · hd ≥ n · hd.
                    unsafe {
                        match heads {
                            1 => x86::dots_heads::<f32, 1>([q[0].as_ptr()], k, hd, n, [p[0]]),
                            2 => x86::dots_heads::<f32, 2>([q[0].as_ptr(), q[1].as_ptr()], k, hd, n, [p[0], p[1]]),
                            _ => x86::dots_heads::<f32, 3>(
                                [q[0].as_ptr(), q[1].as_ptr(), q[2].as_ptr()],
                                k,
                                hd,
                                n,
                                [p[0], p[1], p[2]],
                            ),
                        }
                    }
                    v
                });
                for j in 0..heads {
                    let mut alone = vec![f32::NAN; n];
                    dots(&q[j], &keys, hd, &mut alone);
                    #[cfg(target_arch = "x86_64")]
                    if let Some(narrow) = &narrow {
                        assert_eq!(bits(&narrow[j]), bits(&alone), "four-key blocks: hd {hd}, {heads} heads, head {j}");
                    }
                    assert_eq!(bits(&got[j]), bits(&alone), "scores: hd {hd}, {heads} heads, head {j}, {n} keys");
                    let mut alone = vec![f32::NAN; hd];
                    weighted(&w[j], &keys, hd, &mut alone);
                    assert_eq!(bits(&sums[j]), bits(&alone), "sums: hd {hd}, {heads} heads, head {j}, {n} keys");
                }
            }
        }
    }
}
