//! The `alloc` layer: heap values behind [`HeapKey`], heap causes, boxed `after_func`
//! closures, and [`HeapArena`] (fixed capacity chosen at run time, or growing by pages).
//!
//! Ports the parts of Go's `TestValues` and `TestCause` that need values and errors of
//! arbitrary types, and pins down when heap values, causes and closures are dropped (a type
//! whose `Drop` counts).
//!
//! Every test builds its own `HeapArena`, so arena statistics are exact.

#![cfg(feature = "alloc")]

use ctxtree::Child;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use ctxtree::{
    CancelCause, Canceler, Cause, Context, CreateError, Error, HeapArena, HeapKey, Instant, Key,
    ManualClock, StaticCause,
};

/// Counts drops of the values that hold it.
#[derive(Clone, Default)]
struct Drops(Arc<AtomicUsize>);

impl Drops {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    fn token(&self) -> DropToken {
        DropToken(self.0.clone())
    }
}

/// Increments its counter when dropped.
struct DropToken(Arc<AtomicUsize>);

impl Drop for DropToken {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A heap error with a code, optionally counting its drops.
#[derive(Debug)]
struct AppError {
    msg: &'static str,
    code: u32,
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.msg)
    }
}

impl StdError for AppError {}

/// An error that counts its drops.
struct CountedError {
    msg: &'static str,
    _drop: DropToken,
}

/// A heap cause that counts its drops on `drops`.
fn counted(msg: &'static str, drops: &Drops) -> CancelCause {
    CancelCause::error(CountedError {
        msg,
        _drop: drops.token(),
    })
}

impl fmt::Debug for CountedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.msg)
    }
}

impl fmt::Display for CountedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.msg)
    }
}

impl StdError for CountedError {}

type SharedErr = Arc<dyn StdError + Send + Sync>;

fn err(msg: &'static str) -> SharedErr {
    Arc::new(AppError { msg, code: 0 })
}

/// An arena that lives as long as the test binary, for closures that must be `'static` but
/// capture contexts or cancelers.
fn leaked_arena() -> &'static HeapArena {
    Box::leak(Box::new(HeapArena::growable()))
}

