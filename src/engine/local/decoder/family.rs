//! A model family described as data: what differs between decoder-only families (norms, biases, rope,
//! activation, attention window, soft-caps, fused projections), read by the one decoder in `decoder/mod.rs`.
//!
//! Each field's enum holds the variants the decoder implements today. A new family adds its variants here and
//! their ops in `decoder/ops.rs` (both modes: fused and differentiable), then sets them in its loader; the
//! loader refuses what no variant describes, so a feature is never silently run as another.

/// What a family's decoder blocks compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The architecture name as the file says it (GGUF `general.architecture`, or config.json's).
    pub name: &'static str,
    pub norm: Norm,
    pub bias: Bias,
    pub qk_norm: QkNorm,
    pub activation: Activation,
    pub soft_caps: SoftCaps,
    pub window: Window,
    pub rope: Rope,
    pub projections: Projections,
}

/// The normalisation before attention, before the MLP and before the output head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// `x / rms(x) · w` (Llama, Mistral, SmolLM). Gemma's `(1 + w)` and its post-norms would be further variants.
    Rms,
}

/// Which projections carry a bias vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    /// No projection has one (Llama). Qwen2's q/k/v biases would be a variant.
    None,
}

/// A norm applied to each head's queries and keys before rope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    /// None (Llama). Qwen3's and Gemma 3's per-head RMSNorm would be a variant.
    None,
}

/// The gate's activation in the gated MLP: `down(act(gate(x)) · up(x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU: Llama, Mistral, Qwen, Phi). Gemma's tanh-GELU would be a variant.
    Silu,
}

/// `c · tanh(x / c)` caps on attention scores and on the final logits (Gemma 2 sets both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftCaps {
    /// No cap (Llama).
    None,
}

/// Which keys each query attends to, per layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Every earlier position, in every layer (Llama). Sliding windows and local/global patterns (Mistral,
    /// Gemma 2/3) would be variants.
    Full,
}

/// Rotary position embedding: how dimensions pair up and how many rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rope {
    pub pairs: RopePairs,
    pub dims: RotaryDims,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopePairs {
    /// Dimensions `(2i, 2i + 1)` rotate together: llama.cpp's layout for `llama` GGUF files, whose converter
    /// permutes q/k rows to match (adapters' q/k rows are permuted the same way on such a base).
    Interleaved,
    /// Dimensions `(i, i + d/2)`: Hugging Face's layout (and llama.cpp's NEOX one, e.g. Qwen2 GGUF).
    Halves,
}

/// How many dimensions of each head rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotaryDims {
    /// The whole head (Llama). Phi-3's partial rotary would be a variant.
    Full,
}

/// How the attention and MLP input projections are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projections {
    /// q, k, v, gate and up as separate matrices (`MODULES`). Phi-3's fused `qkv_proj` / `gate_up_proj`
    /// would be a variant.
    Separate,
}

impl Family {
    /// Llama 1/2 and SmolLM2 (and Mistral without its window): RMSNorm, SwiGLU, full rope, no bias.
    pub const fn llama(pairs: RopePairs) -> Self {
        Self {
            name: "llama",
            norm: Norm::Rms,
            bias: Bias::None,
            qk_norm: QkNorm::None,
            activation: Activation::Silu,
            soft_caps: SoftCaps::None,
            window: Window::Full,
            rope: Rope { pairs, dims: RotaryDims::Full },
            projections: Projections::Separate,
        }
    }
}
