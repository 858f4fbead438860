//! Multi-thread stress on shared static arenas (4 threads): concurrent create / clone / cancel /
//! drop under shared parents while those parents are cancelled, with the invariants checked as
//! it goes and at the end. Sized to finish in well under a few seconds in debug builds; a hang
//! would show as the test never finishing (nothing here waits on a timer).

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use ctxtree::Child;
use std::sync::Barrier;
use std::thread;

use ctxtree::{Arena, Canceler, Context, CreateError, Error, Instant, Key, StaticCause};

const THREADS: usize = 4;

/// Multiplies every test's iteration count: `CTXTREE_STRESS_SCALE=50 cargo test --release
/// --test stress` for a long soak. Defaults to 1 (a few seconds at most in debug builds).
fn scale() -> usize {
    std::env::var("CTXTREE_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// A small deterministic PRNG (xorshift64*), one per thread.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Remembers the first error seen on a context and checks it never changes, and that an error
/// implies done.
struct Seen(Option<Error>);
impl Seen {
    #[track_caller]
    fn check(&mut self, c: &Context<'_>) {
        let e = c.err();
        if e.is_some() {
            assert!(c.is_done(), "err() is Some but not done");
        }
        match (self.0, e) {
            (Some(old), new) => assert_eq!(new, Some(old), "an error changed once seen"),
            (None, Some(new)) => self.0 = Some(new),
            (None, None) => {}
        }
    }
}

#[test]
fn shared_parents_create_clone_cancel_drop() {
    static A: Arena<1024> = Arena::new();
    static K: Key<u64> = Key::new("k");
    static WHY: StaticCause = StaticCause::new("round over");
    const ROUNDS: usize = 100;
    const PARENTS: usize = 4;
    const OPS: usize = 600;

    for round in 0..ROUNDS * scale() {
        let parents: Vec<(Context<'static>, Canceler<'static>)> = (0..PARENTS)
            .map(|_| A.background().with_cancel().unwrap().into_parts())
            .collect();
        // One flag per parent, set (Release) once its cancel() has returned.
        let cancelled: Vec<AtomicBool> = (0..PARENTS).map(|_| AtomicBool::new(false)).collect();
        let start = Barrier::new(THREADS);
        thread::scope(|s| {
            for t in 0..THREADS {
                let (parents, cancelled, start) = (&parents, &cancelled, &start);
                s.spawn(move || {
                    let mut r = Rng::new((round * THREADS + t) as u64 + 1);
                    let mut held: Vec<(Context<'static>, Option<Canceler<'static>>, Seen, usize)> =
                        Vec::new();
                    start.wait();
                    for op in 0..OPS {
                        // Thread 0 cancels the shared parents one by one along the way.
                        if t == 0 && op % (OPS / PARENTS) == OPS / PARENTS - 1 {
                            let p = op / (OPS / PARENTS);
                            parents[p].1.cancel_with(&WHY);
                            assert!(parents[p].0.is_done());
                            cancelled[p].store(true, Ordering::Release);
                        }
                        let p = r.below(PARENTS);
                        let parent = &parents[p].0;
                        let was_cancelled = cancelled[p].load(Ordering::Acquire);
                        match r.below(6) {
                            0 | 1 => {
                                let Child { ctx: c, cancel } = parent.with_cancel().unwrap();
                                if was_cancelled {
                                    assert_eq!(c.err(), Some(Error::Canceled));
                                    assert!(c.cause().unwrap().is_static(&WHY));
                                }
                                held.push((c, Some(cancel), Seen(None), p));
                            }
                            2 => {
                                let v = parent.with_value(&K, op as u64).unwrap();
                                assert_eq!(v.value(&K), Some(op as u64));
                                if was_cancelled {
                                    assert!(v.is_done());
                                }
                                held.push((v, None, Seen(None), p));
                            }
                            3 if !held.is_empty() => {
                                // Derive from something held (a grandchild), or clone it.
                                let i = r.below(held.len());
                                let parent_was_done = held[i].0.is_done();
                                let Child { ctx: c, cancel } = held[i].0.with_cancel().unwrap();
                                let q = held[i].3;
                                if parent_was_done {
                                    assert!(c.is_done(), "child of a done context not done");
                                }
                                held.push((c, Some(cancel), Seen(None), q));
                                let clone = held[i].0.clone();
                                held.push((clone, None, Seen(None), q));
                            }
                            4 if !held.is_empty() => {
                                let i = r.below(held.len());
                                if let Some(cancel) = &held[i].1 {
                                    cancel.cancel();
                                    assert!(held[i].0.is_done());
                                }
                            }
                            _ if !held.is_empty() => {
                                let i = r.below(held.len());
                                drop(held.swap_remove(i));
                            }
                            _ => {}
                        }
                        // Keep the working set bounded (the arena is shared by four threads).
                        while held.len() > 48 {
                            let i = r.below(held.len());
                            drop(held.swap_remove(i));
                        }
                        // Invariants over everything this thread holds.
                        for (c, _, seen, q) in held.iter_mut() {
                            seen.check(c);
                            if cancelled[*q].load(Ordering::Acquire) {
                                assert!(c.is_done(), "parent cancelled, descendant not done");
                            }
                        }
                    }
                    // Every shared parent is cancelled by the end of the round.
                    if t == 0 {
                        for (p, (_, cancel)) in parents.iter().enumerate() {
                            cancel.cancel();
                            cancelled[p].store(true, Ordering::Release);
                        }
                    }
                    drop(held);
                });
            }
        });
        for (c, _) in &parents {
            assert!(c.is_done());
        }
        drop(parents);
        assert_eq!(A.stats().live, 0, "round {round}: every node returned");
    }
    assert_eq!(A.stats().failed_allocs, 0);
}

#[test]
fn common_parent_cancel() {
    static A: Arena<256> = Arena::new();
    static WHY: StaticCause = StaticCause::new("parent gone");
    const PER_THREAD_BEFORE: usize = 2_000;

    for _ in 0..10 * scale() {
        let Child {
            ctx: parent,
            cancel,
        } = A.background().with_cancel().unwrap();
        let progress = AtomicUsize::new(0);
        let parent_cancelled = AtomicBool::new(false);
        thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    let mut seen_done = 0;
                    let mut i = 0;
                    // Keep going until well after the parent is cancelled.
                    while seen_done < 200 {
                        let after = parent_cancelled.load(Ordering::Acquire);
                        let Child { ctx: c, cancel: cc } = parent.with_cancel().unwrap();
                        if after {
                            assert_eq!(c.err(), Some(Error::Canceled));
                            assert!(c.cause().unwrap().is_static(&WHY));
                            seen_done += 1;
                        } else if c.is_done() {
                            // Raced with the cancel: born done, or cancelled just after.
                            assert!(c.cause().unwrap().is_static(&WHY));
                        }
                        if i % 2 == 0 {
                            cc.cancel();
                            assert!(c.is_done());
                        }
                        drop(c);
                        drop(cc);
                        i += 1;
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            while progress.load(Ordering::Relaxed) < PER_THREAD_BEFORE {
                std::hint::spin_loop();
            }
            cancel.cancel_with(&WHY);
            parent_cancelled.store(true, Ordering::Release);
        });
        assert_eq!(parent.err(), Some(Error::Canceled));
        drop((parent, cancel));
        assert_eq!(A.stats().live, 0);
    }
}

#[test]
fn with_cancel_racing_parent_cancel_never_loses_the_cancellation() {
    static A: Arena<64> = Arena::new();
    static K: Key<u8> = Key::new("v");
    static WHY: StaticCause = StaticCause::new("raced");
    const ITERS: usize = 300;
    for _ in 0..ITERS * scale() {
        let Child {
            ctx: parent,
            cancel,
        } = A.background().with_cancel_cause().unwrap();
        let go = Barrier::new(THREADS);
        // Thread 0 cancels the parent; threads 1..4 each create a child (and below it a
        // grandchild and a value) at the same moment.
        let made = thread::scope(|s| {
            let makers: Vec<_> = (1..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        go.wait();
                        let Child {
                            ctx: child,
                            cancel: cc,
                        } = parent.with_cancel().unwrap();
                        let Child {
                            ctx: grandchild,
                            cancel: gc,
                        } = child.with_cancel().unwrap();
                        let v = child.with_value(&K, 1).unwrap();
                        (child, cc, grandchild, gc, v)
                    })
                })
                .collect();
            go.wait();
            cancel.cancel_with(&WHY);
            makers
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        // The parent's cancel() has returned: every child is cancelled, whichever came first.
        for (child, _cc, grandchild, _gc, v) in &made {
            for c in [child, grandchild, v] {
                assert_eq!(c.err(), Some(Error::Canceled), "cancellation lost: {c}");
                assert!(c.cause().unwrap().is_static(&WHY));
            }
        }
        drop(made);
        drop((parent, cancel));
        assert_eq!(A.stats().live, 0);
    }
}

