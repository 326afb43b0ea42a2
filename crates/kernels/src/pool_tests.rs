//! The pool's tests: every part once per call, the claim order of the runs, panics, nesting and parking.

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
fn a_thread_claims_its_own_run_front_to_back_then_the_rest() {
    // Two threads' runs of parts, no workers: thread 1 alone claims every part, its own run first, so that
    // the rows it computes lie one after another and its prefetch can run on from one part into the next.
    let s = Shared::new(2);
    let order = Mutex::new(Vec::new());
    let job = |part: usize, parts: usize| order.lock().unwrap().push((part, parts));
    let job: &Job<'_> = &job;
    // SAFETY: cleared below, before `job` goes out of scope; only this thread reads it.
    unsafe { *s.job.get() = Some(std::mem::transmute::<*const Job<'_>, *const Job<'static>>(job)) };
    let parts = 2 * PARTS_PER_THREAD;
    s.open(7);
    assert_eq!(s.work(7, parts, 1), parts);
    let want: Vec<(usize, usize)> = (PARTS_PER_THREAD..parts).chain(0..PARTS_PER_THREAD).map(|p| (p, parts)).collect();
    assert_eq!(*order.lock().unwrap(), want);
    assert_eq!(s.done.0.load(Ordering::Relaxed), parts);
    // A thread's run ends where the next begins; the last one at the call's last part.
    assert_eq!(run_parts(0, parts), 0..PARTS_PER_THREAD);
    assert_eq!(run_parts(1, parts), PARTS_PER_THREAD..parts);
    assert_eq!(run_parts(0, 1), 0..1);
    // Nothing is left to claim, and a stale generation claims nothing.
    assert_eq!(s.work(7, parts, 0), 0);
    s.open(8);
    assert_eq!(s.work(7, parts, 0), 0);
    // SAFETY: no thread reads it any more.
    unsafe { *s.job.get() = None };
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
    assert_eq!(parts_run(&pool), pool.parts());
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
    assert_eq!(parts_run(&pool), pool.parts());
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

/// How many parts one call of an empty job runs.
fn parts_run(pool: &Pool) -> usize {
    let done = AtomicUsize::new(0);
    pool.run(&|_, _| {
        done.fetch_add(1, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed)
}
