//! Human-readable views: Go's `String()` chain for one context, and a dump of a whole arena.
//!
//! Both walk the tree iteratively (no recursion, whatever the depth) and take a reference on
//! every node they print, so a concurrent cancel or release can never make them read a recycled
//! slot or show a freed node as live.
//!
//! Both write through an [`Out`], which remembers the writer's first error instead of returning
//! it at every piece: each piece is then one plain call, with no error branch after it (flash on
//! a firmware, issue 11).

use core::fmt;
use core::mem::MaybeUninit;

use crate::Error;
use crate::arena::RawArena;
use crate::cause::{self, Cause};
use crate::node::Kind;
use crate::state::Slot;
use crate::sync::Ordering;
use crate::unwind::Panics;
use crate::value::KeyInfo;

/// Chains deeper than this print their root, a count, and their last [`TAIL`] links.
const FULL: usize = 64;
const TAIL: usize = 32;

/// Every constant piece of the output, once, overlapping where one is part of another: a piece
/// is then a [`Piece`], two bytes that a call site loads as one immediate, where a `&str` costs a
/// 32-bit address and a length (flash, issue 11).
const TEXT: &str = concat!(
    "context.Background",
    "context.TODO",
    ".…( more)…",
    "WithCancel",
    "WithDeadline(@",
    "WithValue(, ",
    "WithoutCancel",
    "AfterFunc",
    "Link",
    "<free>",
    " [-",
    " [no clock",
    "])",
    "ms",
    "µs",
    "ns",
    "(depth ) #",
    "  ",
    "\n",
    " [live]",
    " [deadline exceeded]",
    " [canceled]",
    " [pending]",
    " [fired]",
    " [stopped]",
    " deadline=@",
    " (inherited)",
    " cause=\"",
);

/// A piece of [`TEXT`]: its offset times 32 plus its length in bytes.
#[derive(Clone, Copy)]
pub(crate) struct Piece(u16);

/// Where `s` is in [`TEXT`], at compile time (through [`lit!`]): a string missing from `TEXT`,
/// or longer than 31 bytes, does not compile.
const fn piece(s: &str) -> Piece {
    let (text, s) = (TEXT.as_bytes(), s.as_bytes());
    assert!(
        s.len() < 32 && text.len() < 2048,
        "a piece of TEXT is too long, or TEXT is"
    );
    let mut at = 0;
    while at + s.len() <= text.len() {
        let mut i = 0;
        while i < s.len() && text[at + i] == s[i] {
            i += 1;
        }
        if i == s.len() {
            return Piece(((at << 5) | s.len()) as u16);
        }
        at += 1;
    }
    panic!("a piece of output is missing from TEXT");
}

/// The [`Piece`] of a string literal, found in [`TEXT`] at compile time.
macro_rules! lit {
    ($s:literal) => {
        const { piece($s) }
    };
}

/// Where an [`Out`] writes.
enum Sink<'a, 'f> {
    /// A dump's writer.
    Dyn(&'a mut dyn fmt::Write),
    /// The `Formatter` of a context's `Display`, written through its own `write_str`: as a
    /// `dyn fmt::Write` it would link a vtable and three methods more (flash).
    Fmt(&'a mut fmt::Formatter<'f>),
}

/// A writer that latches its first error: after it, every write is skipped, and
/// [`result`](Out::result) returns it. Out of line, so that a piece of output costs a call.
pub(crate) struct Out<'a, 'f> {
    sink: Sink<'a, 'f>,
    failed: bool,
}

impl<'a, 'f> Out<'a, 'f> {
    pub(crate) fn new(w: &'a mut dyn fmt::Write) -> Self {
        Out {
            sink: Sink::Dyn(w),
            failed: false,
        }
    }

    fn formatter(f: &'a mut fmt::Formatter<'f>) -> Self {
        Out {
            sink: Sink::Fmt(f),
            failed: false,
        }
    }

    /// Writes `s`, unless an earlier write failed.
    #[inline(never)]
    pub(crate) fn str(&mut self, s: &str) {
        if !self.failed {
            self.failed = match &mut self.sink {
                Sink::Dyn(w) => w.write_str(s),
                Sink::Fmt(f) => f.write_str(s),
            }
            .is_err();
        }
    }

