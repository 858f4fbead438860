//! Causes: why a context was cancelled, beyond the bare [`Error`].
//!
//! Go's `WithCancelCause` lets the canceller say *why*. Without an allocator a cause is a
//! [`StaticCause`] (a message and a code in a `static`); with `alloc` it may also be any
//! `Arc<dyn Error + Send + Sync>`. The first cause wins, and children cancelled through a parent
//! report the parent's cause.
//!
//! # Representation
//! A node's cause slot is one atomic pointer, tagged in its low 3 bits (causes are 8-aligned):
//! bit 0 records the error kind of the canceller that claimed the slot (so that a thread which
//! loses the claim publishes the winner's error, not its own), bit 1 marks a heap cause, bit 2
//! marks a pointer *borrowed* from an ancestor's slot (an ancestor outlives its descendants, since
//! every node holds a reference on its parent). Only an owned heap cause is dropped with the node.

use core::fmt;

use crate::Error;

/// A cause that needs no allocation: a message and a numeric code, kept in a `static`.
///
/// ```
/// use ctxtree::{Child, Arena, StaticCause};
/// static WATCHDOG: StaticCause = StaticCause::with_code(7, "watchdog expired");
/// static ARENA: Arena<4> = Arena::new();
/// let Child { ctx, cancel } = ARENA.background().with_cancel_cause()?;
/// cancel.cancel_with(&WATCHDOG);
/// assert_eq!(ctx.err(), Some(ctxtree::Error::Canceled));
/// assert_eq!(ctx.cause().unwrap().to_string(), "watchdog expired");
/// assert_eq!(ctx.cause().unwrap().code(), Some(7));
/// # Ok::<(), ctxtree::CreateError>(())
/// ```
#[repr(align(8))]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StaticCause {
    message: &'static str,
    code: u32,
}

impl StaticCause {
    /// A cause with `message` and code 0.
    pub const fn new(message: &'static str) -> Self {
        StaticCause { message, code: 0 }
    }

    /// A cause with a numeric `code` (e.g. a firmware fault number) and `message`.
    pub const fn with_code(code: u32, message: &'static str) -> Self {
        StaticCause { message, code }
    }

    /// The message.
    pub const fn message(&self) -> &'static str {
        self.message
    }

    /// The code.
    pub const fn code(&self) -> u32 {
        self.code
    }
}

impl fmt::Display for StaticCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl core::error::Error for StaticCause {}

/// A heap-allocated cause (`alloc`): any `Arc<dyn Error + Send + Sync>`. Without `alloc` this
/// type has no values.
#[repr(align(8))]
pub struct SharedCause {
    #[cfg(feature = "alloc")]
    pub(crate) error: ::alloc::sync::Arc<dyn core::error::Error + Send + Sync>,
    #[cfg(not(feature = "alloc"))]
    never: core::convert::Infallible,
}

impl SharedCause {
    /// The error.
    pub fn error(&self) -> &(dyn core::error::Error + Send + Sync + 'static) {
        #[cfg(feature = "alloc")]
        {
            &*self.error
        }
        #[cfg(not(feature = "alloc"))]
        match self.never {}
    }

    /// A new handle on the error.
    #[cfg(feature = "alloc")]
    pub fn to_arc(&self) -> ::alloc::sync::Arc<dyn core::error::Error + Send + Sync> {
        self.error.clone()
    }
}

impl fmt::Debug for SharedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.error(), f)
    }
}

impl fmt::Display for SharedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.error(), f)
    }
}

/// A cause given to [`Canceler::cancel_with`](crate::Canceler::cancel_with) or to the `…_cause`
/// deadline constructors.
#[derive(Clone)]
pub enum CancelCause {
    /// A cause in a `static`.
    Static(&'static StaticCause),
    /// A heap-allocated error.
    #[cfg(feature = "alloc")]
    Shared(::alloc::sync::Arc<dyn core::error::Error + Send + Sync>),
}

impl CancelCause {
    /// Wraps any error as a shared cause.
    #[cfg(feature = "alloc")]
    pub fn error<E: core::error::Error + Send + Sync + 'static>(error: E) -> Self {
        CancelCause::Shared(::alloc::sync::Arc::new(error))
    }

