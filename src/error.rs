//! The two errors a context can end with, and the error of its constructors.

use core::fmt;

/// Why a context is done: Go's `context.Canceled` and `context.DeadlineExceeded`.
///
/// `Display` prints exactly Go's strings, so logs read the same across the two languages.
///
/// ```
/// assert_eq!(ctxtree::Error::Canceled.to_string(), "context canceled");
/// assert_eq!(ctxtree::Error::DeadlineExceeded.to_string(), "context deadline exceeded");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The context was cancelled: by its [`Canceler`](crate::Canceler), or through an ancestor.
    #[doc(alias = "cancelled")]
    Canceled,
    /// The context's deadline (or an ancestor's) passed.
    DeadlineExceeded,
}

impl Error {
    /// Go's text for the error.
    pub const fn as_str(self) -> &'static str {
        match self {
            Error::Canceled => "context canceled",
            Error::DeadlineExceeded => "context deadline exceeded",
        }
    }

    /// Whether this is a timeout (Go's `DeadlineExceeded` implements `Timeout() bool`).
    pub const fn is_timeout(self) -> bool {
        matches!(self, Error::DeadlineExceeded)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for Error {}

/// Why a context could not be created.
///
/// Constructors never panic and never wait: a full arena is reported here, at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CreateError {
    /// Every node of the arena is in use, or (heap and global arenas) the next page of nodes
    /// could not be allocated. Release contexts (drop handles, cancel), or free memory, and
    /// retry; [`RawArena::stats`](crate::RawArena::stats) shows the high-water mark to size an
    /// arena by and counts these refusals.
    ArenaFull,
    /// A timeout needs the current time, and the arena was built without a [`Clock`](crate::Clock).
    NoClock,
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CreateError::ArenaFull => "context arena is full",
            CreateError::NoClock => "context arena has no clock: a timeout cannot be computed",
        })
    }
}

impl core::error::Error for CreateError {}
