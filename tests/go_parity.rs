//! Go-parity suite: one test per behaviour of Go's own `context` tests (`x_test.go`,
//! `context_test.go`, `afterfunc_test.go`), ported onto the core (fixed `Arena<N>` statics, one
//! per test, and a deterministic `ManualClock` instead of sleeping), plus the semantics that
//! ports of Go's `context` usually get wrong (DESIGN.md §1), each pinned by a test.
//!
//! Go's `otherContext` (a context type the package does not know) has no Rust counterpart —
//! every context is a node of the tree — so where Go wraps a context in one, these tests put a
//! value node (which is not a canceller and asks its nearest canceller ancestor) in between,
//! which exercises the same "look through a non-canceller" path.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;
use ctxtree::Child;
use std::sync::Barrier;
use std::thread;

use ctxtree::{
    Arena, Canceler, Cause, Context, CreateError, Error, Instant, Key, ManualClock, StaticCause,
};

/// Go's `veryLongDuration` (1000 h).
const VERY_LONG: Duration = Duration::from_secs(1000 * 3600);

fn is_done_everywhere(ctxs: &[&Context<'_>]) -> bool {
    ctxs.iter().all(|c| c.is_done())
}

// ------------------------------------------------------------------------------------------------
// TestBackground, TestTODO
// ------------------------------------------------------------------------------------------------

#[test]
fn test_background() {
    static A: Arena<1> = Arena::new();
    static K: Key<u32> = Key::new("k");
    let c = A.background();
    assert!(!c.is_done());
    assert!(!c.can_be_done());
    assert_eq!(c.err(), None);
    assert!(c.cause().is_none());
    assert_eq!(c.deadline(), None);
    assert_eq!(c.value(&K), None);
    assert_eq!(c.to_string(), "context.Background");
    // Costs no node.
    assert_eq!(A.stats().live, 0);
    assert_eq!(A.stats().high_water, 0);
}

#[test]
fn test_todo() {
    static A: Arena<1> = Arena::new();
    let c = A.todo();
    assert!(!c.is_done());
    assert!(!c.can_be_done());
    assert_eq!(c.err(), None);
    assert!(c.cause().is_none());
    assert_eq!(c.deadline(), None);
    assert_eq!(c.to_string(), "context.TODO");
    assert_eq!(A.stats().live, 0);
}

// ------------------------------------------------------------------------------------------------
// TestWithCancel
// ------------------------------------------------------------------------------------------------

#[test]
fn test_with_cancel() {
    static A: Arena<8> = Arena::new();
    static K: Key<u8> = Key::new("other");
    let Child { ctx: c1, cancel } = A.background().with_cancel().unwrap();
    assert_eq!(c1.to_string(), "context.Background.WithCancel");

    let o = c1.with_value(&K, 1).unwrap(); // Go's otherContext{c1}
    let Child {
        ctx: c2,
        cancel: _cancel2,
    } = o.with_cancel().unwrap();
    let contexts = [&c1, &o, &c2];
    for c in contexts {
        assert!(c.can_be_done(), "Done() must be non-nil");
        assert_eq!(c.err(), None);
        assert!(!c.is_done());
    }

    cancel.cancel(); // propagates synchronously
    for c in contexts {
        assert!(c.is_done());
        assert_eq!(c.err(), Some(Error::Canceled));
    }
}

// ------------------------------------------------------------------------------------------------
// TestParentFinishesChild
// ------------------------------------------------------------------------------------------------

#[test]
fn test_parent_finishes_child() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<16> = Arena::new().with_clock(&CLOCK);
    static KEY: Key<u32> = Key::new("key");
    static AFTER_RAN: AtomicBool = AtomicBool::new(false);

    // parent -> cancelChild
    // parent -> valueChild -> timerChild
    // parent -> afterChild
    let Child {
        ctx: parent,
        cancel,
    } = A.background().with_cancel().unwrap();
    let Child {
        ctx: cancel_child,
        cancel: stop1,
    } = parent.with_cancel().unwrap();
    let value_child = parent.with_value(&KEY, 1).unwrap();
    let Child {
        ctx: timer_child,
        cancel: stop2,
    } = value_child.with_timeout(VERY_LONG).unwrap();
    let after_stop = parent
        .after_func(|| AFTER_RAN.store(true, Ordering::SeqCst))
        .unwrap();

    for c in [&parent, &cancel_child, &timer_child, &value_child] {
        assert!(!c.is_done());
    }
    assert_eq!(A.stats().live, 5);
    assert!(timer_child.to_string().contains(".WithDeadline("));

    cancel.cancel();

    assert!(AFTER_RAN.load(Ordering::SeqCst));
    for c in [&parent, &cancel_child, &value_child, &timer_child] {
        assert!(c.is_done());
        assert_eq!(c.err(), Some(Error::Canceled));
    }

    // "pc.cancel didn't clear pc.children": the children are out of the parent's list, so
    // dropping their handles frees them while the parent is still alive.
    assert!(!after_stop.stop(), "the callback already ran");
    drop(after_stop);
    drop(cancel_child);
    drop(stop1);
    drop(timer_child);
    drop(stop2);
    drop(value_child);
    assert_eq!(A.stats().live, 1, "only the parent is left");

    // WithValue on a canceled parent returns a canceled context.
    let precanceled = parent.with_value(&KEY, 2).unwrap();
    assert!(precanceled.is_done());
    assert_eq!(precanceled.err(), Some(Error::Canceled));
}

// ------------------------------------------------------------------------------------------------
// TestChildFinishesFirst
// ------------------------------------------------------------------------------------------------

#[test]
fn test_child_finishes_first() {
    static A: Arena<8> = Arena::new();
    let Child {
        ctx: cancelable,
        cancel: _stop,
    } = A.background().with_cancel().unwrap();
    for parent in [A.background(), cancelable.clone()] {
        let baseline = A.stats().live;
        let Child { ctx: child, cancel } = parent.with_cancel().unwrap();
        assert!(!parent.is_done());
        assert!(!child.is_done());
        assert_eq!(A.stats().live, baseline + 1);

        cancel.cancel();

        assert!(child.is_done());
        assert_eq!(child.err(), Some(Error::Canceled));
        assert!(!parent.is_done());
        assert_eq!(parent.err(), None);

        // "child's cancel didn't remove self from pc.children": once its handles are gone
        // the child's node is free even though the parent lives on.
        drop(child);
        drop(cancel);
        assert_eq!(A.stats().live, baseline);
    }
}

// ------------------------------------------------------------------------------------------------
// TestCancelRemoves
// ------------------------------------------------------------------------------------------------

#[test]
fn test_cancel_removes() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);

    // WithCancel child.
    let Child { ctx, cancel: _c } = A.background().with_cancel().unwrap();
    assert_eq!(A.stats().live, 1);
    let Child { ctx: _, cancel } = ctx.with_cancel().unwrap();
    assert_eq!(A.stats().live, 2, "with WithCancel child");
    cancel.cancel();
    drop(cancel);
    assert_eq!(A.stats().live, 1, "after canceling WithCancel child");
    assert!(!ctx.is_done());

    // WithTimeout child.
    let Child { ctx: _, cancel } = ctx.with_timeout(Duration::from_secs(3600)).unwrap();
    assert_eq!(A.stats().live, 2, "with WithTimeout child");
    cancel.cancel();
    drop(cancel);
    assert_eq!(A.stats().live, 1, "after canceling WithTimeout child");

    // AfterFunc child.
    let stop = ctx.after_func(|| panic!("stopped")).unwrap();
    assert_eq!(A.stats().live, 2, "with AfterFunc child");
    assert!(stop.stop());
    drop(stop);
    assert_eq!(A.stats().live, 1, "after stopping AfterFunc child");
    assert!(!ctx.is_done());
}

// ------------------------------------------------------------------------------------------------
// TestDeadline, TestTimeout, TestCanceledTimeout
// ------------------------------------------------------------------------------------------------

#[test]
fn test_deadline() {
    static CLOCK: ManualClock = ManualClock::new(1_000); // 1 tick = 1 ms
    static A: Arena<16> = Arena::new().with_clock(&CLOCK);
    static K: Key<u8> = Key::new("other");
    CLOCK.set(Instant::from_ticks(1_000));
    let now = || A.now().unwrap();

    // WithDeadline
    let Child {
        ctx: c,
        cancel: _c1,
    } = A.background().with_deadline(now().add_ticks(1)).unwrap();
    assert!(
        c.to_string()
            .starts_with("context.Background.WithDeadline("),
        "{c}"
    );
    assert_eq!(c.deadline(), Some(now().add_ticks(1)));
    assert!(!c.is_done());

    // WithDeadline+otherContext
    let Child {
        ctx: d,
        cancel: _c2,
    } = A.background().with_deadline(now().add_ticks(1)).unwrap();
    let o = d.with_value(&K, 0).unwrap();
    assert!(!o.is_done());

    // WithDeadline+otherContext+WithDeadline: the far deadline is capped by the near one.
    let Child {
        ctx: e,
        cancel: _c3,
    } = A.background().with_deadline(now().add_ticks(1)).unwrap();
    let o2 = e.with_value(&K, 0).unwrap();
    let Child {
        ctx: f,
        cancel: _c4,
    } = o2
        .with_deadline(now().add_ticks(1000 * 3600 * 1000))
        .unwrap();
    assert_eq!(f.deadline(), Some(now().add_ticks(1)));
    assert!(!f.is_done());

    CLOCK.advance(1);
    for x in [&c, &o, &f] {
        assert!(x.is_done());
        assert_eq!(x.err(), Some(Error::DeadlineExceeded));
    }

    // WithDeadline+inthepast
    let Child {
        ctx: g,
        cancel: _c5,
    } = A
        .background()
        .with_deadline(Instant::from_ticks(now().ticks() - 1))
        .unwrap();
    assert!(g.is_done());
    assert_eq!(g.err(), Some(Error::DeadlineExceeded));

    // WithDeadline+now
    let Child {
        ctx: h,
        cancel: _c6,
    } = A.background().with_deadline(now()).unwrap();
    assert_eq!(h.err(), Some(Error::DeadlineExceeded));
}

