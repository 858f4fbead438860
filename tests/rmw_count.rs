//! Atomic read-modify-writes per node on Go's `CancelTree` shapes (issue 14: "know where the
//! time goes"), counted by the counting build of the `sync` shim:
//!
//! ```text
//! RUSTFLAGS="--cfg ctxtree_count_rmw" CARGO_TARGET_DIR=target/rmw \
//!     cargo test --test rmw_count -- --nocapture --test-threads=1
//! ```
//!
//! (Its own target directory, so that the ordinary build is not invalidated.) Without the cfg
//! this file compiles to nothing. The test prints, per shape and phase, every call site in the
//! crate that issued a locked instruction (`file:line` and its enclosing function), and checks:
//! the queries issue none; the count per node is the same at every depth (linear in the
//! depth, no hidden quadratic walk); and the total per node stays within [`BUDGET_PER_NODE`].
//!
//! The operations are exactly those of `benches/go_parity.rs`'s `CancelTree`: build a chain
//! of `depth` `with_cancel` children (dropping each intermediate `Context` handle as the next
//! is made, keeping the `Canceler`s), cancel the root (`Root=OpenCanceler`), then drop the
//! kept `Canceler`s innermost first.
#![cfg(all(ctxtree_count_rmw, feature = "std"))]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ctxtree::rmw_count::{self, Site};
use ctxtree::{Arena, Canceler, Child};

/// Room for the deepest chain and its root.
static ARENA: Arena<1100> = Arena::new();

/// The ceiling on read-modify-writes per node for create + cancel + release on an open root
/// (12 in 0.1; 11 since the last member of a list leaves it without a Harris mark; 9 since
/// per-thread slot caches also took the free stack's two compare-and-swaps off a thread that
/// frees and creates again; the floor is about three: link, cancel, unlink). Lower it when the
/// core gets cheaper; raise it only with a reason.
const BUDGET_PER_NODE: u64 = 9;

/// Counts per phase: phase → (site → count).
type Phases = BTreeMap<&'static str, BTreeMap<(&'static str, u32), u64>>;

fn add(phases: &mut Phases, phase: &'static str, sites: Vec<Site>) {
    let p = phases.entry(phase).or_default();
    for s in sites {
        *p.entry((s.file, s.line)).or_default() += s.count;
    }
}

/// Runs `f` and files the read-modify-writes it issued on this thread under `phase`.
fn counted<R>(phases: &mut Phases, phase: &'static str, f: impl FnOnce() -> R) -> R {
    rmw_count::reset();
    let r = f();
    add(phases, phase, rmw_count::take());
    r
}

/// One `CancelTree` iteration; `open_root`: `Root=OpenCanceler`, else `Root=Background`.
fn cancel_tree(depth: usize, open_root: bool) -> Phases {
    let mut ph = Phases::new();
    let mut keep: Vec<Canceler<'static>> = Vec::with_capacity(depth);
    let (mut ctx, root_cancel) = if open_root {
        let Child { ctx, cancel } =
            counted(&mut ph, "1 create", || ARENA.background().with_cancel()).expect("arena");
        (ctx, Some(cancel))
    } else {
        (ARENA.background(), None)
    };
    for _ in 0..depth {
        let Child { ctx: child, cancel } =
            counted(&mut ph, "1 create", || ctx.with_cancel()).expect("arena");
        keep.push(cancel);
        // Go's `root, _ = WithCancel(root)`: the previous handle goes.
        counted(&mut ph, "2 drop ctx handle", || {
            drop(std::mem::replace(&mut ctx, child))
        });
    }
    counted(&mut ph, "2 drop ctx handle", || drop(ctx));
    if let Some(c) = root_cancel {
        counted(&mut ph, "3 cancel root", || drop(c));
    }
    counted(&mut ph, "4 release cancelers", || {
        while let Some(c) = keep.pop() {
            drop(c);
        }
    });
    ph
}

/// `CommonParentCancel`'s iteration on one thread: a child of a live shared parent (under a
/// value node, as in Go), its value looked up, cancelled, released.
fn common_parent(iters: usize) -> Phases {
    static KEY: ctxtree::Key<&'static str> = ctxtree::Key::new("key");
    let mut ph = Phases::new();
    let root = ARENA.background().with_value(&KEY, "value").expect("arena");
    let Child {
        ctx: shared,
        cancel: _shared_cancel,
    } = root.with_cancel().expect("arena");
    for _ in 0..iters {
        let Child { ctx, cancel } =
            counted(&mut ph, "1 create", || shared.with_cancel()).expect("arena");
        assert_eq!(
            counted(&mut ph, "2 value", || ctx.value(&KEY)),
            Some("value")
        );
        counted(&mut ph, "3 cancel (drop canceler)", || drop(cancel));
        counted(&mut ph, "4 drop ctx handle", || drop(ctx));
    }
    ph
}

