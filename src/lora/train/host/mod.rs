//! Training's step on the CPU without a tensor graph: the decoder's forward over raw buffers keeping what the
//! backward needs, the loss at the answer positions, and a hand-written backward that gives only the LoRA
//! pairs' gradients (and the activations' on the way) — with candle's autograd (`TrainModel`'s decoder) as
//! the reference it is held to. Sequences of a step run together: the linear layers see every row at once
//! (block-diagonal attention keeps them apart), so the frozen weights are read once per pass.

mod layer;
mod linear;

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use tunebench_kernels::attention_grad::Shape;
use tunebench_kernels::dense::{View, matmul};
use tunebench_kernels::ops::{Act, Pairs};
use tunebench_kernels::pool;

use self::layer::{Layer, Pass, Rope};
use self::linear::{Linear, Pair, PairGrad};
use super::data::Sequence;
use super::model::LoraPair;
use crate::engine::local::BaseWeights;
use crate::engine::local::{Activation, Family, Norm, RopePairs, SoftCaps};

/// Rows (tokens) one pass takes at most: bounds the activations kept for the backward (about 1 MB a row
/// on the default model); a longer sequence runs alone.
const MAX_ROWS: usize = 1024;

pub struct HostTrain {
    base: Arc<BaseWeights>,
    layers: Vec<Layer>,
    /// `[vocab, hidden]`.
    head: Vec<f32>,
    norm: Vec<f32>,
    /// `(cos, sin, −sin)` per rope table, `[positions, dims/2]` each.
    ropes: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)>,
    ffn: usize,
}