fn heap_cause(ctx: &Context<'_>) -> SharedErr {
    match ctx.cause() {
        Some(Cause::Shared(s)) => s.to_arc(),
        other => panic!("expected a heap cause, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Heap values
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct Config {
    name: String,
    retries: u32,
    tags: Vec<&'static str>,
}

static USER: HeapKey<String> = HeapKey::new("user");
static PATH: HeapKey<Vec<u32>> = HeapKey::new("path");
static CONFIG: HeapKey<Config> = HeapKey::new("config");

#[test]
fn heap_values_of_any_type_are_found_by_lookup() {
    let arena = HeapArena::growable();
    let bg = arena.background();
    let a = bg.with_value(&USER, "gopher".to_string()).unwrap();
    let b = a.with_value(&PATH, vec![1, 2, 3]).unwrap();
    let Child {
        ctx: c,
        cancel: _cancel,
    } = b.with_cancel().unwrap();
    let d = c
        .with_value(
            &CONFIG,
            Config {
                name: "svc".into(),
                retries: 3,
                tags: vec!["x", "y"],
            },
        )
        .unwrap();
    assert_eq!(
        d.value(&USER).as_deref().map(String::as_str),
        Some("gopher")
    );
    assert_eq!(d.value(&PATH).as_deref(), Some(&vec![1, 2, 3]));
    assert_eq!(
        d.value(&CONFIG).as_deref(),
        Some(&Config {
            name: "svc".into(),
            retries: 3,
            tags: vec!["x", "y"],
        })
    );
    // Lookups hand out new `Arc`s on the one stored value.
    let (x, y) = (d.value(&USER).unwrap(), a.value(&USER).unwrap());
    assert!(Arc::ptr_eq(&x, &y));
    // A parent never sees a child's value.
    assert!(a.value(&PATH).is_none());
    assert!(c.value(&CONFIG).is_none());
    assert!(bg.value(&USER).is_none());
    // Display names the key and the value's type, as Go's `WithValue(key, val)` does.
    assert_eq!(
        a.to_string(),
        format!(
            "context.Background.WithValue(user, {})",
            std::any::type_name::<String>()
        )
    );
    assert!(
        d.to_string()
            .ends_with(".WithCancel.WithValue(config, alloc_layer::Config)")
    );
}

#[test]
fn heap_values_shadow_and_a_parent_never_sees_a_childs_value() {
    let arena = HeapArena::growable();
    let outer = arena
        .background()
        .with_value(&USER, "outer".to_string())
        .unwrap();
    let inner = outer.with_value(&USER, "inner".to_string()).unwrap();
    let sibling = outer.with_value(&USER, "sibling".to_string()).unwrap();
    let below = inner.with_value(&PATH, vec![7]).unwrap();
    assert_eq!(outer.value(&USER).unwrap().as_str(), "outer");
    assert_eq!(inner.value(&USER).unwrap().as_str(), "inner");
    assert_eq!(sibling.value(&USER).unwrap().as_str(), "sibling");
    assert_eq!(below.value(&USER).unwrap().as_str(), "inner");
    assert!(outer.value(&PATH).is_none());
    assert!(sibling.value(&PATH).is_none());
}

#[test]
fn go_test_values_with_heap_keys() {
    // Go: TestValues, with `Option<String>` values so that "nil" can shadow.
    static K1: HeapKey<Option<String>> = HeapKey::new("k1");
    static K2: HeapKey<Option<String>> = HeapKey::new("k2");
    static K3: HeapKey<Option<String>> = HeapKey::new("k3");
    fn get(c: &Context<'_>, k: &'static HeapKey<Option<String>>) -> String {
        c.value(k)
            .and_then(|v| v.as_ref().clone())
            .unwrap_or_default()
    }
    fn check(c: &Context<'_>, nm: &str, v1: &str, v2: &str, v3: &str) {
        assert_eq!(get(c, &K1), v1, "{nm}.value(k1)");
        assert_eq!(get(c, &K2), v2, "{nm}.value(k2)");
        assert_eq!(get(c, &K3), v3, "{nm}.value(k3)");
    }
    let arena = HeapArena::growable();
    let s = |v: &str| Some(v.to_string());
    let c0 = arena.background();
    check(&c0, "c0", "", "", "");
    let c1 = c0.with_value(&K1, s("c1k1")).unwrap();
    check(&c1, "c1", "c1k1", "", "");
    let c2 = c1.with_value(&K2, s("c2k2")).unwrap();
    check(&c2, "c2", "c1k1", "c2k2", "");
    let c3 = c2.with_value(&K3, s("c3k3")).unwrap();
    check(&c3, "c3", "c1k1", "c2k2", "c3k3");
    let c4 = c3.with_value(&K1, None).unwrap();
    check(&c4, "c4", "", "c2k2", "c3k3");
    // A binding to "none" is a binding: it hides the outer one, and is found as such.
    assert_eq!(c4.value(&K1).as_deref(), Some(&None));
    let o4 = c4.with_value(&K3, None).unwrap();
    check(&o4, "o4", "", "c2k2", "");
    let ty = std::any::type_name::<Option<String>>();
    assert_eq!(
        c4.to_string(),
        format!(
            "context.Background.WithValue(k1, {ty}).WithValue(k2, {ty}).WithValue(k3, {ty}).WithValue(k1, {ty})"
        )
    );
}

#[test]
fn keys_are_identified_by_address_not_name_or_type() {
    static A: HeapKey<u32> = HeapKey::new("same");
    static B: HeapKey<u32> = HeapKey::new("same");
    static INLINE: Key<u32> = Key::new("same");
    let arena = HeapArena::growable();
    let c = arena
        .background()
        .with_value(&A, 1)
        .unwrap()
        .with_value(&INLINE, 3)
        .unwrap();
    assert_eq!(c.value(&A).as_deref(), Some(&1));
    assert_eq!(c.value(&B), None);
    assert_eq!(c.value(&INLINE), Some(3));
    let c = c.with_value(&B, 2).unwrap();
    assert_eq!(
        (c.value(&A).map(|v| *v), c.value(&B).map(|v| *v)),
        (Some(1), Some(2))
    );
    assert_eq!(A.name(), "same");
    assert_eq!(format!("{A:?}"), "HeapKey<u32>(\"same\")");
}

#[test]
fn heap_values_are_dropped_when_their_node_is_released() {
    static TOKEN: HeapKey<DropToken> = HeapKey::new("token");
    let arena = HeapArena::growable();
    let drops = Drops::default();
    let v = arena
        .background()
        .with_value(&TOKEN, drops.token())
        .unwrap();
    let Child { ctx: child, cancel } = v.with_cancel().unwrap();
    // Lookups do not drop the value.
    for _ in 0..10 {
        assert!(child.value(&TOKEN).is_some());
    }
    assert_eq!(drops.count(), 0);
    // The child holds its parent: dropping the value context's own handle keeps the value.
    drop(v);
    assert_eq!(drops.count(), 0);
    assert!(child.value(&TOKEN).is_some());
    // Cancellation is not release.
    cancel.cancel();
    assert_eq!(drops.count(), 0);
    assert!(child.value(&TOKEN).is_some());
    // An `Arc` from a lookup outlives the node; the value drops with the last of the two.
    let held = child.value(&TOKEN).unwrap();
    drop(cancel);
    drop(child);
    assert_eq!(arena.stats().live, 0);
    assert_eq!(drops.count(), 0);
    drop(held);
    assert_eq!(drops.count(), 1);

    // Without an outstanding lookup, release drops it at once.
    let v = arena
        .background()
        .with_value(&TOKEN, drops.token())
        .unwrap();
    let w = v.clone();
    drop(v);
    assert_eq!(drops.count(), 1);
    drop(w);
    assert_eq!(drops.count(), 2);

    // A recycled slot does not drop anything twice.
    for _ in 0..100 {
        let _v = arena
            .background()
            .with_value(&TOKEN, drops.token())
            .unwrap();
    }
    assert_eq!(drops.count(), 102);
    assert_eq!(arena.stats().live, 0);
}

#[test]
fn shadowed_values_are_dropped_independently() {
    static TOKEN: HeapKey<DropToken> = HeapKey::new("token");
    let arena = HeapArena::growable();
    let (outer_drops, inner_drops) = (Drops::default(), Drops::default());
    let outer = arena
        .background()
        .with_value(&TOKEN, outer_drops.token())
        .unwrap();
    let inner = outer.with_value(&TOKEN, inner_drops.token()).unwrap();
    drop(outer); // still held by `inner`
    assert_eq!((outer_drops.count(), inner_drops.count()), (0, 0));
    drop(inner);
    assert_eq!((outer_drops.count(), inner_drops.count()), (1, 1));
}

#[test]
fn heap_values_are_shared_across_threads_and_dropped_by_the_last_one() {
    static TOKEN: HeapKey<(DropToken, Vec<u64>)> = HeapKey::new("token");
    let arena = HeapArena::growable();
    let drops = Drops::default();
    let ctx = arena
        .background()
        .with_value(&TOKEN, (drops.token(), (0..1000).collect()))
        .unwrap();
    thread::scope(|s| {
        for _ in 0..4 {
            let ctx = ctx.clone();
            s.spawn(move || {
                for _ in 0..1000 {
                    let v = ctx.value(&TOKEN).unwrap();
                    assert_eq!(v.1.iter().sum::<u64>(), 499_500);
                }
            });
        }
        drop(ctx);
    });
    assert_eq!(drops.count(), 1);
    assert_eq!(arena.stats().live, 0);
}

// ---------------------------------------------------------------------------------------------
// Heap causes
// ---------------------------------------------------------------------------------------------

#[test]
fn heap_cause_is_reported_and_downcasts() {
    let arena = HeapArena::growable();
    let Child { ctx, cancel } = arena.background().with_cancel_cause().unwrap();
    cancel.cancel_with(CancelCause::error(AppError {
        msg: "disk full",
        code: 28,
    }));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().unwrap();
    assert!(matches!(cause, Cause::Shared(_)));
    assert_eq!(cause.to_string(), "disk full");
    assert_eq!(cause.code(), None);
    assert!(!cause.is(Error::Canceled));
    let owned = cause.to_arc();
    assert_eq!(
        owned.downcast_ref::<AppError>().map(|e| e.code),
        Some(28),
        "to_arc() keeps the concrete error"
    );
    assert_eq!(
        cause.as_error().downcast_ref::<AppError>().map(|e| e.msg),
        Some("disk full")
    );
    // Every to_arc() is the same allocation.
    assert!(Arc::ptr_eq(&owned, &ctx.cause().unwrap().to_arc()));
    // Debug shows the error.
    assert!(format!("{cause:?}").contains("disk full"));
}

#[test]
fn an_arc_cause_is_stored_as_is() {
    let arena = HeapArena::growable();
    let e = err("shared");
    let Child { ctx, cancel } = arena.background().with_cancel_cause().unwrap();
    cancel.cancel_with(e.clone());
    assert!(Arc::ptr_eq(&heap_cause(&ctx), &e));
    let via_enum = err("via enum");
    let Child {
        ctx: ctx2,
        cancel: cancel2,
    } = arena.background().with_cancel().unwrap();
    cancel2.cancel_with(CancelCause::Shared(via_enum.clone()));
    assert!(Arc::ptr_eq(&heap_cause(&ctx2), &via_enum));
}

#[test]
fn first_heap_cause_wins_and_later_ones_are_dropped_at_once() {
    let arena = HeapArena::growable();
    let (first, second) = (Drops::default(), Drops::default());
    let Child { ctx, cancel } = arena.background().with_cancel_cause().unwrap();
    cancel.cancel_with(counted("first", &first));
    cancel.cancel_with(counted("second", &second));
    assert_eq!(second.count(), 1, "the losing cause is dropped at once");
    assert_eq!(first.count(), 0);
    cancel.cancel();
    assert_eq!(ctx.cause().unwrap().to_string(), "first");
    // A cause given to an already-done child's canceler is dropped too.
    let Child {
        ctx: child,
        cancel: child_cancel,
    } = ctx.with_cancel().unwrap();
    let late = Drops::default();
    child_cancel.cancel_with(counted("late", &late));
    assert_eq!(late.count(), 1);
    assert_eq!(child.cause().unwrap().to_string(), "first");
    // The winning cause lives as long as the node (and children that borrow it).
    drop((cancel, ctx));
    assert_eq!(first.count(), 0, "the child still reports the cause");
    assert_eq!(child.cause().unwrap().to_string(), "first");
    drop((child_cancel, child));
    assert_eq!(first.count(), 1);
    assert_eq!(arena.stats().live, 0);
}

#[test]
fn children_report_the_parents_heap_cause() {
    static K: HeapKey<u8> = HeapKey::new("k");
    let arena = HeapArena::growable();
    let parent_cause = err("parentCause");
    let Child {
        ctx: parent,
        cancel,
    } = arena.background().with_cancel_cause().unwrap();
    let Child {
        ctx: child,
        cancel: _c1,
    } = parent.with_cancel().unwrap();
    let value = child.with_value(&K, 1).unwrap();
    let (grandchild, _c2) = value.with_far_deadline_cause();
    cancel.cancel_with(parent_cause.clone());
    for c in [&parent, &child, &value, &grandchild] {
        assert_eq!(c.err(), Some(Error::Canceled));
        assert!(Arc::ptr_eq(&heap_cause(c), &parent_cause), "{c}");
    }
    // Born done under a cancelled parent (Go: TestWithCancelCanceledParent).
    let Child {
        ctx: late,
        cancel: _c3,
    } = parent.with_cancel().unwrap();
    assert_eq!(late.err(), Some(Error::Canceled));
    assert!(Arc::ptr_eq(&heap_cause(&late), &parent_cause));
}

/// A deadline child (with an unused heap cause) on an arena without a clock.
trait FarDeadline<'a> {
    fn with_far_deadline_cause(&self) -> (Context<'a>, Canceler<'a>);
}

impl<'a> FarDeadline<'a> for Context<'a> {
    fn with_far_deadline_cause(&self) -> (Context<'a>, Canceler<'a>) {
        self.with_deadline_cause(Instant::from_ticks(u64::MAX - 1), err("unused"))
            .unwrap()
            .into_parts()
    }
}

#[test]
fn a_child_cancelled_first_keeps_its_own_heap_cause() {
    let arena = HeapArena::growable();
    let Child {
        ctx: parent,
        cancel: cancel_parent,
    } = arena.background().with_cancel_cause().unwrap();
    let Child {
        ctx: child,
        cancel: cancel_child,
    } = parent.with_cancel_cause().unwrap();
    let child_cause = err("childCause");
    cancel_child.cancel_with(child_cause.clone());
    cancel_parent.cancel_with(err("parentCause"));
    assert!(Arc::ptr_eq(&heap_cause(&child), &child_cause));
    assert_eq!(parent.cause().unwrap().to_string(), "parentCause");
}

#[test]
fn static_and_bare_causes_convert_to_arcs() {
    static WATCHDOG: StaticCause = StaticCause::with_code(7, "watchdog expired");
    let arena = HeapArena::growable();
    let Child { ctx: a, cancel: ca } = arena.background().with_cancel().unwrap();
    ca.cancel();
    let bare = a.cause().unwrap();
    assert!(bare.is(Error::Canceled));
    assert_eq!(bare.to_arc().to_string(), "context canceled");
    assert_eq!(
        bare.to_arc().downcast_ref::<Error>(),
        Some(&Error::Canceled)
    );
    let Child { ctx: b, cancel: cb } = arena.background().with_cancel().unwrap();
    cb.cancel_with(&WATCHDOG);
    let st = b.cause().unwrap();
    assert!(st.is_static(&WATCHDOG));
    assert_eq!(st.code(), Some(7));
    assert_eq!(st.to_arc().to_string(), "watchdog expired");
    // A static cause flows to children the same way a heap one does.
    let Child {
        ctx: c,
        cancel: _cc,
    } = b.with_cancel().unwrap();
    assert!(c.cause().unwrap().is_static(&WATCHDOG));
}

#[test]
fn deadline_causes_are_reported_on_expiry_and_dropped_when_unused() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    let arena = HeapArena::growable().with_clock(&CLOCK);
    let base = CLOCK.now_ticks();

    // Expiry reports the cause; the cause lives until the node is released.
    let used = Drops::default();
    let Child { ctx, cancel } = arena
        .background()
        .with_timeout_cause(Duration::from_millis(10), counted("tooSlow", &used))
        .unwrap();
    let Child {
        ctx: child,
        cancel: _cc,
    } = ctx.with_cancel().unwrap();
    CLOCK.set(Instant::from_ticks(base + 10));
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
    assert_eq!(child.cause().unwrap().to_string(), "tooSlow");
    assert_eq!(ctx.cause().unwrap().to_string(), "tooSlow");
    cancel.cancel();
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    drop((ctx, cancel, child, _cc));
    assert_eq!(used.count(), 1);

    // Cancelled before expiry: Canceled, no cause; the unused cause is dropped with the node.
    let unused = Drops::default();
    let now = CLOCK.now_ticks();
    let Child { ctx, cancel } = arena
        .background()
        .with_deadline_cause(Instant::from_ticks(now + 100), counted("unused", &unused))
        .unwrap();
    cancel.cancel();
    assert!(ctx.cause().unwrap().is(Error::Canceled));
    assert_eq!(unused.count(), 0);
    drop((ctx, cancel));
    assert_eq!(unused.count(), 1);

    // A parent's earlier deadline makes a plain cancel child: its cause is never used (Go
    // discards it) and is dropped at once.
    let discarded = Drops::default();
    let now = CLOCK.now_ticks();
    let Child {
        ctx: parent,
        cancel: _pc,
    } = arena
        .background()
        .with_deadline(Instant::from_ticks(now + 5))
        .unwrap();
    let Child {
        ctx: child,
        cancel: _c,
    } = parent
        .with_deadline_cause(
            Instant::from_ticks(now + 50),
            counted("discarded", &discarded),
        )
        .unwrap();
    assert_eq!(discarded.count(), 1);
    assert!(child.to_string().ends_with(".WithCancel"));
    CLOCK.set(Instant::from_ticks(now + 5));
    assert!(child.cause().unwrap().is(Error::DeadlineExceeded));
    assert_eq!(arena.stats().live, 2);
}