    /// The tagged pointer stored in a cause slot; a heap cause is boxed here and owned by the
    /// returned pointer until [`drop_owned`] or a slot takes it.
    pub(crate) fn into_raw(self) -> *mut u8 {
        match self {
            CancelCause::Static(s) => core::ptr::from_ref(s).cast::<u8>().cast_mut(),
            #[cfg(feature = "alloc")]
            CancelCause::Shared(error) => {
                let boxed = ::alloc::boxed::Box::new(SharedCause { error });
                ::alloc::boxed::Box::into_raw(boxed)
                    .cast::<u8>()
                    .map_addr(|a| a | TAG_HEAP)
            }
        }
    }
}

impl fmt::Debug for CancelCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelCause::Static(s) => f.debug_tuple("Static").field(s).finish(),
            #[cfg(feature = "alloc")]
            CancelCause::Shared(e) => f.debug_tuple("Shared").field(e).finish(),
        }
    }
}

impl From<&'static StaticCause> for CancelCause {
    fn from(s: &'static StaticCause) -> Self {
        CancelCause::Static(s)
    }
}

#[cfg(feature = "alloc")]
impl From<::alloc::sync::Arc<dyn core::error::Error + Send + Sync>> for CancelCause {
    fn from(e: ::alloc::sync::Arc<dyn core::error::Error + Send + Sync>) -> Self {
        CancelCause::Shared(e)
    }
}

/// Why a done context is done: the cause given by whoever cancelled it first, or, when none was
/// given, the [`Error`] itself (Go: `Cause(ctx)` returns `ctx.Err()` when no cause was set).
///
/// Borrowed from the context it was read from.
#[derive(Clone, Copy)]
pub enum Cause<'a> {
    /// No cause was given.
    Error(Error),
    /// A static cause.
    Static(&'static StaticCause),
    /// A heap cause (`alloc`).
    Shared(&'a SharedCause),
}

impl Cause<'_> {
    /// The numeric code of a static cause.
    pub fn code(&self) -> Option<u32> {
        match self {
            Cause::Static(s) => Some(s.code()),
            _ => None,
        }
    }

    /// The cause as an error trait object.
    pub fn as_error(&self) -> &(dyn core::error::Error + Send + Sync + 'static) {
        match self {
            Cause::Error(e) => e,
            Cause::Static(s) => *s,
            Cause::Shared(s) => s.error(),
        }
    }

    /// An owned handle on the cause (`alloc`).
    #[cfg(feature = "alloc")]
    pub fn to_arc(&self) -> ::alloc::sync::Arc<dyn core::error::Error + Send + Sync> {
        match self {
            Cause::Error(e) => ::alloc::sync::Arc::new(*e),
            Cause::Static(s) => ::alloc::sync::Arc::new(StaticRef(s)),
            Cause::Shared(s) => s.to_arc(),
        }
    }

    /// Whether this cause is the bare error `e` (no cause given).
    pub fn is(&self, e: Error) -> bool {
        matches!(self, Cause::Error(x) if *x == e)
    }

    /// Whether this is the static cause `s` (compared by address).
    pub fn is_static(&self, s: &'static StaticCause) -> bool {
        matches!(self, Cause::Static(x) if core::ptr::eq(*x, s))
    }
}

#[cfg(feature = "alloc")]
#[derive(Debug)]
struct StaticRef(&'static StaticCause);

#[cfg(feature = "alloc")]
impl fmt::Display for StaticRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0, f)
    }
}

#[cfg(feature = "alloc")]
impl core::error::Error for StaticRef {}

impl fmt::Debug for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Error(e) => f.debug_tuple("Error").field(e).finish(),
            Cause::Static(s) => f.debug_tuple("Static").field(s).finish(),
            Cause::Shared(s) => f.debug_tuple("Shared").field(s).finish(),
        }
    }
}

impl fmt::Display for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_error(), f)
    }
}

