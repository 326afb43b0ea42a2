//! A lane's own KV cache, allocated once per run for the whole prompt + answer, written in place: candle
//! tensors, or host buffers for the host engine.

use candle_core::{DType, Device, Result, Tensor};

use super::cpu::HostCache;

/// On a GPU (and for the candle path) tensors; for the host engine, host buffers.
pub enum KvCache {
    Tensors { k: Vec<Tensor>, v: Vec<Tensor>, capacity: usize },
    Host(Box<HostCache>),
}

impl KvCache {
    /// Room for `capacity` positions in each of `layers` layers.
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize, dev: &Device) -> Result<Self> {
        let shape = (1, kv_heads, capacity, head_dim);
        let mut k = Vec::with_capacity(layers);
        let mut v = Vec::with_capacity(layers);
        for _ in 0..layers {
            k.push(Tensor::zeros(shape, DType::F32, dev)?);
            v.push(Tensor::zeros(shape, DType::F32, dev)?);
        }
        Ok(Self::Tensors { k, v, capacity })
    }

    /// A host cache for the host engine, in f16 when `half`.
    pub fn host(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize, half: bool) -> Self {
        Self::Host(Box::new(HostCache::new(layers, kv_heads, head_dim, capacity, half)))
    }

    pub fn capacity(&self) -> usize {
        match self {
            Self::Tensors { capacity, .. } => *capacity,
            Self::Host(h) => h.capacity,
        }
    }

    /// Writes this step's keys and values at `pos` and returns every position up to the end of them.
    pub fn append(&mut self, layer: usize, pos: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let Self::Tensors { k: ks, v: vs, capacity } = self else {
            candle_core::bail!("a host KV cache cannot serve the candle decoder")
        };
        let n = k.dim(2)?;
        if pos + n > *capacity {
            candle_core::bail!("KV cache full: {} positions allocated, {} needed", capacity, pos + n);
        }
        ks[layer].slice_set(&k.contiguous()?, 2, pos)?;
        vs[layer].slice_set(&v.contiguous()?, 2, pos)?;
        Ok((ks[layer].narrow(2, 0, pos + n)?, vs[layer].narrow(2, 0, pos + n)?))
    }

    pub fn bytes(&self) -> usize {
        match self {
            Self::Tensors { k, v, .. } => k.iter().chain(v).map(|t| t.elem_count() * 4).sum(),
            Self::Host(h) => h.bytes(),
        }
    }
}
