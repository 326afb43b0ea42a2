//! A persistent thread pool for the host forward pass: one call splits a job into `parts`, which the caller
//! and the workers claim one at a time, so a worker the machine has descheduled never holds a call up (the
//! caller takes its parts). Workers spin briefly between calls so that the hundreds of small calls a decoded
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

/// Parts per thread in a call: claimed one at a time, several per thread even out a thread that starts late
/// or runs slow.
const PARTS_PER_THREAD: usize = 4;

/// `state` packs the call's generation (high 32 bits) and the next unclaimed part (low 32 bits), so a claim
/// can never take a part of a later call than the one whose job the claimer read.
fn pack(generation: u64, next: u64) -> u64 {
    (generation << 32) | next
}

struct Shared {
    /// The current call's job, published by the `state` store that starts the call; replaced only after every
    /// part of the call finished.
    job: UnsafeCell<Option<*const Job<'static>>>,
    /// Generation and next part of the current call (see `pack`).
    state: AtomicU64,
    /// Parts of the current call finished.
    done: AtomicUsize,
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
    /// Claims and runs parts of generation `generation` until none is left; returns how many it ran.
    fn work(&self, generation: u64, parts: usize) -> usize {
        let mut ran = 0;
        loop {
            let s = self.state.load(Ordering::Acquire);
            let next = s & 0xffff_ffff;
            if s >> 32 != generation || next as usize >= parts {
                return ran;
            }
            if self.state.compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
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
            self.done.fetch_add(1, Ordering::Release);
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
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(None),
            state: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            panic: Mutex::new(None),
            stop: AtomicBool::new(false),
            parts: AtomicUsize::new(1),
        });
        let mut handles = Vec::new();
        for part in 1..threads {
            let s = shared.clone();
            let spawned = std::thread::Builder::new().name(format!("tunebench-host-{part}")).spawn(move || worker(&s));
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
        s.done.store(0, Ordering::Relaxed);
        s.state.store(pack(generation, 0), Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        s.work(generation, parts);
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) != parts {
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

fn worker(s: &Shared) {
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
        s.work(generation, s.parts.load(Ordering::Acquire));
    }
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
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_part_runs_once_per_call_over_many_calls() {
        let pool = Pool::new(2);
        let counts: Vec<AtomicUsize> = (0..pool.parts()).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..2000 {
            pool.run(&|part, parts| {
                assert_eq!(parts, pool.parts());
                counts[part].fetch_add(1, Ordering::Relaxed);
            });
        }
        for c in &counts {
            assert_eq!(c.load(Ordering::Relaxed), 2000);
        }
    }

    #[test]
    fn a_panic_in_a_worker_part_reaches_the_caller_and_the_pool_still_works() {
        let pool = Pool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|part, _| {
                if part == 1 {
                    panic!("part one fails");
                }
            })
        }));
        let p = r.expect_err("the panic propagates");
        assert_eq!(p.downcast_ref::<&str>(), Some(&"part one fails"));
        let r = catch_unwind(AssertUnwindSafe(|| pool.run(&|part, _| assert!(part != 0, "part zero fails"))));
        assert!(r.is_err());
        let done = AtomicUsize::new(0);
        pool.run(&|_, _| {
            done.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(done.load(Ordering::Relaxed), pool.parts());
    }

    #[test]
    fn a_nested_call_runs_inline_instead_of_deadlocking() {
        let pool = Pool::new(2);
        let inner = AtomicUsize::new(0);
        pool.run(&|_, _| {
            pool.run(&|_, _| {
                inner.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(inner.load(Ordering::Relaxed), pool.parts() * pool.parts());
    }

    #[test]
    fn parked_workers_wake_for_the_next_call() {
        let pool = Pool::new(2);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let done = AtomicUsize::new(0);
        pool.run(&|_, _| {
            done.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(done.load(Ordering::Relaxed), pool.parts());
    }

    #[test]
    fn split_covers_the_range_in_aligned_disjoint_pieces() {
        for (n, parts, align) in [(0, 2, 4), (1, 2, 4), (37, 2, 4), (576, 3, 8), (49152, 2, 16), (5, 4, 1)] {
            let mut next = 0;
            for p in 0..parts {
                let r = split(n, p, parts, align);
                assert_eq!(r.start, next, "n {n} parts {parts}");
                assert!(r.start.is_multiple_of(align) || r.start == n);
                next = r.end;
            }
            assert_eq!(next, n);
        }
    }
}