/// `ManualClock` has no public reader besides the `Clock` trait; this reads it.
trait NowTicks {
    fn now_ticks(&self) -> u64;
}

impl NowTicks for ManualClock {
    fn now_ticks(&self) -> u64 {
        ctxtree::Clock::now(self).ticks()
    }
}

#[cfg(feature = "std")]
#[test]
fn go_test_cause_table_with_heap_errors() {
    // Go: TestCause (the rows without custom Context implementations), on a real clock.
    static CLOCK: ctxtree::StdClock = ctxtree::StdClock;
    let arena = HeapArena::growable().with_clock(&CLOCK);
    let forever = Duration::from_secs(1_000_000);
    let parent_cause = err("parentCause");
    let child_cause = err("childCause");
    let too_slow = err("tooSlow");
    let finished_early = err("finishedEarly");

    #[derive(Debug)]
    enum Want {
        Nothing,
        Bare(Error),
        Heap(SharedErr),
    }
    type Case<'a> = (
        &'static str,
        Box<dyn Fn() -> (Context<'a>, Vec<Canceler<'a>>) + 'a>,
        Option<Error>,
        Want,
    );
    let bg = || arena.background();
    let cases: Vec<Case<'_>> = vec![
        (
            "Background",
            Box::new(|| (bg(), vec![])),
            None,
            Want::Nothing,
        ),
        (
            "TODO",
            Box::new(|| (arena.todo(), vec![])),
            None,
            Want::Nothing,
        ),
        (
            "WithCancel",
            Box::new(|| {
                let Child { ctx: c, cancel: k } = bg().with_cancel().unwrap();
                k.cancel();
                (c, vec![k])
            }),
            Some(Error::Canceled),
            Want::Bare(Error::Canceled),
        ),
        (
            "WithCancelCause",
            Box::new(|| {
                let Child { ctx: c, cancel: k } = bg().with_cancel_cause().unwrap();
                k.cancel_with(parent_cause.clone());
                (c, vec![k])
            }),
            Some(Error::Canceled),
            Want::Heap(parent_cause.clone()),
        ),
        (
            "WithCancelCause: parent cause before child",
            Box::new(|| {
                let Child { ctx: p, cancel: kp } = bg().with_cancel_cause().unwrap();
                let Child { ctx: c, cancel: kc } = p.with_cancel_cause().unwrap();
                kp.cancel_with(parent_cause.clone());
                kc.cancel_with(child_cause.clone());
                (c, vec![kp, kc])
            }),
            Some(Error::Canceled),
            Want::Heap(parent_cause.clone()),
        ),
        (
            "WithCancelCause: parent cause after child",
            Box::new(|| {
                let Child { ctx: p, cancel: kp } = bg().with_cancel_cause().unwrap();
                let Child { ctx: c, cancel: kc } = p.with_cancel_cause().unwrap();
                kc.cancel_with(child_cause.clone());
                kp.cancel_with(parent_cause.clone());
                (c, vec![kp, kc])
            }),
            Some(Error::Canceled),
            Want::Heap(child_cause.clone()),
        ),
        (
            "WithCancelCause: parent cause before nil",
            Box::new(|| {
                let Child { ctx: p, cancel: kp } = bg().with_cancel_cause().unwrap();
                let Child { ctx: c, cancel: kc } = p.with_cancel().unwrap();
                kp.cancel_with(parent_cause.clone());
                kc.cancel();
                (c, vec![kp, kc])
            }),
            Some(Error::Canceled),
            Want::Heap(parent_cause.clone()),
        ),
        (
            "WithCancelCause: parent cause after nil",
            Box::new(|| {
                let Child { ctx: p, cancel: kp } = bg().with_cancel_cause().unwrap();
                let Child { ctx: c, cancel: kc } = p.with_cancel().unwrap();
                kc.cancel();
                kp.cancel_with(parent_cause.clone());
                (c, vec![kp, kc])
            }),
            Some(Error::Canceled),
            Want::Bare(Error::Canceled),
        ),
        (
            "WithCancelCause: child cause after nil",
            Box::new(|| {
                let Child { ctx: p, cancel: kp } = bg().with_cancel().unwrap();
                let Child { ctx: c, cancel: kc } = p.with_cancel_cause().unwrap();
                kp.cancel();
                kc.cancel_with(child_cause.clone());
                (c, vec![kp, kc])
            }),
            Some(Error::Canceled),
            Want::Bare(Error::Canceled),
        ),
        (
            "WithCancelCause: child cause before nil",
            Box::new(|| {
                let Child { ctx: p, cancel: kp } = bg().with_cancel().unwrap();
                let Child { ctx: c, cancel: kc } = p.with_cancel_cause().unwrap();
                kc.cancel_with(child_cause.clone());
                kp.cancel();
                (c, vec![kp, kc])
            }),
            Some(Error::Canceled),
            Want::Heap(child_cause.clone()),
        ),
        (
            "WithTimeout",
            Box::new(|| {
                let Child { ctx: c, cancel: k } = bg().with_timeout(Duration::ZERO).unwrap();
                k.cancel();
                (c, vec![k])
            }),
            Some(Error::DeadlineExceeded),
            Want::Bare(Error::DeadlineExceeded),
        ),
        (
            "WithTimeout canceled",
            Box::new(move || {
                let Child { ctx: c, cancel: k } = bg().with_timeout(forever).unwrap();
                k.cancel();
                (c, vec![k])
            }),
            Some(Error::Canceled),
            Want::Bare(Error::Canceled),
        ),
        (
            "WithTimeoutCause",
            Box::new(|| {
                let Child { ctx: c, cancel: k } = bg()
                    .with_timeout_cause(Duration::ZERO, too_slow.clone())
                    .unwrap();
                k.cancel();
                (c, vec![k])
            }),
            Some(Error::DeadlineExceeded),
            Want::Heap(too_slow.clone()),
        ),
        (
            "WithTimeoutCause canceled",
            Box::new(|| {
                let Child { ctx: c, cancel: k } =
                    bg().with_timeout_cause(forever, too_slow.clone()).unwrap();
                k.cancel();
                (c, vec![k])
            }),
            Some(Error::Canceled),
            Want::Bare(Error::Canceled),
        ),
        (
            "WithTimeoutCause stacked",
            Box::new(|| {
                let Child { ctx: p, cancel: kp } = bg().with_cancel_cause().unwrap();
                let Child { ctx: c, cancel: kc } = p
                    .with_timeout_cause(Duration::ZERO, too_slow.clone())
                    .unwrap();
                kp.cancel_with(finished_early.clone());
                (c, vec![kp, kc])
            }),
            Some(Error::DeadlineExceeded),
            Want::Heap(too_slow.clone()),
        ),
        (
            "WithTimeoutCause stacked canceled",
            Box::new(|| {
                let Child { ctx: p, cancel: kp } = bg().with_cancel_cause().unwrap();
                let Child { ctx: c, cancel: kc } =
                    p.with_timeout_cause(forever, too_slow.clone()).unwrap();
                kp.cancel_with(finished_early.clone());
                (c, vec![kp, kc])
            }),
            Some(Error::Canceled),
            Want::Heap(finished_early.clone()),
        ),
        (
            "WithoutCancel",
            Box::new(|| (bg().without_cancel().unwrap(), vec![])),
            None,
            Want::Nothing,
        ),
        (
            "WithoutCancel canceled",
            Box::new(|| {
                let Child { ctx: p, cancel: kp } = bg().with_cancel_cause().unwrap();
                let c = p.without_cancel().unwrap();
                kp.cancel_with(finished_early.clone());
                (c, vec![kp])
            }),
            None,
            Want::Nothing,
        ),
        (
            "WithoutCancel timeout",
            Box::new(|| {
                let Child { ctx: p, cancel: kp } = bg()
                    .with_timeout_cause(Duration::ZERO, too_slow.clone())
                    .unwrap();
                let c = p.without_cancel().unwrap();
                kp.cancel();
                (c, vec![kp])
            }),
            None,
            Want::Nothing,
        ),
    ];
    for (name, make, want_err, want_cause) in &cases {
        let (ctx, _keep) = make();
        assert_eq!(ctx.err(), *want_err, "{name}: err()");
        let got = ctx.cause();
        match (want_cause, got) {
            (Want::Nothing, None) => {}
            (Want::Bare(e), Some(c)) if c.is(*e) => {}
            (Want::Heap(h), Some(Cause::Shared(s))) if Arc::ptr_eq(h, &s.to_arc()) => {}
            (want, got) => panic!("{name}: cause() = {got:?}, want {want:?}"),
        }
    }
    drop(cases);
    assert_eq!(arena.stats().live, 0);
    // Every clone handed to the arena was released with its node.
    for e in [&parent_cause, &child_cause, &too_slow, &finished_early] {
        assert_eq!(Arc::strong_count(e), 1, "{e} leaked");
    }
}