#[test]
fn simultaneous_cancels_of_one_tree_from_four_threads() {
    static A: Arena<512> = Arena::new();
    for round in 0..20 * scale() {
        // A three-level tree: 1 + 6 + 36 + 216 nodes.
        let mut nodes: Vec<(Context<'static>, Canceler<'static>)> =
            vec![A.background().with_cancel().unwrap().into_parts()];
        let mut level = vec![0usize];
        for _ in 0..3 {
            let mut next = Vec::new();
            for &i in &level {
                for _ in 0..6 {
                    let pair = nodes[i].0.with_cancel().unwrap().into_parts();
                    nodes.push(pair);
                    next.push(nodes.len() - 1);
                }
            }
            level = next;
        }
        let n = nodes.len();
        let start = Barrier::new(THREADS);
        thread::scope(|s| {
            for t in 0..THREADS {
                let (nodes, start) = (&nodes, &start);
                s.spawn(move || {
                    let mut r = Rng::new((round * 10 + t) as u64);
                    start.wait();
                    for _ in 0..n / 2 {
                        let i = r.below(n);
                        nodes[i].1.cancel();
                        // cancel() returns only with the whole subtree done (post-order).
                        assert!(nodes[i].0.is_done());
                    }
                    if t == 0 {
                        nodes[0].1.cancel();
                        for (c, _) in nodes {
                            assert_eq!(c.err(), Some(Error::Canceled));
                        }
                    }
                });
            }
        });
        drop(nodes);
        assert_eq!(A.stats().live, 0);
    }
}

