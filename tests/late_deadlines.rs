//! Go's timeline when deadlines are seen late (DESIGN §4): deadlines are enforced lazily (an
//! observation compares the clock) and by `expire` / `expire_watch` (a timer interrupt, the std
//! timer thread), so they are often *seen* long after they passed. Whatever the order of
//! observation, of `expire` calls or of slot indices, what observers see must be a state Go
//! could produce with its timers firing exactly at their deadlines:
//! - several due deadlines on a path: each context gets the error and cause of the earliest one
//!   among itself and its ancestors (with equal deadlines, the inner one fires first: one of the
//!   two orders Go could take);
//! - a child created under a parent whose deadline passed, observed or not, is born done with
//!   the parent's error and cause;
//! - a `cancel()` reaching a descendant whose own deadline already passed leaves it
//!   `DeadlineExceeded` with its own cause (its timer fired first).
//!
//! Every check asserts error *and* cause. Each scenario builds a fresh arena on a fresh
//! `ManualClock` (leaked: a clock must be `'static`).

use ctxtree::Child;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ctxtree::{Arena, Context, DeadlineWatch, Error, Instant, Key, ManualClock, StaticCause};

static A_CAUSE: StaticCause = StaticCause::with_code(1, "a's deadline");
static B_CAUSE: StaticCause = StaticCause::with_code(2, "b's deadline");
static C_CAUSE: StaticCause = StaticCause::with_code(3, "c's deadline");
static CHILD_CAUSE: StaticCause = StaticCause::with_code(4, "the child's deadline");
static STOP: StaticCause = StaticCause::with_code(5, "stopped by hand");
static K: Key<u32> = Key::new("k");

/// What a context should report: not done, or done with this error and (static) cause, `None`
/// meaning "no cause given" (the cause is then the bare error).
#[derive(Clone, Copy, Debug)]
enum Want {
    Live,
    Done(Error, Option<&'static StaticCause>),
}

const fn expired(c: &'static StaticCause) -> Want {
    Want::Done(Error::DeadlineExceeded, Some(c))
}

#[track_caller]
fn check(ctx: &Context<'_>, want: Want, what: &str) {
    match want {
        Want::Live => {
            assert_eq!(ctx.err(), None, "{what}: should be live");
            assert!(ctx.cause().is_none(), "{what}: a cause while live");
            assert!(!ctx.is_done(), "{what}");
        }
        Want::Done(err, cause) => {
            assert_eq!(ctx.err(), Some(err), "{what}: error");
            assert!(ctx.is_done(), "{what}");
            let got = ctx.cause().expect("a done context has a cause");
            match cause {
                Some(c) => assert!(
                    got.is_static(c),
                    "{what}: cause {got:?}, want {:?}",
                    c.message()
                ),
                None => assert!(got.is(err), "{what}: cause {got:?}, want the bare error"),
            }
        }
    }
}

fn clock() -> &'static ManualClock {
    Box::leak(Box::new(ManualClock::new(1_000)))
}

fn at(t: u64) -> Instant {
    Instant::from_ticks(t)
}

/// How late deadlines get seen.
#[derive(Clone, Copy, Debug)]
enum Seen {
    /// Lazily, by observing the contexts in this order (indices into the chain).
    Observe([usize; 3]),
    /// By one late `expire(now)`.
    Expire,
}

// ------------------------------------------------------------------------------------------------
// Nested deadlines
// ------------------------------------------------------------------------------------------------

/// Outer 10 > inner 5 (each with its own cause), both long past at 20.
fn nested_inner_5_outer_10(seen: &str, see: impl FnOnce(&Arena<8>, &Context, &Context)) {
    let clk = clock();
    let arena = Arena::<8>::new().with_clock(clk);
    let Child {
        ctx: outer,
        cancel: _ko,
    } = arena
        .background()
        .with_deadline_cause(at(10), &A_CAUSE)
        .unwrap();
    let Child {
        ctx: inner,
        cancel: _ki,
    } = outer.with_deadline_cause(at(5), &B_CAUSE).unwrap();
    let Child {
        ctx: below,
        cancel: _kb,
    } = inner.with_cancel().unwrap(); // inherits inner's deadline
    let Child {
        ctx: beside,
        cancel: _ks,
    } = outer.with_cancel().unwrap(); // inherits outer's
    clk.set(at(20));
    see(&arena, &outer, &inner);
    for _ in 0..2 {
        check(&inner, expired(&B_CAUSE), seen);
        check(&below, expired(&B_CAUSE), seen);
        check(&outer, expired(&A_CAUSE), seen);
        check(&beside, expired(&A_CAUSE), seen);
        check(&inner.with_value(&K, 1).unwrap(), expired(&B_CAUSE), seen);
    }
}

