//! What the host engine reads of a loaded model beside its linear layers: the token embeddings (in their
//! file's format, rows dequantized on lookup), the norm weights and the rope tables, as host vectors.

use std::sync::Arc;

use candle_core::Tensor;

use super::Weights;
use crate::engine::local::weights::{BaseLayer, Embed};
use crate::engine::local::{BaseLinear, Result};

/// One layer's vectors.
pub struct HostLayer {
    pub attn_norm: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    pub post_attn_norm: Option<Vec<f32>>,
    pub post_ffn_norm: Option<Vec<f32>>,
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
}

/// A model's non-linear weights on the host.
pub struct HostBase {
    /// `[vocab, hidden]`: the output head's own weights when it is tied to them.
    pub embed: Arc<Weights>,
    pub layers: Vec<HostLayer>,
    pub norm: Vec<f32>,
    /// `(cos, sin)` per rope spec, each `[context, dims / 2]` row-major.
    pub ropes: Vec<(Vec<f32>, Vec<f32>)>,
}

fn vector(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?)
}

impl HostBase {
    /// From the loaded tensors; None when the output head has no host form (the model runs on candle).
    pub fn new(
        embed: &Embed,
        lm_head: &BaseLinear,
        layers: &[BaseLayer],
        norm: &Tensor,
        ropes: &[(Tensor, Tensor)],
    ) -> Result<Option<Self>> {
        let (Embed::Host(embed), Some(_)) = (embed, lm_head.host_weights()) else { return Ok(None) };
        let embed = embed.clone();
        let opt = |t: &Option<Tensor>| t.as_ref().map(vector).transpose();
        let layers = layers
            .iter()
            .map(|l| {
                Ok(HostLayer {
                    attn_norm: vector(&l.attn_norm)?,
                    ffn_norm: vector(&l.ffn_norm)?,
                    post_attn_norm: opt(&l.post_attn_norm)?,
                    post_ffn_norm: opt(&l.post_ffn_norm)?,
                    qk_norm: match &l.qk_norm {
                        Some((q, k)) => Some((vector(q)?, vector(k)?)),
                        None => None,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ropes = ropes.iter().map(|(c, s)| Ok((vector(c)?, vector(s)?))).collect::<Result<Vec<_>>>()?;
        Ok(Some(Self { embed, layers, norm: vector(norm)?, ropes }))
    }
}
