//! The candle forward pass (GPUs, training, the host engine's reference) over the rows of one lane or of
//! several lanes on one base: the linear layers run once over every row's tokens, each row's adapter update
//! on its own tokens, and attention per row over its own KV cache.

use std::sync::Arc;

use candle_core::{Device, Result, Tensor};

use super::{Bias, Decoder, Family, Norm, Ops, Projections, QkNorm, RopePairs, SoftCaps, ops};
use crate::engine::local::cache::KvCache;
use crate::engine::local::linear::Lin;

/// One row of a pass: a lane's layers, its `n` tokens at positions `pos..`, and its cache (None: the tokens
/// are the whole sequence, as training runs them; `pos` is then 0).
pub(super) struct Seg<'a> {
    pub lins: &'a [Vec<Arc<dyn Lin>>],
    pub pos: usize,
    pub n: usize,
    pub cache: Option<&'a mut KvCache>,
}

impl Seg<'_> {
    /// The length longrope chooses its table by: the whole sequence's (the KV cache holds prompt + answer), so
    /// that a prompt prefilled in chunks, and its answer, all use one table.
    fn seq_len(&self) -> usize {
        self.cache.as_deref().map_or(self.pos + self.n, |k| k.capacity().max(self.pos + self.n))
    }
}

impl Decoder {
    /// The final-normed hidden states `[1, Σn, hidden]` of the rows' tokens (`ids`, row after row). Rows of
    /// several lanes must share this decoder's base (`batches_with`); one row is the single-lane forward.
    pub(super) fn hidden_rows(&self, ids: &[u32], segs: &mut [Seg<'_>]) -> Result<Tensor> {
        let (b, ops) = (&self.base, self.ops);
        let c = &b.cfg;
        // Every field is named here, so a variant added in `family.rs` does not compile until this runs it.
        let Family {
            name: _,
            norm,
            // Biases are applied by the base layers themselves (`BaseLinear`), so every variant runs the same.
            bias: Bias::None | Bias::Qkv,
            qk_norm,
            activation,
            soft_caps,
            rope_pairs,
            projections,
        } = c.family;
        let total = ids.len();
        if segs.iter().map(|s| s.n).sum::<usize>() != total || segs.iter().any(|s| s.n == 0) {
            candle_core::bail!("a pass's rows do not add up to its {total} tokens");
        }
        let eps = c.rms_eps as f32;
        let mut x = b.embed.rows(ids, &b.device)?;
        if let Some(scale) = c.embed_scale {
            x = (x * f64::from(scale))?;
        }
        // Soft-capped logits are the head's business; attention scores are capped here.
        let attn_cap = match soft_caps {
            SoftCaps::Tanh { attention, logits: _ } => attention,
            SoftCaps::None => None,
        };
        let tables = rope_rows(self, segs)?;
        let rep = c.heads / c.kv_heads;
        let mut masks: Vec<Masks> = segs.iter().map(|_| Masks::default()).collect();
        for (i, (layer, plan)) in b.layers.iter().zip(&c.layer_plan).enumerate() {
            let h = ops.norm(norm, &x, &layer.attn_norm, eps)?;
            let heads = |t: Tensor, nh: usize| t.reshape((1, total, nh, c.head_dim))?.transpose(1, 2)?.contiguous();
            let (q, k, v) = match projections {
                Projections::Separate => (project(segs, i, 0, &h)?, project(segs, i, 1, &h)?, project(segs, i, 2, &h)?),
                Projections::Fused => {
                    let qkv = project(segs, i, 0, &h)?;
                    let (nq, nkv) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
                    (qkv.narrow(2, 0, nq)?, qkv.narrow(2, nq, nkv)?, qkv.narrow(2, nq + nkv, nkv)?)
                }
            };
            let (mut q, mut k, v) = (heads(q, c.heads)?, heads(k, c.kv_heads)?, heads(v, c.kv_heads)?);
            match (qk_norm, &layer.qk_norm) {
                (QkNorm::None, None) => {}
                (QkNorm::Rms, Some((qn, kn))) => {
                    q = ops.norm(Norm::Rms, &q, qn, eps)?;
                    k = ops.norm(Norm::Rms, &k, kn, eps)?;
                }
                _ => candle_core::bail!("layer {i}: q/k norm weights do not match the family"),
            }
            if let Some(r) = plan.rope {
                let (cos, sin, dims) = &tables[r];
                q = rotate(ops, rope_pairs, &q, cos, sin, *dims)?;
                k = rotate(ops, rope_pairs, &k, cos, sin, *dims)?;
            }
            let mut ys = Vec::with_capacity(segs.len());
            let mut at = 0;
            for (seg, masks) in segs.iter_mut().zip(&mut masks) {
                let (n, pos) = (seg.n, seg.pos);
                let row = |t: &Tensor| if n == total { Ok(t.clone()) } else { t.narrow(2, at, n) };
                let (k, v) = match seg.cache.as_deref_mut() {
                    Some(cache) => cache.append(i, pos, &row(&k)?, &row(&v)?)?,
                    None => (row(&k)?, row(&v)?),
                };
                // Grouped-query attention without copying K/V per query head: the `rep` query heads that
                // share a KV head become `rep * n` rows against that head's keys.
                let q = row(&q)?.contiguous()?.reshape((1, c.kv_heads, rep * n, c.head_dim))?;
                let mut att = (q.matmul(&k.t()?)? * c.attn_scale)?;
                if let Some(cap) = attn_cap {
                    att = ops.soft_cap(&att, cap)?;
                }
                if let Some(m) = masks.get(n, pos, rep, plan.window, &b.device)? {
                    att = att.broadcast_add(m)?;
                }
                let att = ops.softmax(&att)?;
                let y = att.matmul(&v)?.reshape((1, c.heads, n, c.head_dim))?;
                ys.push(y.transpose(1, 2)?.reshape((1, n, c.heads * c.head_dim))?);
                at += n;
            }
            let y = if ys.len() == 1 { ys.remove(0) } else { Tensor::cat(&ys, 1)? };
            let (o, down) = match projections {
                Projections::Separate => (3, 6),
                Projections::Fused => (1, 3),
            };
            let mut y = project(segs, i, o, &y)?;
            if let Some(w) = &layer.post_attn_norm {
                y = ops.norm(norm, &y, w, eps)?;
            }
            x = (x + y)?;
            let h = ops.norm(norm, &x, &layer.ffn_norm, eps)?;
            let (gate, up) = match projections {
                Projections::Separate => (project(segs, i, 4, &h)?, project(segs, i, 5, &h)?),
                Projections::Fused => {
                    let gate_up = project(segs, i, 2, &h)?;
                    let ffn = gate_up.dim(2)? / 2;
                    (gate_up.narrow(2, 0, ffn)?, gate_up.narrow(2, ffn, ffn)?)
                }
            };
            let mut y = project(segs, i, down, &(ops.activation(activation, &gate)? * up)?)?;
            if let Some(w) = &layer.post_ffn_norm {
                y = ops.norm(norm, &y, w, eps)?;
            }
            x = (x + y)?;
        }
        ops.norm(norm, &x, &b.norm, eps)
    }
}

/// Module `m` of layer `i` on `x`: one row through its own layer; several through `run_rows`.
fn project(segs: &[Seg<'_>], i: usize, m: usize, x: &Tensor) -> Result<Tensor> {
    if let [seg] = segs {
        return seg.lins[i][m].forward(x);
    }
    let rows: Vec<(&Arc<dyn Lin>, usize)> = segs.iter().map(|s| (&s.lins[i][m], s.n)).collect();
    run_rows(&rows, x)
}

/// `x [1, Σn, in]`, rows of lanes on one base, each through its own layer (`n` tokens a row). Adjacent decode
/// rows (one token each) share one call of the base layer's decode form and one update call per adapter; a
/// prefill row gets calls of its own, of the very shapes it has alone, so that no kernel chosen by the number
/// of rows (a GPU's) moves its numbers.
pub(super) fn run_rows(rows: &[(&Arc<dyn Lin>, usize)], x: &Tensor) -> Result<Tensor> {
    let Some(base) = rows.first().and_then(|(l, _)| l.base_layer()) else {
        candle_core::bail!("a layer without a base form cannot share a pass")
    };
    let mut parts = Vec::new();
    let mut at = 0;
    for group in rows.chunk_by(|a, b| a.1 == 1 && b.1 == 1) {
        let len: usize = group.iter().map(|r| r.1).sum();
        let xs = x.narrow(1, at, len)?;
        let y = base.forward_phase(&xs, group[0].1 == 1)?;
        let mut off = 0;
        for same in group.chunk_by(|a, b| Arc::ptr_eq(a.0, b.0)) {
            let n: usize = same.iter().map(|r| r.1).sum();
            if let Some(u) = same[0].0.update(&xs.narrow(1, off, n)?) {
                y.slice_set(&(y.narrow(1, off, n)? + u?)?, 1, off)?;
            }
            off += n;
        }
        parts.push(y);
        at += len;
    }
    if parts.len() == 1 { Ok(parts.remove(0)) } else { Tensor::cat(&parts, 1) }
}

/// Per rope table the family names: cos and sin rows for the pass's tokens (each row's from the table its
/// own length picks, for longrope) and the dimensions it rotates.
fn rope_rows(d: &Decoder, segs: &[Seg<'_>]) -> Result<Vec<(Tensor, Tensor, usize)>> {
    let (b, c) = (&d.base, &d.base.cfg);
    (0..c.ropes.len())
        .map(|r| {
            let mut cos = Vec::with_capacity(segs.len());
            let mut sin = Vec::with_capacity(segs.len());
            let mut dims = None;
            for s in segs {
                let t = c.rope_switch.map_or(r, |sw| sw.table(r, s.seq_len()));
                let (tc, ts) = &b.ropes[t];
                cos.push(tc.narrow(0, s.pos, s.n)?);
                sin.push(ts.narrow(0, s.pos, s.n)?);
                match dims {
                    Some(d) if d != c.ropes[t].dims => candle_core::bail!("rows rotate different dimensions"),
                    _ => dims = Some(c.ropes[t].dims),
                }
            }
            let one = |mut v: Vec<Tensor>| if v.len() == 1 { Ok(v.remove(0)) } else { Tensor::cat(&v, 0) };
            Ok((one(cos)?, one(sin)?, dims.unwrap_or(c.head_dim)))
        })
        .collect()
}

/// Rope on the leading `dims` dimensions of each head of `x [1, heads, n, head_dim]`; the rest pass through.
fn rotate(ops: Ops, pairs: RopePairs, x: &Tensor, cos: &Tensor, sin: &Tensor, dims: usize) -> Result<Tensor> {
    let head_dim = x.dim(3)?;
    if dims == head_dim {
        return ops.rope(pairs, x, cos, sin);
    }
    let rotated = ops.rope(pairs, &x.narrow(3, 0, dims)?.contiguous()?, cos, sin)?;
    Tensor::cat(&[rotated, x.narrow(3, dims, head_dim - dims)?], 3)?.contiguous()
}

/// One row's attention masks for a pass, built once per distinct window.
#[derive(Default)]
struct Masks(Vec<(Option<usize>, Option<Tensor>)>);

impl Masks {
    /// The mask for `window`, or None where every key is visible anyway (one new token, within its window).
    fn get(
        &mut self,
        n: usize,
        pos: usize,
        rep: usize,
        window: Option<usize>,
        dev: &Device,
    ) -> Result<Option<&Tensor>> {
        let i = match self.0.iter().position(|(w, _)| *w == window) {
            Some(i) => i,
            None => {
                let needed = n > 1 || window.is_some_and(|w| pos + n > w);
                let mask = if needed { Some(ops::causal_mask(n, pos, rep, window, dev)?) } else { None };
                self.0.push((window, mask));
                self.0.len() - 1
            }
        };
        Ok(self.0[i].1.as_ref())
    }
}
