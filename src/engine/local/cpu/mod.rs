//! The host (CPU) inference engine: the decoder's forward pass for inference on the CPU, run over raw
//! buffers with tunebench-kernels' kernels and thread pool instead of per-op tensors (candle stays the engine
//! for GPUs and for training).

mod base;
mod cache;
mod forward;

use candle_core::quantized::GgmlDType;
pub use tunebench_kernels::quant::{Kind, Weights};

pub use base::{HostBase, HostLayer};
pub use cache::{Bufs, HostCache};
pub use forward::{Layers, MAX_BATCH, Row, forward, forward_batch, last_hidden, logits};

/// The host format of a GGML type (None: no host kernel; the loader converts it and says so).
pub fn kind_of(d: GgmlDType) -> Option<Kind> {
    Some(match d {
        GgmlDType::F32 => Kind::F32,
        GgmlDType::F16 => Kind::F16,
        GgmlDType::BF16 => Kind::BF16,
        GgmlDType::Q4_0 => Kind::Q4_0,
        GgmlDType::Q4_1 => Kind::Q4_1,
        GgmlDType::Q5_0 => Kind::Q5_0,
        GgmlDType::Q5_1 => Kind::Q5_1,
        GgmlDType::Q8_0 => Kind::Q8_0,
        GgmlDType::Q2K => Kind::Q2_K,
        GgmlDType::Q3K => Kind::Q3_K,
        GgmlDType::Q4K => Kind::Q4_K,
        GgmlDType::Q5K => Kind::Q5_K,
        GgmlDType::Q6K => Kind::Q6_K,
        _ => return None,
    })
}
