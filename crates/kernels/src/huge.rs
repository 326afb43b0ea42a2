//! Host memory for weights: read-only byte buffers packed into 2 MB-aligned chunks that Linux may back with
//! huge pages (`madvise(MADV_HUGEPAGE)`, honoured where transparent huge pages are `always` or `madvise`).
//! Decode streams every weight byte once a token; in 4 KB pages that is a TLB miss every 64 cache lines and a
//! hardware prefetcher that stops at each page's end. Packing also puts a LoRA's many small factors on a few
//! pages instead of hundreds.

use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

/// A huge page: chunks are aligned to it and sized in whole ones.
const PAGE: usize = 2 << 20;

/// Bytes a chunk holds (more for a buffer larger than that, which gets a chunk of its own).
const CHUNK: usize = 32 << 20;

/// Each buffer starts on a cache line of its own.
const ALIGN: usize = 64;

/// One anonymous mapping buffers are carved from (zeroed by the kernel, each page only when first touched);
/// unmapped when the last of them drops.
struct Chunk {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the chunk's bytes are written only through a range reserved under `OPEN`'s lock by the one buffer
// being built there, before the buffer is handed out; afterwards they are only read.
unsafe impl Send for Chunk {}
// SAFETY: as above.
unsafe impl Sync for Chunk {}

impl Chunk {
    /// At least `size` bytes, 2 MB-aligned and advised for huge pages before any is touched.
    #[cfg(target_os = "linux")]
    fn new(size: usize) -> Option<Self> {
        let len = size.div_ceil(PAGE) * PAGE;
        // SAFETY: a private anonymous mapping at an address of the kernel's choosing; a page more than asked,
        // to cut a 2 MB-aligned range from.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len + PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let aligned = start.div_ceil(PAGE) * PAGE;
        // SAFETY: the unmapped head and tail lie in the mapping just made and outside the kept range; the advice
        // changes no contents, and failing (huge pages off) leaves ordinary pages, so it is ignored.
        unsafe {
            if aligned > start {
                libc::munmap(raw, aligned - start);
            }
            let tail = start + len + PAGE - (aligned + len);
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        Some(Chunk { ptr: NonNull::new(aligned as *mut u8)?, len })
    }

    /// Elsewhere buffers stay plain vectors.
    #[cfg(not(target_os = "linux"))]
    fn new(_size: usize) -> Option<Self> {
        None
    }
}

/// Whether buffers go to huge-page chunks (`TUNEBENCH_HUGE_PAGES=0` keeps plain vectors: fresh chunk memory is
/// touched page by page at load, where a vector may reuse memory the loader freed, and under some hypervisors
/// the first touch of each 2 MB page waits on the host; this trades decode speed for load time).
fn huge_pages_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var("TUNEBENCH_HUGE_PAGES").map_or(true, |v| v.trim() != "0"))
}

impl Drop for Chunk {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        // SAFETY: the range mapped in `new`, unmapped once (the last buffer's Arc drops it).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The chunk new buffers go to and the bytes of it already given out; held weakly, so that a chunk whose
/// buffers all dropped (a model unloaded) is freed at once rather than when the next one opens.
static OPEN: Mutex<Option<(Weak<Chunk>, usize)>> = Mutex::new(None);

/// Read-only bytes in a chunk (or, where no chunk could be had, a plain vector). The slice is kept as a
/// pointer and length beside its owner, so that reading it (every weight group a kernel takes) is no match.
pub struct HostBytes {
    ptr: *const u8,
    len: usize,
    _owner: Owner,
}

/// What keeps a buffer's bytes alive; only dropped, never read.
#[allow(dead_code)]
enum Owner {
    Heap(Vec<u8>),
    Chunk(Arc<Chunk>),
}

// SAFETY: the bytes are never written after the buffer is built, and the owner (a vector, or a chunk that is
// Send and Sync) keeps them alive as long as the buffer.
unsafe impl Send for HostBytes {}
// SAFETY: as above: shared reads only.
unsafe impl Sync for HostBytes {}

impl HostBytes {
    /// `len` bytes written in place by `fill` (handed zeroed bytes), in chunk memory where it can be had: no
    /// copy of a buffer built elsewhere, so a model's load touches its weights' pages once.
    pub fn filled(len: usize, fill: impl FnOnce(&mut [u8])) -> Self {
        if let Some((chunk, at)) = (len > 0).then(|| reserve(len)).flatten() {
            // SAFETY: `at..at + len` lies in the chunk and was reserved for this buffer alone (see `reserve`);
            // ranges are never handed out twice, so it is still the kernel's zeroed memory, valid bytes; no other
            // reference to it exists before this buffer is returned.
            let out = unsafe { std::slice::from_raw_parts_mut(chunk.ptr.as_ptr().add(at), len) };
            fill(out);
            return HostBytes { ptr: out.as_ptr(), len, _owner: Owner::Chunk(chunk) };
        }
        let mut v = vec![0u8; len];
        fill(&mut v);
        HostBytes { ptr: v.as_ptr(), len, _owner: Owner::Heap(v) }
    }

    /// A copy of `bytes`.
    pub fn copy(bytes: &[u8]) -> Self {
        Self::filled(bytes.len(), |out| out.copy_from_slice(bytes))
    }
}

impl Deref for HostBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` was written before the buffer existed and lies in the memory its owner keeps
        // alive (a vector's heap buffer does not move when the vector does); nothing writes it again.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// `len` bytes of chunk memory for one buffer: the open chunk's next free range, or a new chunk's first.
fn reserve(len: usize) -> Option<(Arc<Chunk>, usize)> {
    if !huge_pages_wanted() {
        return None;
    }
    if len > CHUNK / 2 {
        // A large buffer gets a chunk of its own rather than leaving most of the open one unused.
        return Some((Arc::new(Chunk::new(len)?), 0));
    }
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((weak, used)) = open.as_mut()
        && let Some(chunk) = weak.upgrade()
    {
        let at = used.div_ceil(ALIGN) * ALIGN;
        if at + len <= chunk.len {
            *used = at + len;
            return Some((chunk, at));
        }
    }
    let chunk = Arc::new(Chunk::new(CHUNK)?);
    *open = Some((Arc::downgrade(&chunk), len));
    Some((chunk, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_keep_their_bytes_apart_and_outlive_the_open_chunk() {
        let a: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
        let big = vec![7u8; CHUNK / 2 + 1];
        let (ha, hb, hbig) = (HostBytes::copy(&a), HostBytes::copy(&b), HostBytes::copy(&big));
        assert_eq!(&*ha, &a[..]);
        assert_eq!(&*hb, &b[..]);
        assert_eq!(&*hbig, &big[..]);
        if cfg!(target_os = "linux") && huge_pages_wanted() {
            // In chunks: each buffer on its own cache line.
            assert_eq!(ha.as_ptr() as usize % ALIGN, 0);
            assert_eq!(hb.as_ptr() as usize % ALIGN, 0);
        }
        // Filling chunks past their end opens new ones; every buffer keeps its own bytes.
        let many: Vec<HostBytes> = (0..40).map(|i| HostBytes::copy(&vec![i as u8; CHUNK / 16])).collect();
        for (i, h) in many.iter().enumerate() {
            assert!(h.iter().all(|&v| v == i as u8), "buffer {i}");
        }
        drop(many);
        assert_eq!(&*ha, &a[..]);
        assert!(HostBytes::copy(&[]).is_empty());
    }
}