/// A timeout so long it saturates the clock is still a deadline (Go: `WithTimeout(ctx,
/// math.MaxInt64)` has one), never "no deadline".
#[test]
fn test_timeout_too_far_out_is_still_a_deadline() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<4> = Arena::new().with_clock(&CLOCK);
    let Child { ctx, cancel: _c } = A.background().with_timeout(Duration::MAX).unwrap();
    let dl = ctx.deadline().expect("a deadline");
    assert_eq!(dl, Instant::from_ticks(u64::MAX - 1));
    assert!(
        ctx.to_string()
            .starts_with("context.Background.WithDeadline(")
    );
    assert!(!ctx.is_done());
    // A nearer deadline below it is a deadline node of its own; a farther one is not.
    let Child {
        ctx: near,
        cancel: _n,
    } = ctx.with_deadline(Instant::from_ticks(10)).unwrap();
    assert!(near.to_string().ends_with("])"));
    let Child {
        ctx: far,
        cancel: _f,
    } = ctx.with_deadline(Instant::from_ticks(u64::MAX)).unwrap();
    assert_eq!(far.deadline(), Some(dl));
    assert_eq!(A.expire(Instant::from_ticks(u64::MAX - 2)), Some(dl));
    assert!(near.is_done() && !ctx.is_done());
    assert_eq!(A.expire(Instant::from_ticks(u64::MAX)), None);
    assert_eq!(far.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn test_timeout() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<16> = Arena::new().with_clock(&CLOCK);
    static K: Key<u8> = Key::new("other");
    let short = Duration::from_millis(1);

    let Child {
        ctx: c,
        cancel: _c1,
    } = A.background().with_timeout(short).unwrap();
    assert!(
        c.to_string()
            .starts_with("context.Background.WithDeadline("),
        "{c}"
    );
    assert_eq!(c.deadline(), Some(Instant::from_ticks(1)));

    let Child {
        ctx: d,
        cancel: _c2,
    } = A.background().with_timeout(short).unwrap();
    let o = d.with_value(&K, 0).unwrap();

    let Child {
        ctx: e,
        cancel: _c3,
    } = A.background().with_timeout(short).unwrap();
    let o2 = e.with_value(&K, 0).unwrap();
    let Child {
        ctx: f,
        cancel: _c4,
    } = o2.with_timeout(VERY_LONG).unwrap();
    assert_eq!(f.deadline(), Some(Instant::from_ticks(1)));

    assert!(!is_done_everywhere(&[&c, &o, &f]));
    CLOCK.advance(1);
    for x in [&c, &o, &f] {
        assert_eq!(x.err(), Some(Error::DeadlineExceeded));
    }
}

#[test]
fn test_canceled_timeout() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    static K: Key<u8> = Key::new("other");
    let Child {
        ctx: c,
        cancel: _c1,
    } = A.background().with_timeout(Duration::from_secs(1)).unwrap();
    let o = c.with_value(&K, 0).unwrap();
    let Child { ctx: c2, cancel } = o.with_timeout(VERY_LONG).unwrap();
    cancel.cancel(); // propagates synchronously
    assert!(c2.is_done());
    assert_eq!(c2.err(), Some(Error::Canceled));
    assert!(!c.is_done());
    // Even once the parent's deadline passes, the first error stays.
    CLOCK.advance(1_000);
    assert_eq!(c.err(), Some(Error::DeadlineExceeded));
    assert_eq!(c2.err(), Some(Error::Canceled));
}

// ------------------------------------------------------------------------------------------------
// TestValues
// ------------------------------------------------------------------------------------------------

#[test]
fn test_values() {
    static A: Arena<16> = Arena::new();
    // Go's k1, k2, k3: keys differing by type or by value. Here a key is its static's address;
    // k2 and k3 share the name Go prints for the type but are still distinct keys.
    static K1: Key<Option<&'static str>> = Key::new("key1");
    static K2: Key<Option<&'static str>> = Key::new("key2(1)");
    static K3: Key<Option<&'static str>> = Key::new("key2(3)");

    fn get(c: &Context<'_>, k: &'static Key<Option<&'static str>>) -> &'static str {
        c.value(k).flatten().unwrap_or("")
    }
    fn check(c: &Context<'_>, nm: &str, v1: &str, v2: &str, v3: &str) {
        assert_eq!(get(c, &K1), v1, "{nm}.value(k1)");
        assert_eq!(get(c, &K2), v2, "{nm}.value(k2)");
        assert_eq!(get(c, &K3), v3, "{nm}.value(k3)");
    }

    let c0 = A.background();
    check(&c0, "c0", "", "", "");

    let c1 = A.background().with_value(&K1, Some("c1k1")).unwrap();
    check(&c1, "c1", "c1k1", "", "");
    assert_eq!(
        c1.to_string(),
        "context.Background.WithValue(key1, core::option::Option<&str>)"
    );

    let c2 = c1.with_value(&K2, Some("c2k2")).unwrap();
    check(&c2, "c2", "c1k1", "c2k2", "");
    assert_eq!(
        c2.to_string(),
        "context.Background.WithValue(key1, core::option::Option<&str>)\
         .WithValue(key2(1), core::option::Option<&str>)"
    );

    let c3 = c2.with_value(&K3, Some("c3k3")).unwrap();
    check(&c3, "c3", "c1k1", "c2k2", "c3k3");

    let c4 = c3.with_value(&K1, None).unwrap();
    check(&c4, "c4", "", "c2k2", "c3k3");
    assert_eq!(c4.value(&K1), Some(None), "a nil binding hides c1's");
    assert_eq!(
        c4.to_string(),
        "context.Background.WithValue(key1, core::option::Option<&str>)\
         .WithValue(key2(1), core::option::Option<&str>)\
         .WithValue(key2(3), core::option::Option<&str>)\
         .WithValue(key1, core::option::Option<&str>)"
    );

    // Go's otherContext wrappers: looked through a node that binds nothing.
    let o0 = A.background().without_cancel().unwrap();
    check(&o0, "o0", "", "", "");
    let o1 = A
        .background()
        .with_value(&K1, Some("c1k1"))
        .unwrap()
        .without_cancel()
        .unwrap();
    check(&o1, "o1", "c1k1", "", "");
    let o2 = o1.with_value(&K2, Some("o2k2")).unwrap();
    check(&o2, "o2", "c1k1", "o2k2", "");
    let o3 = c4.without_cancel().unwrap();
    check(&o3, "o3", "", "c2k2", "c3k3");
    let o4 = o3.with_value(&K3, None).unwrap();
    check(&o4, "o4", "", "c2k2", "");
}

// ------------------------------------------------------------------------------------------------
// TestSimultaneousCancels, TestInterlockedCancels
// ------------------------------------------------------------------------------------------------

#[test]
fn test_simultaneous_cancels() {
    static A: Arena<128> = Arena::new();
    let Child {
        ctx: root,
        cancel: root_cancel,
    } = A.background().with_cancel().unwrap();
    let mut all: Vec<(Context<'static>, Canceler<'static>)> = vec![(root, root_cancel)];
    // A tree of ~100 contexts, four children per node, breadth first.
    let mut q = 0;
    while all.len() < 100 {
        for _ in 0..4 {
            let pair = all[q].0.with_cancel().unwrap().into_parts();
            all.push(pair);
        }
        q += 1;
    }
    let (ctxs, cancels): (Vec<_>, Vec<_>) = all.into_iter().unzip();
    // Start all the cancels at once, in an order unrelated to the tree.
    let barrier = Barrier::new(cancels.len());
    thread::scope(|s| {
        for i in 0..cancels.len() {
            let c = &cancels[(i * 37) % cancels.len()];
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                c.cancel();
                assert!(c.context().is_done(), "cancel() returned before done");
            });
        }
    });
    for c in &ctxs {
        assert_eq!(c.err(), Some(Error::Canceled));
    }
    drop(cancels);
    drop(ctxs);
    assert_eq!(A.stats().live, 0);
}

#[test]
fn test_interlocked_cancels() {
    static A: Arena<4> = Arena::new();
    let Child {
        ctx: parent,
        cancel: cancel_parent,
    } = A.background().with_cancel().unwrap();
    let Child {
        ctx: child,
        cancel: cancel_child,
    } = parent.with_cancel().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            while !parent.is_done() {
                std::hint::spin_loop();
            }
            cancel_child.cancel();
        });
        cancel_parent.cancel();
    });
    assert!(child.is_done());
    assert_eq!(child.err(), Some(Error::Canceled));
}

