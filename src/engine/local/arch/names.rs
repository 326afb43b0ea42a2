//! The tensor names of a model in its file: llama.cpp's (`blk.N.attn_q.weight`) or Hugging Face's
//! (`model.layers.N.self_attn.q_proj.weight`), built per layer from the family's modules and optional tensors.

use super::super::decoder::{Family, QkNorm};

/// Which naming a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Gguf,
    Hf,
}

/// One linear layer: its PEFT name (what adapters and the factory key on) and its stem in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearTensors {
    /// `model.layers.N.self_attn.q_proj`.
    pub module: String,
    /// `blk.N.attn_q` or `model.layers.N.self_attn.q_proj`: `.weight` (and `.bias`) follow.
    pub stem: String,
    pub bias: bool,
}

/// One block's tensors (full names, `.weight` included).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTensors {
    /// In the family's module order.
    pub linears: Vec<LinearTensors>,
    pub attn_norm: String,
    pub ffn_norm: String,
    /// Norms of the attention output and of the MLP output before their residual adds (Gemma 2/3).
    pub post_attn_norm: Option<String>,
    pub post_ffn_norm: Option<String>,
    /// Per-head q and k norm weights.
    pub qk_norm: Option<(String, String)>,
}

/// Every tensor a model's decoder reads.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorNames {
    pub scheme: Scheme,
    pub embed: String,
    pub norm: String,
    /// None: the output head is the token embedding matrix.
    pub lm_head: Option<String>,
    pub layers: Vec<LayerTensors>,
    /// llama.cpp's per-frequency rope divisors (Llama 3.1+ GGUF), when the file has them.
    pub rope_freqs: Option<String>,
    /// Per-frequency rope divisors for one rope table each (`Config::ropes` index, tensor): Phi-3's
    /// `rope_factors_short.weight` and `rope_factors_long.weight`.
    pub table_factors: Vec<(usize, String)>,
    /// Added to every norm weight as it is read: 1 for Gemma's safetensors, which store `w` of a `(1 + w)`
    /// scale (its GGUF files hold `1 + w` already: llama.cpp's converter added the 1).
    pub norm_shift: f32,
}

/// llama.cpp's name for a module's tensor in a block.
fn gguf_stem(module: &str) -> &'static str {
    match module.rsplit('.').next().unwrap_or(module) {
        "q_proj" => "attn_q",
        "k_proj" => "attn_k",
        "v_proj" => "attn_v",
        "o_proj" => "attn_output",
        "gate_proj" => "ffn_gate",
        "up_proj" => "ffn_up",
        "down_proj" => "ffn_down",
        "qkv_proj" => "attn_qkv",
        // Phi-3's converter stores the fused gate and up rows as ffn_up.
        "gate_up_proj" => "ffn_up",
        _ => "unknown",
    }
}

/// A linear layer's stem in llama.cpp's naming from its PEFT module name (`model.layers.3.self_attn.q_proj`
/// → `blk.3.attn_q`), as the standard names build it; None for a module outside the blocks or unknown.
pub fn gguf_linear_stem(module: &str) -> Option<String> {
    let layer = crate::lora::config::layer_index(module)?;
    let stem = gguf_stem(module);
    (stem != "unknown").then(|| format!("blk.{layer}.{stem}"))
}

impl TensorNames {
    /// The names most families use: pre-norms, the family's modules and biases, q/k norms where it has them.
    /// `tied`: no separate output head. A family with other names edits the result.
    pub fn standard(scheme: Scheme, family: &Family, layers: usize, tied: bool) -> Self {
        let layer = |i: usize| {
            let linears = family
                .modules()
                .iter()
                .map(|m| {
                    let module = format!("model.layers.{i}.{m}");
                    let stem = match scheme {
                        Scheme::Gguf => format!("blk.{i}.{}", gguf_stem(m)),
                        Scheme::Hf => module.clone(),
                    };
                    LinearTensors { bias: family.has_bias(m), module, stem }
                })
                .collect();
            let (attn_norm, ffn_norm, q_norm, k_norm) = match scheme {
                Scheme::Gguf => (
                    format!("blk.{i}.attn_norm.weight"),
                    format!("blk.{i}.ffn_norm.weight"),
                    format!("blk.{i}.attn_q_norm.weight"),
                    format!("blk.{i}.attn_k_norm.weight"),
                ),
                Scheme::Hf => (
                    format!("model.layers.{i}.input_layernorm.weight"),
                    format!("model.layers.{i}.post_attention_layernorm.weight"),
                    format!("model.layers.{i}.self_attn.q_norm.weight"),
                    format!("model.layers.{i}.self_attn.k_norm.weight"),
                ),
            };
            let qk_norm = match family.qk_norm {
                QkNorm::None => None,
                QkNorm::Rms => Some((q_norm, k_norm)),
            };
            LayerTensors { linears, attn_norm, ffn_norm, post_attn_norm: None, post_ffn_norm: None, qk_norm }
        };
        let (embed, norm, head) = match scheme {
            Scheme::Gguf => ("token_embd.weight", "output_norm.weight", "output.weight"),
            Scheme::Hf => ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"),
        };
        Self {
            scheme,
            embed: embed.into(),
            norm: norm.into(),
            lm_head: (!tied).then(|| head.to_string()),
            layers: (0..layers).map(layer).collect(),
            rope_freqs: None,
            table_factors: Vec::new(),
            norm_shift: 0.0,
        }
    }
}
