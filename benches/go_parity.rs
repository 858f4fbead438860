//! Go's own `context` benchmarks (`go/src/context/benchmark_test.go`), one for one, under the same
//! names, so that `cargo bench --bench go_parity -- --output-format bencher` lines up with
//! `../shared/tools/go-bench` line by line (`BenchmarkCancelTree/depth=1/Root=OpenCanceler-2` ↔
//! `CancelTree/depth=1/Root=OpenCanceler`).
//!
//! Every benchmark does the work its Go counterpart does, translated to ctxtree's API:
//! `WithCancel` → [`Context::with_cancel`], `cancel()` → dropping (or calling) the [`Canceler`],
//! `Err()` → [`Context::err`], `select { case <-Done(): default: }` → [`Context::is_done`],
//! `Value(k)` → [`Context::value`], `WithTimeout` → [`Context::with_timeout`].
//!
//! The core benches use a `static` [`Arena`] (no clock: nothing here reads one); `WithTimeout` uses
//! the `std` global arena behind [`ctxtree::background`], whose clock is the OS monotonic clock,
//! as Go's `Background()` + `time.Hour` timers are; so does `TimerChurn` (no Go counterpart: the
//! cost of a watched deadline in the global arena's timer thread).
//!
//! Go's `b.RunParallel` runs `GOMAXPROCS` goroutines that share `b.N` iterations and reports
//! wall time / `b.N`. [`run_parallel`] does the same with one OS thread per available core: each
//! thread does its share of the iterations, and the figure is the wall time from the moment all
//! threads are released until the last one finishes, divided by the total iteration count.
//! Parallel benchmarks take few, long samples so that the thread start-up skew (microseconds)
//! is negligible against each sample.
//!
//! Sub-nanosecond results print as `0 ns/iter` in criterion's `bencher` format (it prints whole
//! nanoseconds); the default format, or `target/criterion/<id>/new/estimates.json`, has the
//! fractions.

mod common;

use ctxtree::Child;
use std::hint::black_box;
use std::time::Duration;

use common::{busy, keep_byte, opaque, procs, run_parallel};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use ctxtree::{Arena, Canceler, Context, Key};

/// Nodes enough for the deepest tree (`CancelTree/depth=1000` plus its root) and every other
/// benchmark's setup, with room to spare.
static ARENA: Arena<2048> = Arena::new();

/// Go: `WithValue(Background(), "key", "value")` in `CommonParentCancel`.
static KEY: Key<&'static str> = Key::new("key");

/// Go's `DeepValue*` keys are the ints `0..depth`; a ctxtree key is a `static` (its address is
/// its identity), so the chain uses one distinct key per level.
static DEEP_KEYS: [Key<i64>; 100] = [const { Key::new("deep") }; 100];
/// Go looks up `-1`, a key no level binds.
static MISSING: Key<i64> = Key::new("missing");

/// Samples per parallel benchmark (criterion's default is 100): see the module docs.
const PARALLEL_SAMPLES: usize = 20;

const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------------
// ErrOK, ErrCanceled, CheckCanceled
// ---------------------------------------------------------------------------------------------

/// Go: `ctx, cancel := WithCancel(Background()); defer cancel(); for b.Loop() { if ctx.Err() != nil { b.Fatal } }`.
fn err_ok(c: &mut Criterion) {
    let Child {
        ctx,
        cancel: _cancel,
    } = ARENA.background().with_cancel().expect("arena");
    c.bench_function("ErrOK", |b| {
        b.iter(|| {
            if opaque(&ctx).err().is_some() {
                panic!("ctx.err() = {:?}", ctx.err());
            }
        })
    });
}

/// Go: `ctx, cancel := WithCancel(Background()); cancel(); for b.Loop() { if ctx.Err() == nil { b.Fatal } }`.
fn err_canceled(c: &mut Criterion) {
    let Child { ctx, cancel } = ARENA.background().with_cancel().expect("arena");
    cancel.cancel();
    c.bench_function("ErrCanceled", |b| {
        b.iter(|| {
            if opaque(&ctx).err().is_none() {
                panic!("ctx.err() = None");
            }
        })
    });
}

