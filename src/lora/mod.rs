//! LoRA adapters in PEFT's format: reading them, and layers that add scale·B·A to a shared base layer.

pub mod adapter;
pub mod config;
pub mod found;
pub mod gguf;
pub mod layer;
pub mod train;

pub use adapter::{Adapter, Provenance};
pub use config::AdapterConfig;
pub use layer::LoraLinear;

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("adapter_config.json: {0}")]
    Config(String),
    #[error("unsupported adapter option: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Shape(String),
    #[error("{0}")]
    Load(String),
    #[error("candle: {0}")]
    Candle(String),
}

impl From<candle_core::Error> for LoraError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(crate::engine::local::candle_text(&e))
    }
}