    /// Writes a cause as its `Display` does: a bare error or a static cause as one piece, a
    /// heap cause (`alloc`) through `core::fmt` (which a firmware without `alloc` never links:
    /// it has no heap causes, and `error` does not return there).
    fn cause(&mut self, c: Cause<'_>) {
        match c {
            Cause::Error(e) => self.str(e.as_str()),
            Cause::Static(s) => self.str(s.message()),
            Cause::Shared(s) => {
                let e = s.error();
                if !self.failed {
                    self.failed = match &mut self.sink {
                        Sink::Dyn(w) => write!(w, "{e}"),
                        Sink::Fmt(f) => write!(f, "{e}"),
                    }
                    .is_err();
                }
            }
        }
    }

    /// Writes a piece of [`TEXT`], unless an earlier write failed.
    #[inline(never)]
    fn lit(&mut self, p: Piece) {
        let (at, len) = (usize::from(p.0 >> 5), usize::from(p.0 & 31));
        // SAFETY: `piece` made `p` from a `&str` it found in `TEXT` at byte `at`: the match
        // starts where that string's first character does, on a character boundary of `TEXT`,
        // and ends after its last character, on one too (both are valid UTF-8), and lies inside.
        self.str(unsafe { TEXT.get_unchecked(at..at + len) });
    }

