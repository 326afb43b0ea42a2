//! The LoRAs of a matmul call that add to some of its rows only (lanes batched on one base, each with its
//! own adapter or none), and how adjacent lanes of one adapter become one LoRA of the call.

use smallvec::SmallVec;

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

/// A call's row LoRAs, held inline.
pub type RowLoras<'a> = SmallVec<[RowLora<'a>; MAX_ROW_LORAS]>;

/// `loras` with adjacent rows of one adapter joined (lanes batched with the same LoRA, an eval's cases): the
/// call then reads its A once for all of them, in row tiles, and has fewer units to hand out. Only where a
/// row's `x Aᵀ` does not depend on the tile's row count, so each row keeps the bits it gets alone.
pub(super) fn merged<'a>(loras: &[RowLora<'a>]) -> Result<RowLoras<'a>, String> {
    let mut merged = RowLoras::new();
    for d in loras {
        let joins = |p: &&mut RowLora<'a>| {
            p.linear == d.linear && p.first + p.count == d.first && p.lora.same(&d.lora) && p.lora.a.batch_invariant()
        };
        if let Some(p) = merged.iter_mut().find(joins) {
            p.count += d.count;
        } else if merged.len() < MAX_ROW_LORAS {
            merged.push(*d);
        } else {
            return Err(format!("matmul: more than {MAX_ROW_LORAS} LoRAs in one call"));
        }
    }
    Ok(merged)
}
