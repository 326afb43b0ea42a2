//! Input generation: seeded randomness, and mutations of valid documents (byte-level and token-level).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub struct Gen {
    pub rng: StdRng,
}

/// Numbers at the edges of what parsers convert: zero, signs, overflow of every width, floats out of range.
pub const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "1e308",
    "1e999",
    "-0.0",
    "nan",
    "inf",
    "0.5",
    "1e-400",
    "99999999999999999999999999999",
];

pub fn hash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| (h ^ x as u64).wrapping_mul(0x100_0000_01b3))
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        Self { rng: StdRng::seed_from_u64(seed) }
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.rng.random_range(0..n) }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    pub fn word<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }

    /// A valid document from `corpus`, then 1–4 mutations: dictionary words and edge numbers inserted or
    /// swapped in, ranges deleted or repeated, bytes flipped, pieces of another document spliced in.
    pub fn mutate(&mut self, corpus: &[&[u8]], dict: &[&str]) -> Vec<u8> {
        let mut v = self.pick(corpus).to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(v.len() + 1);
            match self.below(9) {
                0 | 1 => {
                    let w = if self.chance(0.3) { *self.pick(NUMBERS) } else { *self.pick(dict) };
                    v.splice(at..at, w.bytes());
                }
                2 => {
                    // A token replaced: from `at`, up to the next delimiter.
                    let end = v[at..].iter().position(|b| b" ,:;\n\"=[]{}".contains(b)).map_or(v.len(), |i| at + i);
                    let w = if self.chance(0.5) { *self.pick(NUMBERS) } else { *self.pick(dict) };
                    v.splice(at..end, w.bytes());
                }
                3 => {
                    let end = (at + 1 + self.below(16)).min(v.len());
                    v.drain(at..end.max(at));
                }
                4 => {
                    let end = (at + 1 + self.below(64)).min(v.len());
                    let piece = v[at..end.max(at)].to_vec();
                    for _ in 0..1 + self.below(3) {
                        v.splice(at..at, piece.iter().copied());
                    }
                }
                5 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                6 => {
                    let b: u8 = self.rng.random();
                    v.insert(at, b);
                }
                7 => {
                    let other = self.pick(corpus);
                    let s = self.below(other.len());
                    let e = (s + self.below(80)).min(other.len());
                    v.splice(at..at, other[s..e].iter().copied());
                }
                _ => v.truncate(at),
            }
        }
        v
    }
}