// ------------------------------------------------------------------------------------------------
// TestLayersCancel, TestLayersTimeout
// ------------------------------------------------------------------------------------------------

/// A small deterministic PRNG (xorshift64*), seeded per run.
struct Rng(u64);
impl Rng {
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

/// Distinct keys for the layers (each array element is its own static address).
static LAYER_KEYS: [Key<usize>; 128] = [const { Key::new("layer") }; 128];

fn test_layers(arena: &'static ctxtree::RawArena, clock: &ManualClock, seed: u64, timeout: bool) {
    const MIN_LAYERS: usize = 30;
    let mut r = Rng(seed | 1);
    let mut vals: Vec<usize> = Vec::new();
    let mut cancels: Vec<Canceler<'static>> = Vec::new();
    let mut num_timers = 0;
    let mut ctx = arena.background();
    let mut i = 0;
    while i < MIN_LAYERS || num_timers == 0 || cancels.is_empty() || vals.is_empty() {
        match r.below(3) {
            0 => {
                let k = vals.len();
                ctx = ctx.with_value(&LAYER_KEYS[k], k * 1000 + 7).unwrap();
                vals.push(k);
            }
            1 => {
                let Child { ctx: c, cancel } = ctx.with_cancel().unwrap();
                ctx = c;
                cancels.push(cancel);
            }
            _ => {
                let d = if timeout {
                    Duration::from_millis(1)
                } else {
                    VERY_LONG
                };
                let Child { ctx: c, cancel } = ctx.with_timeout(d).unwrap();
                ctx = c;
                cancels.push(cancel);
                num_timers += 1;
            }
        }
        i += 1;
    }
    let check_values = |when: &str| {
        for &k in &vals {
            assert_eq!(
                ctx.value(&LAYER_KEYS[k]),
                Some(k * 1000 + 7),
                "{when}, seed {seed}"
            );
        }
    };
    if !timeout {
        assert!(!ctx.is_done(), "ctx should not be canceled yet");
    }
    let s = ctx.to_string();
    assert!(s.starts_with("context.Background."), "{s}");
    check_values("before cancel");
    if timeout {
        clock.advance(1);
        assert!(ctx.is_done(), "ctx should have timed out, seed {seed}");
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
        check_values("after timeout");
    } else {
        let k = r.below(cancels.len());
        cancels[k].cancel();
        assert!(ctx.is_done(), "ctx should be canceled, seed {seed}");
        assert_eq!(ctx.err(), Some(Error::Canceled));
        check_values("after cancel");
    }
    drop(ctx);
    drop(cancels);
    assert_eq!(arena.stats().live, 0, "seed {seed}");
}

#[test]
fn test_layers_cancel() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<256> = Arena::new().with_clock(&CLOCK);
    for seed in 1..=20 {
        test_layers(&A, &CLOCK, seed * 0x9E37_79B9, false);
    }
}

#[test]
fn test_layers_timeout() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<256> = Arena::new().with_clock(&CLOCK);
    for seed in 1..=20 {
        test_layers(&A, &CLOCK, seed * 0x85EB_CA6B, true);
    }
}

// ------------------------------------------------------------------------------------------------
// TestWithCancelCanceledParent, TestWithCancelSimultaneouslyCanceledParent
// ------------------------------------------------------------------------------------------------

#[test]
fn test_with_cancel_canceled_parent() {
    static A: Arena<4> = Arena::new();
    static BECAUSE: StaticCause = StaticCause::new("Because!");
    let Child {
        ctx: parent,
        cancel: pcancel,
    } = A.background().with_cancel_cause().unwrap();
    pcancel.cancel_with(&BECAUSE);

    let Child {
        ctx: c,
        cancel: _cancel,
    } = parent.with_cancel().unwrap();
    assert!(c.is_done(), "child not done immediately upon construction");
    assert_eq!(c.err(), Some(Error::Canceled));
    assert!(c.cause().unwrap().is_static(&BECAUSE));
}

#[test]
fn test_with_cancel_simultaneously_canceled_parent() {
    static A: Arena<8> = Arena::new();
    static BECAUSE: StaticCause = StaticCause::new("Because!");
    for _ in 0..100 {
        let Child {
            ctx: parent,
            cancel: pcancel,
        } = A.background().with_cancel_cause().unwrap();
        let barrier = Barrier::new(2);
        thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                pcancel.cancel_with(&BECAUSE);
            });
            barrier.wait();
            let Child {
                ctx: c,
                cancel: _cancel,
            } = parent.with_cancel().unwrap();
            while !c.is_done() {
                std::hint::spin_loop();
            }
            assert_eq!(c.err(), Some(Error::Canceled));
            assert!(c.cause().unwrap().is_static(&BECAUSE));
        });
    }
    assert_eq!(A.stats().live, 0);
}

// ------------------------------------------------------------------------------------------------
// TestDeadlineExceededSupportsTimeout (and the error texts)
// ------------------------------------------------------------------------------------------------

#[test]
fn test_deadline_exceeded_supports_timeout() {
    assert!(Error::DeadlineExceeded.is_timeout());
    assert!(!Error::Canceled.is_timeout());
    assert_eq!(Error::Canceled.to_string(), "context canceled");
    assert_eq!(
        Error::DeadlineExceeded.to_string(),
        "context deadline exceeded"
    );
}