    /// The first error, if any write failed.
    pub(crate) fn result(&self) -> fmt::Result {
        if self.failed { Err(fmt::Error) } else { Ok(()) }
    }
}

/// `v` in decimal, by hand: no `core::fmt` integer machinery (`pad_integral`, the two-digit
/// table) in a firmware that prints a context (flash, issue 11). With `frac == 0`, all its
/// digits (at least one); with `frac > 0`, `v` as the fraction `v / 10^frac` after the decimal
/// point (`0 < v < 10^frac`, `frac <= 19`): `frac` digits, zero-padded on the left, with the
/// trailing zeros trimmed. Out of line: its call sites are many, and none is hot.
#[inline(never)]
pub(crate) fn write_digits(out: &mut Out<'_, '_>, frac: usize, mut v: u64) {
    // `u64::MAX` has 20 digits. Uninitialised: zeroing it would cost a `memset` routine.
    let mut buf = [MaybeUninit::<u8>::uninit(); 20];
    let min = frac.max(1);
    let (mut start, mut end) = (buf.len(), buf.len());
    let mut trim = frac != 0;
    while start > 0 && (v != 0 || buf.len() - start < min) {
        start -= 1;
        let q = crate::time::div_10(v);
        let digit = (v - q * 10) as u8;
        if let Some(d) = buf.get_mut(start) {
            *d = MaybeUninit::new(b'0' + digit);
        }
        // A fraction's trailing zero: every digit after it is one too.
        trim &= digit == 0;
        if trim {
            end = start;
        }
        v = q;
    }
    // SAFETY: `start <= end <= buf.len()` (`end` only ever moves down to `start`), and
    // `buf[start..end]` was written in the loop above (every index from `start` up to the end
    // of `buf`, once each), with ASCII digits only, which are valid UTF-8. Raw parts rather than
    // `buf.get(start..end)`: its range checks cannot fail, but would cost flash.
    out.str(unsafe {
        core::str::from_utf8_unchecked(core::slice::from_raw_parts(
            buf.as_ptr().cast::<u8>().add(start),
            end - start,
        ))
    });
}

/// `d` exactly as `{:?}` prints a `Duration` without flags (`0ns`, `999µs`, `1.5s`, `100ms`):
/// the largest unit whose whole part is not zero, and the exact fraction with its trailing
/// zeros trimmed. By hand, without `core::fmt`'s float-like `Duration` formatting (flash).
pub(crate) fn write_duration(out: &mut Out<'_, '_>, d: core::time::Duration) {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    let (whole, frac, width, unit) = if secs > 0 {
        (secs, nanos, 9, lit!("s"))
    } else {
        // One division by the unit's size rather than one per unit (flash).
        let (scale, width, unit) = if nanos >= 1_000_000 {
            (1_000_000, 6, lit!("ms"))
        } else if nanos >= 1_000 {
            (1_000, 3, lit!("µs"))
        } else {
            (1, 0, lit!("ns"))
        };
        (u64::from(nanos / scale), nanos % scale, width, unit)
    };
    write_digits(out, 0, whole);
    if frac != 0 {
        out.lit(lit!("."));
        write_digits(out, width, u64::from(frac));
    }
    out.lit(unit);
}

fn root_name(root: Slot) -> Piece {
    if root == Slot::TODO {
        lit!("context.TODO")
    } else {
        lit!("context.Background")
    }
}

/// Writes Go's `String()` of the context at `slot`, which the caller pins.
pub(crate) fn write_chain(arena: &RawArena, slot: Slot, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let ancestor = |mut s: Slot, up: usize| {
        for _ in 0..up {
            // SAFETY: every ancestor of a pinned node is pinned (tree invariant #1).
            s = unsafe { arena.node(s).parent() };
        }
        s
    };
    let out = &mut Out::formatter(f);
    let mut depth = 0usize;
    let mut s = slot;
    while s.is_node() {
        depth += 1;
        // SAFETY: as above.
        s = unsafe { arena.node(s).parent() };
    }
    out.lit(root_name(s));
    let mut shown = depth;
    if depth > FULL {
        out.lit(lit!(".…("));
        write_digits(out, 0, (depth - TAIL) as u64);
        out.lit(lit!(" more)…"));
        shown = TAIL;
    }
    for i in (0..shown).rev() {
        segment(arena, ancestor(slot, i), out, true);
    }
    out.result()
}

/// One link of a chain: `.WithCancel`, `.WithDeadline(…)`, `.WithValue(…)`, `.WithoutCancel`;
/// without its leading `.` if `dot` is false (a dump line).
fn segment(arena: &RawArena, s: Slot, out: &mut Out<'_, '_>, dot: bool) {
    if dot {
        out.lit(lit!("."));
    }
    let n = arena.node(s);
    // SAFETY: the caller pins `s`.
    let (kind, payload) = unsafe { (n.kind(), n.payload()) };
    // The name first, then the arguments: one write for every kind (flash).
    out.lit(match kind {
        Kind::Cancel => lit!("WithCancel"),
        Kind::Deadline => lit!("WithDeadline(@"),
        Kind::Value | Kind::HeapValue => lit!("WithValue("),
        Kind::WithoutCancel => lit!("WithoutCancel"),
        Kind::AfterFunc => lit!("AfterFunc"),
        Kind::Link => lit!("Link"),
        Kind::Free => lit!("<free>"),
    });
    match kind {
        Kind::Deadline => {
            // SAFETY: the `timer` variant is live for deadline nodes.
            let dl = unsafe { payload.timer.deadline };
            write_digits(out, 0, dl);
            remaining(arena, dl, out);
            out.lit(lit!("])"));
        }
        Kind::Value | Kind::HeapValue => {
            // SAFETY: the `value` variant is live for value nodes, and its key points to a key
            // static, every key type starting with a `KeyInfo` (`#[repr(C)]`).
            let info = unsafe { &*payload.value.key.cast::<KeyInfo>() };
            out.str(info.name);
            out.lit(lit!(", "));
            out.str((info.type_name)());
            out.lit(lit!(")"));
        }
        _ => {}
    }
}

/// ` [`, then the time left until `dl` by the arena's clock, as Go prints
/// `time.Until(deadline)`.
fn remaining(arena: &RawArena, dl: u64, out: &mut Out<'_, '_>) {
    match arena.clock() {
        Some(c) => {
            let now = c.now().ticks();
            // The sign with the bracket: one write fewer (flash).
            let (open, left) = if now <= dl {
                (lit!(" ["), dl - now)
            } else {
                (lit!(" [-"), now - dl)
            };
            out.lit(open);
            write_duration(out, c.duration_of(left));
        }
        None => out.lit(lit!(" [no clock")),
    }
}

impl RawArena {
    /// Draws every live context of the arena as a tree, one line per node: its kind, slot, state,
    /// deadline and cause. What someone debugging a firmware hang looks at first.
    ///
    /// ```
    /// use ctxtree::{Child, Arena, Key};
    /// static ARENA: Arena<8> = Arena::new();
    /// static USER: Key<u32> = Key::new("user");
    /// let Child { ctx: req, cancel } = ARENA.background().with_cancel()?;
    /// let val = req.with_value(&USER, 7)?;
    /// let Child { ctx: _job, cancel: _c } = val.with_cancel()?;
    /// cancel.cancel();
    /// let mut out = String::new();
    /// ARENA.dump(&mut out).unwrap();
    /// assert_eq!(out, "\
    /// context.Background
    ///   WithCancel #0 [canceled]
    ///     WithValue(user, u32) #1
    ///       WithCancel #2 [canceled]
    /// ");
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    ///
    /// The walk is iterative and holds a reference on each node of its current path, so it is
    /// safe against concurrent changes (it shows a consistent node per line, not a snapshot of the
    /// whole tree). It costs O(n²) in the number of used slots: a diagnostic, not a hot path.
    /// TODO-rooted trees are printed after Background-rooted ones.
    pub fn dump(&self, w: &mut dyn fmt::Write) -> fmt::Result {
        let out = &mut Out::new(w);
        self.walk(|step| {
            match step {
                Step::Root(root) => {
                    out.lit(root_name(root));
                    out.lit(lit!("\n"));
                }
                Step::Node(s, depth) => self.line(s, depth, out),
            }
            out.result()
        })
    }