// ---------------------------------------------------------------------------------------------
// after_func_boxed
// ---------------------------------------------------------------------------------------------

#[test]
fn after_func_boxed_runs_a_large_closure_with_its_captures_intact() {
    let arena = HeapArena::growable();
    let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
    let big = [0xA5u64; 128];
    let text = "x".repeat(10_000);
    let out = Arc::new(AtomicUsize::new(0));
    let o = out.clone();
    let reg = ctx
        .after_func_boxed(move || {
            let sum: u64 = big.iter().map(|&b| b & 0xF).sum();
            o.store(sum as usize + text.len(), Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(out.load(Ordering::SeqCst), 0);
    cancel.cancel();
    assert_eq!(out.load(Ordering::SeqCst), 128 * 5 + 10_000);
    assert!(!reg.stop());
}

#[test]
fn after_func_boxed_stop_drops_the_closure_unrun() {
    let arena = HeapArena::growable();
    let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
    let drops = Drops::default();
    let ran = Arc::new(AtomicUsize::new(0));
    let (token, r) = (drops.token(), ran.clone());
    let reg = ctx
        .after_func_boxed(move || {
            let _t = &token;
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(drops.count(), 0);
    assert!(reg.stop());
    assert_eq!(drops.count(), 1, "stop() drops the closure");
    assert!(!reg.stop());
    cancel.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    drop(reg);
    drop((ctx, cancel));
    assert_eq!(arena.stats().live, 0);

    // A closure that ran is dropped once, right after running.
    let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
    let token = drops.token();
    let _reg = ctx.after_func_boxed(move || drop(token)).unwrap();
    cancel.cancel();
    assert_eq!(drops.count(), 2);
}

#[test]
fn after_func_boxed_on_a_done_context_runs_at_once() {
    let arena = leaked_arena();
    let Child { ctx, cancel } = arena.background().with_cancel_cause().unwrap();
    cancel.cancel_with(err("gone"));
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    let probe = ctx.clone();
    let reg = ctx
        .after_func_boxed(move || {
            *s.lock().unwrap() = Some(probe.cause().unwrap().to_string());
        })
        .unwrap();
    assert_eq!(seen.lock().unwrap().as_deref(), Some("gone"));
    assert!(!reg.stop());
}

#[test]
fn after_func_boxed_on_a_context_that_can_never_be_done() {
    let arena = HeapArena::growable();
    for ctx in [
        arena.background(),
        arena.todo(),
        arena.background().without_cancel().unwrap(),
    ] {
        let live = arena.stats().live;
        let drops = Drops::default();
        let token = drops.token();
        let reg = ctx
            .after_func_boxed(move || panic!("ran on {:?}", token.0))
            .unwrap();
        assert_eq!(drops.count(), 1, "dropped unrun at once");
        assert_eq!(arena.stats().live, live, "no node used");
        assert!(
            reg.stop(),
            "nothing ran, so the first stop() reports it prevented it"
        );
        assert!(!reg.stop());
    }
}

#[test]
fn many_boxed_callbacks_on_one_context_each_run_once() {
    let arena = HeapArena::growable();
    let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
    let hits: Arc<Vec<AtomicUsize>> = Arc::new((0..1000).map(|_| AtomicUsize::new(0)).collect());
    let regs: Vec<_> = (0..1000)
        .map(|i| {
            let hits = hits.clone();
            let pad = [i as u8; 40];
            ctx.after_func_boxed(move || {
                assert!(pad.iter().all(|&p| p == i as u8));
                hits[i].fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        })
        .collect();
    // Stop every third one first.
    for (i, r) in regs.iter().enumerate() {
        if i % 3 == 0 {
            assert!(r.stop());
        }
    }
    cancel.cancel();
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(
            h.load(Ordering::SeqCst),
            usize::from(i % 3 != 0),
            "callback {i}"
        );
    }
    drop(regs);
    drop((ctx, cancel));
    assert_eq!(arena.stats().live, 0);
}

#[test]
fn boxed_callbacks_can_cancel_other_contexts() {
    // A chain: each callback cancels the next context, whose callback cancels the next.
    let arena = leaked_arena();
    let pairs: Vec<_> = (0..50)
        .map(|_| arena.background().with_cancel().unwrap().into_parts())
        .collect();
    let (ctxs, cancels): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let mut cancels = cancels.into_iter();
    let first = cancels.next().unwrap();
    let regs: Vec<_> = ctxs
        .iter()
        .zip(cancels)
        .map(|(c, next)| c.after_func_boxed(move || next.cancel()).unwrap())
        .collect();
    first.cancel();
    assert!(ctxs.iter().all(|c| c.err() == Some(Error::Canceled)));
    drop((regs, first, ctxs));
    assert_eq!(arena.stats().live, 0);
}

// ---------------------------------------------------------------------------------------------
// HeapArena
// ---------------------------------------------------------------------------------------------

#[test]
fn fixed_heap_arena_reports_exhaustion_and_recovers() {
    static TOKEN: HeapKey<DropToken> = HeapKey::new("token");
    let arena = HeapArena::with_capacity(8);
    assert_eq!(arena.stats().max_capacity, 8);
    let root = arena.background();
    let mut held: Vec<_> = (0..8)
        .map(|_| root.with_cancel().unwrap().into_parts())
        .collect();
    let stats = arena.stats();
    assert_eq!((stats.capacity, stats.live, stats.high_water), (8, 8, 8));
    assert_eq!(stats.failed_allocs, 0);

    // Every constructor refuses with ArenaFull, and drops what it was given.
    assert_eq!(root.with_cancel().err(), Some(CreateError::ArenaFull));
    assert_eq!(
        root.with_timeout(Duration::from_secs(1)).err(),
        Some(CreateError::NoClock),
        "no clock is reported before the arena is even asked"
    );
    assert_eq!(
        root.with_deadline(Instant::from_ticks(5)).err(),
        Some(CreateError::ArenaFull)
    );
    assert_eq!(root.without_cancel().err(), Some(CreateError::ArenaFull));
    let drops = Drops::default();
    assert_eq!(
        root.with_value(&TOKEN, drops.token()).err(),
        Some(CreateError::ArenaFull)
    );
    assert_eq!(drops.count(), 1, "the value is dropped");
    let token = drops.token();
    let (ctx0, _) = &held[0];
    assert_eq!(
        ctx0.after_func_boxed(move || drop(token)).err(),
        Some(CreateError::ArenaFull)
    );
    assert_eq!(drops.count(), 2, "the closure is dropped unrun");
    let cause_drops = Drops::default();
    assert_eq!(
        root.with_deadline_cause(Instant::from_ticks(5), counted("c", &cause_drops))
            .err(),
        Some(CreateError::ArenaFull)
    );
    assert_eq!(cause_drops.count(), 1, "the cause is dropped");
    assert_eq!(arena.stats().failed_allocs, 6);

    // Releasing one node makes room for exactly one more.
    let (c, k) = held.pop().unwrap();
    drop(c);
    assert_eq!(root.with_cancel().err(), Some(CreateError::ArenaFull));
    drop(k);
    let again = root.with_cancel().unwrap();
    assert_eq!(root.with_cancel().err(), Some(CreateError::ArenaFull));
    held.push(again.into_parts());
    // A tree of the whole capacity still cancels as a whole.
    held.clear();
    assert_eq!(arena.stats().live, 0);
    let Child {
        ctx: top,
        cancel: top_cancel,
    } = root.with_cancel().unwrap();
    let mut chain = vec![];
    let mut cur = top.clone();
    for _ in 0..7 {
        let Child { ctx: c, cancel: k } = cur.with_cancel().unwrap();
        chain.push(k);
        cur = c;
    }
    assert_eq!(cur.with_cancel().err(), Some(CreateError::ArenaFull));
    top_cancel.cancel();
    assert_eq!(cur.err(), Some(Error::Canceled));
    assert_eq!(arena.stats().high_water, 8);
}

#[test]
fn fixed_heap_arena_capacity_is_clamped() {
    let arena = HeapArena::with_capacity(0);
    assert_eq!(arena.stats().max_capacity, 1);
    let one = arena.background().with_cancel().unwrap();
    assert_eq!(
        arena.background().with_cancel().err(),
        Some(CreateError::ArenaFull)
    );
    drop(one);
    assert!(arena.background().with_cancel().is_ok());
}

#[test]
fn growable_arena_grows_past_several_pages_keeping_old_handles_valid() {
    static ID: HeapKey<String> = HeapKey::new("id");
    let arena = HeapArena::growable();
    let first_cap = {
        let _probe = arena.background().with_cancel().unwrap();
        arena.stats().capacity
    };
    assert!(first_cap >= 1);
    // Handles created before growth.
    let Child {
        ctx: root,
        cancel: root_cancel,
    } = arena.background().with_cancel().unwrap();
    let early = root.with_value(&ID, "early".to_string()).unwrap();
    let Child {
        ctx: early_child,
        cancel: _ec,
    } = early.with_cancel().unwrap();
    let mut all = Vec::new();
    for i in 0..10_000 {
        // Alternate parents: some children of nodes created before growth, some deep.
        let parent = if i % 2 == 0 { &early_child } else { &root };
        all.push(parent.with_cancel().unwrap().into_parts());
    }
    let stats = arena.stats();
    assert!(
        stats.capacity >= 10_003 && stats.capacity > 4 * first_cap,
        "grew past several pages: {stats:?}"
    );
    assert_eq!(stats.live, 10_003);
    // Old handles still work, and values written before growth read back.
    assert_eq!(early.value(&ID).unwrap().as_str(), "early");
    assert_eq!(early_child.value(&ID).unwrap().as_str(), "early");
    assert_eq!(all[9_998].0.value(&ID).unwrap().as_str(), "early");
    assert!(all[9_999].0.value(&ID).is_none());
    assert!(all.iter().all(|(c, _)| !c.is_done()));
    // A node from before the growth cancels children spread over every page.
    root_cancel.cancel();
    assert!(all.iter().all(|(c, _)| c.err() == Some(Error::Canceled)));
    assert_eq!(early_child.err(), Some(Error::Canceled));
    drop(all);
    drop((early_child, _ec, early, root, root_cancel));
    let after = arena.stats();
    assert_eq!(after.live, 0);
    assert_eq!(
        after.capacity, stats.capacity,
        "pages are kept, never freed"
    );
    // Slots are recycled, not grown again.
    let again: Vec<_> = (0..10_000)
        .map(|_| arena.background().with_cancel().unwrap())
        .collect();
    assert_eq!(arena.stats().capacity, stats.capacity);
    assert_eq!(arena.stats().high_water, after.high_water);
    drop(again);
}

#[test]
fn growable_arena_grows_concurrently() {
    let arena = HeapArena::growable();
    let Child { ctx: root, cancel } = arena.background().with_cancel().unwrap();
    let made: Vec<Vec<_>> = thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let root = &root;
                s.spawn(move || {
                    (0..3_000)
                        .map(|_| root.with_cancel().unwrap().into_parts())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(arena.stats().live, 1 + 12_000);
    let flat: Vec<_> = made.iter().flatten().collect();
    assert!(flat.iter().all(|(c, _)| !c.is_done()));
    cancel.cancel();
    assert!(flat.iter().all(|(c, _)| c.err() == Some(Error::Canceled)));
    drop(flat);
    drop(made);
    drop((root, cancel));
    assert_eq!(arena.stats().live, 0);
}

#[test]
fn heap_arena_with_a_clock_and_a_deadline_hook() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    static WATCHED: AtomicUsize = AtomicUsize::new(0);
    fn hook(w: ctxtree::DeadlineWatch) {
        WATCHED.store(w.at().ticks() as usize, Ordering::SeqCst);
    }
    let arena = HeapArena::growable()
        .with_clock(&CLOCK)
        .with_deadline_hook(hook);
    let t0 = CLOCK.now_ticks();
    let Child { ctx, cancel: _c } = arena
        .background()
        .with_timeout(Duration::from_millis(30))
        .unwrap();
    assert_eq!(ctx.deadline(), Some(Instant::from_ticks(t0 + 30)));
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    let _reg = ctx
        .after_func_boxed(move || {
            f.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(
        WATCHED.load(Ordering::SeqCst) as u64,
        t0 + 30,
        "after_func tells the hook"
    );
    assert_eq!(
        arena.expire(Instant::from_ticks(t0 + 29)),
        Some(Instant::from_ticks(t0 + 30))
    );
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    assert_eq!(arena.expire(Instant::from_ticks(t0 + 30)), None);
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert!(format!("{arena:?}").starts_with("HeapArena"));
}

#[test]
fn dropping_a_heap_arena_after_its_contexts_drops_everything_once() {
    static TOKEN: HeapKey<DropToken> = HeapKey::new("token");
    let drops = Drops::default();
    {
        let arena = HeapArena::growable();
        let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
        let v = ctx.with_value(&TOKEN, drops.token()).unwrap();
        let token = drops.token();
        let reg = v.after_func_boxed(move || drop(token)).unwrap();
        cancel.cancel_with(counted("c", &drops));
        assert_eq!(drops.count(), 1, "the callback ran and dropped its capture");
        drop((v, ctx, cancel));
        assert_eq!(
            drops.count(),
            1,
            "the registration still holds the value node"
        );
        drop(reg);
        assert_eq!(drops.count(), 3);
    }
    assert_eq!(drops.count(), 3);
}

// ---------------------------------------------------------------------------------------------
// after_func boxes what does not fit the node (alloc)
// ---------------------------------------------------------------------------------------------

#[test]
fn after_func_boxes_an_oversized_closure_automatically() {
    let arena = HeapArena::growable();
    let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
    let big = [3u64; 64]; // 512 bytes: over the 16-byte inline budget
    let out = Arc::new(AtomicUsize::new(0));
    let o = out.clone();
    let reg = ctx
        .after_func(move || o.store(big.iter().sum::<u64>() as usize, Ordering::SeqCst))
        .unwrap();
    assert_eq!(
        arena.stats().live,
        2,
        "one node for the context, one for the callback"
    );
    cancel.cancel();
    assert_eq!(out.load(Ordering::SeqCst), 64 * 3);
    assert!(!reg.stop());
    drop((reg, ctx, cancel));
    assert_eq!(arena.stats().live, 0);

    // Stopped: the boxed closure is dropped unrun, with its captures.
    let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
    let drops = Drops::default();
    let token = (drops.token(), [0u64; 8]);
    let reg = ctx
        .after_func(move || {
            let whole = token; // captures the drop token too, not just the array
            panic!("stopped: {:?}", whole.1)
        })
        .unwrap();
    assert_eq!(drops.count(), 0);
    assert!(reg.stop());
    assert_eq!(drops.count(), 1);
    drop((reg, ctx, cancel));
    assert_eq!(arena.stats().live, 0);
}

// ---------------------------------------------------------------------------------------------
// remaining
// ---------------------------------------------------------------------------------------------

#[test]
fn remaining_counts_down_by_the_arena_clock_and_follows_the_parent() {
    static CLOCK: ManualClock = ManualClock::new(1_000);
    let arena = HeapArena::growable().with_clock(&CLOCK);
    assert_eq!(arena.background().remaining(), None);
    let Child {
        ctx: parent,
        cancel: _p,
    } = arena
        .background()
        .with_timeout(Duration::from_millis(100))
        .unwrap();
    let Child {
        ctx: child,
        cancel: _c,
    } = parent.with_timeout(Duration::from_secs(60)).unwrap();
    let Child {
        ctx: plain,
        cancel: _pc,
    } = arena.background().with_cancel().unwrap();
    assert_eq!(plain.remaining(), None);
    assert_eq!(parent.remaining(), Some(Duration::from_millis(100)));
    assert_eq!(
        child.remaining(),
        Some(Duration::from_millis(100)),
        "the parent's is sooner"
    );
    CLOCK.advance(99);
    assert_eq!(child.remaining(), Some(Duration::from_millis(1)));
    CLOCK.advance(1);
    assert_eq!(child.remaining(), Some(Duration::ZERO));
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
    CLOCK.advance(1_000);
    assert_eq!(parent.remaining(), Some(Duration::ZERO));

    // A deadline without a clock to measure it by.
    let clockless = HeapArena::growable();
    let Child {
        ctx,
        cancel: _cancel,
    } = clockless
        .background()
        .with_deadline(Instant::from_ticks(5))
        .unwrap();
    assert!(ctx.deadline().is_some());
    assert_eq!(ctx.remaining(), None);
}
