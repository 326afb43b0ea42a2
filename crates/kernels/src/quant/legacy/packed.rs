//! Legacy weights repacked eight rows to a group (the idea of llama.cpp's `q4_0_8x8`, in a layout of our
//! own): each block of a group holds the eight rows' f16 scales, then their quants interleaved four bytes at a
//! time, so that one 256-bit register's eight 32-bit lanes hold the same four elements of the eight rows. A
//! broadcast activation dword then multiplies all eight rows at once and the kernel's lanes are the output
//! rows: no horizontal sums, and one scale multiply per block for eight rows. The quants are kept unsigned
//! (`u = q + BIAS`), so one u8×i8 product needs no sign games; the kernel subtracts `BIAS · Σy` with the
//! activation block's exact integer sum (Q8_0S).
//!
//! Per block of a group (`Kind::block` bytes × 8, the same size as the eight rows' blocks):
//! - Q4_0: 8 × f16 d, then 4 × 32 bytes `P[m]`: lane i of `P[m]` = row i's nibble bytes 4m..4m+4, so the low
//!   nibbles are elements 4m..4m+4 and the high ones 16+4m..; `u = q` (BIAS 8).
//! - Q4_1: 8 × f16 d, 8 × f16 m, then `P` as Q4_0; `u = q` (BIAS 0), `m · d_y · Σy` added per block.
//! - Q5_0: 8 × f16 d, 32 bytes of fifth bits `H`: byte t of lane i holds, in bit k, row i's fifth bit of
//!   element 4k+t; then `P` as Q4_0; `u = q` (BIAS 16).
//! - Q8_0: 8 × f16 d, then 8 × 32 bytes `U[k]`: lane i = row i's quants 4k..4k+4 as `q + 128` (BIAS 128).
//!
//! The 4- and 5-bit formats' groups go in pairs, their blocks interleaved so that a kernel computing both
//! reads one stream (two streams a group's length apart read a decode's weights ~13% slower at four
//! activation rows). Where the CPU runs the two-group kernel, field by field: block b of the pair holds group
//! 2p's scales then group 2p + 1's, their minimums (Q4_1) or fifth bits (Q5_0) likewise, then each 32-byte
//! register of quants of 2p beside the same register of 2p + 1, so that each of its 512-bit loads is already
//! the two groups' halves side by side, with no lane inserts (which cost the four-row kernel a fifth of its
//! instructions). Elsewhere block by block (block b of 2p, then block b of 2p + 1): the group kernel, reading
//! one group at a time, then reads only its own group's lines. A last, odd group keeps its blocks one after
//! another.
//! Q8_0's groups all do: at up to four rows its group kernel, reading one group at a time, keeps the memory's
//! speed, and reading every other block of an interleaved pair it measured 5–10% slower. A group's blocks
//! are thus `stride` bytes apart, and where a field lies in one is `Lay::field` (see `place`).

use crate::quant::Kind;

/// Rows per group.
pub const GROUP: usize = 8;

/// The formats that repack, and the bytes of one block of a group.
pub fn block_bytes(kind: Kind) -> Option<usize> {
    match kind {
        Kind::Q4_0 | Kind::Q4_1 | Kind::Q5_0 | Kind::Q8_0 => Some(kind.block().1 * GROUP),
        _ => None,
    }
}

/// Where in a row's block its quants (nibbles, or i8) and the Q5_0 fifth bits start.
fn offsets(kind: Kind) -> (usize, Option<usize>) {
    match kind {
        Kind::Q5_0 => (6, Some(2)),
        Kind::Q4_1 => (4, None),
        _ => (2, None),
    }
}

/// Whether `kind`'s groups go in interleaved pairs (see the module).
pub const fn interleaved(kind: Kind) -> bool {
    !matches!(kind, Kind::Q8_0)
}

/// Where a repacked group's blocks lie: `stride` bytes from one block to the next; `half`, for a group of an
/// interleaved pair, which of the two it is (its blocks are then the pair's); `fields`, whether the pair's
/// blocks are interleaved field by field (else block by block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lay {
    pub stride: usize,
    pub half: Option<usize>,
    pub fields: bool,
}

impl Lay {
    /// A group whose blocks lie `stride` bytes apart, alone.
    pub const fn lone(stride: usize) -> Self {
        Lay { stride, half: None, fields: false }
    }

    /// Where a field of one of the group's blocks starts, from the block's start: the field `off` bytes into a
    /// group's own block, `size` bytes long (16: scales, minimums; 32: a register of quants or fifth bits).
    #[inline(always)]
    pub const fn field(self, off: usize, size: usize) -> usize {
        match self.half {
            None => off,
            Some(h) if self.fields => 2 * off + h * size,
            Some(h) => h * (self.stride / 2) + off,
        }
    }
}

/// Where group `g` of `groups` of `kind` (each `len` bytes: `len / gb` blocks of `gb` bytes) lies, its pairs
/// interleaved field by field or block by block (`fields`): the offset of its first block (a paired group's:
/// its pair's) and its layout.
pub fn place(kind: Kind, g: usize, groups: usize, (len, gb): (usize, usize), fields: bool) -> (usize, Lay) {
    if !interleaved(kind) || (g + 1 == groups && groups % 2 == 1) {
        (g * len, Lay::lone(gb))
    } else {
        (g / 2 * 2 * len, Lay { stride: 2 * gb, half: Some(g % 2), fields })
    }
}

