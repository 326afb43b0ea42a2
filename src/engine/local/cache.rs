//! A lane's own KV cache, allocated once per run for the whole prompt + answer, written in place.

use candle_core::{DType, Device, Result, Tensor};

pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    capacity: usize,
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
        Ok(Self { k, v, capacity })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Writes this step's keys and values at `pos` and returns every position up to the end of them.
    pub fn append(&mut self, layer: usize, pos: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = k.dim(2)?;
        if pos + n > self.capacity {
            candle_core::bail!("KV cache full: {} positions allocated, {} needed", self.capacity, pos + n);
        }
        self.k[layer].slice_set(&k.contiguous()?, 2, pos)?;
        self.v[layer].slice_set(&v.contiguous()?, 2, pos)?;
        Ok((self.k[layer].narrow(2, 0, pos + n)?, self.v[layer].narrow(2, 0, pos + n)?))
    }

    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|t| t.elem_count() * 4).sum()
    }
}
