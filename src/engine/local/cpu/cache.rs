//! A lane's host KV cache (f32, `[kv_heads, capacity, head_dim]` per layer, written in place) and the
//! forward pass's scratch buffers, sized on first use and reused (a pass allocates only its few small row lists).

use tunebench_kernels::matmul::Scratch;

pub struct HostCache {
    pub capacity: usize,
    pub(super) k: Vec<Vec<f32>>,
    pub(super) v: Vec<Vec<f32>>,
    pub(super) bufs: Bufs,
}

/// Per-forward buffers, each grown to the largest step seen.
#[derive(Default)]
pub struct Bufs {
    pub x: Vec<f32>,
    pub h: Vec<f32>,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub att: Vec<f32>,
    pub y: Vec<f32>,
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub logits: Vec<f32>,
    pub scores: Vec<f32>,
    pub mm: Scratch,
}

/// `v` grown to at least `len` and cut to it.
pub fn fit(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

impl HostCache {
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        let per_layer = kv_heads * capacity * head_dim;
        Self {
            capacity,
            k: (0..layers).map(|_| vec![0f32; per_layer]).collect(),
            v: (0..layers).map(|_| vec![0f32; per_layer]).collect(),
            bufs: Bufs::default(),
        }
    }

    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|l| l.len() * 4).sum()
    }
}