#[test]
fn nested_deadlines_observed_inner_first() {
    nested_inner_5_outer_10("inner first", |_, _, inner| {
        check(inner, expired(&B_CAUSE), "inner first");
    });
}

#[test]
fn nested_deadlines_observed_outer_first() {
    nested_inner_5_outer_10("outer first", |_, outer, _| {
        check(outer, expired(&A_CAUSE), "outer first");
    });
}

#[test]
fn nested_deadlines_observed_through_a_child_first() {
    nested_inner_5_outer_10("outer's value view first", |_, outer, _| {
        check(
            &outer.with_value(&K, 2).unwrap(),
            expired(&A_CAUSE),
            "outer's view first",
        );
    });
}

#[test]
fn nested_deadlines_seen_by_one_late_expire() {
    nested_inner_5_outer_10("expire(20)", |arena, _, _| {
        assert_eq!(arena.expire(at(20)), None);
    });
}

/// The same late `expire`, with the inner context in the lower slot (the scan goes by slot
/// index, so this time it meets the inner deadline first).
#[test]
fn nested_deadlines_seen_by_one_late_expire_inner_slot_first() {
    let clk = clock();
    let arena = Arena::<8>::new().with_clock(clk);
    // Shape the free list: slots 0 and 1 taken, then freed 0 first, so 1 comes back first.
    let Child { ctx: x, cancel: kx } = arena.background().with_cancel().unwrap();
    let Child { ctx: y, cancel: ky } = arena.background().with_cancel().unwrap();
    drop((x, kx));
    drop((y, ky));
    let Child {
        ctx: outer,
        cancel: _ko,
    } = arena
        .background()
        .with_deadline_cause(at(10), &A_CAUSE)
        .unwrap();
    let Child {
        ctx: inner,
        cancel: _ki,
    } = outer.with_deadline_cause(at(5), &B_CAUSE).unwrap();
    clk.set(at(20));
    assert_eq!(arena.expire(at(20)), None);
    check(&outer, expired(&A_CAUSE), "outer");
    check(&inner, expired(&B_CAUSE), "inner");
}

/// A clockless arena (firmware driving deadlines only by `expire`): the same late expiry.
#[test]
fn nested_deadlines_seen_by_one_late_expire_without_clock() {
    let arena = Arena::<8>::new();
    let Child {
        ctx: outer,
        cancel: _ko,
    } = arena
        .background()
        .with_deadline_cause(at(10), &A_CAUSE)
        .unwrap();
    let Child {
        ctx: inner,
        cancel: _ki,
    } = outer.with_deadline_cause(at(5), &B_CAUSE).unwrap();
    let Child {
        ctx: below,
        cancel: _kb,
    } = inner.with_cancel().unwrap();
    assert_eq!(arena.expire(at(20)), None);
    check(&outer, expired(&A_CAUSE), "outer");
    check(&inner, expired(&B_CAUSE), "inner");
    check(&below, expired(&B_CAUSE), "below inner");
}

