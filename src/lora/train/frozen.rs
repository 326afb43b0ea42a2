//! `x · Wᵀ` for a frozen base weight whose backward pass gives only the input's gradient. Candle's plain
//! matmul backward also computes the weight's gradient — a second matmul per layer and a weight-sized
//! tensor per layer per step — which training never uses. `TrainLinear` is the layer training's factory gives
//! the decoder: this op plus the module's trainable LoRA pair, if any.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::model::LoraPair;
use crate::engine::local::Lin;

/// A frozen `[out, in]` weight and its transpose, applied as a custom op on the CPU.
#[derive(Clone)]
pub struct Frozen {
    /// `[out, in]`.
    w: Tensor,
    /// `[in, out]`, contiguous.
    w_t: Tensor,
    /// Use candle's plain matmul (the reference the benchmark compares with).
    pub plain: bool,
    /// The base layer's bias `[out]`, frozen like the weight.
    pub bias: Option<Tensor>,
}

impl Frozen {
    pub fn new(w: Tensor) -> Result<Self> {
        let w_t = w.t()?.contiguous()?;
        Ok(Self { w, w_t, plain: false, bias: None })
    }

    /// `x [.., in] → [.., out]`. Other devices than the CPU use the plain matmul (correct, just wasteful).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // The op is cheap to clone: shared tensors.
        let y = if x.device().is_cpu() && !self.plain {
            x.contiguous()?.apply_op1(self.clone())?
        } else {
            x.broadcast_matmul(&self.w_t)?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

impl CustomOp1 for Frozen {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("frozen-linear: input not contiguous".into()))?;
        let x = match storage {
            CpuStorage::F32(v) => &v[start..end],
            _ => return Err(candle_core::Error::Msg("frozen-linear: f32 input only".into())),
        };
        let dims = layout.shape().dims();
        let x = Tensor::from_slice(x, dims, &candle_core::Device::Cpu)?;
        let y = x.broadcast_matmul(&self.w_t)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1()?), shape))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.broadcast_matmul(&self.w)?))
    }
}

/// A frozen base layer plus its trainable pair when adapted: `y = x Wᵀ + scale · (x Aᵀ) Bᵀ`.
pub struct TrainLinear {
    pub frozen: Frozen,
    pub lora: Option<LoraPair>,
}

impl Lin for TrainLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.frozen.forward(x)?;
        match &self.lora {
            Some(p) => {
                let delta = x.broadcast_matmul(&p.a.as_tensor().t()?)?.broadcast_matmul(&p.b.as_tensor().t()?)?;
                y + (delta * p.scale)?
            }
            None => Ok(y),
        }
    }
}