    /// The walk behind [`dump`](RawArena::dump) (and `dump_defmt`): calls `visit` with each
    /// root that has live children, then each live node below it in pre-order with its depth
    /// (1 for a root's child), holding a reference on the node and its ancestors meanwhile.
    /// Stops at the first `Err`, releasing what it holds.
    pub(crate) fn walk<E>(&self, mut visit: impl FnMut(Step) -> Result<(), E>) -> Result<(), E> {
        for root in [Slot::BACKGROUND, Slot::TODO] {
            let mut printed_root = false;
            // The references held on the current path, released however the walk ends: on an
            // error, or when user code (the writer, a cause's `Display`, the clock) panics.
            let mut path = HeldPath {
                arena: self,
                deepest: root,
                root,
            };
            let mut depth = 1usize;
            let mut from = 0u32;
            loop {
                match self.next_child(path.deepest, from) {
                    Some(c) => {
                        path.deepest = c;
                        if !printed_root {
                            visit(Step::Root(root))?;
                            printed_root = true;
                        }
                        visit(Step::Node(c, depth))?;
                        depth += 1;
                        from = 0;
                    }
                    None => {
                        let parent = path.deepest;
                        if parent == root {
                            break;
                        }
                        // SAFETY: we hold a reference on `parent` (taken in `next_child`).
                        let up = unsafe { self.node(parent).parent() };
                        from = parent.index() + 1;
                        path.deepest = up;
                        self.release(parent, 1);
                        depth -= 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// A `Display` view of [`dump`](RawArena::dump): `println!("{}", ARENA.tree())`.
    pub fn tree(&self) -> Tree<'_> {
        Tree(self)
    }

    /// The first live node at or after `from` whose parent is `parent`, with a reference taken.
    fn next_child(&self, parent: Slot, from: u32) -> Option<Slot> {
        for s in (from..self.used()).map(Slot::new) {
            // ORDERING: Relaxed: a hint, re-checked under a reference.
            if self.node(s).refs.load(Ordering::Relaxed) == 0 || !self.try_acquire(s) {
                continue;
            }
            let n = self.node(s);
            // SAFETY: we hold a reference.
            let (kind, p) = unsafe { (n.kind(), n.parent()) };
            if kind != Kind::Free && p == parent {
                return Some(s);
            }
            self.release(s, 1);
        }
        None
    }

    fn line(&self, s: Slot, depth: usize, out: &mut Out<'_, '_>) {
        let n = self.node(s);
        for _ in 0..depth.min(40) {
            out.lit(lit!("  "));
        }
        if depth > 40 {
            out.lit(lit!("(depth "));
            write_digits(out, 0, depth as u64);
            out.lit(lit!(") "));
        }
        segment(self, s, out, false);
        out.lit(lit!(" #"));
        // A node (never a root sentinel): its index, as `Slot`'s `Display` prints it.
        write_digits(out, 0, u64::from(s.index()));
        // SAFETY: we hold a reference.
        let kind = unsafe { n.kind() };
        // ORDERING: Acquire: a done word is followed by reading the cause.
        let h = n.head.load(Ordering::Acquire);
        match kind {
            Kind::Cancel | Kind::Deadline => {
                out.lit(match (h.is_done(), h.err()) {
                    (false, _) => lit!(" [live]"),
                    (true, Error::DeadlineExceeded) => lit!(" [deadline exceeded]"),
                    (true, Error::Canceled) => lit!(" [canceled]"),
                });
                // SAFETY: a held canceller node.
                let dl = unsafe { n.deadline() };
                if kind == Kind::Cancel && dl != u64::MAX {
                    out.lit(lit!(" deadline=@"));
                    write_digits(out, 0, dl);
                    out.lit(lit!(" (inherited)"));
                }
                if h.is_done() && h.has_cause() {
                    // ORDERING: Acquire pairs with the claim in `publish`.
                    let p = n.cause.load(Ordering::Acquire);
                    out.lit(lit!(" cause=\""));
                    // SAFETY: the slot's referent is alive while the node is (held).
                    out.cause(unsafe { cause::decode(p) });
                    out.lit(lit!("\""));
                }
            }
            Kind::AfterFunc | Kind::Link => {
                out.lit(match (h.is_done(), h.is_stopped()) {
                    (false, _) => lit!(" [pending]"),
                    (true, false) => lit!(" [fired]"),
                    (true, true) => lit!(" [stopped]"),
                });
            }
            _ => {}
        }
        out.lit(lit!("\n"));
    }
}

/// One step of [`RawArena::walk`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step {
    /// A root (`Slot::BACKGROUND` or `Slot::TODO`), before its first live child.
    Root(Slot),
    /// A live node, held by the walk, and its depth below the root (1 for a root's child).
    Node(Slot, usize),
}

/// The references a dump holds on its current path, from `deepest` up to (not including)
/// `root`; released on drop, so that neither an error nor a panic in user code leaks them.
struct HeldPath<'a> {
    arena: &'a RawArena,
    deepest: Slot,
    root: Slot,
}

impl Drop for HeldPath<'_> {
    fn drop(&mut self) {
        let mut panics = Panics::new();
        let mut s = self.deepest;
        while s != self.root && s.is_node() {
            // SAFETY: we hold a reference on `s`.
            let up = unsafe { self.arena.node(s).parent() };
            self.arena.release_in(s, 1, &mut panics);
            s = up;
        }
        panics.resume();
    }
}

/// `Display` adapter for [`RawArena::dump`].
#[derive(Debug)]
pub struct Tree<'a>(&'a RawArena);

impl fmt::Display for Tree<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.dump(f)
    }
}