#[test]
fn nested_deadlines_seen_by_expire_watch_of_either() {
    static WATCHES: Mutex<Vec<DeadlineWatch>> = Mutex::new(Vec::new());
    fn hook(w: DeadlineWatch) {
        WATCHES.lock().unwrap().push(w);
    }
    for outer_watch_first in [true, false] {
        WATCHES.lock().unwrap().clear();
        let clk = clock();
        let arena = Arena::<8>::new().with_clock(clk).with_deadline_hook(hook);
        let Child {
            ctx: outer,
            cancel: _ko,
        } = arena
            .background()
            .with_deadline_cause(at(10), &A_CAUSE)
            .unwrap();
        let Child {
            ctx: inner,
            cancel: _ki,
        } = outer.with_deadline_cause(at(5), &B_CAUSE).unwrap();
        // Registering an after_func starts a watch (the timer's entry for the deadline).
        let _fo = outer.after_func(|| {}).unwrap();
        let _fi = inner.after_func(|| {}).unwrap();
        let (wo, wi) = {
            let ws = WATCHES.lock().unwrap();
            assert_eq!(ws.len(), 2);
            (ws[0], ws[1])
        };
        assert_eq!((wo.at(), wi.at()), (at(10), at(5)));
        clk.set(at(20));
        let order = if outer_watch_first {
            [wo, wi]
        } else {
            [wi, wo]
        };
        assert!(arena.expire_watch(order[0], at(20)));
        let what = if outer_watch_first {
            "outer's watch first"
        } else {
            "inner's watch first"
        };
        check(&inner, expired(&B_CAUSE), what);
        assert!(arena.expire_watch(order[1], at(20)));
        check(&outer, expired(&A_CAUSE), what);
        check(&inner, expired(&B_CAUSE), what);
    }
}

/// Only the inner deadline is due: the inner context expires alone, the outer one later.
#[test]
fn nested_deadlines_one_due() {
    let clk = clock();
    let arena = Arena::<8>::new().with_clock(clk);
    let Child {
        ctx: outer,
        cancel: _ko,
    } = arena
        .background()
        .with_deadline_cause(at(10), &A_CAUSE)
        .unwrap();
    let Child {
        ctx: inner,
        cancel: _ki,
    } = outer.with_deadline_cause(at(5), &B_CAUSE).unwrap();
    clk.set(at(7));
    check(&outer, Want::Live, "outer at 7");
    check(&inner, expired(&B_CAUSE), "inner at 7");
    check(&outer, Want::Live, "outer at 7");
    clk.set(at(10));
    check(&outer, expired(&A_CAUSE), "outer at 10");
    check(&inner, expired(&B_CAUSE), "inner at 10");
}

/// Equal deadlines: Go could fire either timer first; ctxtree fires the inner one first, in
/// every order of observation and in `expire`.
#[test]
fn equal_nested_deadlines_inner_fires_first() {
    for seen in [
        Seen::Observe([0, 1, 2]),
        Seen::Observe([1, 0, 2]),
        Seen::Expire,
    ] {
        let what = format!("{seen:?}");
        let clk = clock();
        let arena = Arena::<8>::new().with_clock(clk);
        let Child {
            ctx: outer,
            cancel: _ko,
        } = arena
            .background()
            .with_deadline_cause(at(10), &A_CAUSE)
            .unwrap();
        let Child {
            ctx: inner,
            cancel: _ki,
        } = outer.with_deadline_cause(at(10), &B_CAUSE).unwrap();
        assert!(
            inner.to_string().ends_with(".WithDeadline(@10 [10ms])"),
            "{inner}"
        );
        clk.set(at(10));
        match seen {
            Seen::Observe(order) => {
                for i in order {
                    let _ = [&outer, &inner, &outer][i].err();
                }
            }
            Seen::Expire => assert_eq!(arena.expire(at(10)), None),
        }
        check(&outer, expired(&A_CAUSE), &what);
        check(&inner, expired(&B_CAUSE), &what);
    }
}

// ------------------------------------------------------------------------------------------------
// Three levels, every permutation of the deadlines, every order of observation
// ------------------------------------------------------------------------------------------------

const PERMS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

