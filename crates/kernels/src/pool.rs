//! A persistent thread pool for the host forward pass: one call splits a job into `parts`, each thread owning
//! a run of consecutive parts that it claims one at a time front to back (so a matmul's rows stream past each
//! thread in one piece), then claiming what is left of the others' runs, so a worker the machine has
//! descheduled never holds a call up (the caller takes its parts). Workers spin briefly between calls so that the hundreds of small calls a decoded
//! token makes cost well under a microsecond each, then park so an idle pool costs nothing.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;

/// A job: called once per part with `(part, parts)`.
pub type Job<'a> = dyn Fn(usize, usize) + Sync + 'a;

/// Spins a worker makes looking for the next call before it parks: longer than the gap between two calls of
/// one token, short enough not to steal a loaded machine's cores for long.
const SPINS: u32 = 1 << 14;

/// Spins the caller makes waiting for a worker's claimed part before it yields its core (a worker descheduled
/// by an oversubscribed machine then gets it sooner).
const WAIT_SPINS: u32 = 1 << 10;

/// Parts per thread in a call (its run): claimed one at a time, several per thread even out a thread that
/// starts late or runs slow.
const PARTS_PER_THREAD: usize = 4;

/// A run's claim word packs the call's generation (high 32 bits) and the run's next unclaimed part (low 32
/// bits), so a claim can never take a part of a later call than the one whose job the claimer read.
fn pack(generation: u64, next: u64) -> u64 {
    (generation << 32) | next
}

/// A value on a cache line pair of its own, so that threads writing neighbouring values do not take the line
/// from each other (the adjacent-line prefetcher fetches pairs).
#[repr(align(128))]
struct Line<T>(T);

struct Shared {
    /// The current call's job, published by the `state` store that starts the call; replaced only after every
    /// part of the call finished.
    job: UnsafeCell<Option<*const Job<'static>>>,
    /// The current call's generation (high 32 bits, see `pack`), which workers watch for.
    state: AtomicU64,
    /// Per thread (the caller first), the generation and next unclaimed part of its own run of parts.
    ranges: Box<[Line<AtomicU64>]>,
    /// Parts of the current call finished, counted once per thread and call.
    done: Line<AtomicUsize>,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    stop: AtomicBool,
    /// Parts per call: the workers started plus the caller (set once, before the first call).
    parts: AtomicUsize,
}

// SAFETY: `job` is written only by the caller holding `Pool::busy`, between calls (every part of the previous
// call done, the next generation not yet published), and read only by a thread that has claimed a part of
// the current generation (which the caller waits for); the pointee is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

impl Shared {
    fn new(threads: usize) -> Self {
        Shared {
            job: UnsafeCell::new(None),
            state: AtomicU64::new(0),
            ranges: (0..threads.max(1)).map(|_| Line(AtomicU64::new(0))).collect(),
            done: Line(AtomicUsize::new(0)),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            panic: Mutex::new(None),
            stop: AtomicBool::new(false),
            parts: AtomicUsize::new(1),
        }
    }

    /// Opens generation `generation`'s parts to claims: thread `t`'s run starts at `t · PARTS_PER_THREAD`.
    /// Published to the workers by the `state` store after it.
    fn open(&self, generation: u64) {
        self.done.0.store(0, Ordering::Relaxed);
        for (t, r) in self.ranges.iter().enumerate() {
            r.0.store(pack(generation, (t * PARTS_PER_THREAD) as u64), Ordering::Relaxed);
        }
    }

    /// Claims and runs parts of generation `generation` until none is left, its own run first (thread `me`),
    /// then the rest of the others' runs; returns how many it ran.
    fn work(&self, generation: u64, parts: usize, me: usize) -> usize {
        let threads = parts.div_ceil(PARTS_PER_THREAD).min(self.ranges.len()).max(1);
        let mut ran = 0;
        for t in (0..threads).map(|i| (me + i) % threads) {
            ran += self.claim(&self.ranges[t].0, generation, run_parts(t, parts).end, parts);
        }
        if ran > 0 {
            self.done.0.fetch_add(ran, Ordering::Release);
        }
        ran
    }

    /// Claims and runs the parts of one run, `range`'s next up to `end`, while they are of `generation`.
    fn claim(&self, range: &AtomicU64, generation: u64, end: usize, parts: usize) -> usize {
        let mut ran = 0;
        loop {
            let s = range.load(Ordering::Acquire);
            let next = s & 0xffff_ffff;
            if s >> 32 != generation || next as usize >= end {
                return ran;
            }
            if range.compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
                continue;
            }
            // SAFETY: a part of this generation is claimed and not yet counted done, so the caller has not
            // returned and the job it published for this generation is alive.
            let job = unsafe { *self.job.get() };
            if let Some(job) = job {
                // SAFETY: as above.
                let job = unsafe { &*job };
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| job(next as usize, parts))) {
                    let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                    slot.get_or_insert(p);
                }
            }
            ran += 1;
        }
    }
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    /// Held for the length of a call; a second caller meanwhile (another thread, or a job calling `run`)
    /// runs its parts itself rather than waiting.
    busy: Mutex<()>,
    handles: Vec<JoinHandle<()>>,
    generation: AtomicU64,
}

