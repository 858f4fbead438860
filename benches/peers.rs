//! The Go-parity benchmarks (see `go_parity.rs`) on ctxtree and two peers, in one run, so that
//! the ratios come from one machine state:
//!
//! * `ctxtree/…`: this crate, on a `static` arena (as in `go_parity.rs`);
//! * `tokio_util/…`: tokio-util 0.7's `CancellationToken` — `WithCancel(parent)` is
//!   `parent.child_token()` (`CancellationToken::new()` for a child of `Background`), `cancel()`
//!   is `cancel()`, `Err()` / `Done()` are `is_cancelled()`. It has no values and no deadlines:
//!   `DeepValueSameGoRoutine` and `WithTimeout` are skipped, and `CommonParentCancel` skips its
//!   `Value` lookup.
//! * `mutex_tree/…`: the straightforward lock-based design written below (`mod mutex_tree`):
//!   each canceller node has a `Mutex` around its error and a `Vec` of its children; cancelling
//!   locks the node, recursively cancels the children, then locks the parent to remove itself
//!   (Go's own `cancelCtx`, with a `Vec` for the map). Values are a chain of `Arc` nodes. No
//!   deadlines: `WithTimeout` is skipped.
//!
//! All three run through one generic driver (trait [`Peer`]), so each does exactly the same
//! sequence of operations. IDs are `<impl>/<Go benchmark name>`, e.g.
//! `ctxtree/CancelTree/depth=1/Root=OpenCanceler`. Extra lines, not in Go's suite:
//! `baseline/CommonParentCancel/busy-work-only` times `CommonParentCancel`'s busy work alone (Go
//! runs it as two empty 100-iteration loops, see `busy`), and
//! `<impl>/CommonParentCancel/no-busy-work` drops it, so that the contended create + cancel
//! under one parent is measured on its own.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{busy, keep_byte, opaque, procs, run_parallel};
use criterion::{Criterion, criterion_group, criterion_main};

// ---------------------------------------------------------------------------------------------
// The common interface
// ---------------------------------------------------------------------------------------------

/// What the Go benchmarks need from a cancellation tree.
trait Peer: 'static {
    /// The ID prefix.
    const NAME: &'static str;
    /// A context handle.
    type Ctx: Send + Sync;
    /// What `WithCancel` returns: the new context with its cancel function. Dropping it
    /// releases the context (and, for ctxtree and `mutex_tree`, cancels it: Rust's
    /// `defer cancel()`).
    type Node: Send;

    /// Go's `WithCancel(parent)`; `None` is `Background()`.
    fn with_cancel(parent: Option<&Self::Ctx>) -> Self::Node;
    /// The context inside a node.
    fn ctx(node: &Self::Node) -> &Self::Ctx;
    /// Go's `cancel()`, the node staying usable.
    fn cancel(node: &Self::Node);
    /// Go's `cancel()` where the context is not used afterwards (Go leaves it to the
    /// collector): cancel and release, in the cheapest correct way.
    fn cancel_and_drop(node: Self::Node);
    /// Go's `ctx.Err() != nil`.
    fn err_is_some(ctx: &Self::Ctx) -> bool;
    /// Go's `select { case <-ctx.Done(): return true; default: return false }`.
    fn is_done(ctx: &Self::Ctx) -> bool;
    /// Go's `WithValue(Background(), "key", "value")`; `None` where values do not exist.
    fn value_root() -> Option<Self::Ctx>;
    /// Go's `ctx.Value("key").(string) == "value"` (true where values do not exist).
    fn has_value(ctx: &Self::Ctx) -> bool;
}

// ---------------------------------------------------------------------------------------------
// ctxtree
// ---------------------------------------------------------------------------------------------

mod ct {
    use ctxtree::{Arena, Canceler, Context, Key};

    /// As in `go_parity.rs`: room for `CancelTree/depth=1000` and everything else.
    pub static ARENA: Arena<2048> = Arena::new();
    pub static KEY: Key<&'static str> = Key::new("key");
    pub static DEEP_KEYS: [Key<i64>; 100] = [const { Key::new("deep") }; 100];
    pub static MISSING: Key<i64> = Key::new("missing");

    pub struct Ctxtree;

