//! Fuzz harness on stable Rust: generated inputs for every parser that reads what others wrote, checked
//! for panics, hangs and oversized allocations. `cargo test` runs a short pass; `scripts/fuzz` runs 10^6
//! inputs per target (`--cases N`, `--seed S`, target names to pick some).

mod gguf;
mod inputs;
mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One allocation larger than this is a length field trusted without a bound.
const MAX_ALLOC: usize = 512 << 20;
/// One input running longer than this is a hang.
const HANG: Duration = Duration::from_secs(20);

/// The allocator used by the harness: refuses (and reports) any single allocation over `MAX_ALLOC`.
struct Capped;

static CURRENT: Mutex<(&str, Vec<u8>)> = Mutex::new(("", Vec::new()));
static STARTED_MS: AtomicU64 = AtomicU64::new(0);
static BUSY: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() > MAX_ALLOC {
            die(&format_args_size("allocation", l.size()));
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if l.size() > MAX_ALLOC {
            die(&format_args_size("allocation", l.size()));
        }
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > MAX_ALLOC {
            die(&format_args_size("reallocation", new));
        }
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;

/// "allocation of N bytes" without allocating (this runs inside the allocator).
fn format_args_size(what: &'static str, n: usize) -> [u8; 64] {
    let mut out = [b' '; 64];
    let mut w = &mut out[..];
    let _ = write!(w, "{what} of {n} bytes");
    out
}

/// Reports the input being run and stops the process (an allocation or a hang cannot be unwound).
fn die(msg: &[u8]) -> ! {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"\nFUZZ FAILURE: ");
    let _ = err.write_all(msg);
    if let Ok(cur) = CURRENT.try_lock() {
        let _ = write!(err, "\ntarget {}, input ({} bytes): ", cur.0, cur.1.len());
        for &b in cur.1.iter().take(4000) {
            let _ = err.write_all(&std::ascii::escape_default(b).collect::<Vec<u8>>());
        }
    }
    let _ = err.write_all(b"\n");
    std::process::abort()
}

fn now_ms() -> u64 {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_millis() as u64
}

struct Args {
    cases: u64,
    seed: u64,
    only: Vec<String>,
}

fn args() -> Args {
    let mut a = Args { cases: 300, seed: 1, only: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--cases" => a.cases = it.next().and_then(|v| v.parse().ok()).expect("--cases N"),
            "--seed" => a.seed = it.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            // What cargo's test runner passes along (e.g. --nocapture, --quiet) means nothing here.
            s if s.starts_with('-') => {}
            s => a.only.push(s.to_string()),
        }
    }
    a
}

fn main() {
    let a = args();
    // Panics are counted and reported per input; FUZZ_VERBOSE=1 prints each one where it happens.
    let verbose = std::env::var_os("FUZZ_VERBOSE").is_some();
    std::panic::set_hook(Box::new(move |info| {
        if verbose {
            eprintln!("panic: {info}");
        }
    }));
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if BUSY.load(Ordering::Relaxed) && now_ms() - STARTED_MS.load(Ordering::Relaxed) > HANG.as_millis() as u64 {
                die(b"hang (one input ran past 20 s)");
            }
        }
    });
    targets::check_seeds();
    let mut failed = 0;
    for t in targets::all() {
        if !a.only.is_empty() && !a.only.iter().any(|o| o == t.name) {
            continue;
        }
        let mut g = inputs::Gen::new(a.seed ^ inputs::hash(t.name.as_bytes()));
        let started = Instant::now();
        let (mut slowest, mut slow_len, mut bytes) = (Duration::ZERO, 0, 0u64);
        let mut panics = 0;
        for _ in 0..a.cases {
            let input = (t.generate)(&mut g);
            bytes += input.len() as u64;
            {
                let mut cur = CURRENT.lock().unwrap();
                cur.0 = t.name;
                cur.1.clear();
                cur.1.extend_from_slice(&input);
            }
            let one = Instant::now();
            STARTED_MS.store(now_ms(), Ordering::Relaxed);
            BUSY.store(true, Ordering::Relaxed);
            let r = catch_unwind(AssertUnwindSafe(|| (t.run)(&input)));
            BUSY.store(false, Ordering::Relaxed);
            let took = one.elapsed();
            if took > slowest {
                (slowest, slow_len) = (took, input.len());
            }
            if let Err(p) = r {
                panics += 1;
                if panics <= 3 {
                    let msg =
                        p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    eprintln!(
                        "PANIC in {}: {}\n  input: {:?}",
                        t.name,
                        msg.unwrap_or_default(),
                        String::from_utf8_lossy(&input)
                    );
                }
            }
        }
        failed += panics;
        println!(
            "{:<16} {:>9} inputs  {:>8.1} s  mean {:>6} B  slowest {:>8.2} ms ({} B)  panics {panics}",
            t.name,
            a.cases,
            started.elapsed().as_secs_f64(),
            bytes / a.cases.max(1),
            slowest.as_secs_f64() * 1000.0,
            slow_len
        );
    }
    if failed > 0 {
        eprintln!("{failed} input(s) panicked");
        std::process::exit(1);
    }
}
