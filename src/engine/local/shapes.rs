//! Each loaded tensor's shape against the model's metadata, before anything is sized by the metadata: a file
//! whose numbers disagree with its tensors is refused naming the first tensor that disagrees.

use super::decoder::Projections;
use super::weights::{Config, Parts};
use super::{LocalError, Result};

/// `[out, in]` of a block's module (PEFT name suffix), given the MLP width `ffn`.
fn linear_shape(cfg: &Config, module: &str, ffn: usize) -> Option<[usize; 2]> {
    let (q, kv, h) = (cfg.heads.saturating_mul(cfg.head_dim), cfg.kv_heads.saturating_mul(cfg.head_dim), cfg.hidden);
    Some(match module.rsplit('.').next()? {
        "q_proj" => [q, h],
        "k_proj" | "v_proj" => [kv, h],
        "o_proj" => [h, q],
        "gate_proj" | "up_proj" => [ffn, h],
        "down_proj" => [h, ffn],
        "qkv_proj" => [q.saturating_add(kv.saturating_mul(2)), h],
        "gate_up_proj" => [ffn.saturating_mul(2), h],
        _ => return None,
    })
}

pub fn check(cfg: &Config, p: &Parts) -> Result<()> {
    let bad = |name: &str, have: &[usize], want: &[usize]| {
        Err(LocalError::Model(format!("invalid model shape: `{name}` is {have:?} but the metadata implies {want:?}")))
    };
    if p.embed.dims() != [cfg.vocab, cfg.hidden] {
        return bad("token embeddings", &p.embed.dims(), &[cfg.vocab, cfg.hidden]);
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
    let modules = cfg.family.modules();
    for (i, l) in p.layers.iter().enumerate() {
        let norms = [Some(&l.attn_norm), Some(&l.ffn_norm), l.post_attn_norm.as_ref(), l.post_ffn_norm.as_ref()];
        for norm in norms.into_iter().flatten() {
            if norm.dims() != [cfg.hidden] {
                return bad(&format!("layer {i} norm"), norm.dims(), &[cfg.hidden]);
            }
        }
        if let Some((qn, kn)) = &l.qk_norm {
            for n in [qn, kn] {
                if n.dims() != [cfg.head_dim] {
                    return bad(&format!("layer {i} q/k norm"), n.dims(), &[cfg.head_dim]);
                }
            }
        }
        if l.linears.len() != modules.len() {
            return bad(&format!("layer {i} projections"), &[l.linears.len()], &[modules.len()]);
        }
        let ffn = match cfg.family.projections {
            Projections::Separate => l.linears[4].out_dim,
            // down_proj's input: the fused gate|up is twice as wide.
            Projections::Fused => l.linears[3].in_dim,
        };
        for lin in &l.linears {
            let Some(want) = linear_shape(cfg, &lin.name, ffn) else {
                return Err(LocalError::Model(format!("no expected shape for module `{}`", lin.name)));
            };
            if [lin.out_dim, lin.in_dim] != want {
                return bad(&lin.name, &[lin.out_dim, lin.in_dim], &want);
            }
            if let Some(b) = &lin.bias
                && b.dims() != [want[0]]
            {
                return bad(&format!("{}.bias", lin.name), b.dims(), &[want[0]]);
            }
        }
    }
    Ok(())
}