#[test]
fn after_func_stop_racing_cancel_runs_xor_stops() {
    static A: Arena<64> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    const ITERS: usize = 300;
    let go = Barrier::new(2);
    for _ in 0..ITERS * scale() {
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        let regs: Vec<_> = (0..8)
            .map(|_| {
                ctx.after_func(|| {
                    RAN.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
            })
            .collect();
        let before = RAN.load(Ordering::SeqCst);
        let won = thread::scope(|s| {
            let stopper = s.spawn(|| {
                go.wait();
                regs.iter().filter(|r| r.stop()).count()
            });
            go.wait();
            cancel.cancel();
            stopper.join().unwrap()
        });
        let ran = RAN.load(Ordering::SeqCst) - before;
        assert_eq!(
            ran + won,
            8,
            "each callback either ran or was stopped, never both"
        );
        assert!(
            regs.iter().all(|r| !r.stop()),
            "a second stop is always false"
        );
        drop(regs);
        drop((ctx, cancel));
        assert_eq!(A.stats().live, 0);
    }
}

#[test]
fn clones_dropped_across_threads_while_cancelling() {
    static A: Arena<64> = Arena::new();
    static K: Key<u32> = Key::new("k");
    for _ in 0..50 * scale() {
        let Child { ctx: root, cancel } = A.background().with_cancel().unwrap();
        let v = root.with_value(&K, 5).unwrap();
        let Child {
            ctx: leaf,
            cancel: _lc,
        } = v.with_cancel().unwrap();
        let start = Barrier::new(THREADS + 1);
        thread::scope(|s| {
            for _ in 0..THREADS {
                let (leaf, start) = (&leaf, &start);
                s.spawn(move || {
                    let mut seen = Seen(None);
                    start.wait();
                    for _ in 0..500 {
                        let c = leaf.clone();
                        assert_eq!(c.value(&K), Some(5));
                        seen.check(&c);
                        let parent_was_done = c.is_done();
                        let Child { ctx: g, cancel: gc } = c.with_cancel().unwrap();
                        if parent_was_done {
                            assert!(g.is_done(), "born under a done parent, not done");
                        }
                        drop((c, g, gc));
                    }
                });
            }
            start.wait();
            cancel.cancel();
        });
        assert_eq!(leaf.err(), Some(Error::Canceled));
        drop((root, cancel, v, leaf, _lc));
        assert_eq!(A.stats().live, 0);
    }
}

#[test]
fn exhaustion_under_contention_is_counted_exactly() {
    static A: Arena<8> = Arena::new();
    let errors = AtomicUsize::new(0);
    let start = Barrier::new(THREADS);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                start.wait();
                let mut held = Vec::new();
                for i in 0..5_000 * scale() {
                    match A.background().with_cancel() {
                        Ok(pair) => held.push(pair),
                        Err(e) => {
                            assert_eq!(e, CreateError::ArenaFull);
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if i % 3 == 0 || held.len() > 3 {
                        held.clear();
                    }
                }
            });
        }
    });
    let s = A.stats();
    assert_eq!(s.live, 0);
    assert_eq!(s.failed_allocs, errors.load(Ordering::Relaxed));
    assert!(s.high_water <= 8);
}