// ------------------------------------------------------------------------------------------------
// TestCause: every case of Go's table.
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Want {
    Nil,
    Err(Error),
    Static(&'static StaticCause),
}

fn cause_matches(c: Option<Cause<'_>>, want: Want) -> bool {
    match (c, want) {
        (None, Want::Nil) => true,
        (Some(c), Want::Err(e)) => c.is(e),
        (Some(c), Want::Static(s)) => c.is_static(s),
        _ => false,
    }
}

#[test]
fn test_cause() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<32> = Arena::new().with_clock(&CLOCK);
    static PARENT_CAUSE: StaticCause = StaticCause::new("parentCause");
    static CHILD_CAUSE: StaticCause = StaticCause::new("childCause");
    static TOO_SLOW: StaticCause = StaticCause::new("tooSlow");
    static FINISHED_EARLY: StaticCause = StaticCause::new("finishedEarly");
    let forever = Duration::from_secs(1_000_000);
    let bg = || A.background();

    type Built = (Context<'static>, Vec<Canceler<'static>>);
    type Case<'f> = (
        &'static str,
        Box<dyn Fn() -> Built + 'f>,
        Option<Error>,
        Want,
    );
    // Cancelers Go would have dropped (`ctx, _ = ...`) are kept alive until the check: dropping
    // one is Rust's `cancel()`.
    let cases: Vec<Case<'_>> = vec![
        ("Background", Box::new(|| (bg(), vec![])), None, Want::Nil),
        ("TODO", Box::new(|| (A.todo(), vec![])), None, Want::Nil),
        (
            "WithCancel",
            Box::new(|| {
                let Child { ctx, cancel } = bg().with_cancel().unwrap();
                cancel.cancel();
                (ctx, vec![cancel])
            }),
            Some(Error::Canceled),
            Want::Err(Error::Canceled),
        ),
        (
            "WithCancelCause",
            Box::new(|| {
                let Child { ctx, cancel } = bg().with_cancel_cause().unwrap();
                cancel.cancel_with(&PARENT_CAUSE);
                (ctx, vec![cancel])
            }),
            Some(Error::Canceled),
            Want::Static(&PARENT_CAUSE),
        ),
        (
            "WithCancelCause nil",
            Box::new(|| {
                let Child { ctx, cancel } = bg().with_cancel_cause().unwrap();
                cancel.cancel();
                (ctx, vec![cancel])
            }),
            Some(Error::Canceled),
            Want::Err(Error::Canceled),
        ),
        (
            "WithCancelCause: parent cause before child",
            Box::new(|| {
                let Child {
                    ctx,
                    cancel: cancel_parent,
                } = bg().with_cancel_cause().unwrap();
                let Child {
                    ctx,
                    cancel: cancel_child,
                } = ctx.with_cancel_cause().unwrap();
                cancel_parent.cancel_with(&PARENT_CAUSE);
                cancel_child.cancel_with(&CHILD_CAUSE);
                (ctx, vec![cancel_parent, cancel_child])
            }),
            Some(Error::Canceled),
            Want::Static(&PARENT_CAUSE),
        ),
        (
            "WithCancelCause: parent cause after child",
            Box::new(|| {
                let Child {
                    ctx,
                    cancel: cancel_parent,
                } = bg().with_cancel_cause().unwrap();
                let Child {
                    ctx,
                    cancel: cancel_child,
                } = ctx.with_cancel_cause().unwrap();
                cancel_child.cancel_with(&CHILD_CAUSE);
                cancel_parent.cancel_with(&PARENT_CAUSE);
                (ctx, vec![cancel_parent, cancel_child])
            }),
            Some(Error::Canceled),
            Want::Static(&CHILD_CAUSE),
        ),
        (
            "WithCancelCause: parent cause before nil",
            Box::new(|| {
                let Child {
                    ctx,
                    cancel: cancel_parent,
                } = bg().with_cancel_cause().unwrap();
                let Child {
                    ctx,
                    cancel: cancel_child,
                } = ctx.with_cancel().unwrap();
                cancel_parent.cancel_with(&PARENT_CAUSE);
                cancel_child.cancel();
                (ctx, vec![cancel_parent, cancel_child])
            }),
            Some(Error::Canceled),
            Want::Static(&PARENT_CAUSE),
        ),
        (
            "WithCancelCause: parent cause after nil",
            Box::new(|| {
                let Child {
                    ctx,
                    cancel: cancel_parent,
                } = bg().with_cancel_cause().unwrap();
                let Child {
                    ctx,
                    cancel: cancel_child,
                } = ctx.with_cancel().unwrap();
                cancel_child.cancel();
                cancel_parent.cancel_with(&PARENT_CAUSE);
                (ctx, vec![cancel_parent, cancel_child])
            }),
            Some(Error::Canceled),
            Want::Err(Error::Canceled),
        ),
        (
            "WithCancelCause: child cause after nil",
            Box::new(|| {
                let Child {
                    ctx,
                    cancel: cancel_parent,
                } = bg().with_cancel().unwrap();
                let Child {
                    ctx,
                    cancel: cancel_child,
                } = ctx.with_cancel_cause().unwrap();
                cancel_parent.cancel();
                cancel_child.cancel_with(&CHILD_CAUSE);
                (ctx, vec![cancel_parent, cancel_child])
            }),
            Some(Error::Canceled),
            Want::Err(Error::Canceled),
        ),
        (
            "WithCancelCause: child cause before nil",
            Box::new(|| {
                let Child {
                    ctx,
                    cancel: cancel_parent,
                } = bg().with_cancel().unwrap();
                let Child {
                    ctx,
                    cancel: cancel_child,
                } = ctx.with_cancel_cause().unwrap();
                cancel_child.cancel_with(&CHILD_CAUSE);
                cancel_parent.cancel();
                (ctx, vec![cancel_parent, cancel_child])
            }),
            Some(Error::Canceled),
            Want::Static(&CHILD_CAUSE),
        ),
        (
            "WithTimeout",
            Box::new(|| {
                let Child { ctx, cancel } = bg().with_timeout(Duration::ZERO).unwrap();
                cancel.cancel();
                (ctx, vec![cancel])
            }),
            Some(Error::DeadlineExceeded),
            Want::Err(Error::DeadlineExceeded),
        ),
        (
            "WithTimeout canceled",
            Box::new(move || {
                let Child { ctx, cancel } = bg().with_timeout(forever).unwrap();
                cancel.cancel();
                (ctx, vec![cancel])
            }),
            Some(Error::Canceled),
            Want::Err(Error::Canceled),
        ),
        (
            "WithTimeoutCause",
            Box::new(|| {
                let Child { ctx, cancel } =
                    bg().with_timeout_cause(Duration::ZERO, &TOO_SLOW).unwrap();
                cancel.cancel();
                (ctx, vec![cancel])
            }),
            Some(Error::DeadlineExceeded),
            Want::Static(&TOO_SLOW),
        ),
        (
            "WithTimeoutCause canceled",
            Box::new(move || {
                let Child { ctx, cancel } = bg().with_timeout_cause(forever, &TOO_SLOW).unwrap();
                cancel.cancel();
                (ctx, vec![cancel])
            }),
            Some(Error::Canceled),
            Want::Err(Error::Canceled),
        ),
        (
            "WithTimeoutCause stacked",
            Box::new(|| {
                let Child { ctx, cancel } = bg().with_cancel_cause().unwrap();
                let Child { ctx, cancel: c2 } =
                    ctx.with_timeout_cause(Duration::ZERO, &TOO_SLOW).unwrap();
                cancel.cancel_with(&FINISHED_EARLY);
                (ctx, vec![cancel, c2])
            }),
            Some(Error::DeadlineExceeded),
            Want::Static(&TOO_SLOW),
        ),
        (
            "WithTimeoutCause stacked canceled",
            Box::new(move || {
                let Child { ctx, cancel } = bg().with_cancel_cause().unwrap();
                let Child { ctx, cancel: c2 } = ctx.with_timeout_cause(forever, &TOO_SLOW).unwrap();
                cancel.cancel_with(&FINISHED_EARLY);
                (ctx, vec![cancel, c2])
            }),
            Some(Error::Canceled),
            Want::Static(&FINISHED_EARLY),
        ),
        (
            "WithoutCancel",
            Box::new(|| (bg().without_cancel().unwrap(), vec![])),
            None,
            Want::Nil,
        ),
        (
            "WithoutCancel canceled",
            Box::new(|| {
                let Child { ctx, cancel } = bg().with_cancel_cause().unwrap();
                let ctx = ctx.without_cancel().unwrap();
                cancel.cancel_with(&FINISHED_EARLY);
                (ctx, vec![cancel])
            }),
            None,
            Want::Nil,
        ),
        (
            "WithoutCancel timeout",
            Box::new(|| {
                let Child { ctx, cancel } =
                    bg().with_timeout_cause(Duration::ZERO, &TOO_SLOW).unwrap();
                let ctx = ctx.without_cancel().unwrap();
                cancel.cancel();
                (ctx, vec![cancel])
            }),
            None,
            Want::Nil,
        ),
        // Go's three "custom context" cases build a context outside the package, attached to
        // its parent with AfterFunc. Every ctxtree context is a tree node, so their
        // counterpart is a plain child with its own canceler.
        (
            "parent of child not canceled",
            Box::new(|| {
                let Child { ctx, cancel: c1 } = bg().with_cancel_cause().unwrap();
                let Child {
                    ctx,
                    cancel: cancel2,
                } = ctx.with_cancel().unwrap();
                cancel2.cancel();
                (ctx, vec![c1, cancel2])
            }),
            Some(Error::Canceled),
            Want::Err(Error::Canceled),
        ),
        (
            "parent of child is canceled before",
            Box::new(|| {
                let Child {
                    ctx,
                    cancel: cancel1,
                } = bg().with_cancel_cause().unwrap();
                let Child {
                    ctx,
                    cancel: cancel2,
                } = ctx.with_cancel().unwrap();
                cancel1.cancel_with(&PARENT_CAUSE);
                cancel2.cancel();
                (ctx, vec![cancel1, cancel2])
            }),
            Some(Error::Canceled),
            Want::Static(&PARENT_CAUSE),
        ),
        (
            // Go's custom context gets the parent's cause here ("this isn't really right");
            // a tree node knows it was cancelled first and keeps its own (absent) cause.
            "parent of child is canceled after",
            Box::new(|| {
                let Child {
                    ctx,
                    cancel: cancel1,
                } = bg().with_cancel_cause().unwrap();
                let Child {
                    ctx,
                    cancel: cancel2,
                } = ctx.with_cancel().unwrap();
                cancel2.cancel();
                cancel1.cancel_with(&PARENT_CAUSE);
                (ctx, vec![cancel1, cancel2])
            }),
            Some(Error::Canceled),
            Want::Err(Error::Canceled),
        ),
    ];

    for (name, build, err, cause) in cases {
        let (ctx, guards) = build();
        assert_eq!(ctx.err(), err, "{name}: ctx.err()");
        assert!(
            cause_matches(ctx.cause(), cause),
            "{name}: ctx.cause() = {:?}, want {cause:?}",
            ctx.cause()
        );
        drop(guards);
        // Dropping the cancelers (a late `cancel()`) never changes a recorded outcome.
        assert_eq!(ctx.err(), err, "{name}: ctx.err() after drop");
        assert!(cause_matches(ctx.cause(), cause), "{name}: after drop");
    }
    assert_eq!(A.stats().live, 0);
}

#[test]
fn test_with_deadline_cause_canceler_cancels_with_canceled() {
    static A: Arena<4> = Arena::new(); // no clock: deadlines fire through `expire`
    static TOO_SLOW: StaticCause = StaticCause::new("tooSlow");
    let Child { ctx, cancel } = A
        .background()
        .with_deadline_cause(Instant::from_ticks(100), &TOO_SLOW)
        .unwrap();
    cancel.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(
        ctx.cause().unwrap().is(Error::Canceled),
        "not the deadline's cause"
    );
    assert_eq!(A.expire(Instant::from_ticks(100)), None);
    assert_eq!(ctx.err(), Some(Error::Canceled));

    // And when it is the deadline that fires, the cause is the deadline's.
    let Child {
        ctx: ctx2,
        cancel: _c2,
    } = A
        .background()
        .with_deadline_cause(Instant::from_ticks(200), &TOO_SLOW)
        .unwrap();
    assert_eq!(A.expire(Instant::from_ticks(200)), None);
    assert_eq!(ctx2.err(), Some(Error::DeadlineExceeded));
    assert!(ctx2.cause().unwrap().is_static(&TOO_SLOW));
    assert_eq!(ctx2.cause().unwrap().to_string(), "tooSlow");
}

