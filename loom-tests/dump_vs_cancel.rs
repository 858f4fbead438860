//! `Display` and `dump` vs cancel and release: both walk the tree taking a reference on every
//! node they print (tree invariant #5), so a concurrent cancel, release and re-allocation can
//! change *which* nodes they print and in which state, but never make them read a torn or
//! recycled node, print a freed slot, or print a node under a parent it does not have.

extern crate std;

use crate::Child;
use std::string::String;
use std::vec::Vec;

use loom::thread;

use super::support::{Outcomes, assert_quiescent, run_model};
use crate::{Arena, Key};

static K: Key<u32> = Key::new("k");
static OTHER: Key<u32> = Key::new("other");

/// Checks one dump against the trees that could have existed: `P → C → V` (P and C live or
/// cancelled) and, after they are freed, `Y` — each line at the right depth, under the line of
/// its real parent, with the right kind for its slot.
fn check_dump(out: &str, p: u32, c: u32, v: u32) {
    let mut lines = out.lines();
    if out.is_empty() {
        return;
    }
    assert_eq!(lines.next(), Some("context.Background"), "{out}");
    let mut depth_of_prev = 0;
    let mut prev_slot = None;
    for line in lines {
        let depth = (line.len() - line.trim_start().len()) / 2;
        let body = line.trim_start();
        let (name, rest) = body.split_once(" #").expect("a slot number");
        let (slot, state) = rest.split_once(' ').unwrap_or((rest, ""));
        let slot: u32 = slot.parse().unwrap();
        assert!(!body.contains("<free>"), "a freed slot was printed: {out}");
        let parent_ok = match (name, depth) {
            ("WithCancel", 1) => slot == p,
            ("WithCancel", 2) => slot == c && prev_slot == Some(p) && depth_of_prev == 1,
            ("WithValue(k, u32)", 3) => slot == v && prev_slot == Some(c) && depth_of_prev == 2,
            ("WithValue(other, u32)", 1) => true,
            _ => false,
        };
        assert!(parent_ok, "impossible line {line:?} in\n{out}");
        match name {
            "WithCancel" => assert!(state == "[live]" || state == "[canceled]", "{out}"),
            _ => assert_eq!(state, "", "{out}"),
        }
        depth_of_prev = depth;
        prev_slot = Some(slot);
    }
}

#[test]
fn dump_vs_cancel_free_and_reuse() {
    let outcomes = Outcomes::new();
    let record = outcomes.clone();
    run_model("dump_vs_cancel_free_and_reuse", move || {
        // Four slots: Y always finds one, even while the dump pins the old path.
        loom::lazy_static! { static ref ARENA: Arena<4> = Arena::new(); }
        let arena: &'static Arena<4> = &ARENA;
        let Child {
            ctx: p,
            cancel: p_cancel,
        } = arena.background().with_cancel().unwrap();
        let Child {
            ctx: c,
            cancel: c_cancel,
        } = p.with_cancel().unwrap();
        let v = c.with_value(&K, 1).unwrap();
        let (ps, cs, vs) = (p.slot, c.slot, v.slot);
        let mutator = thread::spawn(move || {
            p_cancel.cancel();
            drop((v, c, c_cancel, p, p_cancel));
            // Into one of the slots just freed.
            arena.background().with_value(&OTHER, 2).unwrap()
        });
        let mut out = String::new();
        arena.dump(&mut out).unwrap();
        check_dump(&out, ps.index(), cs.index(), vs.index());
        record.record(out.lines().count());
        let y = mutator.join().unwrap();
        let mut after = String::new();
        arena.dump(&mut after).unwrap();
        let lines: Vec<&str> = after.lines().collect();
        assert_eq!(lines.len(), 2, "{after}");
        assert!(lines[1].starts_with("  WithValue(other, u32) #"), "{after}");
        drop(y);
        assert_quiescent(arena);
    });
    // The whole old tree, only Y, or a mix (a line per node; 0 for an empty arena).
    let seen = outcomes.all();
    assert!(
        seen.contains(&4) && seen.contains(&2),
        "dump interleavings unexplored: {seen:?}"
    );
}

#[test]
fn display_vs_ancestor_cancel_and_release() {
    run_model("display_vs_ancestor_cancel_and_release", || {
        loom::lazy_static! { static ref ARENA: Arena<3> = Arena::new(); }
        let arena: &'static Arena<3> = &ARENA;
        let Child {
            ctx: p,
            cancel: p_cancel,
        } = arena.background().with_cancel().unwrap();
        let Child {
            ctx: c,
            cancel: c_cancel,
        } = p.with_cancel().unwrap();
        let v = c.with_value(&K, 1).unwrap();
        let printer = thread::spawn(move || {
            let s = std::format!("{v}");
            assert_eq!(
                s,
                "context.Background.WithCancel.WithCancel.WithValue(k, u32)"
            );
            // The last handle on the chain may be this one: the release cascades up from here.
            drop(v);
        });
        drop((p_cancel, p, c_cancel, c));
        printer.join().unwrap();
        assert_quiescent(arena);
    });
}
