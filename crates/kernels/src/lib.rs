//! tunebench's CPU kernels, a crate of their own so that debug builds (and so every test) run them
//! optimized: GGML block formats and their dot products, chosen at run time per CPU.

pub mod quant;
