//! Tests of the 8-bit B factor: its held values, its update against an f64 sum, and the same bits whichever
//! range an output is updated in.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

#[test]
fn the_update_matches_an_f64_sum_of_the_held_values_within_t_rounding() {
    let mut rng = StdRng::seed_from_u64(12);
    for (outputs, rank, start, len) in [(576, 16, 0, 576), (64, 8, 3, 29), (8, 4, 0, 8), (1536, 32, 41, 1400)] {
        let b: Vec<f32> = (0..outputs * rank).map(|_| rng.random_range(-0.3..0.3)).collect();
        let cols = QCols::new(&b, outputs, rank).unwrap();
        for (o, row) in b.chunks(rank).enumerate() {
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (k, &want) in row.iter().enumerate() {
                assert!((cols.value(o, k) - want).abs() <= amax / 254.0 * 1.001, "B[{o}, {k}]");
            }
        }
        let t: Vec<f32> = (0..rank).map(|_| rng.random_range(-3.0..3.0)).collect();
        let base: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut out = base.clone();
        cols.update(&t, start, &mut out);
        let tmax = t.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        for c in 0..len {
            let held = |k: usize| cols.value(start + c, k) as f64;
            let want = base[c] as f64 + (0..rank).map(|k| t[k] as f64 * held(k)).sum::<f64>();
            // t rounds by up to half a step of tmax/127 per value.
            let slack: f64 = (0..rank).map(|k| held(k).abs()).sum::<f64>() * tmax / 254.0;
            assert!((out[c] as f64 - want).abs() <= slack * 1.001 + 1e-5, "rank {rank} col {c}");
        }
    }
}

#[test]
fn an_output_gets_the_same_bits_whichever_range_it_is_updated_in() {
    // Parts update their own ranges: whole pairs of groups, a group at each cut end, or single outputs.
    let mut rng = StdRng::seed_from_u64(13);
    for rank in [4, 8, 16, 32] {
        let outputs = 96;
        let b: Vec<f32> = (0..outputs * rank).map(|_| rng.random_range(-0.3..0.3)).collect();
        let cols = QCols::new(&b, outputs, rank).unwrap();
        let t: Vec<f32> = (0..rank).map(|_| rng.random_range(-3.0..3.0)).collect();
        let base: Vec<f32> = (0..outputs).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut whole = base.clone();
        cols.update(&t, 0, &mut whole);
        for cuts in [&[0, 16, 96][..], &[0, 3, 29, 30, 77, 96], &[0, 8, 40, 96], &[0, 95, 96]] {
            let mut parts = base.clone();
            for w in cuts.windows(2) {
                cols.update(&t, w[0], &mut parts[w[0]..w[1]]);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&parts), bits(&whole), "rank {rank}, cut at {cuts:?}");
        }
    }
}

#[test]
fn shapes_it_cannot_hold_are_refused_and_bad_calls_change_nothing() {
    assert!(QCols::new(&[0.0; 12 * 4], 12, 4).is_none());
    assert!(QCols::new(&[0.0; 8 * 6], 8, 6).is_none());
    let cols = QCols::new(&[1.0; 8 * 4], 8, 4).unwrap();
    let mut out = [2f32; 8];
    cols.update(&[1.0; 3], 0, &mut out);
    cols.update(&[1.0; 4], 4, &mut out);
    assert_eq!(out, [2.0; 8]);
    cols.update(&[1.0, 0.0, 0.0, 0.0], 0, &mut out);
    assert_eq!(out, [3.0; 8]);
    cols.update(&[0.0; 4], 0, &mut out);
    assert_eq!(out, [3.0; 8]);
}