fn vector(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

impl HostTrain {
    /// The host form of `base` with `lora`'s modules adapted; None off the CPU.
    pub fn new(base: &Arc<BaseWeights>, lora: &BTreeMap<String, LoraPair>) -> candle_core::Result<Option<Self>> {
        if !base.device.is_cpu() {
            return Ok(None);
        }
        let index: BTreeMap<&str, usize> = lora.keys().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
        let lin = |l: &crate::engine::local::BaseLinear, name: &str| -> candle_core::Result<Linear> {
            Ok(Linear {
                w: vector(&l.weight_f32()?)?,
                bias: l.bias.as_ref().map(vector).transpose()?,
                out: l.out_dim,
                inp: l.in_dim,
                lora: index.get(name).copied(),
            })
        };
        let opt = |t: &Option<Tensor>| t.as_ref().map(vector).transpose();
        let mut layers = Vec::with_capacity(base.layers.len());
        for (bl, plan) in base.layers.iter().zip(&base.cfg.layer_plan) {
            layers.push(Layer {
                lins: bl.linears.iter().map(|l| lin(l, &l.name)).collect::<candle_core::Result<_>>()?,
                attn_norm: vector(&bl.attn_norm)?,
                ffn_norm: vector(&bl.ffn_norm)?,
                post_attn_norm: opt(&bl.post_attn_norm)?,
                post_ffn_norm: opt(&bl.post_ffn_norm)?,
                qk_norm: match &bl.qk_norm {
                    Some((q, k)) => Some((vector(q)?, vector(k)?)),
                    None => None,
                },
                window: plan.window,
            });
        }
        let ffn = match base.cfg.family.projections {
            crate::engine::local::Projections::Separate => layers.first().map_or(0, |l| l.lins[4].out),
            crate::engine::local::Projections::Fused => layers.first().map_or(0, |l| l.lins[2].out / 2),
        };
        let ropes = base
            .ropes
            .iter()
            .map(|(c, s)| {
                let (c, s) = (vector(c)?, vector(s)?);
                let neg = s.iter().map(|v| -v).collect();
                Ok((c, s, neg))
            })
            .collect::<candle_core::Result<_>>()?;
        let head = vector(&base.lm_head.weight_f32()?)?;
        Ok(Some(Self { base: base.clone(), layers, head, norm: vector(&base.norm)?, ropes, ffn }))
    }

    /// The mean cross-entropy over every target of `seqs` and, with `grads`, each pair's gradient (in
    /// `pairs` order, `[A, B]` per pair, as `TrainModel::vars` orders them).
    pub fn step(
        &self,
        lora: &BTreeMap<String, LoraPair>,
        seqs: &[&Sequence],
        grads: bool,
    ) -> candle_core::Result<(f64, Option<Vec<Tensor>>)> {
        let pairs: Vec<Pair> = lora
            .values()
            .map(|p| {
                let (a, b) = (p.a.as_tensor(), p.b.as_tensor());
                Ok(Pair { a: vector(a)?, b: vector(b)?, rank: a.dim(0)?, scale: p.scale as f32 })
            })
            .collect::<candle_core::Result<_>>()?;
        let mut acc: Vec<PairGrad> =
            pairs.iter().map(|p| PairGrad { a: vec![0.0; p.a.len()], b: vec![0.0; p.b.len()] }).collect();
        let targets: usize = seqs.iter().map(|s| s.targets.len()).sum();
        let mut loss = 0.0;
        let mut at = 0;
        while at < seqs.len() {
            let mut end = at + 1;
            let mut rows = seqs[at].ids.len();
            while end < seqs.len() && rows + seqs[end].ids.len() <= MAX_ROWS {
                rows += seqs[end].ids.len();
                end += 1;
            }
            loss += self.pass(&pairs, &seqs[at..end], targets.max(1), grads.then_some(&mut acc))?;
            at = end;
        }
        if !grads {
            return Ok((loss, None));
        }
        let mut out = Vec::with_capacity(2 * acc.len());
        for (g, p) in acc.into_iter().zip(lora.values()) {
            out.push(Tensor::from_vec(g.a, p.a.as_tensor().shape(), &Device::Cpu)?);
            out.push(Tensor::from_vec(g.b, p.b.as_tensor().shape(), &Device::Cpu)?);
        }
        Ok((loss, Some(out)))
    }

    /// One pass over `seqs` (rows side by side): their share of the loss (each target weighs `1/targets`),
    /// and their gradients added to `grads` when given.
    fn pass(
        &self,
        pairs: &[Pair],
        seqs: &[&Sequence],
        targets: usize,
        grads: Option<&mut Vec<PairGrad>>,
    ) -> candle_core::Result<f64> {
        let c = &self.base.cfg;
        let Family { name: _, norm: Norm::Rms, bias: _, qk_norm: _, activation, soft_caps, rope_pairs, projections } =
            c.family;
        let (d, pool) = (c.hidden, pool::global());
        let mut spans = Vec::with_capacity(seqs.len());
        let mut ids = Vec::new();
        for s in seqs {
            if s.positions.len() != s.targets.len() || s.positions.iter().any(|&q| q as usize >= s.ids.len()) {
                candle_core::bail!("{}: answer positions do not fit its {} tokens", s.id, s.ids.len());
            }
            spans.push((ids.len(), s.ids.len()));
            ids.extend_from_slice(&s.ids);
        }
        let n = ids.len();
        let mut x = vector(&self.base.embed.rows(&ids, &Device::Cpu)?)?;
        if let Some(s) = c.embed_scale {
            tunebench_kernels::ops::scale(&mut x, s);
        }
        let (attn_cap, logit_cap) = match soft_caps {
            SoftCaps::Tanh { attention, logits } => (attention.map(|c| c.0), logits.map(|c| c.0)),
            SoftCaps::None => (None, None),
        };
        let p = Pass {
            pool,
            pairs,
            spans: &spans,
            eps: c.rms_eps as f32,
            projections,
            act: match activation {
                Activation::Silu => Act::Silu,
                Activation::GeluTanh => Act::GeluTanh,
            },
            rope_pairs: match rope_pairs {
                RopePairs::Interleaved => Pairs::Interleaved,
                RopePairs::Halves => Pairs::Halves,
            },
            attn: Shape {
                heads: c.heads,
                kv_heads: c.kv_heads,
                head_dim: c.head_dim,
                scale: c.attn_scale as f32,
                cap: attn_cap,
                window: None,
            },
            hidden: d,
            ffn: self.ffn,
        };
        let ropes: Vec<Rope<'_>> =
            c.layer_plan.iter().map(|plan| self.rope(plan.rope, &spans)).collect::<candle_core::Result<_>>()?;
        let mut saved = Vec::with_capacity(self.layers.len());
        for (layer, rope) in self.layers.iter().zip(&ropes) {
            saved.push(layer.forward(&p, rope, &mut x));
        }
        // The answer positions' rows, final-normed, and their logits.
        let rows: Vec<usize> = seqs
            .iter()
            .zip(&spans)
            .flat_map(|(s, &(first, _))| s.positions.iter().map(move |&q| first + q as usize))
            .collect();
        let want: Vec<u32> = seqs.iter().flat_map(|s| s.targets.iter().copied()).collect();
        let picked: Vec<f32> = rows.iter().flat_map(|&r| x[r * d..(r + 1) * d].iter().copied()).collect();
        let t = rows.len();
        let mut h = vec![0f32; t * d];
        linear::norm(pool, &picked, &self.norm, p.eps, &mut h);
        let vocab = self.head.len() / d;
        let mut logits = vec![0f32; t * vocab];
        matmul(pool, t, vocab, d, &mut logits, vocab, View::rows(&h, d), View::rows(&self.head, d).t(), 1.0, false);
        if let Some(cap) = logit_cap {
            tunebench_kernels::ops::soft_cap(&mut logits, cap);
        }
        // Cross-entropy; the logits become their gradient.
        let mut loss = 0f64;
        let w = 1.0 / targets as f32;
        for (row, &y) in logits.chunks_exact_mut(vocab).zip(&want) {
            let y = y as usize;
            if y >= vocab {
                candle_core::bail!("target token {y} is not below the vocabulary size {vocab}");
            }
            let capped = row.to_vec();
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum = tunebench_kernels::simd::exp_sub_sum(row, max);
            loss += (sum.ln() + max - capped[y]) as f64 / targets as f64;
            row.iter_mut().for_each(|v| *v *= w / sum);
            row[y] -= w;
            if let Some(cap) = logit_cap {
                tunebench_kernels::grad::soft_cap_back(&capped, cap, row);
            }
        }
        let Some(grads) = grads else { return Ok(loss) };
        let mut dh = vec![0f32; t * d];
        matmul(pool, t, d, vocab, &mut dh, d, View::rows(&logits, vocab), View::rows(&self.head, d), 1.0, false);
        let mut dpicked = vec![0f32; t * d];
        linear::norm_back(pool, &picked, &self.norm, p.eps, &dh, &mut dpicked, false);
        let mut dx = vec![0f32; n * d];
        for (&r, g) in rows.iter().zip(dpicked.chunks_exact(d)) {
            tunebench_kernels::ops::add(&mut dx[r * d..(r + 1) * d], g);
        }
        for (i, ((layer, rope), s)) in self.layers.iter().zip(&ropes).zip(saved).enumerate().rev() {
            layer.backward(&p, rope, s, &mut dx, grads, i > 0);
        }
        Ok(loss)
    }

    /// A layer's rope tables per sequence (longrope picks its table by each sequence's length).
    fn rope(&self, table: Option<usize>, spans: &[(usize, usize)]) -> candle_core::Result<Rope<'_>> {
        let Some(r) = table else { return Ok(None) };
        let c = &self.base.cfg;
        let dims = c.ropes[r].dims;
        let mut out = Vec::with_capacity(spans.len());
        for &(_, n) in spans {
            let ri = c.rope_switch.map_or(r, |s| s.table(r, n));
            let (cos, sin, neg) = &self.ropes[ri];
            if n * dims / 2 > cos.len() {
                candle_core::bail!("a sequence of {n} tokens is past the rope table");
            }
            out.push((&cos[..], &sin[..], &neg[..]));
        }
        Ok(Some((out, dims)))
    }
}
