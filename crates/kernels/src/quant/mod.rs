//! GGML block formats on the host: weight matrices held in their file's own bytes, activations quantized per
//! block to the format each weight type's dot product reads, and the kernels (scalar reference and SIMD,
//! chosen at run time) that multiply them.

mod acts;
#[cfg(target_arch = "x86_64")]
mod acts_avx2;
mod kquants;
mod legacy;
mod plain;
#[cfg(target_arch = "x86_64")]
mod plain_avx2;

use std::sync::OnceLock;

use crate::huge::HostBytes;

pub use acts::{ActKind, dequantize_row, quantize_row, quantize_row_reference};
pub use legacy::packed::{GROUP, Lay};

/// The most activation rows one kernel call multiplies against one weight row (prefill tiles by it).
pub const MAX_ROWS: usize = 4;

/// How far past the block it computes a group kernel prefetches the weights it was handed (measured here:
/// one thread decoding over DRAM-resident weights went from 31 to 41–52 GB/s with 8–10 KB; 4 KB gained little,
/// 16 KB less).
pub const PREFETCH_AHEAD: usize = 10 * 1024;

/// A weight format the host kernels run, named as llama.cpp names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum Kind {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::F32,
        Kind::F16,
        Kind::BF16,
        Kind::Q4_0,
        Kind::Q4_1,
        Kind::Q5_0,
        Kind::Q5_1,
        Kind::Q8_0,
        Kind::Q2_K,
        Kind::Q3_K,
        Kind::Q4_K,
        Kind::Q5_K,
        Kind::Q6_K,
    ];

    /// Elements per block and bytes per block, as in the GGUF file.
    pub fn block(self) -> (usize, usize) {
        match self {
            Kind::F32 => (1, 4),
            Kind::F16 | Kind::BF16 => (1, 2),
            Kind::Q4_0 => (32, 18),
            Kind::Q4_1 => (32, 20),
            Kind::Q5_0 => (32, 22),
            Kind::Q5_1 => (32, 24),
            Kind::Q8_0 => (32, 34),
            Kind::Q2_K => (256, 84),
            Kind::Q3_K => (256, 110),
            Kind::Q4_K => (256, 144),
            Kind::Q5_K => (256, 176),
            Kind::Q6_K => (256, 210),
        }
    }

    /// A block-quantized format (not f32, f16 or bf16).
    pub fn is_block(self) -> bool {
        !matches!(self, Kind::F32 | Kind::F16 | Kind::BF16)
    }

    /// The activation format this kind's dot product reads.
    pub fn acts(self) -> ActKind {
        match self {
            Kind::F32 | Kind::F16 | Kind::BF16 => ActKind::F32,
            Kind::Q4_0 | Kind::Q5_0 | Kind::Q8_0 => ActKind::Q8_0,
            Kind::Q4_1 | Kind::Q5_1 => ActKind::Q8_1,
            Kind::Q2_K | Kind::Q3_K | Kind::Q4_K | Kind::Q5_K | Kind::Q6_K => ActKind::Q8_K,
        }
    }

    /// Bytes of one row of `cols` elements; None when `cols` is not whole blocks.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        let (elems, bytes) = self.block();
        cols.is_multiple_of(elems).then_some(cols / elems * bytes)
    }
}

/// `dot(cols, w, acts, out)`: see [`Kernel::dot`].
pub type DotFn = fn(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]);

/// `group(cols, w, lay, acts, out)`: `out[j][i] = Σ_c w_i[c] · acts[j][c]` for the `GROUP` rows `w_i` of
/// one repacked group (`w`: from its first block on, laid out as `lay` says, then any bytes the kernel may
/// prefetch, up to `PREFETCH_AHEAD` past the group; see `Weights::group_reaching`) and 1..=MAX_ROWS activation
/// rows (Q8_0S) per call.
pub type GroupFn = fn(cols: usize, w: &[u8], lay: Lay, acts: &[&[u8]], out: &mut [[f32; GROUP]]);

