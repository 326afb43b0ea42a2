//! Base model weights, loaded once and shared by every lane: from a GGUF file or a safetensors folder.

use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};

use super::decoder::{Family, RopePairs};
use super::linear::{BaseLinear, WeightPlan};
use super::{LocalError, Result, candle_text};

/// The seven projections of a llama block, named as PEFT names them (`model.layers.N.<module>`).
pub const MODULES: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];
const GGUF_NAMES: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub rope_theta: f32,
    pub context: usize,
    /// What the blocks compute (norms, rope layout, activation …): the decoder reads it.
    pub family: Family,
}

/// Positions whose rotary tables are built; longer contexts are capped (and the title says so).
pub const MAX_CONTEXT: usize = 32_768;

impl Config {
    /// Refuses shapes that would panic or mis-run, naming the value.
    pub fn validate(&mut self) -> Result<Option<String>> {
        let bad = |what: String| Err(LocalError::Model(format!("invalid model shape: {what}")));
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!("{} attention heads over {} key/value heads", self.heads, self.kv_heads));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head dimension {}", self.head_dim));
        }
        if self.layers == 0 || self.layers > 1024 || self.vocab == 0 || self.hidden == 0 {
            return bad(format!("{} layers, vocabulary {}, width {}", self.layers, self.vocab, self.hidden));
        }
        if self.context > MAX_CONTEXT {
            let note = format!("context capped at {MAX_CONTEXT} of {}", self.context);
            self.context = MAX_CONTEXT;
            return Ok(Some(note));
        }
        Ok(None)
    }
}

pub struct BaseLayer {
    pub attn_norm: Tensor,
    pub ffn_norm: Tensor,
    /// In `MODULES` order.
    pub linears: Vec<Arc<BaseLinear>>,
}

pub struct BaseWeights {
    pub cfg: Config,
    pub device: Device,
    pub embed: Tensor,
    pub layers: Vec<BaseLayer>,
    pub norm: Tensor,
    pub lm_head: Arc<BaseLinear>,
    pub cos: Tensor,
    pub sin: Tensor,
    /// e.g. "Q8_0 decode · f32 prefill", for the pane title.
    pub format: String,
    /// The output head is the token embedding matrix (no separate lm_head weights).
    pub tied_head: bool,
}

impl BaseWeights {
    pub fn bytes(&self) -> usize {
        let t = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        t(&self.embed)
            + self.lm_head.bytes()
            + self.layers.iter().map(|l| l.linears.iter().map(|x| x.bytes()).sum::<usize>()).sum::<usize>()
    }
}

/// Reads GGUF metadata, naming the key when it is missing or of the wrong type.
pub struct Meta<'a>(pub &'a Content);

impl Meta<'_> {
    pub fn get(&self, key: &str) -> Result<&Value> {
        self.0.metadata.get(key).ok_or_else(|| LocalError::Model(format!("GGUF metadata has no `{key}`")))
    }
    pub fn u32(&self, key: &str) -> Result<u32> {
        self.get(key)?.to_u32().map_err(|e| LocalError::Model(format!("GGUF `{key}`: {}", candle_text(&e))))
    }
    pub fn f32(&self, key: &str) -> Result<f32> {
        self.get(key)?.to_f32().map_err(|e| LocalError::Model(format!("GGUF `{key}`: {}", candle_text(&e))))
    }
    pub fn string(&self, key: &str) -> Result<String> {
        self.get(key)?.to_string().cloned().map_err(|e| LocalError::Model(format!("GGUF `{key}`: {}", candle_text(&e))))
    }
}

pub fn gguf_config(ct: &Content) -> Result<Config> {
    let m = Meta(ct);
    let arch = m.string("general.architecture")?;
    if arch != "llama" {
        return Err(LocalError::Unsupported(format!("model architecture `{arch}` (supported: llama)")));
    }
    // Features this forward pass does not implement are refused by name, never run wrongly.
    if let Ok(kind) = m.string("llama.rope.scaling.type")
        && kind != "none"
    {
        return Err(LocalError::Unsupported(format!("rope scaling `{kind}` (llama.rope.scaling.type)")));
    }
    if ct.tensor_infos.contains_key("rope_freqs.weight") {
        return Err(LocalError::Unsupported(
            "rope frequency factors (rope_freqs.weight, Llama 3.1+ long context)".into(),
        ));
    }
    if let Some(b) = ct.tensor_infos.keys().find(|k| k.ends_with(".bias")) {
        return Err(LocalError::Unsupported(format!("bias tensors such as `{b}`")));
    }
    let hidden = m.u32("llama.embedding_length")? as usize;
    let heads = m.u32("llama.attention.head_count")? as usize;
    let head_dim = match m.u32("llama.attention.key_length") {
        Ok(k) => k as usize,
        Err(_) => hidden / heads.max(1),
    };
    let vocab = match m.u32("llama.vocab_size") {
        Ok(v) => v as usize,
        Err(_) => m.get("tokenizer.ggml.tokens")?.to_vec().map(|v| v.len()).unwrap_or(0),
    };
    Ok(Config {
        vocab,
        hidden,
        layers: m.u32("llama.block_count")? as usize,
        heads,
        kv_heads: m.u32("llama.attention.head_count_kv").unwrap_or(heads as u32) as usize,
        head_dim,
        rms_eps: f64::from(m.f32("llama.attention.layer_norm_rms_epsilon")?),
        rope_theta: m.f32("llama.rope.freq_base").unwrap_or(10_000.0),
        context: m.u32("llama.context_length")? as usize,
        // llama.cpp's converter permutes `llama` q/k rows for interleaved rotary pairs.
        family: Family::llama(RopePairs::Interleaved),
    })
}

