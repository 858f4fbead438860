//! The `defmt` layer: [`defmt::Format`] for what firmware logs — [`Error`], [`CreateError`],
//! [`ArenaStats`], [`Instant`] and the causes — and [`RawArena::dump_defmt`], the tree dump as
//! defmt frames.
//!
//! defmt sends an index into a string table kept in the ELF file instead of the text, and the
//! host formats it: nothing here reaches `core::fmt`, so a firmware that logs ctxtree's values
//! this way links none of its formatting machinery. The one exception is a heap cause (`alloc`),
//! whose text exists only through its `Display`; it goes through [`defmt::Display2Format`].
//!
//! The texts are those of the `Display` impls (Go's `context canceled` and so on), so a defmt
//! log and a `core::fmt` log of the same event read the same.

use ::defmt::{Format, Formatter, write};

use crate::arena::RawArena;
use crate::cause::{self, CancelCause, Cause, SharedCause, StaticCause};
use crate::dump::Step;
use crate::node::Kind;
use crate::state::Slot;
use crate::sync::Ordering;
use crate::value::KeyInfo;
use crate::{ArenaStats, CreateError, Error, Instant};

impl Format for Error {
    fn format(&self, f: Formatter<'_>) {
        match self {
            Error::Canceled => write!(f, "context canceled"),
            Error::DeadlineExceeded => write!(f, "context deadline exceeded"),
        }
    }
}

impl Format for CreateError {
    fn format(&self, f: Formatter<'_>) {
        match self {
            CreateError::ArenaFull => write!(f, "context arena is full"),
            CreateError::NoClock => {
                write!(
                    f,
                    "context arena has no clock: a timeout cannot be computed"
                )
            }
            CreateError::ForeignArena => write!(
                f,
                "linked contexts of two arenas: use with_linked_static (both 'static)"
            ),
        }
    }
}

impl Format for ArenaStats {
    fn format(&self, f: Formatter<'_>) {
        write!(
            f,
            "ArenaStats {{ capacity: {=usize}, max_capacity: {=usize}, live: {=usize}, high_water: {=usize}, failed_allocs: {=usize} }}",
            self.capacity, self.max_capacity, self.live, self.high_water, self.failed_allocs
        )
    }
}

/// As its `Display`: `@` and the ticks.
impl Format for Instant {
    fn format(&self, f: Formatter<'_>) {
        write!(f, "@{=u64}", self.ticks())
    }
}

/// The message, and the code when it is not 0: `watchdog expired (code 7)`.
impl Format for StaticCause {
    fn format(&self, f: Formatter<'_>) {
        match self.code() {
            0 => write!(f, "{=str}", self.message()),
            code => write!(f, "{=str} (code {=u32})", self.message(), code),
        }
    }
}

/// The error's `Display`, through `core::fmt` (the only cause that needs it).
impl Format for SharedCause {
    fn format(&self, f: Formatter<'_>) {
        #[cfg(feature = "alloc")]
        write!(f, "{}", ::defmt::Display2Format(self));
        // Without `alloc` the type has no values; say so without reaching `core::fmt`.
        #[cfg(not(feature = "alloc"))]
        write!(f, "<heap cause>");
    }
}

/// What [`Context::cause`](crate::Context::cause) returns: the bare error when no cause was
/// given, else the cause.
impl Format for Cause<'_> {
    fn format(&self, f: Formatter<'_>) {
        match self {
            Cause::Error(e) => e.format(f),
            Cause::Static(s) => s.format(f),
            Cause::Shared(s) => s.format(f),
        }
    }
}

impl Format for CancelCause {
    fn format(&self, f: Formatter<'_>) {
        match self {
            CancelCause::Static(s) => s.format(f),
            #[cfg(feature = "alloc")]
            CancelCause::Shared(e) => write!(f, "{}", ::defmt::Display2Format(e)),
        }
    }
}

/// Two spaces per level of the dump, as [`RawArena::dump`] indents (40 levels at most).
const INDENT: &str =
    "                                                                                ";
const MAX_INDENT: usize = 40;

