//! Between processes: a context's deadline and chosen request values, carried in headers.
//!
//! Go's context carries "deadlines, cancellation signals, and request-scoped values across API
//! boundaries and between processes". This module is the boundary:
//!
//! * [`grpc_timeout`]: gRPC's `grpc-timeout` header, the remaining time as text, both ways.
//! * [`Carrier`]: get/set of header-like pairs (HTTP headers, gRPC metadata, your protocol's).
//! * [`inject`]: writes the remaining time of a context (and the values whose keys opt in) into
//!   an outgoing request's carrier. A context already done is refused: fail fast.
//! * [`extract`]: turns an incoming request's carrier into a child of the server's context with
//!   that much time left (capped by a server maximum), and its values bound.
//! * [`Header`] + [`Wire`]: a key opts in to travelling; malformed values are dropped and
//!   reported in [`Extracted::rejected`], never a panic.
//!
//! Cancellation itself does not cross the wire as a message: a callee learns it from its
//! deadline, or from the connection closing (the `tower` feature's server layer cancels a
//! request's context when its client goes away; the `std` example `between_processes` shows
//! the whole chain across three processes).
//!
//! Everything here needs neither `alloc` nor `std` (the example's `BTreeMap` carrier does).
//!
// The example's carrier is a `BTreeMap` (`alloc`): ignored in builds without it.
#![cfg_attr(feature = "alloc", doc = "```")]
#![cfg_attr(not(feature = "alloc"), doc = "```ignore")]
//! use core::time::Duration;
//! use std::collections::BTreeMap;
//! use ctxtree::propagate::{self, Header, Propagator};
//! use ctxtree::{Arena, Key, ManualClock};
//!
//! static CLOCK: ManualClock = ManualClock::new(1_000); // 1 tick = 1 ms
//! static ARENA: Arena<16> = Arena::new().with_clock(&CLOCK);
//! static REQUEST_ID: Key<u64> = Key::new("request-id");
//! static REQUEST_ID_HEADER: Header<Key<u64>> = Header::new("x-request-id", &REQUEST_ID);
//! static PROPAGATOR: Propagator<'static> = Propagator::new()
//!     .with_fields(&[&REQUEST_ID_HEADER])
//!     .with_max_timeout(Duration::from_secs(10));
//!
//! // The caller: 300 ms left, request id 7.
//! let req = ARENA.background().with_value(&REQUEST_ID, 7)?;
//! let ctxtree::Child { ctx: call, cancel: _cancel } = req.with_timeout(Duration::from_millis(300))?;
//! CLOCK.advance(20);
//! let mut headers = BTreeMap::new();
//! PROPAGATOR.inject(&call, &mut headers)?;
//! assert_eq!(headers["grpc-timeout"], "280000u");
//! assert_eq!(headers["x-request-id"], "7");
//!
//! // The callee (here the same arena): a child of its own context with 280 ms left.
//! let incoming = PROPAGATOR.extract(&ARENA.background(), &headers)?;
//! assert_eq!(incoming.ctx.remaining(), Some(Duration::from_millis(280)));
//! assert_eq!(incoming.ctx.value(&REQUEST_ID), Some(7));
//! assert!(incoming.rejected.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use core::time::Duration;

use crate::{Canceler, Child, Context, CreateError, Error};

mod carrier;
mod field;
pub mod grpc_timeout;

pub use carrier::{Carrier, CarrierError};
pub use field::{Field, Header, MAX_VALUE_LEN, Token, TraceParent, ValueError, Wire};

/// What travels and how: the request values that opt in, and the server's cap on an incoming
/// timeout. `const`, so it can live in a `static`. [`inject`] and [`extract`] are
/// `Propagator::new()` (no values, no cap).
#[derive(Clone, Copy)]
pub struct Propagator<'f> {
    fields: &'f [&'f dyn Field],
    max_timeout: Option<Duration>,
}

impl Propagator<'static> {
    /// The deadline only: no request values, no cap.
    pub const fn new() -> Self {
        Propagator {
            fields: &[],
            max_timeout: None,
        }
    }
}