    impl super::Peer for Ctxtree {
        const NAME: &'static str = "ctxtree";
        type Ctx = Context<'static>;
        type Node = (Context<'static>, Canceler<'static>);

        #[inline(always)]
        fn with_cancel(parent: Option<&Self::Ctx>) -> Self::Node {
            match parent {
                Some(p) => p.with_cancel(),
                None => ARENA.background().with_cancel(),
            }
            .expect("arena sized for the deepest tree")
            .into_parts()
        }
        #[inline(always)]
        fn ctx(node: &Self::Node) -> &Self::Ctx {
            &node.0
        }
        #[inline(always)]
        fn cancel(node: &Self::Node) {
            node.1.cancel();
        }
        /// Dropping the canceler is the cancel (and releases it).
        #[inline(always)]
        fn cancel_and_drop(node: Self::Node) {
            drop(node);
        }
        #[inline(always)]
        fn err_is_some(ctx: &Self::Ctx) -> bool {
            ctx.err().is_some()
        }
        #[inline(always)]
        fn is_done(ctx: &Self::Ctx) -> bool {
            ctx.is_done()
        }
        fn value_root() -> Option<Self::Ctx> {
            Some(ARENA.background().with_value(&KEY, "value").expect("arena"))
        }
        #[inline(always)]
        fn has_value(ctx: &Self::Ctx) -> bool {
            ctx.value(&KEY) == Some("value")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tokio-util
// ---------------------------------------------------------------------------------------------

mod tk {
    use tokio_util::sync::CancellationToken;

    pub struct TokioUtil;

    impl super::Peer for TokioUtil {
        const NAME: &'static str = "tokio_util";
        type Ctx = CancellationToken;
        type Node = CancellationToken;

        /// `WithCancel(Background())` is a new root token (Go does not link children of
        /// `Background` anywhere either).
        #[inline(always)]
        fn with_cancel(parent: Option<&Self::Ctx>) -> Self::Node {
            match parent {
                Some(p) => p.child_token(),
                None => CancellationToken::new(),
            }
        }
        #[inline(always)]
        fn ctx(node: &Self::Node) -> &Self::Ctx {
            node
        }
        #[inline(always)]
        fn cancel(node: &Self::Node) {
            node.cancel();
        }
        /// A dropped token does not cancel: cancel, then drop.
        #[inline(always)]
        fn cancel_and_drop(node: Self::Node) {
            node.cancel();
            drop(node);
        }
        #[inline(always)]
        fn err_is_some(ctx: &Self::Ctx) -> bool {
            ctx.is_cancelled()
        }
        #[inline(always)]
        fn is_done(ctx: &Self::Ctx) -> bool {
            ctx.is_cancelled()
        }
        fn value_root() -> Option<Self::Ctx> {
            None
        }
        #[inline(always)]
        fn has_value(_: &Self::Ctx) -> bool {
            true
        }
    }
}

// ---------------------------------------------------------------------------------------------
// mutex_tree: the naive lock-based cancellation tree
// ---------------------------------------------------------------------------------------------

mod mutex_tree {
    use std::sync::{Arc, Mutex, MutexGuard};

    /// Go's `Canceled` / `DeadlineExceeded` (only the first is used here).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Error {
        Canceled,
    }

    /// A canceller's state, behind its mutex.
    #[derive(Default)]
    struct State {
        err: Option<Error>,
        children: Vec<Arc<Node>>,
    }

    /// A context node: a canceller (`state` is `Some`) or a value.
    pub struct Node {
        parent: Option<Arc<Node>>,
        value: Option<(usize, &'static str)>,
        state: Option<Mutex<State>>,
    }

    fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A context: `None` is `Background`.
    #[derive(Clone)]
    pub struct Ctx(Option<Arc<Node>>);

    /// Cancels its context when told to or dropped.
    pub struct Canceler(Arc<Node>);

    /// The nearest canceller at or above `n`.
    fn canceller(mut n: Option<&Arc<Node>>) -> Option<&Arc<Node>> {
        while let Some(node) = n {
            if node.state.is_some() {
                return Some(node);
            }
            n = node.parent.as_ref();
        }
        None
    }

    impl Ctx {
        pub const BACKGROUND: Ctx = Ctx(None);

        /// Go's `WithCancel`: register with the nearest canceller above, or be born cancelled.
        pub fn with_cancel(&self) -> (Ctx, Canceler) {
            let node = Arc::new(Node {
                parent: self.0.clone(),
                value: None,
                state: Some(Mutex::new(State::default())),
            });
            if let Some(p) = canceller(self.0.as_ref()) {
                let mut s = lock(p.state.as_ref().expect("canceller"));
                match s.err {
                    None => s.children.push(node.clone()),
                    Some(e) => lock(node.state.as_ref().expect("canceller")).err = Some(e),
                }
            }
            (Ctx(Some(node.clone())), Canceler(node))
        }

        /// Go's `WithValue`.
        pub fn with_value(&self, key: usize, value: &'static str) -> Ctx {
            Ctx(Some(Arc::new(Node {
                parent: self.0.clone(),
                value: Some((key, value)),
                state: None,
            })))
        }

        /// Go's `Value`: walks up the chain.
        pub fn value(&self, key: usize) -> Option<&'static str> {
            let mut n = self.0.as_ref();
            while let Some(node) = n {
                if let Some((k, v)) = node.value
                    && k == key
                {
                    return Some(v);
                }
                n = node.parent.as_ref();
            }
            None
        }

        /// Go's `Err`: locks the nearest canceller.
        pub fn err(&self) -> Option<Error> {
            canceller(self.0.as_ref()).and_then(|c| lock(c.state.as_ref().expect("canceller")).err)
        }
    }

    /// Cancels `node` and (recursively, under its lock, as Go does) its children; then, if
    /// asked, removes it from its parent's list.
    fn cancel(node: &Arc<Node>, remove_from_parent: bool) {
        {
            let mut s = lock(node.state.as_ref().expect("canceller"));
            if s.err.is_some() {
                return;
            }
            s.err = Some(Error::Canceled);
            for child in std::mem::take(&mut s.children) {
                cancel(&child, false);
            }
        }
        if remove_from_parent && let Some(p) = canceller(node.parent.as_ref()) {
            let mut s = lock(p.state.as_ref().expect("canceller"));
            if let Some(i) = s.children.iter().position(|c| Arc::ptr_eq(c, node)) {
                s.children.swap_remove(i);
            }
        }
    }

    impl Canceler {
        pub fn cancel(&self) {
            cancel(&self.0, true);
        }
    }

    impl Drop for Canceler {
        fn drop(&mut self) {
            self.cancel();
        }
    }

    pub struct MutexTree;

    pub const KEY: usize = usize::MAX - 1;

    impl super::Peer for MutexTree {
        const NAME: &'static str = "mutex_tree";
        type Ctx = Ctx;
        type Node = (Ctx, Canceler);

        #[inline(always)]
        fn with_cancel(parent: Option<&Self::Ctx>) -> Self::Node {
            parent.unwrap_or(&Ctx::BACKGROUND).with_cancel()
        }
        #[inline(always)]
        fn ctx(node: &Self::Node) -> &Self::Ctx {
            &node.0
        }
        #[inline(always)]
        fn cancel(node: &Self::Node) {
            node.1.cancel();
        }
        #[inline(always)]
        fn cancel_and_drop(node: Self::Node) {
            drop(node);
        }
        #[inline(always)]
        fn err_is_some(ctx: &Self::Ctx) -> bool {
            ctx.err().is_some()
        }
        #[inline(always)]
        fn is_done(ctx: &Self::Ctx) -> bool {
            ctx.err().is_some()
        }
        fn value_root() -> Option<Self::Ctx> {
            Some(Ctx::BACKGROUND.with_value(KEY, "value"))
        }
        #[inline(always)]
        fn has_value(ctx: &Self::Ctx) -> bool {
            ctx.value(KEY) == Some("value")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmarks, generic over the implementation
// ---------------------------------------------------------------------------------------------

/// `ErrOK`: `Err()` on a live `WithCancel(Background())`.
fn err_ok<P: Peer>(c: &mut Criterion) {
    let node = P::with_cancel(None);
    let ctx = P::ctx(&node);
    c.bench_function(&format!("{}/ErrOK", P::NAME), |b| {
        b.iter(|| {
            if P::err_is_some(opaque(ctx)) {
                panic!("err() on a live context");
            }
        })
    });
}

/// `ErrCanceled` and `CheckCanceled/{Err,Done}` on a cancelled `WithCancel(Background())`.
fn err_canceled<P: Peer>(c: &mut Criterion) {
    let node = P::with_cancel(None);
    P::cancel(&node);
    let ctx = P::ctx(&node);
    c.bench_function(&format!("{}/ErrCanceled", P::NAME), |b| {
        b.iter(|| {
            if !P::err_is_some(opaque(ctx)) {
                panic!("no err() on a cancelled context");
            }
        })
    });
    c.bench_function(&format!("{}/CheckCanceled/Err", P::NAME), |b| {
        b.iter(|| keep_byte(P::err_is_some(opaque(ctx)).into()))
    });
    c.bench_function(&format!("{}/CheckCanceled/Done", P::NAME), |b| {
        b.iter(|| keep_byte(P::is_done(opaque(ctx)).into()))
    });
}

/// Go's `buildContextTree`, keeping every node alive until the caller drops `keep` (see
/// `go_parity.rs` for why: a dropped ctxtree canceler cancels at once, and a dropped
/// intermediate tokio token is spliced out of its tree, so either would flatten the tree).
#[inline(always)]
fn build<P: Peer>(root: Option<&P::Ctx>, depth: usize, keep: &mut Vec<P::Node>) {
    if depth == 0 {
        return;
    }
    keep.push(P::with_cancel(root));
    for _ in 1..depth {
        let child = P::with_cancel(Some(P::ctx(keep.last().expect("pushed above"))));
        keep.push(child);
    }
}

/// Drops the kept nodes, innermost first.
#[inline(always)]
fn release<P: Peer>(keep: &mut Vec<P::Node>) {
    while let Some(n) = keep.pop() {
        drop(n);
    }
}

fn cancel_tree<P: Peer>(c: &mut Criterion) {
    let mut keep: Vec<P::Node> = Vec::with_capacity(1000);
    let mut g = c.benchmark_group(format!("{}/CancelTree", P::NAME));
    for depth in [1usize, 10, 100, 1000] {
        g.bench_function(format!("depth={depth}/Root=Background"), |b| {
            b.iter(|| {
                build::<P>(None, depth, &mut keep);
                release::<P>(&mut keep);
            })
        });
        g.bench_function(format!("depth={depth}/Root=OpenCanceler"), |b| {
            b.iter(|| {
                let root = P::with_cancel(None);
                build::<P>(Some(P::ctx(&root)), depth, &mut keep);
                P::cancel_and_drop(root);
                release::<P>(&mut keep);
            })
        });
        g.bench_function(format!("depth={depth}/Root=ClosedCanceler"), |b| {
            b.iter(|| {
                let root = P::with_cancel(None);
                P::cancel(&root);
                build::<P>(Some(P::ctx(&root)), depth, &mut keep);
                release::<P>(&mut keep);
                drop(root);
            })
        });
    }
    g.finish();
}

/// `CommonParentCancel`: on all cores, `WithCancel(shared)`, `Value`, busy work, `cancel()`,
/// busy work. `…/no-busy-work` (not in Go's suite) is the same without the busy work.
fn common_parent_cancel<P: Peer>(c: &mut Criterion) {
    let root = P::value_root();
    let shared = P::with_cancel(root.as_ref());
    let shared = P::ctx(&shared);
    for (id, work) in [
        ("CommonParentCancel", true),
        ("CommonParentCancel/no-busy-work", false),
    ] {
        c.bench_function(&format!("{}/{id}", P::NAME), |b| {
            b.iter_custom(|iters| {
                run_parallel(iters, |n| {
                    for _ in 0..n {
                        let node = P::with_cancel(Some(shared));
                        if !P::has_value(P::ctx(&node)) {
                            panic!("should not be reached");
                        }
                        if work {
                            busy();
                        }
                        P::cancel_and_drop(node);
                        if work {
                            busy();
                        }
                    }
                })
            })
        });
    }
}

/// `ContextCancelDone`: on all cores, `Done()` polled on a live context.
fn context_cancel_done<P: Peer>(c: &mut Criterion) {
    let node = P::with_cancel(None);
    let ctx = P::ctx(&node);
    c.bench_function(&format!("{}/ContextCancelDone", P::NAME), |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                for _ in 0..n {
                    black_box(P::is_done(black_box(ctx)));
                }
            })
        })
    });
}