/// A chain A → B → C whose own deadlines are `dls` (each with its own cause), seen at 100 by
/// `seen`. Each context must report the earliest deadline on its path (a later one makes a
/// plain cancel child, as in Go: it reports its parent's deadline and cause).
fn chain(dls: [u64; 3], seen: Seen) {
    let causes = [&A_CAUSE, &B_CAUSE, &C_CAUSE];
    let what = format!("deadlines {dls:?}, {seen:?}");
    let clk = clock();
    let arena = Arena::<8>::new().with_clock(clk);
    let Child {
        ctx: a,
        cancel: _ka,
    } = arena
        .background()
        .with_deadline_cause(at(dls[0]), causes[0])
        .unwrap();
    let Child {
        ctx: b,
        cancel: _kb,
    } = a.with_deadline_cause(at(dls[1]), causes[1]).unwrap();
    let Child {
        ctx: c,
        cancel: _kc,
    } = b.with_deadline_cause(at(dls[2]), causes[2]).unwrap();
    let ctxs = [&a, &b, &c];
    // The earliest deadline on each path, and whose it is.
    let mut want = [Want::Live; 3];
    let mut best = 0;
    for i in 0..3 {
        if dls[i] < dls[best] {
            best = i;
        }
        want[i] = expired(causes[best]);
        assert_eq!(ctxs[i].deadline(), Some(at(dls[best])), "{what}");
    }
    clk.set(at(100));
    match seen {
        Seen::Observe(order) => {
            for i in order {
                check(ctxs[i], want[i], &what);
            }
        }
        Seen::Expire => assert_eq!(arena.expire(at(100)), None),
    }
    for i in 0..3 {
        check(ctxs[i], want[i], &what);
    }
}

#[test]
fn three_level_chain_every_permutation_and_order() {
    for p in PERMS {
        let dls = p.map(|i| [10, 20, 30][i]);
        for order in PERMS {
            chain(dls, Seen::Observe(order));
        }
        chain(dls, Seen::Expire);
    }
}

/// A three-level chain whose deadlines fall due one at a time, observed bottom-up each time.
#[test]
fn three_level_chain_deadlines_fall_due_one_by_one() {
    let clk = clock();
    let arena = Arena::<8>::new().with_clock(clk);
    let Child {
        ctx: a,
        cancel: _ka,
    } = arena
        .background()
        .with_deadline_cause(at(30), &A_CAUSE)
        .unwrap();
    let Child {
        ctx: b,
        cancel: _kb,
    } = a.with_deadline_cause(at(20), &B_CAUSE).unwrap();
    let Child {
        ctx: c,
        cancel: _kc,
    } = b.with_deadline_cause(at(10), &C_CAUSE).unwrap();
    clk.set(at(15));
    check(&c, expired(&C_CAUSE), "c at 15");
    check(&b, Want::Live, "b at 15");
    clk.set(at(25));
    assert_eq!(arena.expire(at(25)), Some(at(30)));
    check(&b, expired(&B_CAUSE), "b at 25");
    check(&a, Want::Live, "a at 25");
    clk.set(at(99));
    check(&a, expired(&A_CAUSE), "a at 99");
    check(&b, expired(&B_CAUSE), "b at 99");
    check(&c, expired(&C_CAUSE), "c at 99");
}

// ------------------------------------------------------------------------------------------------
// Children created under a parent whose deadline passed unobserved
// ------------------------------------------------------------------------------------------------