/// `pair(cols, w, acts, out)`: as `GroupFn` for groups g and g + 1 at once (`w`: both, an interleaved pair or
/// one group after the other as `legacy::packed` places them, then any bytes the kernel may prefetch),
/// `out[j]` group g's rows and `out[n + j]` group g + 1's against activation row `j`, for the `n` activation
/// rows (at most `MAX_ROWS`).
pub type PairFn = fn(cols: usize, w: &[u8], acts: &[&[u8]], out: &mut [[f32; GROUP]]);

/// Every repacked-group kernel this CPU runs for `kind`, named, the one weights use last (empty where the
/// kind does not repack here): tests check each against `reference`.
pub fn group_kernels(kind: Kind) -> Vec<(&'static str, GroupFn)> {
    legacy::group_variants(kind)
}

/// The two-group kernel this CPU runs for `kind` (see `PairFn`), if any: tests check it against the group
/// kernels.
pub fn pair_kernel(kind: Kind) -> Option<PairFn> {
    legacy::pair_variant(kind)
}

/// Whether weights repack into row groups where they can (`TUNEBENCH_REPACK=0` keeps the file's row layout,
/// for comparing the two).
fn repack_wanted() -> bool {
    static WANTED: OnceLock<bool> = OnceLock::new();
    *WANTED.get_or_init(|| std::env::var("TUNEBENCH_REPACK").map_or(true, |v| v.trim() != "0"))
}

/// The kernels of one weight kind.
#[derive(Clone, Copy)]
pub struct Kernel {
    /// `out[j] = Σ_c w[c] · acts[j][c]` for every activation row `j` (1..=MAX_ROWS of them, each quantized
    /// to `kind.acts()`), over `cols` elements; `w` is one weight row in the file's bytes.
    pub dot: DotFn,
    /// One weight row to f32 (`out.len()` elements).
    pub dequantize: fn(w: &[u8], out: &mut [f32]),
}

/// The fastest kernel this CPU runs for `kind` (AVX2 when the CPU has it, else the scalar reference).
pub fn kernel(kind: Kind) -> Kernel {
    static TABLE: OnceLock<Vec<(Kind, Kernel)>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let simd = simd_available();
        Kind::ALL.iter().map(|&k| (k, if simd { fast(k) } else { reference(k) })).collect()
    });
    table.iter().find(|(k, _)| *k == kind).map(|(_, kern)| *kern).unwrap_or_else(|| reference(kind))
}

/// Whether the SIMD kernels can run here (AVX2, FMA and F16C, checked at run time: builds never assume them;
/// every AVX2 CPU has F16C, which the kernels use for the f16 block scales).
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The plain scalar kernel of `kind`: the reference every SIMD kernel is tested against.
pub fn reference(kind: Kind) -> Kernel {
    match kind {
        Kind::F32 | Kind::F16 | Kind::BF16 => plain::reference(kind),
        Kind::Q4_0 | Kind::Q4_1 | Kind::Q5_0 | Kind::Q5_1 | Kind::Q8_0 => legacy::reference(kind),
        Kind::Q2_K | Kind::Q3_K | Kind::Q4_K | Kind::Q5_K | Kind::Q6_K => kquants::reference(kind),
    }
}

/// The SIMD kernel `kernel(kind)` dispatches to when this CPU runs one.
pub fn simd(kind: Kind) -> Option<Kernel> {
    simd_available().then(|| fast(kind))
}

/// Every SIMD kernel this CPU runs for `kind`, named ("avx2", and "avx512vnni" for the legacy formats where
/// the CPU has it): tests and benches check each against `reference`, whichever `kernel` dispatches to.
pub fn simd_kernels(kind: Kind) -> Vec<(&'static str, Kernel)> {
    if !simd_available() {
        return Vec::new();
    }
    match kind {
        Kind::Q4_0 | Kind::Q4_1 | Kind::Q5_0 | Kind::Q5_1 | Kind::Q8_0 => legacy::variants(kind),
        _ => vec![("avx2", fast(kind))],
    }
}

