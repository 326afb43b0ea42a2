//! tunebench: compare prompted and fine-tuned LLM lanes side by side, in a terminal or headless.

pub mod app;
pub mod cli;
pub mod dataset;
pub mod distill;
pub mod engine;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod lora;
pub mod metrics;
pub mod runtime;
pub mod sweep;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod visible;
pub mod workspace;
