//! A model family described as data: what differs between decoder-only families (norms, biases, q/k norm,
//! activation, soft-caps, rope pair layout, fused projections), read by the one decoder in `decoder/mod.rs`.
//! What differs between the layers of one model (attention window, rope table or none) is `LayerPlan`.
//!
//! Each field's enum holds the variants the decoder implements today. A new family adds its variants here and
//! their ops in `decoder/ops.rs` (both modes: fused and differentiable), then sets them in its `arch/` module;
//! the loader refuses what no variant describes, so a feature is never silently run as another.

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
    pub rope_pairs: RopePairs,
    pub projections: Projections,
}

/// The normalisation before attention, before the MLP and before the output head (and, where a layer has
/// them, after attention and after the MLP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// `x / rms(x) · w` (Llama, Mistral, Qwen, SmolLM).
    Rms,
}

/// Which projections carry a bias vector. Biases belong to the base layer (`BaseLinear`): frozen in training
/// and outside every LoRA delta, as in PEFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    /// No projection has one (Llama).
    None,
    /// q, k and v projections (Qwen2).
    Qkv,
}

/// A norm applied to each head's queries and keys before rope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    /// None (Llama, Qwen2).
    None,
    /// RMSNorm over each head's dimensions, one weight `[head_dim]` for q and one for k (Qwen3).
    Rms,
}

/// The gate's activation in the gated MLP: `down(act(gate(x)) · up(x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU: Llama, Mistral, Qwen, Phi).
    Silu,
    /// GELU with the tanh approximation (GeGLU: Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
}

/// `c · tanh(x / c)` caps on attention scores and on the final logits (Gemma 2 sets both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftCaps {
    /// No cap (Llama).
    None,
    /// Either cap or both (Gemma 2: attention 50, logits 30; Gemma 3 only where its config sets them).
    Tanh { attention: Option<Cap>, logits: Option<Cap> },
}

/// A soft-cap value `c` (positive and finite: the loaders check it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cap(pub f32);

// The loaders admit only finite caps, so equality is total.
impl Eq for Cap {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopePairs {
    /// Dimensions `(2i, 2i + 1)` rotate together: llama.cpp's layout for `llama` and `smollm3` GGUF files,
    /// whose converter permutes q/k rows to match (adapters' q/k rows are permuted the same way on such a base).
    Interleaved,
    /// Dimensions `(i, i + d/2)`: Hugging Face's layout (and llama.cpp's NEOX one, e.g. Qwen2 GGUF).
    Halves,
}

/// How the attention and MLP input projections are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projections {
    /// q, k, v, o, gate, up and down as separate matrices.
    Separate,
    /// q|k|v as one matrix (`qkv_proj`, rows q then k then v) and gate|up as one (`gate_up_proj`, gate rows
    /// first): Phi-3's layout, which PEFT adapts as two modules (one A, B rows spanning the parts).
    Fused,
}

/// The linear modules of a block with separate projections, in the decoder's order, as PEFT names them.
const SEPARATE: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// The linear modules of a block with fused projections (Phi-3), in the decoder's order.
const FUSED: [&str; 4] = ["self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"];

impl Projections {
    /// The block's linear modules (PEFT names after `model.layers.N.`), in the order the decoder reads them.
    pub const fn modules(self) -> &'static [&'static str] {
        match self {
            Projections::Separate => &SEPARATE,
            Projections::Fused => &FUSED,
        }
    }
}

/// What differs between the layers of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerPlan {
    /// `Some(n)`: each query sees itself and the n − 1 keys before it (sliding window); `None`: every earlier key.
    pub window: Option<usize>,
    /// Index into the model's rope specs (`Config::ropes`); `None`: this layer applies no rope (SmolLM3).
    pub rope: Option<usize>,
}

impl LayerPlan {
    /// Full attention, rotated by the model's first rope table.
    pub const GLOBAL: Self = Self { window: None, rope: Some(0) };
}

impl Family {
    /// Llama 1/2/3, SmolLM2 and Mistral: RMSNorm, SwiGLU, no bias.
    pub const fn llama(rope_pairs: RopePairs) -> Self {
        Self {
            name: "llama",
            norm: Norm::Rms,
            bias: Bias::None,
            qk_norm: QkNorm::None,
            activation: Activation::Silu,
            soft_caps: SoftCaps::None,
            rope_pairs,
            projections: Projections::Separate,
        }
    }

    /// The block's linear modules, as PEFT names them (`self_attn.q_proj` …), in the decoder's order.
    pub const fn modules(&self) -> &'static [&'static str] {
        self.projections.modules()
    }

    /// Whether the module (a name ending in one of `modules()`) carries a bias in this family.
    pub fn has_bias(&self, module: &str) -> bool {
        match self.bias {
            Bias::None => false,
            Bias::Qkv => {
                ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"].iter().any(|m| module.ends_with(m))
            }
        }
    }
}