#[test]
fn concurrent_expiry_and_lazy_observation_agree() {
    static A: Arena<256> = Arena::new(); // deadlines driven by `expire` only
    static SLOW: StaticCause = StaticCause::new("slow");
    for round in 0..20 * scale() as u64 {
        let Child {
            ctx: root,
            cancel: cancel_root,
        } = A.background().with_cancel().unwrap();
        let base = round * 1_000;
        let kids: Vec<_> = (0..32)
            .map(|i| {
                root.with_deadline_cause(Instant::from_ticks(base + i), &SLOW)
                    .unwrap()
            })
            .collect();
        let start = Barrier::new(THREADS);
        thread::scope(|s| {
            for t in 0..THREADS {
                let (kids, start, cancel_root) = (&kids, &start, &cancel_root);
                s.spawn(move || {
                    let mut seen: Vec<Seen> = kids.iter().map(|_| Seen(None)).collect();
                    start.wait();
                    for step in 0..40u64 {
                        match t {
                            0 | 1 => {
                                let _ = A.expire(Instant::from_ticks(base + step));
                            }
                            2 if step == 20 => cancel_root.cancel(),
                            _ => {}
                        }
                        for (k, seen) in kids.iter().zip(seen.iter_mut()) {
                            seen.check(&k.ctx);
                        }
                    }
                });
            }
        });
        for (i, k) in kids.iter().enumerate() {
            // Every child is done: by its deadline (with its cause) or by the root's cancel.
            match k.err() {
                Some(Error::DeadlineExceeded) => {
                    assert!(k.cause().unwrap().is_static(&SLOW), "child {i}")
                }
                Some(Error::Canceled) => assert!(k.cause().unwrap().is(Error::Canceled)),
                None => panic!("child {i} not done"),
            }
        }
        drop(kids);
        drop((root, cancel_root));
        assert_eq!(A.stats().live, 0);
    }
}

#[test]
fn after_func_registration_racing_cancel_runs_every_callback_once() {
    static A: Arena<256> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    const PER_THREAD: usize = 40;
    for _ in 0..50 * scale() {
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        let before = RAN.load(Ordering::SeqCst);
        let start = Barrier::new(THREADS);
        thread::scope(|s| {
            for _ in 0..THREADS - 1 {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..PER_THREAD {
                        let reg = ctx
                            .after_func(|| {
                                RAN.fetch_add(1, Ordering::SeqCst);
                            })
                            .unwrap();
                        drop(reg); // registered for good: not stopped
                    }
                });
            }
            start.wait();
            cancel.cancel();
        });
        // Registered before the cancel: run by it; after: run at registration. Never lost,
        // never twice.
        assert_eq!(
            RAN.load(Ordering::SeqCst) - before,
            (THREADS - 1) * PER_THREAD
        );
        drop((ctx, cancel));
        assert_eq!(A.stats().live, 0);
    }
}

#[test]
fn dump_and_display_racing_changes_release_everything() {
    static A: Arena<512> = Arena::new();
    static K: Key<u32> = Key::new("k");
    for _ in 0..10 * scale() {
        let Child { ctx: root, cancel } = A.background().with_cancel().unwrap();
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            for t in 0..THREADS - 1 {
                let (root, stop) = (&root, &stop);
                s.spawn(move || {
                    let mut r = Rng::new(t as u64 + 7);
                    while !stop.load(Ordering::Acquire) {
                        let v = root.with_value(&K, t as u32).unwrap();
                        let Child { ctx: c, cancel: cc } = v.with_cancel().unwrap();
                        let Child { ctx: g, cancel: gc } = c.with_cancel().unwrap();
                        let text = g.to_string();
                        assert_eq!(
                            text,
                            "context.Background.WithCancel.WithValue(k, u32)\
                             .WithCancel.WithCancel"
                        );
                        if r.below(2) == 0 {
                            cc.cancel();
                        }
                        drop((v, c, cc, g, gc));
                    }
                });
            }
            for _ in 0..30 {
                let mut out = String::new();
                A.dump(&mut out).unwrap();
                assert!(
                    out.starts_with("context.Background\n  WithCancel #"),
                    "{out}"
                );
            }
            cancel.cancel();
            for _ in 0..10 {
                let mut out = String::new();
                A.dump(&mut out).unwrap();
            }
            stop.store(true, Ordering::Release);
        });
        drop((root, cancel));
        assert_eq!(A.stats().live, 0, "a dump kept a reference");
    }
}
