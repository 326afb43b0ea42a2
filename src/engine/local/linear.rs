//! Linear layers of the base model: on the CPU one host copy in the file's own format (the host engine runs
//! it), on a GPU candle's forms chosen per phase (decode vs prefill). The model sees only `Arc<dyn Lin>`: a
//! factory keyed by weight name may wrap a base layer (LoRA).

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor};
use tunebench_kernels::matmul::{Linear, Lora};

use super::cpu::{self, Weights};

/// What the model calls; implemented by base layers and by wrappers around them.
pub trait Lin: Send + Sync {
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// The layer as the host engine runs it (base weights, bias, and any low-rank update), when it has one;
    /// a layer without one (training's) makes the decoder run on candle.
    fn host(&self) -> Option<Linear<'_>> {
        None
    }

    /// The base layer this one computes over (itself, for a base layer): a pass over several lanes' rows runs
    /// it once for all of them. None: the layer cannot share a pass (training's).
    fn base_layer(&self) -> Option<&BaseLinear> {
        None
    }

    /// What this layer adds to its base layer's output on `x` (an adapter's low-rank update); None: nothing.
    fn update(&self, _x: &Tensor) -> Option<Result<Tensor>> {
        None
    }
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
    form: Form,
    /// `[out]` f32, added to every output (frozen: LoRA deltas are added beside it, as in PEFT).
    pub bias: Option<Tensor>,
    /// The same bias on the host, for the host engine.
    bias_host: Option<Vec<f32>>,
    pub out_dim: usize,
    pub in_dim: usize,
}

/// Where and how a base layer's weights live.
enum Form {
    /// On a GPU: candle's per-phase forms.
    Candle { decode: QMatMul, prefill: Option<Tensor> },
    /// On the CPU: one copy in host memory, in the file's own format where a host kernel runs it, run by the
    /// host engine (and by `forward`, through the same kernels, for the candle path's callers).
    Host(Arc<Weights>),
}

impl BaseLinear {
    /// From a quantized (or float) GGUF tensor `[out, in]`, requantized per the plan where its shape allows.
    pub fn from_qtensor(name: &str, q: QTensor, plan: WeightPlan) -> Result<Self> {
        let (out_dim, in_dim) = q.shape().dims2()?;
        let dev = q.device();
        if dev.is_cpu() {
            let w = host_from_qtensor(name, &q, plan)?;
            return Ok(Self::host(name, w));
        }
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
        let form = Form::Candle { decode, prefill };
        Ok(Self { name: name.to_string(), form, bias: None, bias_host: None, out_dim, in_dim })
    }

    /// From float weights `[out, in]` (safetensors).
    pub fn from_tensor(name: &str, w: Tensor, plan: WeightPlan) -> Result<Self> {
        let (out_dim, in_dim) = w.dims2()?;
        let w = w.to_dtype(DType::F32)?;
        if w.device().is_cpu() {
            let host = match plan.decode {
                Some(dt) if dt != GgmlDType::F32 && in_dim % dt.block_size() == 0 && cpu::kind_of(dt).is_some() => {
                    host_from_qtensor(name, &QTensor::quantize(&w, dt)?, WeightPlan { decode: None, ..plan })?
                }
                _ => host_f32(name, &w)?,
            };
            return Ok(Self::host(name, host));
        }
        let decode = match plan.decode {
            Some(GgmlDType::F32) => QMatMul::Tensor(w.clone()),
            Some(dt) if in_dim % dt.block_size() == 0 => QMatMul::from_qtensor(QTensor::quantize(&w, dt)?)?,
            _ => QMatMul::Tensor(w.clone()),
        };
        let prefill = plan.f32_prefill.then_some(w);
        let form = Form::Candle { decode, prefill };
        Ok(Self { name: name.to_string(), form, bias: None, bias_host: None, out_dim, in_dim })
    }

    fn host(name: &str, w: Weights) -> Self {
        let (out_dim, in_dim) = (w.rows, w.cols);
        Self { name: name.to_string(), form: Form::Host(Arc::new(w)), bias: None, bias_host: None, out_dim, in_dim }
    }

    /// The layer with a bias vector `[out]` (None: none).
    pub fn with_bias(self, bias: Option<Tensor>) -> Result<Self> {
        let bias_host = match (&self.form, &bias) {
            (Form::Host(_), Some(b)) => Some(b.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?),
            _ => None,
        };
        Ok(Self { bias, bias_host, ..self })
    }

    /// The host weights, when the layer lives on the CPU.
    pub fn host_weights(&self) -> Option<&Arc<Weights>> {
        match &self.form {
            Form::Host(w) => Some(w),
            Form::Candle { .. } => None,
        }
    }