/// Go: on a cancelled context, `Err` runs `ctx.Err()`, `Done` runs a non-blocking receive
/// from `ctx.Done()` (here `is_done()`). Go discards the results; `keep_byte` keeps them (the
/// whole `Option<Error>` of `err()`, as a byte).
///
/// The check benches hand the context through [`opaque`] (a register), as the C++ peer does,
/// not `black_box(&ctx)` (the stack): see `common::opaque`.
fn check_canceled(c: &mut Criterion) {
    let Child { ctx, cancel } = ARENA.background().with_cancel().expect("arena");
    cancel.cancel();
    let mut g = c.benchmark_group("CheckCanceled");
    g.bench_function("Err", |b| {
        b.iter(|| keep_byte(opaque(&ctx).err().map_or(0, |e| e as u8 + 1)))
    });
    g.bench_function("Done", |b| {
        b.iter(|| keep_byte(opaque(&ctx).is_done().into()))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// CancelTree
// ---------------------------------------------------------------------------------------------

/// Go's `buildContextTree`: `for d := 0; d < depth; d++ { root, _ = WithCancel(root) }`.
///
/// The Rust trap: Go *discards* each cancel func and the tree stays `depth` deep until the
/// garbage collector finds it (the children stay registered in their parents' `children`
/// maps, so a later `cancel()` of the root still walks all of them). A dropped ctxtree
/// `Canceler` cancels at once, which would leave a tree of depth 1. So the cancelers are kept
/// in `keep` (capacity reserved outside the timed loop: no allocation) until the end of the
/// iteration, and the caller drops them *inside* the timed loop: their release is the work Go's
/// collector does later, and Go's figure includes that collector's cost too. The intermediate
/// `Context` handles can go at once, as in Go (a child pins its parent).
#[inline(always)]
fn build_context_tree<'a>(root: Context<'a>, depth: usize, keep: &mut Vec<Canceler<'a>>) {
    let mut root = root;
    for _ in 0..depth {
        let Child { ctx: child, cancel } = root
            .with_cancel()
            .expect("arena sized for the deepest tree");
        keep.push(cancel);
        root = child;
    }
}

/// Releases the cancelers kept by [`build_context_tree`], innermost first (the order of nested
/// `defer cancel()`s; each drop is then a leaf cancel plus the release of one node).
#[inline(always)]
fn release(keep: &mut Vec<Canceler<'_>>) {
    while let Some(c) = keep.pop() {
        drop(c);
    }
}

fn cancel_tree(c: &mut Criterion) {
    // Per-thread free-slot caches, as the global arena has them (a `static` arena may opt in).
    let _ = ARENA.enable_thread_caches();
    let mut keep: Vec<Canceler<'static>> = Vec::with_capacity(1000);
    let mut g = c.benchmark_group("CancelTree");
    for depth in [1usize, 10, 100, 1000] {
        // Go: `for i := 0; i < b.N; i++ { buildContextTree(Background(), d) }`.
        g.bench_function(format!("depth={depth}/Root=Background"), |b| {
            b.iter(|| {
                build_context_tree(ARENA.background(), depth, &mut keep);
                release(&mut keep);
            })
        });
        // Go: `ctx, cancel := WithCancel(Background()); buildContextTree(ctx, d); cancel()`.
        // Dropping the root's canceler is Rust's `cancel()`: it cancels the whole
        // `depth`-deep tree before returning (and releases the root's handle).
        g.bench_function(format!("depth={depth}/Root=OpenCanceler"), |b| {
            b.iter(|| {
                let Child { ctx, cancel } = ARENA.background().with_cancel().expect("arena");
                build_context_tree(ctx, depth, &mut keep);
                drop(cancel);
                release(&mut keep);
            })
        });
        // Go: `ctx, cancel := WithCancel(Background()); cancel(); buildContextTree(ctx, d)`:
        // every child is born cancelled.
        g.bench_function(format!("depth={depth}/Root=ClosedCanceler"), |b| {
            b.iter(|| {
                let Child { ctx, cancel } = ARENA.background().with_cancel().expect("arena");
                cancel.cancel();
                build_context_tree(ctx, depth, &mut keep);
                release(&mut keep);
                drop(cancel);
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// CommonParentCancel (parallel)
// ---------------------------------------------------------------------------------------------

/// Go:
/// ```go
/// root := WithValue(Background(), "key", "value")
/// shared, sharedcancel := WithCancel(root)
/// b.RunParallel(func(pb *testing.PB) {
///     x := 0
///     for pb.Next() {
///         ctx, cancel := WithCancel(shared)
///         if ctx.Value("key").(string) != "value" { b.Fatal() }
///         for i := 0; i < 100; i++ { x /= x + 1 }
///         cancel()
///         for i := 0; i < 100; i++ { x /= x + 1 }
///     }
/// })
/// ```
/// All cores create and cancel children of one shared parent: the contended path is the
/// parent's child list. The busy loops are what Go's compiler makes of them: see [`busy`]. Dropping the `Canceler` is `cancel()`; the child's `Context` handle is
/// dropped at the end of the iteration (Go leaves it to the collector).
fn common_parent_cancel(c: &mut Criterion) {
    // As in `cancel_tree`.
    let _ = ARENA.enable_thread_caches();
    let root = ARENA.background().with_value(&KEY, "value").expect("arena");
    let Child {
        ctx: shared,
        cancel: _shared_cancel,
    } = root.with_cancel().expect("arena");
    c.bench_function("CommonParentCancel", |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                for _ in 0..n {
                    let Child { ctx, cancel } = shared.with_cancel().expect("arena");
                    if ctx.value(&KEY) != Some("value") {
                        panic!("should not be reached");
                    }
                    busy();
                    drop(cancel);
                    busy();
                    drop(ctx);
                }
            })
        })
    });
}

// ---------------------------------------------------------------------------------------------
// WithTimeout (parallel, global arena)
// ---------------------------------------------------------------------------------------------

/// Go's `benchmarkWithTimeout(b, concurrency)`: first, spread over `GOMAXPROCS` goroutines,
/// `concurrency` contexts with a one-hour timeout are made on `Background()` and kept (their
/// cancel funcs are kept; the contexts are not needed). Then, in parallel on all cores, each
/// iteration makes 10 one-hour timeouts and cancels them. Afterwards (untimed) everything is
/// cancelled.
///
/// ctxtree: the same on the `std` global arena (`ctxtree::background()`, real clock). The
/// returned `Context`s are dropped at once, as Go discards them; the `Canceler`s are kept, and
/// dropping one is Go's `f()`.
fn with_timeout(c: &mut Criterion) {
    let mut g = c.benchmark_group("WithTimeout");
    g.sampling_mode(SamplingMode::Flat);
    for concurrency in [40usize, 4_000, 400_000] {
        let per_p = concurrency / procs();
        let pre: Vec<Vec<Canceler<'static>>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..procs())
                .map(|_| {
                    s.spawn(move || {
                        (0..per_p)
                            .map(|_| {
                                let Child { ctx: _ctx, cancel } = ctxtree::background()
                                    .with_timeout(HOUR)
                                    .expect("global arena");
                                cancel
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("setup")).collect()
        });
        g.bench_function(format!("concurrency={concurrency}"), |b| {
            b.iter_custom(|iters| {
                run_parallel(iters, |n| {
                    let bg = ctxtree::background();
                    let mut wcf: [Option<Canceler<'static>>; 10] = [const { None }; 10];
                    for _ in 0..n {
                        for f in wcf.iter_mut() {
                            let Child { ctx: _ctx, cancel } =
                                bg.with_timeout(HOUR).expect("global arena");
                            *f = Some(cancel);
                        }
                        for f in wcf.iter_mut() {
                            drop(f.take());
                        }
                    }
                })
            })
        });
        drop(pre);
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// TimerChurn (global arena: the std timer)
// ---------------------------------------------------------------------------------------------

/// Polls `ctx.done()` once: the first poll of a pending `done()` future watches the deadline
/// (the global arena's deadline hook hands it to the timer thread).
fn watch_once(ctx: &Context<'_>) {
    let mut done = std::pin::pin!(ctx.done());
    let cx = &mut std::task::Context::from_waker(std::task::Waker::noop());
    black_box(std::future::Future::poll(done.as_mut(), cx).is_pending());
}

/// No Go counterpart (Go's `WithTimeout` starts a runtime timer for every context; ctxtree only
/// for a context somebody waits on): one iteration makes a one-hour timeout on the global
/// arena, watches it (polls `done()` once, which registers its deadline with the timer thread)
/// and releases it (drops both handles: cancels it, and the timer drops its entry). `unwatched`
/// leaves out the poll, `polled_without_deadline` polls a `with_cancel` context (no timer
/// involved): the differences are the cost of the `done()` poll and of the timer alone;
/// `pending=100000` runs with 10⁵ watched one-hour timeouts pending in the timer.
fn timer_churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("TimerChurn");
    let bg = ctxtree::background();
    g.bench_function("unwatched", |b| {
        b.iter(|| {
            let Child { ctx, cancel } = bg.with_timeout(HOUR).expect("global arena");
            drop(black_box((ctx, cancel)));
        })
    });
    g.bench_function("polled_without_deadline", |b| {
        b.iter(|| {
            let Child { ctx, cancel } = bg.with_cancel().expect("global arena");
            watch_once(&ctx);
            drop((ctx, cancel));
        })
    });
    for pending in [0usize, 100_000] {
        let held: Vec<_> = (0..pending)
            .map(|_| {
                let Child { ctx, cancel } = bg.with_timeout(HOUR).expect("global arena");
                watch_once(&ctx);
                (ctx, cancel)
            })
            .collect();
        g.bench_function(format!("pending={pending}"), |b| {
            b.iter(|| {
                let Child { ctx, cancel } = bg.with_timeout(HOUR).expect("global arena");
                watch_once(&ctx);
                drop((ctx, cancel));
            })
        });
        drop(held);
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// DeepValueSameGoRoutine
// ---------------------------------------------------------------------------------------------

/// Go: `ctx := Background(); for i := 0; i < depth; i++ { ctx = WithValue(ctx, i, i) }`, then
/// `for i := 0; i < b.N; i++ { ctx.Value(-1) }`: a lookup that walks the whole chain and misses.
fn deep_value_same_goroutine(c: &mut Criterion) {
    let mut g = c.benchmark_group("DeepValueSameGoRoutine");
    for depth in [10usize, 20, 30, 50, 100] {
        let mut ctx = ARENA.background();
        for (i, key) in DEEP_KEYS.iter().enumerate().take(depth) {
            ctx = ctx.with_value(key, i as i64).expect("arena");
        }
        g.bench_function(format!("depth={depth}"), |b| {
            b.iter(|| black_box(black_box(&ctx).value(&MISSING)))
        });
        // The limit of the O(1) miss: a key that some other context binds (not one on this
        // path) is looked up by walking the chain, as in Go.
        let elsewhere = ARENA
            .background()
            .with_value(&BOUND_ELSEWHERE, 1)
            .expect("arena");
        assert_eq!(ctx.value(&BOUND_ELSEWHERE), None);
        g.bench_function(format!("bound_elsewhere/depth={depth}"), |b| {
            b.iter(|| black_box(black_box(&ctx).value(&BOUND_ELSEWHERE)))
        });
        drop(elsewhere);
    }
    g.finish();
}

/// A key bound on a context off the `DeepValueSameGoRoutine` chains.
static BOUND_ELSEWHERE: Key<i64> = Key::new("bound elsewhere");

// ---------------------------------------------------------------------------------------------
// DeepValueMiss (not in Go's suite)
// ---------------------------------------------------------------------------------------------

/// One distinct key per level of the `DeepValueMiss` chains.
static MISS_KEYS: [Key<i64>; 1000] = [const { Key::new("miss") }; 1000];

/// Issue 14: `DeepValueSameGoRoutine` at depth 1000. A chain of `depth` values (one key per
/// level, as Go's `WithValue(ctx, i, i)`), then `ctx.value(&MISSING)`: a key bound nowhere on
/// the path. Go's lookup, and ctxtree 0.1's, walk the whole chain; the target is O(1) whatever
/// the depth (≤ 10 ns at depth 1000), so the depths show the slope.
fn deep_value_miss(c: &mut Criterion) {
    let mut g = c.benchmark_group("DeepValueMiss");
    for depth in [10usize, 100, 1000] {
        let mut ctx = ARENA.background();
        for (i, key) in MISS_KEYS.iter().enumerate().take(depth) {
            ctx = ctx.with_value(key, i as i64).expect("arena");
        }
        assert_eq!(ctx.value(&MISSING), None);
        g.bench_function(format!("depth={depth}"), |b| {
            b.iter(|| black_box(black_box(&ctx).value(&MISSING)))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// ContextCancelDone (parallel)
// ---------------------------------------------------------------------------------------------

/// Go: `ctx, cancel := WithCancel(Background()); defer cancel()`, then in parallel
/// `select { case <-ctx.Done(): default: }` on the live context.
fn context_cancel_done(c: &mut Criterion) {
    let Child {
        ctx,
        cancel: _cancel,
    } = ARENA.background().with_cancel().expect("arena");
    c.bench_function("ContextCancelDone", |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                for _ in 0..n {
                    black_box(black_box(&ctx).is_done());
                }
            })
        })
    });
}

criterion_group!(
    benches,
    cancel_tree,
    check_canceled,
    deep_value_same_goroutine,
    deep_value_miss,
    err_ok,
    err_canceled,
    timer_churn,
);
criterion_group! {
    name = parallel;
    // Few, long samples: the start-up skew of the threads (microseconds) stays negligible.
    config = Criterion::default().sample_size(PARALLEL_SAMPLES);
    targets = common_parent_cancel, with_timeout, context_cancel_done
}
criterion_main!(benches, parallel);