impl Default for Propagator<'static> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'f> Propagator<'f> {
    /// Carries these request values too (each a [`Header`] on a key).
    pub const fn with_fields<'g>(self, fields: &'g [&'g dyn Field]) -> Propagator<'g> {
        Propagator {
            fields,
            max_timeout: self.max_timeout,
        }
    }

    /// On [`extract`](Propagator::extract), gives a request at most `max` — also one that
    /// arrives without a `grpc-timeout`, so that every request this server runs is bounded.
    pub const fn with_max_timeout(self, max: Duration) -> Self {
        Propagator {
            fields: self.fields,
            max_timeout: Some(max),
        }
    }

    /// The cap set by [`with_max_timeout`](Propagator::with_max_timeout).
    pub const fn max_timeout(&self) -> Option<Duration> {
        self.max_timeout
    }

    /// Writes what `ctx` carries into an outgoing request's `carrier`: its remaining time as
    /// `grpc-timeout` (rounded down: [`grpc_timeout::encode`]) when it has a deadline, and
    /// the value of each field whose key `ctx` binds. Returns the timeout written.
    ///
    /// A context without a deadline (or on an arena without a clock to measure one by) writes
    /// no timeout.
    ///
    /// Errors: [`InjectError::Done`] when `ctx` is already done — cancelled, or no time left
    /// (fail fast: the call would be wasted); [`InjectError::Carrier`] when the carrier
    /// refuses a pair; [`InjectError::Value`] when a value's codec fails. Nothing is
    /// rolled back: pairs written before the error stay.
    pub fn inject<C: Carrier + ?Sized>(
        &self,
        ctx: &Context<'_>,
        carrier: &mut C,
    ) -> Result<Option<grpc_timeout::Timeout>, InjectError> {
        if let Some(e) = ctx.err() {
            return Err(InjectError::Done(e));
        }
        let timeout = match ctx.remaining() {
            None => None,
            Some(left) => {
                let t = grpc_timeout::encode(left)
                    .map_err(|_| InjectError::Done(Error::DeadlineExceeded))?;
                carrier
                    .set(grpc_timeout::HEADER, t.as_bytes())
                    .map_err(|error| InjectError::Carrier {
                        header: grpc_timeout::HEADER,
                        error,
                    })?;
                Some(t)
            }
        };
        let mut buf = [0u8; MAX_VALUE_LEN];
        for field in self.fields {
            let name = field.name();
            let Some(encoded) = field.encode_from(ctx, &mut buf) else {
                continue;
            };
            let n = encoded.map_err(|error| InjectError::Value {
                header: name,
                error,
            })?;
            carrier
                .set(name, &buf[..n])
                .map_err(|error| InjectError::Carrier {
                    header: name,
                    error,
                })?;
        }
        Ok(timeout)
    }

    /// Makes the context of an incoming request: a child of `parent` (the server's own context,
    /// e.g. its shutdown context) whose deadline is the `grpc-timeout` found in `carrier`
    /// (capped by [`max_timeout`](Propagator::max_timeout)), with the value of each field
    /// present bound on it. Without a timeout and a cap, the child has no deadline of its own.
    ///
    /// The child is always cancellable: dropping [`Extracted::cancel`] when the request is
    /// over (or its client is gone) cancels it and everything the handler derived from it.
    ///
    /// A malformed `grpc-timeout` or value is **dropped** — as if absent — and reported in
    /// [`Extracted::rejected`], so that a bad header from a client never fails the request
    /// nor panics.
    ///
    /// Errors: [`CreateError`] from the arena (full; or no clock, when there is a timeout).
    pub fn extract<'a, C: Carrier + ?Sized>(
        &self,
        parent: &Context<'a>,
        carrier: &C,
    ) -> Result<Extracted<'a>, CreateError> {
        let mut rejected = Rejections::new();
        let incoming = match carrier.get(grpc_timeout::HEADER) {
            None => None,
            Some(text) => match grpc_timeout::decode(text) {
                Ok(d) => Some(d),
                Err(e) => {
                    rejected.push(grpc_timeout::HEADER, Malformed::Timeout(e));
                    None
                }
            },
        };
        let timeout = match (incoming, self.max_timeout) {
            (Some(t), Some(max)) => Some(t.min(max)),
            (t, max) => t.or(max),
        };
        let Child { mut ctx, cancel } = match timeout {
            Some(t) => parent.with_timeout(t)?,
            None => parent.with_cancel()?,
        };
        for field in self.fields {
            let name = field.name();
            let Some(text) = carrier.get(name) else {
                continue;
            };
            match field.bind(&ctx, text)? {
                Ok(child) => ctx = child,
                Err(e) => rejected.push(name, Malformed::Value(e)),
            }
        }
        Ok(Extracted {
            ctx,
            cancel,
            timeout: incoming,
            rejected,
        })
    }
}

impl fmt::Debug for Propagator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Names<'a>(&'a [&'a dyn Field]);
        impl fmt::Debug for Names<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|x| x.name()))
                    .finish()
            }
        }
        f.debug_struct("Propagator")
            .field("fields", &Names(self.fields))
            .field("max_timeout", &self.max_timeout)
            .finish()
    }
}

