//! Local lanes: decoder-only models (families described as data, `decoder/`) in-process on candle. One copy of each model's weights serves every
//! lane; each device has one worker thread that interleaves its lanes' jobs step by step.

mod arch;
mod cache;
pub mod cpu;
mod decoder;
mod generate;
mod gguf;
mod hf;
mod linear;
pub mod logits;
pub mod paths;
pub mod prompt;
pub mod pull;
mod sampler;
mod shapes;
mod store;
mod stream;
pub mod template;
pub mod tokenizer;
mod weights;
mod worker;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{Backend, EngineError, LaneSink, RunRequest, Usage};

pub use arch::gguf_linear_stem;
pub use cache::KvCache;
pub use decoder::{
    Activation, Batch, BatchRow, Bias, Cap, Decoder, Family, LayerPlan, Llama, MAX_BATCH, Norm, Ops, Projections,
    QkNorm, RopePairs, RopeScaling, RopeSpec, SoftCaps,
};
pub use generate::{GPU_PREFILL_CHUNK, PREFILL_CHUNK, prefill_chunk};
pub use gguf::{architecture as gguf_architecture, read_content as read_gguf_content};
pub use hf::safetensors_files;
pub use linear::{BaseLinear, Lin, LinearFactory, WeightPlan, host_forward, plain, type_name};
pub use store::{AdapterView, LoadedModel, ModelStore, file_sha256, load, load_gguf_from, plan_for};
pub use weights::{BaseLayer, BaseWeights, Config};
pub use worker::pick_device;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{0}")]
    Model(String),
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("{0}")]
    Run(String),
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error("candle: {0}")]
    Candle(String),
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, LocalError>;

impl From<candle_core::Error> for LocalError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(candle_text(&e))
    }
}

/// A candle error as one line for people: with RUST_BACKTRACE set candle appends a backtrace to its errors
/// (`"{inner}\n{backtrace}"`), and it puts context on a line of its own; both are unwrapped here, wherever a
/// candle error becomes text.
pub fn candle_text(e: &candle_core::Error) -> String {
    use candle_core::Error as E;
    match e {
        E::WithBacktrace { inner, .. } => candle_text(inner),
        E::Context { inner, context } => format!("{context}: {}", candle_text(inner)),
        E::WithPath { inner, path } => format!("{}: {}", path.display(), candle_text(inner)),
        E::WrappedContext { wrapped, context } => format!("{context}: {wrapped}"),
        other => other.to_string().split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// The `local` backend: runs lanes on the CPU or a GPU through per-device workers.
#[derive(Clone, Default)]
pub struct LocalBackend {
    workers: Arc<worker::Workers>,
}

impl LocalBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// The model store shared by this backend's workers (for tests and tools).
    pub fn store(&self) -> Arc<ModelStore> {
        self.workers.store.clone()
    }
}

impl Backend for LocalBackend {
    fn run(
        &self,
        req: RunRequest,
        sink: LaneSink,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, std::result::Result<Usage, EngineError>> {
        // Submitted now, not when the future is first polled: lanes started together reach the worker together.
        let device = req.model.as_ref().map_or("auto".to_string(), |m| m.device.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let submitted = self.workers.submit(&device, worker::Request { req, sink, cancel, reply: tx });
        Box::pin(async move {
            submitted.map_err(EngineError::Backend)?;
            rx.await.unwrap_or_else(|_| Err(EngineError::Backend("the local worker stopped".into())))
        })
    }
}
