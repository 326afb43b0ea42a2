//! Training's view of the one decoder (`engine::local::Decoder` in its differentiable mode): frozen base
//! weights, trainable LoRA A/B on the targeted modules, and the vocabulary projection computed only at the
//! positions the loss reads. The forward pass itself is the decoder's; only the linear layers are chosen here.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};

use super::frozen::{Frozen, TrainLinear};
use crate::engine::local::{BaseLinear, BaseWeights, Decoder, Lin, Ops};

/// One adapted module's trainable pair, in the base's row order (GGUF q/k rows permuted).
#[derive(Clone)]
pub struct LoraPair {
    /// `[r, in]`.
    pub a: Var,
    /// `[out, r]`.
    pub b: Var,
    pub scale: f64,
}

pub struct TrainModel {
    pub base: Arc<BaseWeights>,
    decoder: Decoder,
    /// By module name (`model.layers.0.self_attn.q_proj`), sorted; the decoder's layers hold the same vars.
    pub lora: BTreeMap<String, LoraPair>,
    pub rank: usize,
    pub alpha: f64,
}

impl TrainModel {
    /// LoRA pairs on every module whose short name (`q_proj` …) is in `targets`: A drawn as PEFT does
    /// (Kaiming-uniform, bound 1/√in) from `seed`, B zero, so training starts from the base model exactly.
    pub fn new(base: Arc<BaseWeights>, targets: &[String], rank: usize, alpha: f64, seed: u64) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut lora = BTreeMap::new();
        for layer in &base.layers {
            for lin in &layer.linears {
                let short = lin.name.rsplit('.').next().unwrap_or(&lin.name);
                if targets.iter().any(|t| t == short) {
                    let bound = 1.0 / (lin.in_dim as f64).sqrt();
                    let a: Vec<f32> = (0..rank * lin.in_dim).map(|_| rng.random_range(-bound..bound) as f32).collect();
                    let a = Var::from_tensor(&Tensor::from_vec(a, (rank, lin.in_dim), &base.device)?)?;
                    let b = Var::zeros((lin.out_dim, rank), DType::F32, &base.device)?;
                    lora.insert(lin.name.clone(), LoraPair { a, b, scale: alpha / rank as f64 });
                }
            }
        }
        let decoder = decoder(&base, &lora, false)?;
        Ok(Self { base, decoder, lora, rank, alpha })
    }

    /// Base layers through candle's plain matmul, whose backward also computes the frozen weights'
    /// gradients: the reference `benches/train.rs` measures the custom op against. Same LoRA vars.
    pub fn with_plain_matmul(self) -> Result<Self> {
        let decoder = decoder(&self.base, &self.lora, true)?;
        Ok(Self { decoder, ..self })
    }

    pub fn device(&self) -> &Device {
        &self.base.device
    }

    /// Every trainable tensor, in a fixed order (A then B per module, modules sorted).
    pub fn vars(&self) -> Vec<&Var> {
        self.lora.values().flat_map(|p| [&p.a, &p.b]).collect()
    }

    /// Logits `[positions.len(), vocab]` of one sequence, at `positions` only.
    pub fn logits(&self, ids: &[u32], positions: &[u32]) -> Result<Tensor> {
        self.decoder.logits_at(ids, positions)
    }

    /// Mean cross-entropy of `targets` predicted at `positions` (one target per position).
    pub fn loss(&self, ids: &[u32], positions: &[u32], targets: &[u32]) -> Result<Tensor> {
        let logits = self.logits(ids, positions)?;
        candle_nn::loss::cross_entropy(&logits, &Tensor::new(targets, self.device())?)
    }
}

/// The differentiable decoder over `base` whose layers are frozen weights plus, where `lora` names the
/// module, its trainable pair (the output head is never adapted).
fn decoder(base: &Arc<BaseWeights>, lora: &BTreeMap<String, LoraPair>, plain: bool) -> Result<Decoder> {
    let factory = |name: &str, layer: &Arc<BaseLinear>| -> Result<Arc<dyn Lin>> {
        let mut frozen = Frozen::new(layer.weight_f32()?)?;
        frozen.plain = plain;
        frozen.bias = layer.bias.clone();
        let pair = if name == "lm_head" { None } else { lora.get(name).cloned() };
        Ok(Arc::new(TrainLinear { frozen, lora: pair }))
    };
    Decoder::with_ops(base.clone(), &factory, Ops::Differentiable).map_err(|e| candle_core::Error::Msg(e.to_string()))
}
