//! tunebench: compare prompted and fine-tuned LLM lanes side by side, in a terminal or headless.

pub mod app;
pub mod dataset;
pub mod dataset_cmd;
pub mod engine;
pub mod eval;
pub mod eval_cmd;
pub mod headless;
pub mod lora;
pub mod metrics;
pub mod runtime;
pub mod terminal;
pub mod train_cmd;
pub mod ui;
pub mod workspace;
