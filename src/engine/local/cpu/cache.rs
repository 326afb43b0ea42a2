//! A lane's host KV cache (`[kv_heads, capacity, head_dim]` per layer, f32 or f16, written in place) and the
//! forward pass's scratch buffers, sized on first use and reused (a pass allocates only its few small row lists).

use half::f16;
use tunebench_kernels::attention::Kv;
use tunebench_kernels::matmul::Scratch;

pub struct HostCache {
    pub capacity: usize,
    pub(super) k: Vec<KvLayer>,
    pub(super) v: Vec<KvLayer>,
    pub(super) bufs: Bufs,
}

/// One layer's keys or values.
pub enum KvLayer {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl KvLayer {
    fn new(len: usize, half: bool) -> Self {
        if half { KvLayer::F16(vec![f16::ZERO; len]) } else { KvLayer::F32(vec![0f32; len]) }
    }

    pub fn view(&self) -> Kv<'_> {
        match self {
            KvLayer::F32(v) => Kv::F32(v),
            KvLayer::F16(v) => Kv::F16(v),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            KvLayer::F32(v) => v.len() * 4,
            KvLayer::F16(v) => v.len() * 2,
        }
    }
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
    /// Room for `capacity` positions of every layer, in f16 when `half` (see `Decoder::new_cache`).
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize, half: bool) -> Self {
        let per_layer = kv_heads * capacity * head_dim;
        Self {
            capacity,
            k: (0..layers).map(|_| KvLayer::new(per_layer, half)).collect(),
            v: (0..layers).map(|_| KvLayer::new(per_layer, half)).collect(),
            bufs: Bufs::default(),
        }
    }

    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(KvLayer::bytes).sum()
    }
}