/// [`Propagator::inject`] with no request values: writes `ctx`'s remaining time as
/// `grpc-timeout`.
///
// A std example (the global arena): ignored in builds without `std`.
#[cfg_attr(feature = "std", doc = "```")]
#[cfg_attr(not(feature = "std"), doc = "```ignore")]
/// use std::time::Duration;
/// let ctxtree::Child { ctx, cancel: _cancel } = ctxtree::background().with_timeout(Duration::from_secs(2))?;
/// let mut headers = std::collections::BTreeMap::new();
/// let sent = ctxtree::propagate::inject(&ctx, &mut headers)?.unwrap();
/// assert!(sent.duration() <= Duration::from_secs(2));
/// assert_eq!(headers["grpc-timeout"], sent.as_str());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Errors: see [`Propagator::inject`].
pub fn inject<C: Carrier + ?Sized>(
    ctx: &Context<'_>,
    carrier: &mut C,
) -> Result<Option<grpc_timeout::Timeout>, InjectError> {
    Propagator::new().inject(ctx, carrier)
}

/// [`Propagator::extract`] with no request values and no cap.
///
// A std example (the global arena): ignored in builds without `std`.
#[cfg_attr(feature = "std", doc = "```")]
#[cfg_attr(not(feature = "std"), doc = "```ignore")]
/// use std::time::Duration;
/// let mut headers = std::collections::BTreeMap::new();
/// headers.insert("grpc-timeout".to_string(), "250m".to_string());
/// let req = ctxtree::propagate::extract(&ctxtree::background(), &headers)?;
/// assert!(req.ctx.remaining().unwrap() <= Duration::from_millis(250));
/// assert_eq!(req.timeout, Some(Duration::from_millis(250)));
/// # Ok::<(), ctxtree::CreateError>(())
/// ```
///
/// Errors: see [`Propagator::extract`].
pub fn extract<'a, C: Carrier + ?Sized>(
    parent: &Context<'a>,
    carrier: &C,
) -> Result<Extracted<'a>, CreateError> {
    Propagator::new().extract(parent, carrier)
}

/// The context of an incoming request, made by [`extract`].
#[must_use = "dropping `cancel` cancels the request's context at once"]
#[derive(Debug)]
pub struct Extracted<'a> {
    /// The request's context: a child of the server's, with the caller's deadline and values.
    pub ctx: Context<'a>,
    /// Cancels `ctx`; dropping it cancels too. Keep it while the request runs.
    pub cancel: Canceler<'a>,
    /// The `grpc-timeout` the caller sent, decoded (before the server's cap).
    pub timeout: Option<Duration>,
    /// The headers that were present but malformed, and dropped.
    pub rejected: Rejections,
}

/// Why [`inject`] wrote no (or not every) header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InjectError {
    /// The context is already done (cancelled, or its deadline passed): don't make the call.
    Done(Error),
    /// The carrier refused the header.
    Carrier {
        /// The header.
        header: &'static str,
        /// Why.
        error: CarrierError,
    },
    /// A value's codec could not encode it.
    Value {
        /// The header.
        header: &'static str,
        /// Why.
        error: ValueError,
    },
}

impl fmt::Display for InjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectError::Done(e) => fmt::Display::fmt(e, f),
            InjectError::Carrier { header, error } => write!(f, "{header}: {error}"),
            InjectError::Value { header, error } => write!(f, "{header}: {error}"),
        }
    }
}

impl core::error::Error for InjectError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            InjectError::Done(e) => Some(e),
            InjectError::Carrier { error, .. } => Some(error),
            InjectError::Value { error, .. } => Some(error),
        }
    }
}

/// What was wrong with a dropped header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Malformed {
    /// The `grpc-timeout` header.
    Timeout(grpc_timeout::DecodeError),
    /// A request value's header.
    Value(ValueError),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Timeout(e) => fmt::Display::fmt(e, f),
            Malformed::Value(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// A header that [`extract`] dropped, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rejected {
    /// The header's name.
    pub header: &'static str,
    /// What was wrong with its value.
    pub error: Malformed,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dropped: {}", self.header, self.error)
    }
}

/// The headers [`extract`] dropped: the first [`Rejections::CAPACITY`] kept (no allocation),
/// the rest counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rejections {
    kept: [Option<Rejected>; Rejections::CAPACITY],
    count: usize,
}

impl Rejections {
    /// How many rejections are kept.
    pub const CAPACITY: usize = 4;

    const fn new() -> Self {
        Rejections {
            kept: [None; Self::CAPACITY],
            count: 0,
        }
    }

    fn push(&mut self, header: &'static str, error: Malformed) {
        if let Some(slot) = self.kept.get_mut(self.count) {
            *slot = Some(Rejected { header, error });
        }
        self.count += 1;
    }

    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many headers were dropped (may exceed [`CAPACITY`](Rejections::CAPACITY)).
    pub fn len(&self) -> usize {
        self.count
    }

    /// The kept rejections, in header order (the timeout first).
    pub fn iter(&self) -> impl Iterator<Item = &Rejected> {
        self.kept.iter().flatten()
    }
}