impl Pool {
    /// A pool of `threads` (≥ 1) including the caller: `threads - 1` workers.
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let shared = Arc::new(Shared::new(threads));
        let mut handles = Vec::new();
        for part in 1..threads {
            let s = shared.clone();
            let spawned =
                std::thread::Builder::new().name(format!("tunebench-host-{part}")).spawn(move || worker(&s, part));
            match spawned {
                Ok(h) => handles.push(h),
                // Fewer threads than asked still computes everything (the parts follow the workers started).
                Err(_) => break,
            }
        }
        let threads = handles.len() + 1;
        shared.parts.store(if threads == 1 { 1 } else { threads * PARTS_PER_THREAD }, Ordering::SeqCst);
        Self { shared, threads, busy: Mutex::new(()), handles, generation: AtomicU64::new(0) }
    }

    /// The end of the run of parts `part` belongs to: its thread claims the parts up to it one after another.
    pub fn run_end(&self, part: usize) -> usize {
        run_parts(part / PARTS_PER_THREAD, self.parts()).end
    }

    /// Threads a call runs on, the caller's included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Parts a call is split into (a few per thread; one on a single thread).
    pub fn parts(&self) -> usize {
        if self.threads == 1 { 1 } else { self.threads * PARTS_PER_THREAD }
    }

    /// Runs `job(part, parts)` for every part in `0..parts` (parts = `parts()`), the caller and the workers
    /// claiming parts in turn, and returns when all are done. A panic in any part is raised again here, after
    /// every part finished.
    pub fn run(&self, job: &Job<'_>) {
        let parts = self.parts();
        let guard = match self.busy.try_lock() {
            Ok(g) => g,
            Err(_) => {
                // Busy (another thread's call, or a nested one): the same parts, in turn, on this thread.
                for p in 0..parts {
                    job(p, parts);
                }
                return;
            }
        };
        if parts == 1 {
            job(0, 1);
            return;
        }
        let s = &*self.shared;
        // Generations wrap at 2^32; a worker's stale generation is at most one call old, never 2^32.
        let generation = (self.generation.fetch_add(1, Ordering::Relaxed) + 1) & 0xffff_ffff;
        // SAFETY: only the lifetime is erased; the pointer is cleared before this call returns, and it is
        // dereferenced only by a thread holding a claimed, unfinished part of this call, which this call waits
        // out before returning (even when a part panics).
        let ptr: *const Job<'static> = unsafe { std::mem::transmute::<*const Job<'_>, *const Job<'static>>(job) };
        // SAFETY: no thread reads `job` now: every part of the previous call finished, and this call's
        // generation is published only below.
        unsafe { *s.job.get() = Some(ptr) };
        s.open(generation);
        s.state.store(pack(generation, 0), Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        s.work(generation, parts, 0);
        let mut spins = 0u32;
        while s.done.0.load(Ordering::Acquire) != parts {
            spins += 1;
            if spins < WAIT_SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        // SAFETY: every part finished; none reads `job` until the next generation is published.
        unsafe { *s.job.get() = None };
        let panic = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(guard);
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(s: &Shared, me: usize) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        let generation = loop {
            if s.stop.load(Ordering::Relaxed) {
                return;
            }
            let g = s.state.load(Ordering::Acquire) >> 32;
            if g != seen {
                break g;
            }
            spins += 1;
            if spins < SPINS {
                std::hint::spin_loop();
                continue;
            }
            // Park: counted as a sleeper before the last look, so a caller publishing a call either is seen
            // here or sees the sleeper and notifies under the lock.
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            let mut l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            while s.state.load(Ordering::SeqCst) >> 32 == seen && !s.stop.load(Ordering::SeqCst) {
                l = s.wake.wait(l).unwrap_or_else(|e| e.into_inner());
            }
            drop(l);
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            spins = 0;
        };
        seen = generation;
        // Read per call, not at spawn: `new` sets it after starting every worker.
        s.work(generation, s.parts.load(Ordering::Acquire), me);
    }
}

/// The parts of thread `t`'s run: `PARTS_PER_THREAD` of them from `t · PARTS_PER_THREAD`, the last run up to
/// `parts`.
fn run_parts(t: usize, parts: usize) -> std::ops::Range<usize> {
    let start = (t * PARTS_PER_THREAD).min(parts);
    let last = t + 1 >= parts.div_ceil(PARTS_PER_THREAD);
    start..if last { parts } else { start + PARTS_PER_THREAD }
}

/// Threads for the host engine: `TUNEBENCH_THREADS`, else `RAYON_NUM_THREADS` (benchmarks set it for both
/// engines), else every core.
pub fn threads_from_env() -> usize {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n > 0);
    var("TUNEBENCH_THREADS")
        .or_else(|| var("RAYON_NUM_THREADS"))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The process's host pool, started on first use with `threads_from_env()` threads.
pub fn global() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(threads_from_env()))
}

/// The `part`-th of `parts` near-equal ranges of `0..n`, each start a multiple of `align` (the last takes
/// the rest), so parts never share a cache line of output or split a tile.
pub fn split(n: usize, part: usize, parts: usize, align: usize) -> std::ops::Range<usize> {
    let align = align.max(1);
    let units = n.div_ceil(align);
    let (per, extra) = (units / parts, units % parts);
    let start = part * per + part.min(extra);
    let end = start + per + usize::from(part < extra);
    (start * align).min(n)..(end * align).min(n)
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