/// A parent (deadline 10, cause A) past its deadline at 20, nobody having looked; `through` a
/// plain cancel child of it, or a value view, or directly.
fn overdue_parent<R>(through: usize, f: impl FnOnce(&Context<'_>) -> R) -> R {
    let clk = clock();
    let arena = Arena::<16>::new().with_clock(clk);
    let Child {
        ctx: p,
        cancel: _kp,
    } = arena
        .background()
        .with_deadline_cause(at(10), &A_CAUSE)
        .unwrap();
    let Child {
        ctx: m,
        cancel: _km,
    } = p.with_cancel().unwrap();
    let v = p.with_value(&K, 7).unwrap();
    clk.set(at(20));
    let r = f([&p, &m, &v][through]);
    // The parent itself agrees, whenever it is looked at.
    check(&p, expired(&A_CAUSE), "the overdue parent");
    r
}

#[test]
fn children_of_an_overdue_parent_are_born_with_its_error_and_cause() {
    for through in 0..3 {
        let what = ["parent", "parent's cancel child", "parent's value view"][through];
        overdue_parent(through, |p| {
            let Child { ctx: c, cancel: _k } = p.with_cancel().unwrap();
            check(
                &c,
                expired(&A_CAUSE),
                &format!("with_cancel under the {what}"),
            );
        });
        overdue_parent(through, |p| {
            let Child { ctx: c, cancel: _k } = p.with_cancel_cause().unwrap();
            check(
                &c,
                expired(&A_CAUSE),
                &format!("with_cancel_cause under {what}"),
            );
        });
        // An own deadline earlier than the parent's, also past: Go makes the child, finds the
        // parent done and cancels it with the parent's error and cause first.
        overdue_parent(through, |p| {
            let Child { ctx: c, cancel: _k } = p.with_deadline_cause(at(5), &CHILD_CAUSE).unwrap();
            assert_eq!(c.deadline(), Some(at(5)));
            check(
                &c,
                expired(&A_CAUSE),
                &format!("earlier deadline under {what}"),
            );
        });
        overdue_parent(through, |p| {
            let Child { ctx: c, cancel: _k } = p.with_deadline_cause(at(15), &CHILD_CAUSE).unwrap();
            check(&c, expired(&A_CAUSE), &format!("deadline 15 under {what}"));
        });
        overdue_parent(through, |p| {
            let Child { ctx: c, cancel: _k } = p.with_deadline_cause(at(50), &CHILD_CAUSE).unwrap();
            assert_eq!(c.deadline(), Some(at(10)), "capped by the parent's");
            check(
                &c,
                expired(&A_CAUSE),
                &format!("later deadline under {what}"),
            );
        });
        overdue_parent(through, |p| {
            let Child { ctx: c, cancel: _k } = p.with_deadline(at(5)).unwrap();
            check(
                &c,
                expired(&A_CAUSE),
                &format!("with_deadline under {what}"),
            );
        });
        overdue_parent(through, |p| {
            let Child { ctx: c, cancel: _k } = p
                .with_timeout_cause(Duration::from_millis(1), &CHILD_CAUSE)
                .unwrap();
            check(
                &c,
                expired(&A_CAUSE),
                &format!("with_timeout_cause under {what}"),
            );
        });
        overdue_parent(through, |p| {
            let Child { ctx: c, cancel: _k } = p.with_timeout(Duration::ZERO).unwrap();
            check(
                &c,
                expired(&A_CAUSE),
                &format!("zero with_timeout under {what}"),
            );
        });
        overdue_parent(through, |p| {
            let v = p.with_value(&K, 1).unwrap();
            check(&v, expired(&A_CAUSE), &format!("with_value under {what}"));
            assert_eq!(v.value(&K), Some(1));
        });
        overdue_parent(through, |p| {
            let w = p.without_cancel().unwrap();
            check(&w, Want::Live, &format!("without_cancel under {what}"));
            assert_eq!(w.deadline(), None);
            let Child { ctx: c, cancel: _k } = w.with_cancel().unwrap();
            check(
                &c,
                Want::Live,
                &format!("with_cancel under without_cancel, {what}"),
            );
        });
        // AfterFunc: runs at once, inside `after_func`, as Go's does on a done context.
        overdue_parent(through, |p| {
            // One counter per `through`, so that no run sees another's count.
            static RAN: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
            let r: &'static AtomicUsize = &RAN[through];
            let stop = p
                .after_func(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            assert_eq!(r.load(Ordering::SeqCst), 1, "after_func under {what}");
            assert!(!stop.stop());
        });
        // A grandchild made through a born-done child: done with the same error and cause.
        overdue_parent(through, |p| {
            let Child { ctx: c, cancel: _k } = p.with_cancel().unwrap();
            let Child {
                ctx: g,
                cancel: _kg,
            } = c.with_deadline_cause(at(3), &CHILD_CAUSE).unwrap();
            check(&g, expired(&A_CAUSE), &format!("grandchild under {what}"));
        });
    }
}

/// The same in a clockless arena: without a clock only `expire` says time passed, and a parent
/// it has not expired is live, so its children are born live.
#[test]
fn children_of_a_parent_past_its_deadline_without_clock_wait_for_expire() {
    let arena = Arena::<8>::new();
    let Child {
        ctx: p,
        cancel: _kp,
    } = arena
        .background()
        .with_deadline_cause(at(10), &A_CAUSE)
        .unwrap();
    let Child {
        ctx: c,
        cancel: _kc,
    } = p.with_deadline_cause(at(5), &CHILD_CAUSE).unwrap();
    check(&c, Want::Live, "no clock: not past yet");
    assert_eq!(arena.expire(at(20)), None);
    check(
        &c,
        expired(&CHILD_CAUSE),
        "the child's deadline fired first",
    );
    check(&p, expired(&A_CAUSE), "parent");
    let Child {
        ctx: d,
        cancel: _kd,
    } = p.with_cancel().unwrap();
    check(&d, expired(&A_CAUSE), "born under the expired parent");
}

// ------------------------------------------------------------------------------------------------
// A cancel reaching descendants whose deadlines passed
// ------------------------------------------------------------------------------------------------

#[test]
fn cancel_reaching_an_overdue_descendant_leaves_it_expired_with_its_own_cause() {
    for with_cause in [false, true] {
        let what = if with_cause { "cancel_with" } else { "cancel" };
        let cancel_want = Want::Done(Error::Canceled, with_cause.then_some(&STOP));
        let clk = clock();
        let arena = Arena::<16>::new().with_clock(clk);
        let Child {
            ctx: root,
            cancel: kroot,
        } = arena.background().with_cancel().unwrap();
        // Overdue at 20.
        let Child {
            ctx: d,
            cancel: _kd,
        } = root.with_deadline_cause(at(10), &A_CAUSE).unwrap();
        let Child {
            ctx: d_kid,
            cancel: _kdk,
        } = d.with_cancel().unwrap();
        // Not due at 20 ...
        let Child {
            ctx: e,
            cancel: _ke,
        } = root.with_deadline_cause(at(30), &B_CAUSE).unwrap();
        let Child {
            ctx: e_kid,
            cancel: _kek,
        } = e.with_cancel().unwrap();
        // ... but with an overdue deadline below it.
        let Child {
            ctx: f,
            cancel: _kf,
        } = e
            .with_timeout_cause(Duration::from_millis(15), &C_CAUSE)
            .unwrap();
        let Child {
            ctx: f_kid,
            cancel: _kfk,
        } = f.with_cancel().unwrap();
        let Child {
            ctx: plain,
            cancel: _kp,
        } = root.with_cancel().unwrap();
        clk.set(at(20));
        if with_cause {
            kroot.cancel_with(&STOP);
        } else {
            kroot.cancel();
        }
        check(&root, cancel_want, what);
        check(&plain, cancel_want, what);
        check(&d, expired(&A_CAUSE), what);
        check(&d_kid, expired(&A_CAUSE), what);
        check(&e, cancel_want, what);
        check(&e_kid, cancel_want, what);
        check(&f, expired(&C_CAUSE), what);
        check(&f_kid, expired(&C_CAUSE), what);
    }
}

/// The cancel of a deadline context itself, after its deadline passed unobserved: it already
/// expired (Go's timer fired first), so the cancel changes nothing.
#[test]
fn cancel_of_an_overdue_context_finds_it_expired() {
    let clk = clock();
    let arena = Arena::<16>::new().with_clock(clk);
    let Child { ctx: d, cancel: kd } = arena
        .background()
        .with_deadline_cause(at(10), &A_CAUSE)
        .unwrap();
    let Child {
        ctx: d_kid,
        cancel: _kdk,
    } = d.with_cancel().unwrap();
    let Child {
        ctx: d2,
        cancel: kd2,
    } = arena
        .background()
        .with_deadline_cause(at(10), &B_CAUSE)
        .unwrap();
    // A plain cancel child of a deadline context: it inherits the deadline, so its cancel also
    // comes after the deadline fired, which cancelled it with the deadline's cause.
    let Child {
        ctx: d3,
        cancel: _kd3,
    } = arena
        .background()
        .with_deadline_cause(at(10), &C_CAUSE)
        .unwrap();
    let Child {
        ctx: k3,
        cancel: kk3,
    } = d3.with_cancel().unwrap();
    let Child {
        ctx: not_due,
        cancel: knd,
    } = arena
        .background()
        .with_deadline_cause(at(50), &CHILD_CAUSE)
        .unwrap();
    clk.set(at(20));
    kd.cancel_with(&STOP);
    check(&d, expired(&A_CAUSE), "cancel_with on an overdue context");
    check(&d_kid, expired(&A_CAUSE), "its child");
    drop(kd2); // dropping the canceler cancels: the same
    check(
        &d2,
        expired(&B_CAUSE),
        "dropped canceler of an overdue context",
    );
    kk3.cancel();
    check(
        &k3,
        expired(&C_CAUSE),
        "cancel of a child of an overdue context",
    );
    check(&d3, expired(&C_CAUSE), "the overdue parent");
    knd.cancel();
    check(&not_due, Want::Done(Error::Canceled, None), "not due yet");
}

/// Without a clock, a plain cancel cannot know a deadline passed (only `expire` says so):
/// Canceled, as if it came first.
#[test]
fn cancel_without_clock_reaching_a_deadline_descendant_cancels_it() {
    let arena = Arena::<8>::new();
    let Child {
        ctx: root,
        cancel: kroot,
    } = arena.background().with_cancel().unwrap();
    let Child {
        ctx: d,
        cancel: _kd,
    } = root.with_deadline_cause(at(10), &A_CAUSE).unwrap();
    kroot.cancel_with(&STOP);
    check(&d, Want::Done(Error::Canceled, Some(&STOP)), "no clock");
    assert_eq!(arena.expire(at(20)), None);
    check(
        &d,
        Want::Done(Error::Canceled, Some(&STOP)),
        "first error wins",
    );
}

/// The cancel's owned cause, when the deadline wins, is dropped, not leaked.
#[test]
#[cfg(feature = "alloc")] // an owned (heap) cause
fn a_losing_owned_cause_is_dropped() {
    use std::sync::Arc;
    #[derive(Debug)]
    struct Oops;
    impl std::fmt::Display for Oops {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("oops")
        }
    }
    impl std::error::Error for Oops {}
    let clk = clock();
    let arena = Arena::<8>::new().with_clock(clk);
    let Child { ctx: d, cancel: kd } = arena
        .background()
        .with_deadline_cause(at(10), &A_CAUSE)
        .unwrap();
    let cause: Arc<dyn std::error::Error + Send + Sync> = Arc::new(Oops);
    clk.set(at(20));
    kd.cancel_with(cause.clone());
    check(&d, expired(&A_CAUSE), "the deadline fired first");
    assert_eq!(Arc::strong_count(&cause), 1, "the losing cause was dropped");
}

/// At the very tick of a deadline, Go's timer and a cancel race: either may come first. ctxtree
/// lets a cancel at that tick win (it reads the clock, finds the deadline not strictly past),
/// unless someone observed the deadline first (the lazy check: due at its tick).
#[test]
fn a_cancel_at_the_deadline_tick_comes_first_unless_observed() {
    for observe_first in [false, true] {
        let what = if observe_first {
            "observed at the tick, then cancelled"
        } else {
            "cancelled at the tick"
        };
        let clk = clock();
        let arena = Arena::<8>::new().with_clock(clk);
        let Child {
            ctx: root,
            cancel: kroot,
        } = arena.background().with_cancel().unwrap();
        let Child { ctx: d, cancel: kd } = root.with_deadline_cause(at(10), &A_CAUSE).unwrap();
        let Child {
            ctx: e,
            cancel: _ke,
        } = root.with_deadline_cause(at(10), &B_CAUSE).unwrap();
        let Child { ctx: f, cancel: kf } = arena
            .background()
            .with_deadline_cause(at(10), &C_CAUSE)
            .unwrap();
        clk.set(at(10));
        if observe_first {
            check(&d, expired(&A_CAUSE), what);
        }
        kd.cancel();
        kroot.cancel();
        let want_d = if observe_first {
            expired(&A_CAUSE)
        } else {
            Want::Done(Error::Canceled, None)
        };
        check(&d, want_d, what);
        check(&e, Want::Done(Error::Canceled, None), what);
        // One tick later, the same cancel (a dropped canceler) finds it expired.
        clk.set(at(11));
        drop(kf);
        check(&f, expired(&C_CAUSE), what);
    }
}