    /// The weights `[out, in]` in f32 exactly as multi-token forwards use them (the f32 copy when there is
    /// one, shared; else the decode weights dequantized): what training computes against.
    pub fn weight_f32(&self) -> Result<Tensor> {
        match &self.form {
            Form::Host(w) => {
                let mut values = vec![0f32; w.rows * w.cols];
                for (r, row) in values.chunks_exact_mut(w.cols).enumerate() {
                    w.dequantize_row(r, row);
                }
                Tensor::from_vec(values, (w.rows, w.cols), &candle_core::Device::Cpu)
            }
            Form::Candle { prefill: Some(w), .. } => Ok(w.clone()),
            Form::Candle { decode: QMatMul::QTensor(q), .. } => q.dequantize(&q.device()),
            Form::Candle { decode: QMatMul::Tensor(t) | QMatMul::TensorF16(t), .. } => t.to_dtype(DType::F32),
        }
    }

    /// Bytes held for this layer (for memory accounting).
    pub fn bytes(&self) -> usize {
        let w = match &self.form {
            Form::Host(w) => w.bytes(),
            Form::Candle { decode, prefill } => {
                let d = match decode {
                    QMatMul::QTensor(q) => q.storage_size_in_bytes(),
                    QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.elem_count() * t.dtype().size_in_bytes(),
                };
                d + prefill.as_ref().map_or(0, |t| t.elem_count() * 4)
            }
        };
        w + self.bias.as_ref().map_or(0, |b| b.elem_count() * 4)
    }
}

/// Host weights from a GGUF tensor: its own bytes where a host kernel runs its type and the plan asks for no
/// other form; the plan's form (f32 for `EXACT`) otherwise; Q8_0 for a type without a host kernel (the
/// loader's title says so), or f32 where its rows are not whole Q8_0 blocks.
fn host_from_qtensor(name: &str, q: &QTensor, plan: WeightPlan) -> Result<Weights> {
    let (rows, cols) = q.shape().dims2()?;
    let err = |e: String| candle_core::Error::Msg(format!("tensor `{name}`: {e}"));
    let own = cpu::kind_of(q.dtype());
    let want = match plan.decode {
        Some(dt) if dt != q.dtype() => Some(dt),
        _ if own.is_none() => Some(GgmlDType::Q8_0),
        _ => None,
    };
    match (want, own) {
        (None, Some(kind)) => Weights::new(kind, rows, cols, &q.data()?).map_err(err),
        (Some(GgmlDType::F32), _) => host_f32(name, &q.dequantize(&candle_core::Device::Cpu)?),
        (Some(dt), _) if cols % dt.block_size() == 0 && cpu::kind_of(dt).is_some() => {
            let requantized = QTensor::quantize(&q.dequantize(&candle_core::Device::Cpu)?, dt)?;
            host_from_qtensor(name, &requantized, WeightPlan { decode: None, f32_prefill: false })
        }
        _ => host_f32(name, &q.dequantize(&candle_core::Device::Cpu)?),
    }
}

fn host_f32(name: &str, w: &Tensor) -> Result<Weights> {
    let (rows, cols) = w.dims2()?;
    let values = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Weights::from_f32(rows, cols, &values).map_err(|e| candle_core::Error::Msg(format!("tensor `{name}`: {e}")))
}

impl BaseLinear {
    /// `x` through the form of one phase: `decode` (one token a lane) or prefill, whatever the number of rows, so
    /// that a decode row batched with others gets the weights it gets alone.
    pub fn forward_phase(&self, x: &Tensor, decode: bool) -> Result<Tensor> {
        let y = match &self.form {
            Form::Host(w) => return host_forward(w, self.bias_host.as_deref(), None, x),
            Form::Candle { prefill: Some(w), .. } if !decode => x.broadcast_matmul(&w.t()?)?,
            Form::Candle { decode, .. } => decode.forward(x)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

impl Lin for BaseLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_phase(x, x.elem_count() / x.dim(candle_core::D::Minus1)? <= 1)
    }

    fn base_layer(&self) -> Option<&BaseLinear> {
        Some(self)
    }

    fn host(&self) -> Option<Linear<'_>> {
        match &self.form {
            Form::Host(w) => Some(Linear { w, bias: self.bias_host.as_deref(), lora: None }),
            Form::Candle { .. } => None,
        }
    }
}

/// A candle tensor `[.., in]` through host weights (the candle path's callers on the CPU: training's
/// reference, a decoder whose other layers have no host form).
pub fn host_forward(w: &Weights, bias: Option<&[f32]>, lora: Option<Lora<'_>>, x: &Tensor) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let n = x.elem_count() / w.cols;
    let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; n * w.rows];
    let lin = Linear { w, bias, lora };
    let pool = tunebench_kernels::pool::global();
    tunebench_kernels::matmul::run(pool, &mut Default::default(), &xs, n, &[lin], &mut [&mut out])
        .map_err(candle_core::Error::Msg)?;
    if let Some(last) = dims.last_mut() {
        *last = w.rows;
    }
    Tensor::from_vec(out, dims, x.device())
}

/// Chooses the layer a model slot gets: the base layer, or a wrapper around it (e.g. a LoRA adapter).
pub type LinearFactory<'a> = dyn Fn(&str, &Arc<BaseLinear>) -> Result<Arc<dyn Lin>> + 'a;

/// The plain factory: every slot gets its base layer.
pub fn plain(_: &str, base: &Arc<BaseLinear>) -> Result<Arc<dyn Lin>> {
    Ok(base.clone())
}