#[test]
fn test_timeouts_under_canceled_parent() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    static WHY: StaticCause = StaticCause::new("why");
    static TOO_SLOW: StaticCause = StaticCause::new("tooSlow");
    let Child {
        ctx: parent,
        cancel,
    } = A.background().with_cancel_cause().unwrap();
    cancel.cancel_with(&WHY);
    let Child {
        ctx: t,
        cancel: _c1,
    } = parent.with_timeout(Duration::from_secs(5)).unwrap();
    let Child {
        ctx: tc,
        cancel: _c2,
    } = parent
        .with_timeout_cause(Duration::from_secs(5), &TOO_SLOW)
        .unwrap();
    let Child {
        ctx: tz,
        cancel: _c3,
    } = parent
        .with_timeout_cause(Duration::ZERO, &TOO_SLOW)
        .unwrap();
    for c in [&t, &tc, &tz] {
        assert_eq!(
            c.err(),
            Some(Error::Canceled),
            "born with the parent's error"
        );
        assert!(c.cause().unwrap().is_static(&WHY), "and the parent's cause");
    }
    CLOCK.advance(10_000);
    for c in [&t, &tc, &tz] {
        assert_eq!(c.err(), Some(Error::Canceled), "first error wins");
        assert!(c.cause().unwrap().is_static(&WHY));
    }
}

// ------------------------------------------------------------------------------------------------
// TestCauseRace: `cause()` never shows an error without its cause.
// ------------------------------------------------------------------------------------------------

#[test]
fn test_cause_race() {
    static A: Arena<4> = Arena::new();
    static CAUSE: StaticCause = StaticCause::new("TestCauseRace");
    for _ in 0..200 {
        let Child { ctx, cancel } = A.background().with_cancel_cause().unwrap();
        let Child {
            ctx: child,
            cancel: _cc,
        } = ctx.with_cancel().unwrap();
        thread::scope(|s| {
            s.spawn(|| cancel.cancel_with(&CAUSE));
            loop {
                // Poll cause() rather than waiting for done.
                if let Some(c) = ctx.cause() {
                    assert!(c.is_static(&CAUSE), "cause() = {c:?}, want the cause");
                    break;
                }
                std::hint::spin_loop();
            }
            loop {
                if let Some(c) = child.cause() {
                    assert!(c.is_static(&CAUSE), "child cause() = {c:?}");
                    break;
                }
                std::hint::spin_loop();
            }
        });
    }
}

// ------------------------------------------------------------------------------------------------
// TestWithoutCancel
// ------------------------------------------------------------------------------------------------

#[test]
fn test_without_cancel() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    static KEY: Key<&'static str> = Key::new("key");
    static WHY: StaticCause = StaticCause::new("why");

    let ctx = A.background().with_value(&KEY, "value").unwrap();
    let Child { ctx: timed, cancel } = ctx.with_timeout(Duration::from_millis(5)).unwrap();
    let wc = timed.without_cancel().unwrap();
    assert_eq!(wc.deadline(), None);
    assert!(!wc.can_be_done(), "Done() must be nil");
    assert_eq!(wc.err(), None);
    assert_eq!(wc.value(&KEY), Some("value"));
    assert_eq!(
        wc.to_string(),
        "context.Background.WithValue(key, &str).WithDeadline(@5 [5ms]).WithoutCancel"
    );

    // Neither the deadline nor a cancel reaches it.
    CLOCK.advance(5);
    assert_eq!(timed.err(), Some(Error::DeadlineExceeded));
    assert_eq!(wc.err(), None);
    cancel.cancel_with(&WHY);
    assert!(wc.cause().is_none());
    assert!(!wc.is_done());

    // Its children are cancellable on their own, and live independently of the old tree.
    let Child {
        ctx: child,
        cancel: child_cancel,
    } = wc.with_cancel().unwrap();
    assert!(
        !child.is_done(),
        "not born done from the cancelled ancestor"
    );
    assert_eq!(child.deadline(), None);
    assert_eq!(child.value(&KEY), Some("value"));
    child_cancel.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
}

// ------------------------------------------------------------------------------------------------
// AfterFunc (afterfunc_test.go and the AfterFunc tests of x_test.go)
// ------------------------------------------------------------------------------------------------

#[test]
fn test_after_func_called_after_cancel() {
    static A: Arena<4> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let Child { ctx, cancel } = A.background().with_cancel().unwrap();
    let stop = ctx
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(
        RAN.load(Ordering::SeqCst),
        0,
        "called before the context is done"
    );
    cancel.cancel();
    assert_eq!(RAN.load(Ordering::SeqCst), 1, "not called after cancel");
    assert!(!stop.stop(), "stop() = true, want false");
}

