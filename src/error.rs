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
    /// Also [`Context::with_linked_static`](crate::Context::with_linked_static) across two
    /// arenas when the second context has a deadline and either arena has no clock to
    /// translate it by.
    NoClock,
    /// [`Context::with_linked`](crate::Context::with_linked) was given a context of another
    /// arena: a link across arenas is sound only between arenas that live forever, which its
    /// signature cannot check. Link two `'static` contexts with
    /// [`with_linked_static`](crate::Context::with_linked_static) instead.
    ForeignArena,
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CreateError::ArenaFull => "context arena is full",
            CreateError::NoClock => "context arena has no clock: a timeout cannot be computed",
            CreateError::ForeignArena => {
                "linked contexts of two arenas: use with_linked_static (both 'static)"
            }
        })
    }
}

impl core::error::Error for CreateError {}

/// A context that could not be created is reported to code that speaks only [`Error`] as one
/// cancelled at birth: the work it would have guarded must not start. This lets `?` propagate
/// a constructor's failure from a function returning `Result<_, ctxtree::Error>`; the reason
/// (`ArenaFull`, `NoClock`, `ForeignArena`) is lost, so keep `CreateError` (or convert it to `std::io::Error`
/// or `Box<dyn Error>`, which keep it) where the reason matters.
///
// A std example (the global arena): ignored in builds without `std`.
#[cfg_attr(feature = "std", doc = "```")]
#[cfg_attr(not(feature = "std"), doc = "```ignore")]
/// use ctxtree::Child;
/// use std::time::Duration;
/// fn handle(parent: &ctxtree::Context<'_>) -> Result<u32, ctxtree::Error> {
///     let Child { ctx, cancel: _cancel } = parent.with_timeout(Duration::from_secs(1))?;
///     match ctx.err() {
///         Some(e) => Err(e),
///         None => Ok(42),
///     }
/// }
/// assert_eq!(handle(&ctxtree::background()), Ok(42));
/// let full = ctxtree::HeapArena::with_capacity(1).with_clock(&ctxtree::StdClock);
/// let Child { ctx: _held, cancel: _c } = full.background().with_cancel().unwrap(); // takes the only node
/// assert_eq!(handle(&full.background()), Err(ctxtree::Error::Canceled));
/// ```
impl From<CreateError> for Error {
    fn from(_: CreateError) -> Self {
        Error::Canceled
    }
}

/// `?` on a constructor in a function returning `std::io::Result` (`std`): `ArenaFull` is
/// [`OutOfMemory`](std::io::ErrorKind::OutOfMemory), `NoClock` and `ForeignArena` are
/// [`Unsupported`](std::io::ErrorKind::Unsupported); the `CreateError` is kept as the source.
///
/// ```
/// use ctxtree::Child;
/// fn serve(parent: &ctxtree::Context<'_>) -> std::io::Result<()> {
///     let Child { ctx: _ctx, cancel: _cancel } = parent.with_timeout(std::time::Duration::from_secs(1))?;
///     Ok(())
/// }
/// serve(&ctxtree::background())?;
/// let no_clock = ctxtree::Arena::<4>::new();
/// let err = serve(&no_clock.background()).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
/// assert_eq!(err.into_inner().unwrap().downcast::<ctxtree::CreateError>().ok().as_deref(),
///            Some(&ctxtree::CreateError::NoClock));
///
/// // Boxed errors need nothing more: `CreateError` is an `Error + Send + Sync + 'static`.
/// fn boxed(parent: &ctxtree::Context<'_>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     let Child { ctx: _ctx, cancel: _cancel } = parent.with_cancel()?;
///     Ok(())
/// }
/// boxed(&ctxtree::background()).unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(feature = "std")]
impl From<CreateError> for std::io::Error {
    fn from(e: CreateError) -> Self {
        let kind = match e {
            CreateError::ArenaFull => std::io::ErrorKind::OutOfMemory,
            CreateError::NoClock | CreateError::ForeignArena => std::io::ErrorKind::Unsupported,
        };
        std::io::Error::new(kind, e)
    }
}
