//! Linear layers of the base model, with the weight form chosen per phase (decode vs prefill).
//! The model sees only `Arc<dyn Lin>`: a factory keyed by weight name may wrap a base layer (LoRA).

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor};

/// What the model calls; implemented by base layers and by wrappers around them.
pub trait Lin: Send + Sync {
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// How a base layer's weights are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightPlan {
    /// The quantized form used for single-token decode (None: the file's float weights).
    pub decode: Option<GgmlDType>,
    /// Keep an f32 copy for multi-token prefill (fast matmul), when memory allows.
    pub f32_prefill: bool,
}

impl WeightPlan {
    /// Every weight dequantized once to f32 and used as such, in every phase: the file's own values with no
    /// requantized copy, which is what a fidelity check (`tunebench logits`) must compute with.
    pub const EXACT: Self = Self { decode: Some(GgmlDType::F32), f32_prefill: false };

    /// The pane title's words for the weights: the file's own format (`source`), and the form decode runs
    /// when it is another one, so a requantized copy is never passed off as the file.
    pub fn describe(&self, source: &str) -> String {
        if *self == Self::EXACT {
            return format!("{source} dequantized to f32");
        }
        let form = match self.decode {
            Some(d) if type_name(d) != source => format!("{source} file · {}", type_name(d)),
            _ => source.to_string(),
        };
        if self.f32_prefill { format!("{form} decode · f32 prefill") } else { format!("{form} weights") }
    }
}

/// A GGML type as llama.cpp names it (`Q4_K`; candle's debug name is `Q4K`).
pub fn type_name(d: GgmlDType) -> String {
    let s = format!("{d:?}");
    match s.strip_suffix('K') {
        Some(head) if !head.ends_with('_') => format!("{head}_K"),
        _ => s,
    }
}

pub struct BaseLinear {
    pub name: String,
    decode: QMatMul,
    prefill: Option<Tensor>,
    /// `[out]` f32, added to every output (frozen: LoRA deltas are added beside it, as in PEFT).
    pub bias: Option<Tensor>,
    pub out_dim: usize,
    pub in_dim: usize,
}

impl BaseLinear {
    /// From a quantized (or float) GGUF tensor `[out, in]`, requantized per the plan where its shape allows.
    pub fn from_qtensor(name: &str, q: QTensor, plan: WeightPlan) -> Result<Self> {
        let (out_dim, in_dim) = q.shape().dims2()?;
        let dev = q.device();
        let float_src = matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        let f32 = if plan.f32_prefill || float_src || plan.decode.is_some() { Some(q.dequantize(&dev)?) } else { None };
        let decode = match (plan.decode, &f32) {
            (Some(GgmlDType::F32), Some(w)) => QMatMul::Tensor(w.clone()),
            // Requantizing needs whole blocks along the input dimension.
            (Some(dt), Some(w)) if dt != q.dtype() && in_dim % dt.block_size() == 0 => {
                QMatMul::from_qtensor(QTensor::quantize(w, dt)?)?
            }
            (_, Some(w)) if float_src => QMatMul::Tensor(w.clone()),
            _ => QMatMul::from_qtensor(q)?,
        };
        let prefill = if plan.f32_prefill { f32 } else { None };
        Ok(Self { name: name.to_string(), decode, prefill, bias: None, out_dim, in_dim })
    }

    /// From float weights `[out, in]` (safetensors).
    pub fn from_tensor(name: &str, w: Tensor, plan: WeightPlan) -> Result<Self> {
        let (out_dim, in_dim) = w.dims2()?;
        let w = w.to_dtype(DType::F32)?;
        let decode = match plan.decode {
            Some(GgmlDType::F32) => QMatMul::Tensor(w.clone()),
            Some(dt) if in_dim % dt.block_size() == 0 => QMatMul::from_qtensor(QTensor::quantize(&w, dt)?)?,
            _ => QMatMul::Tensor(w.clone()),
        };
        let prefill = plan.f32_prefill.then_some(w);
        Ok(Self { name: name.to_string(), decode, prefill, bias: None, out_dim, in_dim })
    }

    /// The layer with a bias vector `[out]` (None: none).
    pub fn with_bias(self, bias: Option<Tensor>) -> Self {
        Self { bias, ..self }
    }

    /// The weights `[out, in]` in f32 exactly as multi-token forwards use them (the f32 copy when there is
    /// one, shared; else the decode weights dequantized): what training computes against.
    pub fn weight_f32(&self) -> Result<Tensor> {
        if let Some(w) = &self.prefill {
            return Ok(w.clone());
        }
        match &self.decode {
            QMatMul::QTensor(q) => q.dequantize(&q.device()),
            QMatMul::Tensor(t) => t.to_dtype(DType::F32),
            QMatMul::TensorF16(t) => t.to_dtype(DType::F32),
        }
    }

    /// Bytes held for this layer (for memory accounting).
    pub fn bytes(&self) -> usize {
        let d = match &self.decode {
            QMatMul::QTensor(q) => q.storage_size_in_bytes(),
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.elem_count() * t.dtype().size_in_bytes(),
        };
        d + self.prefill.as_ref().map_or(0, |t| t.elem_count() * 4)
            + self.bias.as_ref().map_or(0, |b| b.elem_count() * 4)
    }
}

impl Lin for BaseLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?;
        let y = match &self.prefill {
            Some(w) if rows > 1 => x.broadcast_matmul(&w.t()?)?,
            _ => self.decode.forward(x)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Chooses the layer a model slot gets: the base layer, or a wrapper around it (e.g. a LoRA adapter).
pub type LinearFactory<'a> = dyn Fn(&str, &Arc<BaseLinear>) -> Result<Arc<dyn Lin>> + 'a;

/// The plain factory: every slot gets its base layer.
pub fn plain(_: &str, base: &Arc<BaseLinear>) -> Result<Arc<dyn Lin>> {
    Ok(base.clone())
}
