//! attention's tests: against a naive f64 attention, lanes batched against alone, the cache layout.
use super::*;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn halves(v: &[f32]) -> Vec<half::f16> {
    v.iter().map(|&x| half::f16::from_f32(x)).collect()
}

fn widen(v: &[half::f16]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

/// Naive attention in f64, straight from the definition.
fn naive(a: &Attention, q: &[f32], k: &[f32], v: &[f32], cap: usize, pos: usize, n: usize) -> Vec<f64> {
    let hd = a.head_dim;
    let mut out = vec![0f64; n * a.heads * hd];
    for i in 0..n {
        for h in 0..a.heads {
            let kvh = h / (a.heads / a.kv_heads);
            let p = pos + i;
            let seen: Vec<usize> = (0..=p).filter(|&j| a.window.is_none_or(|w| p - j < w)).collect();
            let scores: Vec<f64> = seen
                .iter()
                .map(|&j| {
                    let s: f64 = (0..hd)
                        .map(|d| f64::from(q[(i * a.heads + h) * hd + d]) * f64::from(k[(kvh * cap + j) * hd + d]))
                        .sum::<f64>()
                        * f64::from(a.scale);
                    a.cap.map_or(s, |c| (s / f64::from(c)).tanh() * f64::from(c))
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (w, &j) in e.iter().zip(&seen) {
                for d in 0..hd {
                    out[(i * a.heads + h) * hd + d] += w / sum * f64::from(v[(kvh * cap + j) * hd + d]);
                }
            }
        }
    }
    out
}

#[test]
fn grouped_causal_windowed_capped_attention_matches_the_naive_one() {
    let pools = [Pool::new(1), Pool::new(2), Pool::new(3)];
    for pool in &pools {
        for (heads, kv_heads, hd) in [(9, 3, 64), (4, 4, 8), (2, 1, 6), (2, 1, 96), (4, 2, 128)] {
            for window in [None, Some(1), Some(3), Some(300)] {
                for cap in [None, Some(2.0)] {
                    for (pos, n) in [(0, 1), (0, 7), (5, 1), (5, 4), (255, 1), (256, 1), (700, 1), (300, 3)] {
                        let capacity = pos + n + 2;
                        let a = Attention { heads, kv_heads, head_dim: hd, scale: 0.4, cap, window };
                        let q = values(n * heads * hd, 1);
                        let k = values(kv_heads * capacity * hd, 2);
                        let v = values(kv_heads * capacity * hd, 3);
                        let mut out = vec![f32::NAN; n * heads * hd];
                        let cache = Cache { k: Kv::F32(&k), v: Kv::F32(&v), capacity };
                        let mut scores = vec![0f32; scratch_len(&a, &[Lane { cache, pos, n }], pool.parts())];
                        attend(pool, &a, &q, cache, pos, n, &mut out, &mut scores).unwrap();
                        let want = naive(&a, &q, &k, &v, capacity, pos, n);
                        for (x, y) in out.iter().zip(&want) {
                            assert!((f64::from(*x) - y).abs() < 1e-5, "{a:?} pos {pos} n {n}: {x} vs {y}");
                        }
                        // An f16 cache: the bits of an f32 cache holding the same (rounded) values.
                        let (k16, v16) = (halves(&k), halves(&v));
                        let (kr, vr) = (widen(&k16), widen(&v16));
                        let mut half_out = vec![f32::NAN; n * heads * hd];
                        let half = Cache { k: Kv::F16(&k16), v: Kv::F16(&v16), capacity };
                        attend(pool, &a, &q, half, pos, n, &mut half_out, &mut scores).unwrap();
                        let rounded = Cache { k: Kv::F32(&kr), v: Kv::F32(&vr), capacity };
                        attend(pool, &a, &q, rounded, pos, n, &mut out, &mut scores).unwrap();
                        let same = half_out.iter().zip(&out).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{a:?} pos {pos} n {n}: an f16 cache differs from its values in f32");
                    }
                }
            }
        }
    }
}

#[test]
fn lanes_in_one_call_get_the_bits_of_their_own_calls() {
    let pool = Pool::new(2);
    let a = Attention { heads: 9, kv_heads: 3, head_dim: 64, scale: 0.125, cap: None, window: None };
    let width = a.heads * a.head_dim;
    let shapes = [(37, 1, 40), (0, 9, 12), (700, 1, 705), (5, 1, 7), (100, 3, 110), (256, 1, 260)];
    let ks: Vec<Vec<f32>> =
        shapes.iter().enumerate().map(|(s, &(_, _, c))| values(3 * c * 64, s as u64 + 10)).collect();
    let vs: Vec<Vec<f32>> =
        shapes.iter().enumerate().map(|(s, &(_, _, c))| values(3 * c * 64, s as u64 + 20)).collect();
    let rows: usize = shapes.iter().map(|s| s.1).sum();
    let q = values(rows * width, 7);
    // Every other lane's cache in f16.
    let (k16, v16): (Vec<Vec<half::f16>>, Vec<Vec<half::f16>>) =
        (ks.iter().map(|k| halves(k)).collect(), vs.iter().map(|v| halves(v)).collect());
    let lanes: Vec<Lane<'_>> = shapes
        .iter()
        .enumerate()
        .map(|(i, &(pos, n, capacity))| {
            let (k, v) =
                if i % 2 == 0 { (Kv::F32(&ks[i]), Kv::F32(&vs[i])) } else { (Kv::F16(&k16[i]), Kv::F16(&v16[i])) };
            Lane { cache: Cache { k, v, capacity }, pos, n }
        })
        .collect();
    let mut out = vec![f32::NAN; rows * width];
    let mut scores = vec![0f32; scratch_len(&a, &lanes, pool.parts())];
    attend_lanes(&pool, &a, &q, &lanes, &mut out, &mut scores).unwrap();
    let mut first = 0;
    for l in &lanes {
        let mut alone = vec![f32::NAN; l.n * width];
        let qs = &q[first * width..(first + l.n) * width];
        attend(&pool, &a, qs, l.cache, l.pos, l.n, &mut alone, &mut scores).unwrap();
        let got = &out[first * width..(first + l.n) * width];
        assert!(got.iter().zip(&alone).all(|(x, y)| x.to_bits() == y.to_bits()), "lane at row {first}");
        first += l.n;
    }
}

#[test]
fn store_puts_each_head_row_at_its_position() {
    let (kv_heads, hd, cap) = (2, 3, 5);
    let mut cache = vec![0f32; kv_heads * cap * hd];
    let rows: Vec<f32> = (0..2 * kv_heads * hd).map(|i| i as f32 + 1.0).collect();
    store(&mut cache, kv_heads, hd, cap, 3, &rows);
    for t in 0..2 {
        for h in 0..kv_heads {
            let at = (h * cap + 3 + t) * hd;
            assert_eq!(&cache[at..at + hd], &rows[(t * kv_heads + h) * hd..(t * kv_heads + h + 1) * hd]);
        }
    }
    assert_eq!(cache.iter().filter(|v| **v != 0.0).count(), rows.len());
    let mut half_cache = vec![half::f16::ZERO; kv_heads * cap * hd];
    let rows: Vec<f32> = rows.iter().map(|v| v / 3.0).collect();
    store_f16(&mut half_cache, kv_heads, hd, cap, 3, &rows);
    store(&mut cache, kv_heads, hd, cap, 3, &rows);
    for (h, f) in half_cache.iter().zip(&cache) {
        assert_eq!(h.to_bits(), half::f16::from_f32(*f).to_bits());
    }
}

#[test]
fn a_cache_too_small_is_refused() {
    let pool = Pool::new(1);
    let a = Attention { heads: 2, kv_heads: 1, head_dim: 4, scale: 1.0, cap: None, window: None };
    let (k, v) = (vec![0f32; 8], vec![0f32; 8]);
    let (q, mut out, mut scores) = (vec![0f32; 8], vec![0f32; 8], vec![0f32; 8]);
    let cache = Cache { k: Kv::F32(&k), v: Kv::F32(&v), capacity: 2 };
    assert!(attend(&pool, &a, &q, cache, 2, 1, &mut out, &mut scores).is_err());
}