#[cfg(all(test, not(ctxtree_loom)))]
mod tests {
    extern crate std;
    use std::format;
    use std::string::String;

    use core::time::Duration;

    use super::{Out, write_digits, write_duration};

    #[test]
    fn digits_match_display() {
        let edges = [
            0,
            1,
            9,
            10,
            99,
            100,
            101,
            1_000_000_007,
            u64::MAX,
            u64::MAX - 1,
            1 << 32,
        ];
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        // Fewer values under Miri (each is 20 checks), never fewer checks per value.
        let random = (0..if cfg!(miri) { 100 } else { 2_000 }).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x >> (x % 64)
        });
        let digits = |frac: usize, v: u64| {
            let mut s = String::new();
            let mut out = Out::new(&mut s);
            write_digits(&mut out, frac, v);
            out.result().unwrap();
            s
        };
        // A fraction of `frac` digits, as `{:0frac$}` zero-pads it, its trailing zeros trimmed.
        let fraction = |frac: u32, w: u64| {
            let width = frac as usize;
            assert_eq!(
                digits(width, w),
                format!("{w:0width$}").trim_end_matches('0'),
                "{w} {frac}"
            );
        };
        for frac in 1..=19u32 {
            let one = 10u64.pow(frac);
            for w in [1, 7, one / 10, one / 10 + 1, one / 2, one - 1] {
                fraction(frac, w);
            }
        }
        for v in edges.into_iter().chain(random) {
            assert_eq!(digits(0, v), format!("{v}"), "{v}");
            // The same bits as fractions of every width: their low `frac` decimal digits.
            for frac in 1..=19u32 {
                let w = v % 10u64.pow(frac);
                if w != 0 {
                    fraction(frac, w);
                }
            }
        }
    }

    #[test]
    fn durations_match_debug() {
        let mut x = 0x2545_F491_4F6C_DD1D_u64;
        let random = (0..2_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::new(x >> (x % 64), (x % 1_000_000_000) as u32)
        });
        let edges = [
            Duration::ZERO,
            Duration::MAX,
            Duration::from_nanos(1),
            Duration::from_nanos(999),
            Duration::from_nanos(1_000),
            Duration::from_nanos(1_001),
            Duration::from_nanos(1_010),
            Duration::from_nanos(999_999),
            Duration::from_millis(1),
            Duration::from_micros(1_500),
            Duration::from_nanos(999_999_999),
            Duration::from_secs(1),
            Duration::from_millis(1_500),
            Duration::new(3, 1),
            Duration::new(u64::MAX, 0),
        ];
        let small = (0..2_000u64).map(|i| Duration::from_nanos(i * i * i * 7));
        for d in edges.into_iter().chain(random).chain(small) {
            let mut s = String::new();
            let mut out = Out::new(&mut s);
            write_duration(&mut out, d);
            out.result().unwrap();
            assert_eq!(s, format!("{d:?}"));
        }
    }

    /// The paths the integration tests do not print: a deadline without a clock, a deadline
    /// already past (not yet expired), a chain deeper than `FULL`, and a dump line deeper than
    /// 40; the strings are the ones the code before issue 11's flash work printed.
    #[test]
    fn rare_paths_print_as_before() {
        use std::vec::Vec;

        use crate::{Arena, Child, Instant, ManualClock};

        let a = Arena::<80>::new();
        let Child { ctx, cancel: _c } = a
            .background()
            .with_deadline(Instant::from_ticks(5))
            .unwrap();
        assert_eq!(
            format!("{ctx}"),
            "context.Background.WithDeadline(@5 [no clock])"
        );
        let mut out = String::new();
        a.dump(&mut out).unwrap();
        assert_eq!(
            out,
            "context.Background\n  WithDeadline(@5 [no clock]) #0 [live]\n"
        );

        static CLOCK: ManualClock = ManualClock::new(1_000);
        let a = Arena::<80>::new().with_clock(&CLOCK);
        let Child { ctx, cancel: _c } = a
            .background()
            .with_deadline(Instant::from_ticks(5))
            .unwrap();
        CLOCK.advance(7);
        assert_eq!(
            format!("{ctx}"),
            "context.Background.WithDeadline(@5 [-2ms])"
        );

        let mut chain = Vec::new();
        let mut ctx = a.todo();
        for _ in 0..70 {
            let Child { ctx: c, cancel } = ctx.with_cancel().unwrap();
            chain.push(cancel);
            ctx = c;
        }
        let mut want = String::from("context.TODO.…(38 more)…");
        for _ in 0..32 {
            want.push_str(".WithCancel");
        }
        assert_eq!(format!("{ctx}"), want);
        let mut out = String::new();
        a.dump(&mut out).unwrap();
        let line = out.lines().find(|l| l.contains("#41 ")).unwrap();
        assert_eq!(
            line,
            format!("{}(depth 41) WithCancel #41 [live]", "  ".repeat(40))
        );
        assert!(out.ends_with(") WithCancel #70 [live]\n"), "{out}");
    }

    /// A heap cause in a dump: through its `Display`, as the code before issue 11's flash work
    /// printed it.
    #[cfg(feature = "alloc")]
    #[test]
    fn heap_cause_prints_its_display() {
        use crate::{Arena, CancelCause, Child};

        #[derive(Debug)]
        struct Full;
        impl core::fmt::Display for Full {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("disk ")?;
                f.pad("full")
            }
        }
        impl core::error::Error for Full {}

        let a = Arena::<4>::new();
        let Child { ctx, cancel } = a.background().with_cancel_cause().unwrap();
        cancel.cancel_with(CancelCause::error(Full));
        let mut out = String::new();
        a.dump(&mut out).unwrap();
        assert_eq!(
            out,
            "context.Background\n  WithCancel #0 [canceled] cause=\"disk full\"\n"
        );
        drop(ctx);
    }
}