/// `rows` (a multiple of `GROUP`) × `cols` of `kind` in the file's bytes, repacked into `out` (as long as
/// `bytes`, zeroed), pairs interleaved field by field or block by block (`fields`); false, `out` untouched, for
/// a format that does not repack.
pub fn pack_into(kind: Kind, rows: usize, cols: usize, bytes: &[u8], out: &mut [u8], fields: bool) -> bool {
    let Some(gb) = block_bytes(kind) else { return false };
    let bb = kind.block().1;
    let nb = cols / 32;
    let (qs, qh) = offsets(kind);
    let groups = rows / GROUP;
    for g in 0..groups {
        let (at, lay) = place(kind, g, groups, (nb * gb, gb), fields);
        for b in 0..nb {
            let dst = &mut out[at + b * lay.stride..];
            for i in 0..GROUP {
                let src = &bytes[(g * GROUP + i) * nb * bb + b * bb..][..bb];
                let d = lay.field(0, 16) + 2 * i;
                dst[d..d + 2].copy_from_slice(&src[..2]);
                if kind == Kind::Q4_1 {
                    let m = lay.field(16, 16) + 2 * i;
                    dst[m..m + 2].copy_from_slice(&src[2..4]);
                }
                let quants = match (kind, qh) {
                    (Kind::Q8_0, _) => {
                        for k in 0..8 {
                            for t in 0..4 {
                                dst[lay.field(16 + 32 * k, 32) + 4 * i + t] = src[qs + 4 * k + t] ^ 0x80;
                            }
                        }
                        continue;
                    }
                    (_, Some(at)) => {
                        let bits = u32::from_le_bytes([src[at], src[at + 1], src[at + 2], src[at + 3]]);
                        for t in 0..4 {
                            let mut byte = 0u8;
                            for k in 0..8 {
                                byte |= (((bits >> (4 * k + t)) & 1) as u8) << k;
                            }
                            dst[lay.field(16, 32) + 4 * i + t] = byte;
                        }
                        48
                    }
                    (Kind::Q4_1, _) => 32,
                    _ => 16,
                };
                for m in 0..4 {
                    let lane = lay.field(quants + 32 * m, 32) + 4 * i;
                    dst[lane..lane + 4].copy_from_slice(&src[qs + 4 * m..qs + 4 * m + 4]);
                }
            }
        }
    }
    true
}

/// Block `b` of lane `i` of a repacked group (`group`: from its first block on, laid out as `lay` says) back
/// in the file's bytes, into `out` (`kind.block().1` bytes).
pub fn unpack_block(kind: Kind, group: &[u8], lay: Lay, b: usize, i: usize, out: &mut [u8]) {
    if block_bytes(kind).is_none() {
        return;
    }
    let src = &group[b * lay.stride..];
    let (qs, qh) = offsets(kind);
    let d = lay.field(0, 16) + 2 * i;
    out[..2].copy_from_slice(&src[d..d + 2]);
    if kind == Kind::Q4_1 {
        let m = lay.field(16, 16) + 2 * i;
        out[2..4].copy_from_slice(&src[m..m + 2]);
    }
    if kind == Kind::Q8_0 {
        for k in 0..8 {
            for t in 0..4 {
                out[qs + 4 * k + t] = src[lay.field(16 + 32 * k, 32) + 4 * i + t] ^ 0x80;
            }
        }
        return;
    }
    let quants = match qh {
        Some(at) => {
            let mut bits = 0u32;
            for t in 0..4 {
                let byte = src[lay.field(16, 32) + 4 * i + t];
                for k in 0..8 {
                    bits |= u32::from((byte >> k) & 1) << (4 * k + t);
                }
            }
            out[at..at + 4].copy_from_slice(&bits.to_le_bytes());
            48
        }
        None if kind == Kind::Q4_1 => 32,
        None => 16,
    };
    for m in 0..4 {
        let lane = lay.field(quants + 32 * m, 32) + 4 * i;
        out[qs + 4 * m..qs + 4 * m + 4].copy_from_slice(&src[lane..lane + 4]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_unpacks_to_the_bytes_it_was_packed_from() {
        // Two pairs and a last odd group: both placements.
        for (kind, fields) in
            [Kind::Q4_0, Kind::Q4_1, Kind::Q5_0, Kind::Q8_0].into_iter().flat_map(|k| [(k, false), (k, true)])
        {
            let (rows, cols, bb) = (40, 96, kind.block().1);
            let bytes: Vec<u8> = (0..rows * cols / 32 * bb).map(|i| (i * 131 + i / 7) as u8).collect();
            let mut packed = vec![0u8; bytes.len()];
            assert!(pack_into(kind, rows, cols, &bytes, &mut packed, fields));
            assert_eq!(packed.len(), bytes.len());
            let groups = rows / GROUP;
            let (len, gb) = (packed.len() / groups, block_bytes(kind).unwrap());
            let mut block = vec![0u8; bb];
            for r in 0..rows {
                let (at, lay) = place(kind, r / GROUP, groups, (len, gb), fields);
                for b in 0..cols / 32 {
                    unpack_block(kind, &packed[at..], lay, b, r % GROUP, &mut block);
                    assert_eq!(block, bytes[(r * cols / 32 + b) * bb..][..bb], "{kind:?} ({fields}) row {r} block {b}");
                }
            }
        }
    }
}