/// Loads a GGUF model's tensors onto `device` with the given weight plan.
pub fn load_gguf<R: std::io::Read + std::io::Seek>(
    ct: &Content,
    reader: &mut R,
    device: &Device,
    plan: WeightPlan,
) -> Result<BaseWeights> {
    let mut cfg = gguf_config(ct)?;
    let capped = cfg.validate()?;
    let mut get = |name: &str| {
        ct.tensor(reader, name, device).map_err(|e| LocalError::Model(format!("tensor `{name}`: {}", candle_text(&e))))
    };
    let embed_q = get("token_embd.weight")?;
    let embed = embed_q.dequantize(device)?;
    let norm = get("output_norm.weight")?.dequantize(device)?;
    // SmolLM2 ties the output head to the embeddings: no output.weight in the file.
    let tied_head = !ct.tensor_infos.contains_key("output.weight");
    let head_q = if tied_head { embed_q } else { get("output.weight")? };
    let lm_head = Arc::new(BaseLinear::from_qtensor("lm_head", head_q, WeightPlan { f32_prefill: false, ..plan })?);
    let mut layers = Vec::with_capacity(cfg.layers);
    for i in 0..cfg.layers {
        let mut linears = Vec::with_capacity(7);
        for (module, g) in MODULES.iter().zip(GGUF_NAMES) {
            let q = get(&format!("blk.{i}.{g}.weight"))?;
            linears.push(Arc::new(BaseLinear::from_qtensor(&format!("model.layers.{i}.{module}"), q, plan)?));
        }
        layers.push(BaseLayer {
            attn_norm: get(&format!("blk.{i}.attn_norm.weight"))?.dequantize(device)?,
            ffn_norm: get(&format!("blk.{i}.ffn_norm.weight"))?.dequantize(device)?,
            linears,
        });
    }
    let mut format = plan.describe(&super::gguf::weight_format(ct));
    if let Some(note) = capped {
        format.push_str(&format!(" · {note}"));
    }
    finish(cfg, device, Parts { embed, layers, norm, lm_head, format, tied_head })
}

/// The loaded tensors of a model, before the shared tables are built.
pub struct Parts {
    pub embed: Tensor,
    pub layers: Vec<BaseLayer>,
    pub norm: Tensor,
    pub lm_head: Arc<BaseLinear>,
    pub format: String,
    pub tied_head: bool,
}

pub fn finish(cfg: Config, device: &Device, p: Parts) -> Result<BaseWeights> {
    // Before any table is sized by the metadata: the tensors (bounded by the file) must agree with it.
    check_shapes(&cfg, &p)?;
    let (cos, sin) = rope_tables(&cfg, device)?;
    let Parts { embed, layers, norm, lm_head, format, tied_head } = p;
    Ok(BaseWeights { cfg, device: device.clone(), embed, layers, norm, lm_head, cos, sin, format, tied_head })
}

/// Each tensor's shape against the metadata's numbers, naming the first that disagrees.
fn check_shapes(cfg: &Config, p: &Parts) -> Result<()> {
    let bad = |name: &str, have: &[usize], want: &[usize]| {
        Err(LocalError::Model(format!("invalid model shape: `{name}` is {have:?} but the metadata implies {want:?}")))
    };
    let (q, kv) = (cfg.heads.saturating_mul(cfg.head_dim), cfg.kv_heads.saturating_mul(cfg.head_dim));
    if p.embed.dims() != [cfg.vocab, cfg.hidden] {
        return bad("token embeddings", p.embed.dims(), &[cfg.vocab, cfg.hidden]);
    }
    if p.norm.dims() != [cfg.hidden] {
        return bad("output norm", p.norm.dims(), &[cfg.hidden]);
    }
    if [p.lm_head.out_dim, p.lm_head.in_dim] != [cfg.vocab, cfg.hidden] {
        return bad("lm_head", &[p.lm_head.out_dim, p.lm_head.in_dim], &[cfg.vocab, cfg.hidden]);
    }
    if p.layers.len() != cfg.layers {
        return bad("layers", &[p.layers.len()], &[cfg.layers]);
    }
    for l in &p.layers {
        for norm in [&l.attn_norm, &l.ffn_norm] {
            if norm.dims() != [cfg.hidden] {
                return bad("layer norm", norm.dims(), &[cfg.hidden]);
            }
        }
        let ffn = l.linears[4].out_dim;
        let want = [
            [q, cfg.hidden],
            [kv, cfg.hidden],
            [kv, cfg.hidden],
            [cfg.hidden, q],
            [ffn, cfg.hidden],
            [ffn, cfg.hidden],
            [cfg.hidden, ffn],
        ];
        for (lin, want) in l.linears.iter().zip(want) {
            if [lin.out_dim, lin.in_dim] != want {
                return bad(&lin.name, &[lin.out_dim, lin.in_dim], &want);
            }
        }
    }
    Ok(())
}

fn rope_tables(cfg: &Config, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let inv: Vec<f32> = (0..half).map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f32 / cfg.head_dim as f32)).collect();
    let inv = Tensor::from_vec(inv, (1, half), device)?;
    let pos = Tensor::arange(0u32, cfg.context as u32, device)?.to_dtype(DType::F32)?.reshape((cfg.context, 1))?;
    let freqs = pos.matmul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
}
