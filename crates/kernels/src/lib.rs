//! tunebench's CPU kernels, a crate of their own so that debug builds (and so every test) run them
//! optimized: GGML block formats and their dot products, chosen at run time per CPU; the thread pool and
//! the matmul driver over it; the attention, norm and rope primitives of the host forward pass; the dense products and backward
//! passes of training's host step.

pub mod attention;
pub mod attention_grad;
pub mod dense;
pub mod grad;
pub mod huge;
pub mod lora;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quant;
pub mod simd;