impl RawArena {
    /// [`dump`](RawArena::dump) as defmt frames: one [`defmt::println!`] per line — a root
    /// (`context.Background`, `context.TODO`), then each live node under it, indented by depth,
    /// with its kind, slot, state, deadline and cause. The texts are `dump`'s, except that
    /// time is in ticks (`WithDeadline(@150, in 50 ticks)`), which needs no `Duration`
    /// arithmetic on the target.
    ///
    /// `println!` is not filtered by `DEFMT_LOG`: a dump is asked for explicitly. The walk is
    /// `dump`'s (iterative, a reference held on the current path, safe against concurrent
    /// changes, O(n²) in the used slots): a diagnostic, not a hot path.
    ///
    /// ```
    /// # use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    /// # static FRAMES: AtomicUsize = AtomicUsize::new(0);
    /// # #[defmt::global_logger]
    /// # struct Count; // a firmware links defmt-rtt or the like instead
    /// # unsafe impl defmt::Logger for Count {
    /// #     fn acquire() { FRAMES.fetch_add(1, SeqCst); }
    /// #     unsafe fn flush() {}
    /// #     unsafe fn release() {}
    /// #     unsafe fn write(_: &[u8]) {}
    /// # }
    /// # defmt::timestamp!("");
    /// use ctxtree::Arena;
    /// static ARENA: Arena<8> = Arena::new();
    /// let _req = ARENA.background().with_cancel()?;
    /// ARENA.dump_defmt();
    /// // context.Background
    /// //   WithCancel #0 [live]
    /// # assert_eq!(FRAMES.load(SeqCst), 2);
    /// # Ok::<(), ctxtree::CreateError>(())
    /// ```
    pub fn dump_defmt(&self) {
        let now = self.now();
        let Ok(()) = self.walk::<core::convert::Infallible>(|step| {
            match step {
                Step::Root(Slot::TODO) => ::defmt::println!("context.TODO"),
                Step::Root(_) => ::defmt::println!("context.Background"),
                Step::Node(s, depth) => ::defmt::println!(
                    "{}",
                    Line {
                        arena: self,
                        slot: s,
                        depth,
                        now,
                    }
                ),
            }
            Ok(())
        });
    }
}

/// One line of [`RawArena::dump_defmt`]: a node the walk holds.
struct Line<'a> {
    arena: &'a RawArena,
    slot: Slot,
    depth: usize,
    now: Option<Instant>,
}

impl Format for Line<'_> {
    fn format(&self, f: Formatter<'_>) {
        let (arena, s) = (self.arena, self.slot);
        let n = arena.node(s);
        write!(f, "{=str}", &INDENT[..2 * self.depth.min(MAX_INDENT)]);
        if self.depth > MAX_INDENT {
            write!(f, "(depth {=usize}) ", self.depth);
        }
        // SAFETY: the walk holds a reference on `s`.
        let (kind, payload) = unsafe { (n.kind(), n.payload()) };
        match kind {
            Kind::Cancel => write!(f, "WithCancel"),
            Kind::Deadline => {
                // SAFETY: the `timer` variant is live for deadline nodes.
                let dl = unsafe { payload.timer.deadline };
                write!(f, "WithDeadline(@{=u64}", dl);
                match self.now.map(Instant::ticks) {
                    Some(now) if now <= dl => write!(f, ", in {=u64} ticks)", dl - now),
                    Some(now) => write!(f, ", {=u64} ticks ago)", now - dl),
                    None => write!(f, ", no clock)"),
                }
            }
            Kind::Value | Kind::HeapValue => {
                // SAFETY: the `value` variant is live for value nodes, and its key points to a key
                // static, every key type starting with a `KeyInfo` (`#[repr(C)]`).
                let info = unsafe { &*payload.value.key.cast::<KeyInfo>() };
                write!(
                    f,
                    "WithValue({=str}, {=str})",
                    info.name,
                    (info.type_name)()
                );
            }
            Kind::WithoutCancel => write!(f, "WithoutCancel"),
            Kind::AfterFunc => write!(f, "AfterFunc"),
            Kind::Link => write!(f, "Link"),
            Kind::Free => write!(f, "<free>"),
        }
        write!(f, " #{=u32}", s.index());
        // ORDERING: Acquire: a done word is followed by reading the cause (as in `dump`).
        let h = n.head.load(Ordering::Acquire);
        match kind {
            Kind::Cancel | Kind::Deadline => {
                match (h.is_done(), h.err()) {
                    (false, _) => write!(f, " [live]"),
                    (true, Error::DeadlineExceeded) => write!(f, " [deadline exceeded]"),
                    (true, Error::Canceled) => write!(f, " [canceled]"),
                }
                // SAFETY: a held canceller node.
                let dl = unsafe { n.deadline() };
                if kind == Kind::Cancel && dl != u64::MAX {
                    write!(f, " deadline=@{=u64} (inherited)", dl);
                }
                if h.is_done() && h.has_cause() {
                    // ORDERING: Acquire pairs with the claim in `publish`.
                    let p = n.cause.load(Ordering::Acquire);
                    // SAFETY: the slot's referent is alive while the node is (held).
                    write!(f, " cause=\"{}\"", unsafe { cause::decode(p) });
                }
            }
            Kind::AfterFunc | Kind::Link => match (h.is_done(), h.is_stopped()) {
                (false, _) => write!(f, " [pending]"),
                (true, false) => write!(f, " [fired]"),
                (true, true) => write!(f, " [stopped]"),
            },
            _ => {}
        }
    }
}
