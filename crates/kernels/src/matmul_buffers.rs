//! The buffers of a matmul call: the scratch it reuses from call to call (quantized input rows, LoRA x·Aᵀ
//! values), and the raw views through which the pool's parts write their disjoint rows of it and of the outputs.

use crate::lora::QuantT;
use crate::pool::{Pool, split};
use crate::quant::{ActKind, quantize_row};

/// Buffers a matmul reuses from call to call (one per forward pass or cache): warm, a call allocates nothing.
#[derive(Default)]
pub struct Scratch {
    /// Quantized input rows, one buffer per activation format in use.
    pub(super) acts: Vec<(ActKind, Vec<u8>)>,
    /// x · Aᵀ of each LoRA, `[n, r]` after one another.
    pub(super) xa: Vec<f32>,
    /// The same quantized for an 8-bit B (`lora::quantize_t`), once per call: the i8 values beside `xa`'s,
    /// and each row's scale and sum at the index of its first value.
    pub(super) qt: Vec<i8>,
    pub(super) qts: Vec<QuantT>,
}

impl Scratch {
    /// Quantizes `n` rows of `x` (`cols` each) into `kind` (rows split over the pool when there are several),
    /// returning the buffer's index.
    pub(super) fn quantize(&mut self, pool: &Pool, kind: ActKind, x: &[f32], n: usize, cols: usize) -> usize {
        let i = match self.acts.iter().position(|(k, _)| *k == kind) {
            Some(i) => i,
            None => {
                self.acts.push((kind, Vec::new()));
                self.acts.len() - 1
            }
        };
        let rb = kind.row_bytes(cols);
        let buf = &mut self.acts[i].1;
        if buf.len() < n * rb {
            buf.resize(n * rb, 0);
        }
        if n == 1 {
            quantize_row(kind, &x[..cols], &mut buf[..rb]);
            return i;
        }
        let out = Bytes(buf.as_mut_ptr(), n * rb);
        pool.run(&|part, parts| {
            for r in split(n, part, parts, 1) {
                // SAFETY: row r of the n × rb buffer, quantized by this part alone.
                let q = unsafe { out.row(r * rb, rb) };
                quantize_row(kind, &x[r * cols..(r + 1) * cols], q);
            }
        });
        i
    }
}

/// A byte buffer whose rows parts fill, one part per row.
#[derive(Clone, Copy)]
struct Bytes(*mut u8, usize);

// SAFETY: each part writes only the rows of its own range (`split` gives disjoint ranges), and the buffer
// outlives the pool call.
unsafe impl Send for Bytes {}
// SAFETY: as above.
unsafe impl Sync for Bytes {}

impl Bytes {
    /// SAFETY: `at + len <= self.1`, and no other part touches those bytes during this call.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, at: usize, len: usize) -> &mut [u8] {
        debug_assert!(at + len <= self.1);
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}

/// Raw views of `Scratch::qt` and `qts`, whose LoRA rows parts write (each once) and then read.
#[derive(Clone, Copy)]
pub(super) struct QOut(pub(super) *mut i8, pub(super) *mut QuantT, pub(super) usize);

// SAFETY: a LoRA's rows are written by the one part that finished its last `x Aᵀ` unit, and read only after
// every unit is done (an acquire of the count its release published), within the scratch's lifetime.
unsafe impl Send for QOut {}
// SAFETY: as above.
unsafe impl Sync for QOut {}

impl QOut {
    /// SAFETY: `at + len <= self.2`, and nothing else touches those elements meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn row(&self, at: usize, len: usize) -> (&mut [i8], &mut QuantT) {
        debug_assert!(at + len <= self.2 && len > 0);
        // SAFETY: guaranteed by the caller.
        unsafe { (std::slice::from_raw_parts_mut(self.0.add(at), len), &mut *self.1.add(at)) }
    }

    /// SAFETY: `at + len <= self.2`, and no part writes those elements while the slice lives.
    pub(super) unsafe fn read(&self, at: usize, len: usize) -> (&[i8], QuantT) {
        debug_assert!(at + len <= self.2 && len > 0);
        // SAFETY: guaranteed by the caller.
        unsafe { (std::slice::from_raw_parts(self.0.add(at), len), *self.1.add(at)) }
    }
}

/// A raw output buffer that parts write disjoint elements of.
#[derive(Clone, Copy)]
pub(super) struct Out(pub(super) *mut f32, pub(super) usize);

// SAFETY: every part writes only the output rows of its own range (`split` gives disjoint ranges), and the
// buffer outlives the pool call that uses it.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    /// SAFETY: `at + len <= self.1`, and no other part touches those elements during this call.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        debug_assert!(at + len <= self.1);
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }

    /// SAFETY: `at + len <= self.1`, and no part writes those elements while the slice lives.
    pub(super) unsafe fn read(&self, at: usize, len: usize) -> &[f32] {
        debug_assert!(at + len <= self.1);
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(self.0.add(at), len) }
    }

    /// SAFETY: `i < len`, and no other part writes element `i` during this call.
    pub(super) unsafe fn add(self, i: usize, v: f32, overwrite: bool) {
        debug_assert!(i < self.1);
        // SAFETY: guaranteed by the caller.
        let p = unsafe { self.0.add(i) };
        // SAFETY: as above: in bounds, written by this part only.
        unsafe { *p = if overwrite { v } else { *p + v } };
    }
}