#[test]
fn test_after_func_called_after_timeout() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    static RAN_EXPIRE: AtomicUsize = AtomicUsize::new(0);
    static RAN_LAZY: AtomicUsize = AtomicUsize::new(0);

    // Fired by the expiry driver.
    let Child {
        ctx,
        cancel: _cancel,
    } = A
        .background()
        .with_timeout(Duration::from_millis(1))
        .unwrap();
    let _stop = ctx
        .after_func(|| {
            RAN_EXPIRE.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(A.expire(A.now().unwrap()), Some(Instant::from_ticks(1)));
    assert_eq!(RAN_EXPIRE.load(Ordering::SeqCst), 0);
    CLOCK.advance(1);
    assert_eq!(A.expire(A.now().unwrap()), None);
    assert_eq!(RAN_EXPIRE.load(Ordering::SeqCst), 1);

    // Fired by the first observation of the passed deadline.
    let Child {
        ctx: ctx2,
        cancel: _cancel2,
    } = A
        .background()
        .with_timeout(Duration::from_millis(1))
        .unwrap();
    let _stop2 = ctx2
        .after_func(|| {
            RAN_LAZY.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    CLOCK.advance(1);
    assert_eq!(RAN_LAZY.load(Ordering::SeqCst), 0, "nobody looked yet");
    assert!(ctx2.is_done());
    assert_eq!(RAN_LAZY.load(Ordering::SeqCst), 1);
    assert_eq!(ctx2.err(), Some(Error::DeadlineExceeded));
    assert_eq!(RAN_LAZY.load(Ordering::SeqCst), 1, "once");
}

#[test]
fn test_after_func_called_immediately() {
    static A: Arena<4> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let Child { ctx, cancel } = A.background().with_cancel().unwrap();
    cancel.cancel();
    let stop = ctx
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(
        RAN.load(Ordering::SeqCst),
        1,
        "not called for a canceled context"
    );
    assert!(!stop.stop());
}

#[test]
fn test_after_func_not_called_after_stop() {
    static A: Arena<4> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let Child { ctx, cancel } = A.background().with_cancel().unwrap();
    let stop = ctx
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert!(stop.stop(), "stop() = false, want true");
    cancel.cancel();
    assert_eq!(RAN.load(Ordering::SeqCst), 0, "called after stop");
    assert!(!stop.stop(), "second stop() = true, want false");
}

#[test]
fn test_after_func_stop_after_fire_is_false_and_runs_once() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let Child {
        ctx: parent,
        cancel: pcancel,
    } = A.background().with_cancel().unwrap();
    let Child { ctx, cancel } = parent.with_timeout(Duration::from_millis(1)).unwrap();
    let stop = ctx
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    // Every way of finishing the context, one after the other: the callback runs once.
    cancel.cancel();
    pcancel.cancel();
    CLOCK.advance(5);
    let _ = A.expire(A.now().unwrap());
    assert!(ctx.is_done());
    drop(cancel);
    assert_eq!(RAN.load(Ordering::SeqCst), 1);
    assert!(!stop.stop());
    assert!(!stop.stop());
}

/// Sets a flag when dropped: tells "dropped unrun" from "never dropped".
struct DropFlag(&'static AtomicBool);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn test_after_func_not_called_on_context_that_cannot_be_done() {
    static A: Arena<4> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    static DROPPED: AtomicBool = AtomicBool::new(false);
    static DROPPED2: AtomicBool = AtomicBool::new(false);
    static K: Key<u8> = Key::new("k");

    let guard = DropFlag(&DROPPED);
    let stop = A
        .background()
        .after_func(move || {
            let _g = &guard;
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert!(DROPPED.load(Ordering::SeqCst), "f is dropped unrun at once");
    assert_eq!(A.stats().live, 0, "no node is used");
    // Go: stop on a never-done context reports that it prevented the call, once.
    assert!(stop.stop());
    assert!(!stop.stop());

    // The same through WithoutCancel of a cancellable context.
    let Child { ctx, cancel } = A.background().with_cancel().unwrap();
    let wc = ctx.with_value(&K, 1).unwrap().without_cancel().unwrap();
    let live = A.stats().live;
    let guard2 = DropFlag(&DROPPED2);
    let stop2 = wc
        .after_func(move || {
            let _g = &guard2;
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert!(DROPPED2.load(Ordering::SeqCst));
    assert_eq!(A.stats().live, live);
    cancel.cancel();
    assert_eq!(RAN.load(Ordering::SeqCst), 0);
    assert!(stop2.stop());
}

#[test]
fn test_after_func_stop_unlinks() {
    static A: Arena<4> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let Child { ctx, cancel } = A.background().with_cancel().unwrap();
    // Go's TestCustomContextAfterFuncUnregisterAfterFunc: stop unregisters.
    let stop = ctx
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(A.stats().live, 2);
    assert!(stop.stop());
    drop(stop);
    assert_eq!(A.stats().live, 1, "the registration left the parent's list");

    // Dropping the handle without stop keeps the registration (as ignoring Go's stop does).
    let handle = ctx
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    drop(handle);
    assert_eq!(A.stats().live, 2, "still registered");
    cancel.cancel();
    assert_eq!(RAN.load(Ordering::SeqCst), 1, "and still called");
    assert_eq!(A.stats().live, 1, "firing unlinked and freed it");
}

#[test]
fn test_after_func_runs_before_cancel_returns() {
    // Deviation from Go, documented: Go runs f in its own goroutine; the core runs it inline
    // in the cancelling call, so it has run by the time cancel() returns, on that thread.
    static A: Arena<4> = Arena::new();
    static RAN: AtomicBool = AtomicBool::new(false);
    let Child { ctx, cancel } = A.background().with_cancel().unwrap();
    let Child {
        ctx: child,
        cancel: _cc,
    } = ctx.with_cancel().unwrap();
    let _stop = child
        .after_func(|| RAN.store(true, Ordering::SeqCst))
        .unwrap();
    cancel.cancel();
    assert!(RAN.load(Ordering::SeqCst));
}

// ------------------------------------------------------------------------------------------------
// TestContextErrDoneRace: err() non-None implies done; structural checks over every kind.
// ------------------------------------------------------------------------------------------------

#[test]
fn test_err_implies_done() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<32> = Arena::new().with_clock(&CLOCK);
    static K: Key<u8> = Key::new("k");

    fn consistent(c: &Context<'_>) {
        let err = c.err();
        let done = c.is_done();
        let cause = c.cause();
        assert_eq!(err.is_some(), done, "{c:?}");
        assert_eq!(cause.is_some(), done, "{c:?}");
        if let (Some(e), Some(Cause::Error(ce))) = (err, cause) {
            assert_eq!(e, ce, "a bare cause equals the error");
        }
    }

    let Child { ctx: p, cancel: pc } = A.background().with_cancel().unwrap();
    let Child {
        ctx: d,
        cancel: _dc,
    } = p.with_timeout(Duration::from_millis(3)).unwrap();
    let v = d.with_value(&K, 1).unwrap();
    let Child { ctx: c, cancel: cc } = v.with_cancel().unwrap();
    let w = c.without_cancel().unwrap();
    let all = [
        A.background(),
        A.todo(),
        p.clone(),
        d.clone(),
        v.clone(),
        c.clone(),
        w.clone(),
    ];
    for x in &all {
        consistent(x);
    }
    cc.cancel();
    for x in &all {
        consistent(x);
    }
    CLOCK.advance(3);
    for x in &all {
        consistent(x);
    }
    pc.cancel();
    for x in &all {
        consistent(x);
    }
    assert_eq!(c.err(), Some(Error::Canceled));
    assert_eq!(d.err(), Some(Error::DeadlineExceeded));
    assert_eq!(v.err(), Some(Error::DeadlineExceeded));
    assert_eq!(p.err(), Some(Error::Canceled));

    // The racy form: a canceller on another thread, an observer spinning on err().
    for _ in 0..50 {
        let Child { ctx, cancel } = A.background().with_cancel().unwrap();
        thread::scope(|s| {
            s.spawn(|| cancel.cancel());
            while ctx.err().is_none() {
                std::hint::spin_loop();
            }
            assert!(ctx.is_done(), "err() non-nil but not done");
        });
    }
}

// ------------------------------------------------------------------------------------------------
// String(): every constructor chain.
// ------------------------------------------------------------------------------------------------

#[test]
fn test_string_of_every_constructor_chain() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<32> = Arena::new().with_clock(&CLOCK);
    static REQ: Key<u64> = Key::new("request-id");
    static NAME: Key<&'static str> = Key::new("name");
    static TOO_SLOW: StaticCause = StaticCause::new("tooSlow");

    let bg = A.background();
    let Child {
        ctx: c,
        cancel: _g1,
    } = bg.with_cancel().unwrap();
    assert_eq!(c.to_string(), "context.Background.WithCancel");
    let Child {
        ctx: cc,
        cancel: _g2,
    } = c.with_cancel_cause().unwrap();
    assert_eq!(cc.to_string(), "context.Background.WithCancel.WithCancel");
    let Child {
        ctx: d,
        cancel: _g3,
    } = c.with_deadline(Instant::from_ticks(1_500)).unwrap();
    assert_eq!(
        d.to_string(),
        "context.Background.WithCancel.WithDeadline(@1500 [1.5s])"
    );
    let Child {
        ctx: t,
        cancel: _g4,
    } = d
        .with_timeout_cause(Duration::from_secs(1), &TOO_SLOW)
        .unwrap();
    assert_eq!(
        t.to_string(),
        "context.Background.WithCancel.WithDeadline(@1500 [1.5s]).WithDeadline(@1000 [1s])"
    );
    let v = t.with_value(&REQ, 42).unwrap();
    assert_eq!(
        v.to_string(),
        "context.Background.WithCancel.WithDeadline(@1500 [1.5s]).WithDeadline(@1000 [1s])\
         .WithValue(request-id, u64)"
    );
    let w = v.without_cancel().unwrap();
    let n = w.with_value(&NAME, "x").unwrap();
    assert_eq!(
        n.to_string(),
        "context.Background.WithCancel.WithDeadline(@1500 [1.5s]).WithDeadline(@1000 [1s])\
         .WithValue(request-id, u64).WithoutCancel.WithValue(name, &str)"
    );
    // The time left follows the clock, as Go's `time.Until(deadline)`.
    CLOCK.advance(1_250);
    assert_eq!(
        d.to_string(),
        "context.Background.WithCancel.WithDeadline(@1500 [250ms])"
    );
    assert_eq!(
        t.to_string(),
        "context.Background.WithCancel.WithDeadline(@1500 [250ms]).WithDeadline(@1000 [-250ms])"
    );

    // TODO-rooted chains.
    let Child {
        ctx: tc,
        cancel: _g5,
    } = A.todo().with_cancel().unwrap();
    let tw = tc.without_cancel().unwrap();
    assert_eq!(tw.to_string(), "context.TODO.WithCancel.WithoutCancel");
    assert_eq!(
        A.todo().without_cancel().unwrap().to_string(),
        "context.TODO.WithoutCancel"
    );
    // Debug names the chain and the state.
    let dbg = format!("{tc:?}");
    assert!(dbg.contains("context.TODO.WithCancel"), "{dbg}");
}

#[test]
fn test_deadline_display_without_clock() {
    static A: Arena<4> = Arena::new();
    let Child { ctx: d, cancel: _c } = A
        .background()
        .with_deadline(Instant::from_ticks(7))
        .unwrap();
    assert_eq!(
        d.to_string(),
        "context.Background.WithDeadline(@7 [no clock])"
    );
}

// ------------------------------------------------------------------------------------------------
// Semantics that ports usually get wrong (DESIGN.md §1).
// ------------------------------------------------------------------------------------------------

#[test]
fn test_child_deadline_never_extends_parent() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    let Child {
        ctx: p,
        cancel: _pc,
    } = A
        .background()
        .with_deadline(Instant::from_ticks(10))
        .unwrap();
    let Child {
        ctx: c,
        cancel: _cc,
    } = p.with_deadline(Instant::from_ticks(1_000)).unwrap();
    let Child {
        ctx: t,
        cancel: _tc,
    } = p.with_timeout(Duration::from_secs(3600)).unwrap();
    assert_eq!(c.deadline(), Some(Instant::from_ticks(10)));
    assert_eq!(t.deadline(), Some(Instant::from_ticks(10)));
    CLOCK.set(Instant::from_ticks(10));
    assert_eq!(c.err(), Some(Error::DeadlineExceeded));
    assert_eq!(t.err(), Some(Error::DeadlineExceeded));
    assert_eq!(p.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn test_earlier_parent_deadline_makes_plain_cancel_child() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    static PARENT_SLOW: StaticCause = StaticCause::new("parent too slow");
    static CHILD_SLOW: StaticCause = StaticCause::new("child too slow");
    let Child {
        ctx: p,
        cancel: _pc,
    } = A
        .background()
        .with_deadline_cause(Instant::from_ticks(10), &PARENT_SLOW)
        .unwrap();
    let Child {
        ctx: c,
        cancel: _cc,
    } = p
        .with_deadline_cause(Instant::from_ticks(20), &CHILD_SLOW)
        .unwrap();
    // Reports the parent's deadline, prints as WithCancel.
    assert_eq!(c.deadline(), Some(Instant::from_ticks(10)));
    assert_eq!(
        c.to_string(),
        "context.Background.WithDeadline(@10 [10ms]).WithCancel"
    );
    // On expiry it carries the parent's error and the parent's cause.
    CLOCK.set(Instant::from_ticks(10));
    assert_eq!(c.err(), Some(Error::DeadlineExceeded));
    assert!(c.cause().unwrap().is_static(&PARENT_SLOW));
    assert!(p.cause().unwrap().is_static(&PARENT_SLOW));

    // Same when the expiry is driven by `expire` rather than observed lazily.
    let Child {
        ctx: p2,
        cancel: _pc2,
    } = A
        .background()
        .with_deadline_cause(Instant::from_ticks(30), &PARENT_SLOW)
        .unwrap();
    let Child {
        ctx: c2,
        cancel: _cc2,
    } = p2
        .with_deadline_cause(Instant::from_ticks(40), &CHILD_SLOW)
        .unwrap();
    assert_eq!(A.expire(Instant::from_ticks(30)), None);
    assert_eq!(c2.err(), Some(Error::DeadlineExceeded));
    assert!(c2.cause().unwrap().is_static(&PARENT_SLOW));
}

#[test]
fn test_equal_deadline_still_makes_deadline_node() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    static PARENT_SLOW: StaticCause = StaticCause::new("parent too slow");
    static CHILD_SLOW: StaticCause = StaticCause::new("child too slow");
    let Child {
        ctx: p,
        cancel: _pc,
    } = A
        .background()
        .with_deadline_cause(Instant::from_ticks(10), &PARENT_SLOW)
        .unwrap();
    let Child {
        ctx: c,
        cancel: _cc,
    } = p
        .with_deadline_cause(Instant::from_ticks(10), &CHILD_SLOW)
        .unwrap();
    assert_eq!(c.deadline(), Some(Instant::from_ticks(10)));
    assert_eq!(
        c.to_string(),
        "context.Background.WithDeadline(@10 [10ms]).WithDeadline(@10 [10ms])"
    );
    CLOCK.set(Instant::from_ticks(10));
    // Either node may expire first: both report DeadlineExceeded, each with a deadline cause.
    assert_eq!(c.err(), Some(Error::DeadlineExceeded));
    assert_eq!(p.err(), Some(Error::DeadlineExceeded));
    let cause = c.cause().unwrap();
    assert!(cause.is_static(&CHILD_SLOW) || cause.is_static(&PARENT_SLOW));
    assert!(p.cause().unwrap().is_static(&PARENT_SLOW));
}

#[test]
fn test_earlier_child_deadline_expires_alone() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    let Child {
        ctx: p,
        cancel: _pc,
    } = A
        .background()
        .with_deadline(Instant::from_ticks(10))
        .unwrap();
    let Child {
        ctx: c,
        cancel: _cc,
    } = p.with_deadline(Instant::from_ticks(5)).unwrap();
    assert_eq!(c.deadline(), Some(Instant::from_ticks(5)));
    assert_eq!(p.deadline(), Some(Instant::from_ticks(10)));
    CLOCK.set(Instant::from_ticks(5));
    assert_eq!(c.err(), Some(Error::DeadlineExceeded));
    assert_eq!(p.err(), None, "a child's expiry never touches its parent");
}

#[test]
fn test_deadline_exceeded_flows_down() {
    static A: Arena<16> = Arena::new();
    static K: Key<u8> = Key::new("k");
    static SLOW: StaticCause = StaticCause::new("slow");
    let Child {
        ctx: p,
        cancel: _pc,
    } = A
        .background()
        .with_deadline_cause(Instant::from_ticks(10), &SLOW)
        .unwrap();
    let Child {
        ctx: c,
        cancel: _cc,
    } = p.with_cancel().unwrap();
    let v = c.with_value(&K, 1).unwrap();
    let Child {
        ctx: g,
        cancel: _gc,
    } = v.with_cancel_cause().unwrap();
    let Child {
        ctx: gg,
        cancel: _ggc,
    } = g.with_deadline(Instant::from_ticks(50)).unwrap();
    assert_eq!(A.expire(Instant::from_ticks(10)), None);
    for x in [&p, &c, &v, &g, &gg] {
        assert_eq!(x.err(), Some(Error::DeadlineExceeded), "{x}");
        assert!(x.cause().unwrap().is_static(&SLOW), "{x}");
    }
    // A child born under the expired parent inherits the same.
    let Child {
        ctx: late,
        cancel: _lc,
    } = g.with_cancel().unwrap();
    assert_eq!(late.err(), Some(Error::DeadlineExceeded));
    assert!(late.cause().unwrap().is_static(&SLOW));
}

#[test]
fn test_first_error_and_first_cause_win() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    static FIRST: StaticCause = StaticCause::new("first");
    static SECOND: StaticCause = StaticCause::new("second");
    static SLOW: StaticCause = StaticCause::new("slow");

    let Child { ctx: a, cancel: ca } = A.background().with_cancel_cause().unwrap();
    ca.cancel_with(&FIRST);
    ca.cancel_with(&SECOND);
    ca.cancel();
    assert_eq!(a.err(), Some(Error::Canceled));
    assert!(a.cause().unwrap().is_static(&FIRST));

    // Cancelled without a cause first: a later cause is not recorded.
    let Child { ctx: b, cancel: cb } = A.background().with_cancel_cause().unwrap();
    cb.cancel();
    cb.cancel_with(&SECOND);
    assert!(b.cause().unwrap().is(Error::Canceled));

    // Deadline first, then cancel: DeadlineExceeded and the deadline's cause stay.
    let Child { ctx: d, cancel: cd } = A
        .background()
        .with_deadline_cause(Instant::from_ticks(5), &SLOW)
        .unwrap();
    CLOCK.set(Instant::from_ticks(5));
    assert_eq!(d.err(), Some(Error::DeadlineExceeded));
    cd.cancel_with(&FIRST);
    assert_eq!(d.err(), Some(Error::DeadlineExceeded));
    assert!(d.cause().unwrap().is_static(&SLOW));

    // Cancel first, then the deadline passes: Canceled stays.
    let Child { ctx: e, cancel: ce } = A
        .background()
        .with_deadline_cause(Instant::from_ticks(10), &SLOW)
        .unwrap();
    ce.cancel_with(&FIRST);
    CLOCK.set(Instant::from_ticks(10));
    assert_eq!(A.expire(Instant::from_ticks(10)), None);
    assert_eq!(e.err(), Some(Error::Canceled));
    assert!(e.cause().unwrap().is_static(&FIRST));
}

#[test]
fn test_child_of_cancelled_parent_is_born_cancelled() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<32> = Arena::new().with_clock(&CLOCK);
    static K: Key<u8> = Key::new("k");
    static WHY: StaticCause = StaticCause::new("why");
    static SLOW: StaticCause = StaticCause::new("slow");
    static RAN: AtomicUsize = AtomicUsize::new(0);

    for (err, cause) in [(Error::Canceled, &WHY), (Error::DeadlineExceeded, &SLOW)] {
        let (parent, pc) = if err == Error::Canceled {
            let Child { ctx: p, cancel: c } = A.background().with_cancel_cause().unwrap();
            c.cancel_with(&WHY);
            (p, c)
        } else {
            let at = A.now().unwrap().add_ticks(1);
            let Child { ctx: p, cancel: c } =
                A.background().with_deadline_cause(at, &SLOW).unwrap();
            CLOCK.advance(1);
            assert!(p.is_done());
            (p, c)
        };
        let Child {
            ctx: c1,
            cancel: _g1,
        } = parent.with_cancel().unwrap();
        let Child {
            ctx: c2,
            cancel: _g2,
        } = parent.with_cancel_cause().unwrap();
        let Child {
            ctx: c3,
            cancel: _g3,
        } = parent
            .with_deadline(Instant::from_ticks(u64::MAX - 1))
            .unwrap();
        let Child {
            ctx: c4,
            cancel: _g4,
        } = parent.with_timeout(Duration::from_secs(60)).unwrap();
        let Child {
            ctx: c5,
            cancel: _g5,
        } = parent
            .with_timeout_cause(Duration::from_secs(60), &SLOW)
            .unwrap();
        let c6 = parent.with_value(&K, 1).unwrap();
        let Child {
            ctx: c7,
            cancel: _g7,
        } = c6.with_cancel().unwrap();
        for c in [&c1, &c2, &c3, &c4, &c5, &c6, &c7] {
            assert!(c.is_done(), "{c}");
            assert_eq!(c.err(), Some(err), "{c}");
            assert!(c.cause().unwrap().is_static(cause), "{c}");
        }
        let before = RAN.load(Ordering::SeqCst);
        let stop = parent
            .after_func(|| {
                RAN.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        assert_eq!(RAN.load(Ordering::SeqCst), before + 1);
        assert!(!stop.stop());
        drop(pc);
    }
}

#[test]
fn test_none_value_hides_outer_binding() {
    static A: Arena<8> = Arena::new();
    static TRACE: Key<Option<u32>> = Key::new("trace");
    let outer = A.background().with_value(&TRACE, Some(7)).unwrap();
    let Child {
        ctx: mid,
        cancel: _c,
    } = outer.with_cancel().unwrap();
    let inner = mid.with_value(&TRACE, None).unwrap();
    assert_eq!(outer.value(&TRACE), Some(Some(7)));
    assert_eq!(mid.value(&TRACE), Some(Some(7)));
    assert_eq!(
        inner.value(&TRACE),
        Some(None),
        "bound to none, not unbound"
    );
    let deeper = inner.without_cancel().unwrap();
    assert_eq!(deeper.value(&TRACE), Some(None));
    // Nearest wins again below.
    let again = deeper.with_value(&TRACE, Some(9)).unwrap();
    assert_eq!(again.value(&TRACE), Some(Some(9)));
    assert_eq!(A.background().value(&TRACE), None);
}

#[test]
fn test_parent_never_sees_child_values() {
    static A: Arena<8> = Arena::new();
    static K: Key<u32> = Key::new("k");
    static OTHER: Key<u32> = Key::new("k"); // same name, different key
    let p = A.background().with_value(&K, 1).unwrap();
    let Child {
        ctx: c,
        cancel: _cc,
    } = p.with_cancel().unwrap();
    let child = c.with_value(&K, 2).unwrap();
    let sibling_key = c.with_value(&OTHER, 3).unwrap();
    assert_eq!(child.value(&K), Some(2));
    assert_eq!(p.value(&K), Some(1));
    assert_eq!(c.value(&K), Some(1));
    assert_eq!(c.value(&OTHER), None);
    assert_eq!(sibling_key.value(&OTHER), Some(3));
    assert_eq!(
        sibling_key.value(&K),
        Some(1),
        "keys are told apart by address"
    );
    assert_eq!(child.value(&OTHER), None, "a sibling's value is invisible");
}

#[test]
fn test_cancel_is_idempotent() {
    static A: Arena<8> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let Child { ctx, cancel } = A.background().with_cancel().unwrap();
    let Child {
        ctx: child,
        cancel: _cc,
    } = ctx.with_cancel().unwrap();
    let _f = child
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    for _ in 0..3 {
        cancel.cancel();
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert_eq!(child.err(), Some(Error::Canceled));
    }
    drop(cancel);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(RAN.load(Ordering::SeqCst), 1);
}

#[test]
fn test_cancel_child_never_touches_parent_or_siblings() {
    static A: Arena<16> = Arena::new();
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let Child {
        ctx: p,
        cancel: _pc,
    } = A.background().with_cancel().unwrap();
    let Child { ctx: a, cancel: ca } = p.with_cancel().unwrap();
    let Child {
        ctx: b,
        cancel: _cb,
    } = p.with_cancel().unwrap();
    let Child {
        ctx: b1,
        cancel: _cb1,
    } = b.with_cancel().unwrap();
    let Child {
        ctx: a1,
        cancel: _ca1,
    } = a.with_cancel().unwrap();
    let _f = p
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    ca.cancel();
    assert_eq!(a.err(), Some(Error::Canceled));
    assert_eq!(a1.err(), Some(Error::Canceled));
    assert_eq!(p.err(), None);
    assert_eq!(b.err(), None);
    assert_eq!(b1.err(), None);
    assert_eq!(
        RAN.load(Ordering::SeqCst),
        0,
        "parent's AfterFunc untouched"
    );
    // The siblings still work, and still follow the parent.
    let Child {
        ctx: b2,
        cancel: _cb2,
    } = b.with_cancel().unwrap();
    assert!(!b2.is_done());
}

#[test]
fn test_create_error_display() {
    assert_eq!(CreateError::ArenaFull.to_string(), "context arena is full");
    assert!(CreateError::NoClock.to_string().contains("no clock"));
}

#[test]
fn test_canceler_context_is_the_same_context() {
    static A: Arena<4> = Arena::new();
    static WHY: StaticCause = StaticCause::with_code(3, "why");
    let Child { ctx, cancel } = A.background().with_cancel_cause().unwrap();
    let again = cancel.context();
    assert_eq!(again.to_string(), ctx.to_string());
    cancel.cancel_with(&WHY);
    assert_eq!(again.err(), Some(Error::Canceled));
    let c = ctx.cause().unwrap();
    assert_eq!(c.code(), Some(3));
    assert_eq!(c.to_string(), "why");
    assert_eq!(A.stats().live, 1);
}

#[test]
fn test_after_func_on_passed_unobserved_deadline_runs_at_once() {
    // Go's AfterFunc on a done context calls f immediately; a deadline that passed but that
    // nobody has observed yet is "done" too.
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<4> = Arena::new().with_clock(&CLOCK);
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let Child { ctx, cancel: _c } = A
        .background()
        .with_timeout(Duration::from_millis(2))
        .unwrap();
    CLOCK.advance(2);
    let stop = ctx
        .after_func(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(RAN.load(Ordering::SeqCst), 1);
    assert!(!stop.stop());
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

/// Counts drops of the value a closure captures.
struct DropCount(&'static AtomicUsize);
impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn test_after_func_closure_is_dropped_exactly_once() {
    static A: Arena<4> = Arena::new();
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let Child { ctx, cancel } = A.background().with_cancel().unwrap();

    // Stopped: dropped unrun, at the stop.
    let guard = DropCount(&DROPS);
    let stop = ctx
        .after_func(move || {
            let _g = &guard;
            RUNS.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(DROPS.load(Ordering::SeqCst), 0);
    assert!(stop.stop());
    assert_eq!(DROPS.load(Ordering::SeqCst), 1);

    // Fired: run, then dropped, once.
    let guard = DropCount(&DROPS);
    let fired = ctx
        .after_func(move || {
            let _g = &guard;
            RUNS.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    cancel.cancel();
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(DROPS.load(Ordering::SeqCst), 2);
    assert!(!fired.stop());
    assert!(!stop.stop());
    drop((stop, fired, ctx, cancel));
    assert_eq!(DROPS.load(Ordering::SeqCst), 2, "no double drop on release");
    assert_eq!(A.stats().live, 0);
}

#[test]
fn test_deadline_under_without_cancel_is_independent() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static A: Arena<8> = Arena::new().with_clock(&CLOCK);
    let Child { ctx: p, cancel: pc } = A
        .background()
        .with_deadline(Instant::from_ticks(5))
        .unwrap();
    let wc = p.without_cancel().unwrap();
    // The parent's earlier deadline is gone: the child's own, later one applies.
    let Child {
        ctx: d,
        cancel: _dc,
    } = wc.with_deadline(Instant::from_ticks(50)).unwrap();
    assert_eq!(d.deadline(), Some(Instant::from_ticks(50)));
    pc.cancel();
    assert!(!d.is_done());
    assert_eq!(
        A.expire(Instant::from_ticks(10)),
        Some(Instant::from_ticks(50))
    );
    CLOCK.set(Instant::from_ticks(50));
    assert_eq!(d.err(), Some(Error::DeadlineExceeded));
    assert_eq!(p.err(), Some(Error::Canceled));
}

#[test]
fn test_core_creates_no_threads() {
    // Go's TestCustomContextGoroutines: propagation starts no goroutine. The core has no
    // threads at all: every operation completes on the caller's thread.
    static A: Arena<8> = Arena::new();
    static RAN_ON: std::sync::Mutex<Option<thread::ThreadId>> = std::sync::Mutex::new(None);
    let Child { ctx, cancel } = A.background().with_cancel().unwrap();
    let Child {
        ctx: child,
        cancel: _cc,
    } = ctx.with_deadline(Instant::from_ticks(100)).unwrap();
    let _f = child
        .after_func(|| *RAN_ON.lock().unwrap() = Some(thread::current().id()))
        .unwrap();
    cancel.cancel();
    assert_eq!(*RAN_ON.lock().unwrap(), Some(thread::current().id()));
}

// ------------------------------------------------------------------------------------------------
// Re-entrancy: callbacks run inline inside cancel(), so they may call back into the tree (as an
// interrupt handler preempting a cancel would).
// ------------------------------------------------------------------------------------------------

#[test]
fn test_after_func_cancelling_an_ancestor_from_inside_a_cancel() {
    static A: Arena<16> = Arena::new();
    static PARENT_CANCEL: std::sync::OnceLock<Canceler<'static>> = std::sync::OnceLock::new();
    static WHY: StaticCause = StaticCause::new("child asked");
    let Child {
        ctx: parent,
        cancel: pc,
    } = A.background().with_cancel_cause().unwrap();
    PARENT_CANCEL.set(pc).unwrap();
    let Child {
        ctx: child,
        cancel: child_cancel,
    } = parent.with_cancel().unwrap();
    let Child {
        ctx: sibling,
        cancel: _sc,
    } = parent.with_cancel().unwrap();
    let Child {
        ctx: nephew,
        cancel: _nc,
    } = sibling.with_cancel().unwrap();
    let _f = child
        .after_func(|| PARENT_CANCEL.get().unwrap().cancel_with(&WHY))
        .unwrap();
    child_cancel.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
    assert!(
        child.cause().unwrap().is(Error::Canceled),
        "cancelled first, no cause"
    );
    for c in [&parent, &sibling, &nephew] {
        assert_eq!(c.err(), Some(Error::Canceled), "{c}");
        assert!(c.cause().unwrap().is_static(&WHY), "{c}");
    }
    drop((child, child_cancel, sibling, _sc, nephew, _nc, _f));
    assert_eq!(
        A.stats().live,
        1,
        "only the parent (held by the static canceler) is left"
    );
}

#[test]
fn test_after_func_deriving_and_registering_from_inside_a_cancel() {
    static A: Arena<16> = Arena::new();
    static CTX: std::sync::OnceLock<Context<'static>> = std::sync::OnceLock::new();
    static INNER_RAN: AtomicUsize = AtomicUsize::new(0);
    static BORN_DONE: AtomicBool = AtomicBool::new(false);
    let Child { ctx, cancel } = A.background().with_cancel().unwrap();
    CTX.set(ctx.clone()).unwrap();
    let _f = ctx
        .after_func(|| {
            let ctx = CTX.get().unwrap();
            // A child made inside the cancel is born done...
            let Child {
                ctx: c,
                cancel: _cc,
            } = ctx.with_cancel().unwrap();
            BORN_DONE.store(c.err() == Some(Error::Canceled), Ordering::SeqCst);
            // ...and a callback registered inside it runs at once.
            let _g = ctx
                .after_func(|| {
                    INNER_RAN.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
        })
        .unwrap();
    cancel.cancel();
    assert!(BORN_DONE.load(Ordering::SeqCst));
    assert_eq!(INNER_RAN.load(Ordering::SeqCst), 1);
    drop((ctx, cancel, _f));
    assert_eq!(A.stats().live, 1, "only the static handle is left");
}
