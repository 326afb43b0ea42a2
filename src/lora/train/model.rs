//! Training's view of the one decoder (`engine::local::Decoder` in its differentiable mode): frozen base
//! weights, trainable LoRA A/B on the targeted modules, and the vocabulary projection computed only at the
//! positions the loss reads. The forward pass itself is the decoder's; only the linear layers are chosen here.
//! On the CPU the same model's steps run on the host step (`host/`), which this decoder's autograd checks.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};

use super::data::Sequence;
use super::frozen::{Frozen, TrainLinear};
use super::host::HostTrain;
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
    /// Candle's differentiable decoder, built on first use (the GPU path, `logits`, the reference): on the
    /// CPU a training run never builds it, and so never holds its f32 copies of the weights.
    decoder: OnceLock<Decoder>,
    /// The decoder's base layers use candle's plain matmul (`with_plain_matmul`).
    plain: bool,
    /// By module name (`model.layers.0.self_attn.q_proj`), sorted; the decoder's layers hold the same vars.
    pub lora: BTreeMap<String, LoraPair>,
    pub rank: usize,
    pub alpha: f64,
    /// The host step (on the CPU): what `loss_and_grads` and `mean_loss` run when present.
    host: Option<HostTrain>,
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
        let host = HostTrain::new(&base, &lora)?;
        Ok(Self { base, decoder: OnceLock::new(), plain: false, lora, rank, alpha, host })
    }

    /// Base layers through candle's plain matmul, whose backward also computes the frozen weights'
    /// gradients: the reference `benches/train.rs` measures the custom op against. Same LoRA vars.
    pub fn with_plain_matmul(self) -> Result<Self> {
        Ok(Self { decoder: OnceLock::new(), plain: true, host: None, ..self })
    }

    /// The same model trained through candle's autograd even on the CPU: the reference the host step is
    /// held to (tests, benchmarks).
    pub fn on_candle(self) -> Self {
        Self { host: None, ..self }
    }

    /// Whether steps run on the host (the CPU's hand-written backward) rather than candle's autograd.
    pub fn on_host(&self) -> bool {
        self.host.is_some()
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
        if let Some(d) = self.decoder.get() {
            return d.logits_at(ids, positions);
        }
        let d = decoder(&self.base, &self.lora, self.plain)?;
        self.decoder.get_or_init(|| d).logits_at(ids, positions)
    }

    /// Mean cross-entropy of `targets` predicted at `positions` (one target per position).
    pub fn loss(&self, ids: &[u32], positions: &[u32], targets: &[u32]) -> Result<Tensor> {
        let logits = self.logits(ids, positions)?;
        candle_nn::loss::cross_entropy(&logits, &Tensor::new(targets, self.device())?)
    }

    /// The mean cross-entropy over every target of `seqs` (each target weighs the same) and its gradient for
    /// every var, in `vars()` order. A var the loss does not reach is an error, never a silent zero.
    pub fn loss_and_grads(&self, seqs: &[&Sequence]) -> Result<(f64, Vec<Tensor>)> {
        if let Some(h) = &self.host {
            let (loss, grads) = h.step(&self.lora, seqs, true)?;
            return Ok((loss, grads.unwrap_or_default()));
        }
        let vars = self.vars();
        let names: Vec<String> =
            self.lora.keys().flat_map(|k| [format!("{k}.lora_A"), format!("{k}.lora_B")]).collect();
        let targets: usize = seqs.iter().map(|s| s.targets.len()).sum();
        let (mut grads, mut total) = (Vec::with_capacity(vars.len()), 0.0);
        for s in seqs {
            let weight = s.targets.len() as f64 / targets.max(1) as f64;
            let loss = self.loss(&s.ids, &s.positions, &s.targets)?;
            total += loss.to_scalar::<f32>()? as f64 * weight;
            let g = (loss * weight)?.backward()?;
            super::optim::accumulate(&mut grads, &vars, &names, &g, 1.0)?;
        }
        Ok((total, grads))
    }

    /// The mean cross-entropy over every target of `seqs`, without gradients (validation).
    pub fn mean_loss(&self, seqs: &[Sequence]) -> Result<f64> {
        let refs: Vec<&Sequence> = seqs.iter().collect();
        if refs.iter().all(|s| s.targets.is_empty()) {
            return Ok(f64::NAN);
        }
        if let Some(h) = &self.host {
            return Ok(h.step(&self.lora, &refs, false)?.0);
        }
        let (mut sum, mut n) = (0.0, 0usize);
        for s in &refs {
            let l = self.loss(&s.ids, &s.positions, &s.targets)?.detach().to_scalar::<f32>()? as f64;
            sum += l * s.targets.len() as f64;
            n += s.targets.len();
        }
        Ok(sum / n as f64)
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
