//! The LoRAs of a matmul call that add to some of its rows only (lanes batched on one base, each with its
//! own adapter or none), and how adjacent lanes of one adapter become one LoRA of the call.

use super::Lora;

/// A LoRA added to some rows of a call only: lanes batched on one base, each with its own adapter or none.
#[derive(Clone, Copy)]
pub struct RowLora<'a> {
    /// The linear (index in the call's weights) whose output it adds to.
    pub linear: usize,
    pub lora: Lora<'a>,
    /// Its activation rows, `first..first + count`.
    pub first: usize,
    pub count: usize,
}

/// The most row LoRAs one call takes (three linears for sixteen lanes).
pub const MAX_ROW_LORAS: usize = 48;

/// `loras` with adjacent rows of one adapter joined (lanes batched with the same LoRA, an eval's cases): the
/// call then reads its A once for all of them, in row tiles, and has fewer units to hand out. Only where a
/// row's `x Aᵀ` does not depend on the tile's row count, so each row keeps the bits it gets alone.
pub(super) fn merged<'a>(
    loras: &[Option<RowLora<'a>>],
) -> Result<([Option<RowLora<'a>>; MAX_ROW_LORAS], usize), String> {
    let mut merged: [Option<RowLora<'a>>; MAX_ROW_LORAS] = [None; MAX_ROW_LORAS];
    let mut kept = 0usize;
    for d in loras.iter().flatten() {
        let joins = |p: &&mut RowLora<'a>| {
            p.linear == d.linear && p.first + p.count == d.first && p.lora.same(&d.lora) && p.lora.a.batch_invariant()
        };
        match merged[..kept].iter_mut().flatten().find(joins) {
            Some(p) => p.count += d.count,
            None => {
                let Some(slot) = merged.get_mut(kept) else {
                    return Err(format!("matmul: more than {MAX_ROW_LORAS} LoRAs in one call"));
                };
                *slot = Some(*d);
                kept += 1;
            }
        }
    }
    Ok((merged, kept))
}