/// The SIMD kernel of `kind`; only called once `simd_available()` said yes.
fn fast(kind: Kind) -> Kernel {
    match kind {
        Kind::F32 | Kind::F16 | Kind::BF16 => plain::fast(kind),
        Kind::Q4_0 | Kind::Q4_1 | Kind::Q5_0 | Kind::Q5_1 | Kind::Q8_0 => legacy::fast(kind),
        Kind::Q2_K | Kind::Q3_K | Kind::Q4_K | Kind::Q5_K | Kind::Q6_K => kquants::fast(kind),
    }
}

/// A weight matrix `[rows, cols]`: in its file's bytes, row-major, each row whole blocks; or, for the legacy
/// formats that repack (Q4_0, Q5_0, Q8_0, rows a multiple of `GROUP`, on a SIMD CPU), the same bytes
/// repacked into groups of `GROUP` rows (see `legacy::packed`).
pub struct Weights {
    pub kind: Kind,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    data: HostBytes,
    kernel: Kernel,
    group: Option<GroupFn>,
    pair: Option<PairFn>,
    /// Pairs interleaved field by field (for the two-group kernel), else block by block (see `legacy::packed`).
    fields: bool,
}

impl Weights {
    /// `bytes` are the tensor's data as GGUF stores it (`[rows, cols]`, `cols` the contiguous dimension);
    /// repacked where that is faster (see the type).
    pub fn new(kind: Kind, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, String> {
        Self::with_layout(kind, rows, cols, bytes, repack_wanted())
    }

    /// As `new`, repacking only when `repack` (and the format, rows and CPU allow it).
    pub fn with_layout(kind: Kind, rows: usize, cols: usize, bytes: &[u8], repack: bool) -> Result<Self, String> {
        Self::packed(kind, rows, cols, bytes, repack, true)
    }

    /// As `with_layout`, repacked as a CPU without the two-group kernel holds them (pairs interleaved block by
    /// block, computed one group at a time), for comparing that layout's group kernels on any CPU.
    pub fn without_pair_kernel(kind: Kind, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, String> {
        Self::packed(kind, rows, cols, bytes, true, false)
    }

    fn packed(kind: Kind, rows: usize, cols: usize, bytes: &[u8], repack: bool, pairs: bool) -> Result<Self, String> {
        let row_bytes = kind
            .row_bytes(cols)
            .ok_or_else(|| format!("{kind:?} rows of {cols} elements are not whole blocks of {}", kind.block().0))?;
        if bytes.len() != rows * row_bytes {
            return Err(format!("{kind:?} [{rows}, {cols}] needs {} bytes, got {}", rows * row_bytes, bytes.len()));
        }
        let group = if repack && rows.is_multiple_of(GROUP) { group_kernels(kind).last().map(|g| g.1) } else { None };
        let pair = group.and_then(|_| pair_kernel(kind)).filter(|_| pairs);
        let fields = pair.is_some();
        // Repacked straight into host memory, not into a vector first and copied.
        let data = HostBytes::filled(bytes.len(), |out| {
            if group.is_none() || !legacy::packed::pack_into(kind, rows, cols, bytes, out, fields) {
                out.copy_from_slice(bytes);
            }
        });
        Ok(Self { kind, rows, cols, row_bytes, data, kernel: kernel(kind), group, pair, fields })
    }

    /// f32 weights `[rows, cols]` held as f32.
    pub fn from_f32(rows: usize, cols: usize, values: &[f32]) -> Result<Self, String> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(Kind::F32, rows, cols, &bytes)
    }

    /// The activation format the kernels read.
    pub fn acts(&self) -> ActKind {
        if self.group.is_some() { ActKind::Q8_0S } else { self.kind.acts() }
    }

    /// Row `r` in the file's bytes; None when the weights are repacked (see `group`).
    pub fn row(&self, r: usize) -> Option<&[u8]> {
        if self.group.is_some() {
            return None;
        }
        self.data.get(r * self.row_bytes..(r + 1) * self.row_bytes)
    }

    /// Groups of `GROUP` rows, and one group's bytes.
    fn groups(&self) -> (usize, usize) {
        (self.rows / GROUP, GROUP * self.row_bytes)
    }

    /// Where group `g`'s first block lies (a paired group's: its pair's) and its layout (see
    /// `legacy::packed::place`), and where its bytes (its pair's) end.
    fn place(&self, g: usize) -> (usize, Lay, usize) {
        let (groups, len) = self.groups();
        let gb = legacy::packed::block_bytes(self.kind).unwrap_or(len);
        let (at, lay) = legacy::packed::place(self.kind, g, groups, (len, gb), self.fields);
        (at, lay, self.bound(g + 1))
    }

    /// The end of the bytes of the groups before `g` (an interleaved pair's end where `g` falls inside it).
    fn bound(&self, g: usize) -> usize {
        let (_, len) = self.groups();
        let g = if legacy::packed::interleaved(self.kind) { g.div_ceil(2) * 2 } else { g };
        (g * len).min(self.data.len())
    }

    /// The repacked group `g` (rows `g·GROUP..`): its bytes from its first block to its pair's end, its
    /// layout, and its kernel; None when the weights are in rows.
    pub fn group(&self, g: usize) -> Option<(&[u8], Lay, GroupFn)> {
        let f = self.group?;
        let (at, lay, end) = self.place(g);
        Some((self.data.get(at..end)?, lay, f))
    }

    /// As `group`, followed by the bytes of the groups before `end`, at most `PREFETCH_AHEAD` of them, which
    /// the kernel prefetches as it computes group `g`.
    pub fn group_reaching(&self, g: usize, end: usize) -> Option<(&[u8], Lay, GroupFn)> {
        let f = self.group?;
        let (at, lay, own) = self.place(g);
        let stop = self.bound(end).min(own + PREFETCH_AHEAD).max(own);
        Some((self.data.get(at..stop)?, lay, f))
    }

    /// As `group_reaching` for groups `g` and `g + 1` together (an interleaved pair: `g` even), with the
    /// kernel that computes both (see `PairFn`); None when the weights are in rows, the CPU has no such
    /// kernel, or `g` does not start a pair.
    pub fn pair_reaching(&self, g: usize, end: usize) -> Option<(&[u8], PairFn)> {
        let f = self.pair?;
        let (groups, _) = self.groups();
        if (g % 2 == 1 && legacy::packed::interleaved(self.kind)) || g + 1 >= groups {
            return None;
        }
        let own = self.bound(g + 2);
        let (at, _, _) = self.place(g);
        let stop = self.bound(end).min(own + PREFETCH_AHEAD).max(own);
        Some((self.data.get(at..stop)?, f))
    }

    /// Asks the caches for the bytes of rows `rows` (their groups', whole pairs).
    pub fn prefetch_rows(&self, rows: std::ops::Range<usize>) {
        if self.group.is_none() || rows.is_empty() {
            return;
        }
        let g = rows.start / GROUP;
        let (first, _, _) = self.place(if legacy::packed::interleaved(self.kind) { g / 2 * 2 } else { g });
        if let Some(bytes) = self.data.get(first..self.bound(rows.end.div_ceil(GROUP))) {
            crate::simd::prefetch(bytes);
        }
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Row `r` as f32 into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let Some((group, lay, _)) = self.group(r / GROUP) else {
            if let Some(row) = self.row(r) {
                (self.kernel.dequantize)(row, out);
            }
            return;
        };
        let (elems, bytes) = self.kind.block();
        let mut block = [0u8; 34];
        for (b, o) in out.chunks_exact_mut(elems).enumerate().take(self.cols / elems) {
            legacy::packed::unpack_block(self.kind, group, lay, b, r % GROUP, &mut block[..bytes]);
            (self.kernel.dequantize)(&block[..bytes], o);
        }
    }
}