impl PartialEq<Error> for Cause<'_> {
    fn eq(&self, other: &Error) -> bool {
        self.is(*other)
    }
}

/// Slot tag: the claimer's error was `DeadlineExceeded`.
pub(crate) const TAG_DEADLINE: usize = 1;
/// Slot tag: a [`SharedCause`] box.
pub(crate) const TAG_HEAP: usize = 2;
/// Slot tag: borrowed from an ancestor; not dropped with this node.
pub(crate) const TAG_BORROWED: usize = 4;
const TAG_MASK: usize = 7;

/// The tag bits of a slot pointer.
#[inline]
pub(crate) fn tags(p: *mut u8) -> usize {
    p.addr() & TAG_MASK
}

/// `p` with `t` added to its tags.
#[inline]
pub(crate) fn with_tags(p: *mut u8, t: usize) -> *mut u8 {
    p.map_addr(|a| a | t)
}

/// `p` without the error tag (what a child inherits, before it adds `TAG_BORROWED`).
#[inline]
pub(crate) fn strip_err(p: *mut u8) -> *mut u8 {
    p.map_addr(|a| a & !TAG_DEADLINE)
}

/// The error recorded in a claimed slot pointer.
#[inline]
pub(crate) fn err_of(p: *mut u8) -> Error {
    if tags(p) & TAG_DEADLINE != 0 {
        Error::DeadlineExceeded
    } else {
        Error::Canceled
    }
}

/// Reads a non-null slot pointer as a [`Cause`].
///
/// # Safety
/// `p` must come from [`CancelCause::into_raw`] (possibly re-tagged) and its referent must be
/// alive for `'a`.
pub(crate) unsafe fn decode<'a>(p: *mut u8) -> Cause<'a> {
    let raw = p.map_addr(|a| a & !TAG_MASK);
    if tags(p) & TAG_HEAP != 0 {
        // SAFETY: heap pointers come from `Box::into_raw` of a `SharedCause`, alive per the
        // caller's contract.
        Cause::Shared(unsafe { &*raw.cast::<SharedCause>() })
    } else {
        // SAFETY: non-heap pointers come from a `&'static StaticCause`.
        Cause::Static(unsafe { &*raw.cast::<StaticCause>() })
    }
}

/// Drops `p` if it is an owned heap cause; does nothing for static or borrowed pointers.
///
/// # Safety
/// `p` must be null or come from [`CancelCause::into_raw`], and an owned `p` must not be used
/// again.
pub(crate) unsafe fn drop_owned(p: *mut u8) {
    #[cfg(feature = "alloc")]
    if !p.is_null() && tags(p) & (TAG_HEAP | TAG_BORROWED) == TAG_HEAP {
        let raw = p.map_addr(|a| a & !TAG_MASK).cast::<SharedCause>();
        // SAFETY: an owned heap pointer is a `Box::into_raw` nobody else will free.
        drop(unsafe { ::alloc::boxed::Box::from_raw(raw) });
    }
    #[cfg(not(feature = "alloc"))]
    let _ = p;
}

/// An owned copy of the cause behind the slot pointer `p` (any tags; null stays null), for a
/// context that must keep it beyond the life of the node `p` was read from (a linked context,
/// `src/linked.rs`): a static cause is the same `'static` pointer, untagged; a heap cause is a
/// new [`SharedCause`] box on the same `Arc` (one allocation; `Box` aborts on failure, as for
/// every heap cause).
///
/// # Safety
/// `p` must be null or come from [`CancelCause::into_raw`] (possibly re-tagged), with its
/// referent alive for the duration of the call.
pub(crate) unsafe fn clone_owned(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        return p;
    }
    let raw = p.map_addr(|a| a & !TAG_MASK);
    #[cfg(feature = "alloc")]
    if tags(p) & TAG_HEAP != 0 {
        // SAFETY: a heap pointer is a live `SharedCause` box (the caller's contract).
        let error = unsafe { &*raw.cast::<SharedCause>() }.error.clone();
        return CancelCause::Shared(error).into_raw();
    }
    raw
}
