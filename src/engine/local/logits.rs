//! Fidelity logits (`tunebench logits`): every position's logits of a raw id sequence, computed in f32 from
//! the model file's own weights dequantized, to hold a file against its reference implementation.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::decoder::Decoder;
use super::linear::WeightPlan;
use super::store::{LoadedModel, load};
use super::{LocalError, Result};

/// Loads `path` with every weight dequantized once to f32 ([`WeightPlan::EXACT`]): no requantized decode copy
/// stands between the file and the logits.
pub fn load_exact(path: &Path, device: &Device) -> Result<LoadedModel> {
    load(path, device, Some(WeightPlan::EXACT))
}

/// Why `ids` cannot be the input of a model whose embedding has `vocab` rows and whose positions end at
/// `context`; None when they can.
pub fn invalid_ids(ids: &[u32], vocab: usize, context: usize) -> Option<String> {
    if ids.is_empty() {
        return Some("the input is empty (at least one token id is needed)".into());
    }
    if let Some((at, id)) = ids.iter().enumerate().find(|(_, id)| **id as usize >= vocab) {
        return Some(format!("id {id} (at index {at}) is not below the model's vocabulary size {vocab}"));
    }
    if ids.len() > context {
        return Some(format!("{} ids are more than the model's context of {context} positions", ids.len()));
    }
    None
}

/// Logits `[ids.len(), width]` at every position, f32 on the CPU; width is the output matrix's rows, and the
/// values are the decoder's (after any final soft-cap). The ids are the whole input: no BOS, no template.
pub fn all_positions(model: &Decoder, ids: &[u32]) -> Result<Tensor> {
    let base = &model.base;
    if let Some(why) = invalid_ids(ids, base.embed.dims()[0], base.cfg.context) {
        return Err(LocalError::Run(why));
    }
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let logits = model.logits_at(ids, &positions)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    // A fidelity tool reports what the file computes, but NaN has no JSON form and misleads any comparison.
    // One sum per row finds the rows to look at (NaN and infinity survive a sum), without copying them all.
    let sums: Vec<f32> = logits.sum(1)?.to_vec1()?;
    for pos in (0..sums.len()).filter(|&p| !sums[p].is_finite()) {
        let row: Vec<f32> = logits.get(pos)?.to_vec1()?;
        let bad = row.iter().filter(|v| !v.is_finite()).count();
        // A finite row can still sum past f32's range: only a row that holds a non-finite value is refused.
        if bad > 0 {
            return Err(LocalError::Run(format!(
                "the model computed {bad} non-finite logits at position {pos}: its weights (or the adapter's) hold \
                 NaN or infinity, or overflow"
            )));
        }
    }
    Ok(logits)
}

/// The `k` largest logits of `row`, largest first; ties keep the lower id first.
pub fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let order = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let k = k.min(idx.len());
    // Linear selection, then a sort of the k: a 262,144-wide row per position stays cheap.
    if k > 0 && k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
    }
    idx.truncate(k);
    idx.sort_by(order);
    idx.into_iter().map(|i| (i, row[i as usize])).collect()
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn top_k_is_the_largest_first_ties_by_lower_id() {
        let row = [0.5, 3.0, -1.0, 3.0, 2.0, f32::MIN];
        assert_eq!(top_k(&row, 3), [(1, 3.0), (3, 3.0), (4, 2.0)]);
        assert_eq!(top_k(&row, 1), [(1, 3.0)]);
        assert_eq!(top_k(&row, 6).len(), 6);
        assert_eq!(top_k(&row, 9).len(), 6, "no more than the row holds");
    }
}