/// `DeepValueSameGoRoutine`: a miss at the end of a chain of `depth` values (ctxtree and
/// `mutex_tree`; tokio-util has no values).
fn deep_value(c: &mut Criterion) {
    for depth in [10usize, 20, 30, 50, 100] {
        let mut ctx = ct::ARENA.background();
        for (i, key) in ct::DEEP_KEYS.iter().enumerate().take(depth) {
            ctx = ctx.with_value(key, i as i64).expect("arena");
        }
        c.bench_function(
            &format!("ctxtree/DeepValueSameGoRoutine/depth={depth}"),
            |b| b.iter(|| black_box(black_box(&ctx).value(&ct::MISSING))),
        );
    }
    for depth in [10usize, 20, 30, 50, 100] {
        let mut ctx = mutex_tree::Ctx::BACKGROUND;
        for i in 0..depth {
            ctx = ctx.with_value(i, "v");
        }
        c.bench_function(
            &format!("mutex_tree/DeepValueSameGoRoutine/depth={depth}"),
            |b| b.iter(|| black_box(black_box(&ctx).value(usize::MAX))),
        );
    }
}

/// `ctxtree/WithTimeout/concurrency=N` as in `go_parity.rs` (peers have no deadlines).
fn with_timeout(c: &mut Criterion) {
    const HOUR: Duration = Duration::from_secs(3600);
    let mut g = c.benchmark_group("ctxtree/WithTimeout");
    g.sampling_mode(criterion::SamplingMode::Flat);
    for concurrency in [40usize, 4_000, 400_000] {
        let per_p = concurrency / procs();
        let pre: Vec<Vec<ctxtree::Canceler<'static>>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..procs())
                .map(|_| {
                    s.spawn(move || {
                        (0..per_p)
                            .map(|_| {
                                ctxtree::background()
                                    .with_timeout(HOUR)
                                    .expect("global arena")
                                    .cancel
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
                    let mut wcf: [Option<ctxtree::Canceler<'static>>; 10] = [const { None }; 10];
                    for _ in 0..n {
                        for f in wcf.iter_mut() {
                            *f = Some(bg.with_timeout(HOUR).expect("global arena").cancel);
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

/// `CommonParentCancel`'s busy work alone, for reading the figures above by difference.
fn baseline(c: &mut Criterion) {
    c.bench_function("baseline/CommonParentCancel/busy-work-only", |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                for _ in 0..n {
                    busy();
                    busy();
                }
            })
        })
    });
}

fn sequential(c: &mut Criterion) {
    err_ok::<ct::Ctxtree>(c);
    err_ok::<tk::TokioUtil>(c);
    err_ok::<mutex_tree::MutexTree>(c);
    err_canceled::<ct::Ctxtree>(c);
    err_canceled::<tk::TokioUtil>(c);
    err_canceled::<mutex_tree::MutexTree>(c);
    cancel_tree::<ct::Ctxtree>(c);
    cancel_tree::<tk::TokioUtil>(c);
    cancel_tree::<mutex_tree::MutexTree>(c);
    deep_value(c);
}

fn parallel(c: &mut Criterion) {
    baseline(c);
    common_parent_cancel::<ct::Ctxtree>(c);
    common_parent_cancel::<tk::TokioUtil>(c);
    common_parent_cancel::<mutex_tree::MutexTree>(c);
    context_cancel_done::<ct::Ctxtree>(c);
    context_cancel_done::<tk::TokioUtil>(c);
    context_cancel_done::<mutex_tree::MutexTree>(c);
    with_timeout(c);
}

criterion_group!(seq, sequential);
criterion_group! {
    name = par;
    // Few, long samples: the start-up skew of the threads stays negligible (see go_parity.rs).
    config = Criterion::default().sample_size(20);
    targets = parallel
}
criterion_main!(seq, par);
