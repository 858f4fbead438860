//! What both benches share: Go's `b.RunParallel` and the busy work of `CommonParentCancel`.
//!
//! (A module under `benches/common/`, so that Cargo does not take it for a bench of its own.)

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Go's `runtime.GOMAXPROCS(0)`: one worker per available core.
pub fn procs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Go's `b.RunParallel`: splits `iters` over one thread per core, runs `body(n)` on each (it
/// performs `n` iterations), and returns the wall time from the release of all
/// threads to the end of the last one. Thread creation is not timed.
pub fn run_parallel<F>(iters: u64, body: F) -> Duration
where
    F: Fn(u64) + Sync,
{
    let threads = procs();
    let start = Barrier::new(threads);
    let per = iters / threads as u64;
    let extra = iters % threads as u64;
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (start, body) = (&start, &body);
                let n = per + u64::from((t as u64) < extra);
                s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    body(n);
                    (t0, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .collect()
    });
    let first = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let last = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    last - first
}

/// Go's busy work, `for i := 0; i < 100; i++ { x /= x + 1 }`, as Go actually runs it: `x`
/// starts at 0, Go's compiler proves it stays 0 and folds the division away, leaving an *empty*
/// counting loop of 100 iterations (check with `go test -c` and
/// `go tool objdump -s BenchmarkCommonParentCancel.func1`: `INCQ AX; CMPQ AX, $0x64; JL`).
/// Doing 100 real divisions instead would add ~300 ns of work Go does not do and bury the
/// context operations under it. LLVM would delete an empty loop outright, so the counter goes
/// through `black_box`: one store per iteration, about Go's one cycle.
#[inline(always)]
pub fn busy() {
    for i in 0..100u32 {
        black_box(i);
    }
}

/// Hands `p` back through a register the optimiser cannot see through, so that every iteration
/// of a check benchmark loads through it again: the C++ peer's `opaque`
/// (`asm volatile("" : "+r"(p))`, benches/peers/stop_token.cpp). `std::hint::black_box(&ctx)`
/// would do the same through the stack, a store and a reload per iteration that cost about as
/// much as the check itself (issue 14: `ErrOK` 0.81 ns with it, 0.44-0.58 ns without, same
/// library, busy 2-vCPU machine), which neither Go (whose loop keeps `ctx` in a register) nor
/// the C++ peer pays.
///
/// `nomem`, as the C++ block has no memory clobber: the asm reads nothing through `p`, it only
/// hides its value.
#[inline(always)]
#[allow(clippy::pointers_in_nomem_asm_block)]
pub fn opaque<T>(p: &T) -> &T {
    let mut q: *const T = p;
    // SAFETY: an empty asm block that touches no memory: `q` comes back unchanged.
    unsafe {
        core::arch::asm!("/* {0} */", inout(reg) q, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: `q` is `p`, a live reference for the returned lifetime.
    unsafe { &*q }
}

/// Keeps a check's result, in a register, as the C++ peer's `keep` does (an empty asm block
/// that reads it and may touch memory).
#[inline(always)]
pub fn keep_byte(v: u8) {
    // SAFETY: an empty asm block: it only reads the register.
    unsafe {
        core::arch::asm!("/* {0} */", in(reg) usize::from(v), options(nostack, preserves_flags))
    };
}