fn total(ph: &Phases) -> u64 {
    ph.values().flat_map(|p| p.values()).sum()
}

/// The function that encloses `file:line` in this crate's sources (the nearest `fn` above).
fn enclosing_fn(file: &str, line: u32) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let Ok(src) = std::fs::read_to_string(path) else {
        return "?".into();
    };
    let lines: Vec<&str> = src.lines().collect();
    for l in lines[..(line as usize).min(lines.len())].iter().rev() {
        let t = l.trim_start();
        if let Some(i) = t.find("fn ")
            && !t.starts_with("//")
            && (i == 0 || t[..i].ends_with(' '))
        {
            let name = &t[i + 3..];
            return name.split(['(', '<']).next().unwrap_or("?").to_string();
        }
    }
    "?".into()
}

fn report(title: &str, ph: &Phases, nodes: u64) -> String {
    let mut out = format!(
        "\n== {title}: {} RMWs, {:.2} per node ({nodes} nodes)\n",
        total(ph),
        total(ph) as f64 / nodes as f64
    );
    for (phase, sites) in ph {
        let sum: u64 = sites.values().sum();
        let _ = writeln!(
            out,
            "  {phase:<22} {sum:>6}  ({:.2}/node)",
            sum as f64 / nodes as f64
        );
        for ((file, line), n) in sites {
            let _ = writeln!(
                out,
                "      {n:>6}  {:>5.2}/node  {file}:{line}  {}",
                *n as f64 / nodes as f64,
                enclosing_fn(file, *line)
            );
        }
    }
    out
}

#[test]
fn checks_issue_no_rmw() {
    let Child { ctx, cancel } = ARENA.background().with_cancel().expect("arena");
    rmw_count::reset();
    for _ in 0..100 {
        assert!(!std::hint::black_box(&ctx).is_done());
        assert_eq!(std::hint::black_box(&ctx).err(), None);
    }
    assert_eq!(
        rmw_count::take(),
        vec![],
        "is_done()/err() on a live context"
    );
    cancel.cancel();
    rmw_count::reset();
    for _ in 0..100 {
        assert!(std::hint::black_box(&ctx).is_done());
    }
    assert_eq!(
        rmw_count::take(),
        vec![],
        "is_done() on a cancelled context"
    );
}

#[test]
fn cancel_tree_rmw_per_node() {
    // As `benches/go_parity.rs` does: per-thread slot caches (the global arena's default).
    assert!(ARENA.enable_thread_caches());
    // Warm the arena (the first allocations take fresh slots, later ones recycled slots: the
    // steady state the benches measure).
    let _ = cancel_tree(1000, true);
    let mut out = String::new();
    let mut per_depth = Vec::new();
    for depth in [1usize, 10, 100, 1000] {
        let open = cancel_tree(depth, true);
        let again = cancel_tree(depth, true);
        assert_eq!(total(&open), total(&again), "deterministic on one thread");
        let nodes = depth as u64 + 1;
        out += &report(
            &format!("CancelTree/depth={depth}/Root=OpenCanceler"),
            &open,
            nodes,
        );
        per_depth.push((depth as u64, total(&open)));
        assert!(
            total(&open) <= BUDGET_PER_NODE * nodes,
            "depth {depth}: {} RMWs for {nodes} nodes, over the budget of {BUDGET_PER_NODE}/node{out}",
            total(&open)
        );
        if depth == 1 || depth == 1000 {
            let bg = cancel_tree(depth, false);
            out += &report(
                &format!("CancelTree/depth={depth}/Root=Background"),
                &bg,
                depth as u64,
            );
        }
    }
    let cp = common_parent(100);
    out += &report("CommonParentCancel (one thread, 100 iterations)", &cp, 100);
    assert!(
        total(&cp) <= BUDGET_PER_NODE * 100,
        "CommonParentCancel: {} RMWs for 100 children{out}",
        total(&cp)
    );
    println!("{out}");
    // Linear in the depth: the same count for every node added, whatever the depth.
    let step = |a: (u64, u64), b: (u64, u64)| (b.1 - a.1) / (b.0 - a.0);
    let (d10, d100, d1000) = (per_depth[1], per_depth[2], per_depth[3]);
    assert_eq!(
        (d100.1 - d10.1) % (d100.0 - d10.0),
        0,
        "a whole number of RMWs per added node{out}"
    );
    assert_eq!(
        step(d10, d100),
        step(d100, d1000),
        "RMWs per added node differ between depths 10..100 and 100..1000{out}"
    );
}
