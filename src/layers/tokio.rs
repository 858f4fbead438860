//! Interop with tokio-util's `CancellationToken` (feature `tokio`), so that a service can adopt
//! ctxtree one module at a time.
//!
//! Two directions, two helpers:
//!
//! | you have | you need | use |
//! |---|---|---|
//! | a [`Context`] | a `CancellationToken` for code that takes one | [`Context::to_cancellation_token`] |
//! | a `CancellationToken` | a [`Context`] for code that takes one | [`context_from_token`] |
//!
//! **Context → token** needs no task: the token is cancelled by an
//! [`after_func`](Context::after_func) callback, inline in whoever cancels the context (or the
//! timer thread, at a deadline).
//!
//! **Token → context** needs one: a `CancellationToken` has no callback registration, only
//! `cancelled()` futures, so something must await it. [`context_from_token`] returns that
//! something as a [`TokenBridge`] future, which you spawn (or `join!` with your work). It ends as
//! soon as either side is done, so it never outlives the context it serves.
//!
//! The bridge depends on nothing but tokio-util: no runtime is started, and both helpers work
//! under any executor.

use crate::Child;
use ::alloc::boxed::Box;
use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::task::{Context as TaskCx, Poll};

use tokio_util::sync::CancellationToken;

use crate::{AfterFunc, Canceler, Context, CreateError, StaticCause};

/// The cause of a context cancelled because its `CancellationToken` was cancelled (see
/// [`context_from_token`]). Compare with [`Cause::is_static`](crate::Cause::is_static).
pub static TOKEN_CANCELED: StaticCause = StaticCause::new("cancellation token cancelled");

/// The cause of a context whose [`TokenBridge`] was dropped before the token or the context was
/// done: with nobody left to watch the token, the context is cancelled rather than left running
/// unbounded.
pub static BRIDGE_DROPPED: StaticCause =
    StaticCause::new("cancellation token bridge dropped before completion");

impl<'a> Context<'a> {
    /// A `CancellationToken` that is cancelled when this context is done — cancelled, through
    /// an ancestor, or at its deadline (Go-to-tokio direction).
    ///
    /// The token is cancelled by an [`after_func`](Context::after_func) callback (boxed), so it
    /// fires inline in whoever cancels the context, or on the timer thread at a deadline (with
    /// `std`'s global arena; on another arena, when the deadline is driven by
    /// [`expire`](crate::RawArena::expire) or observed). A context that is already done yields an
    /// already-cancelled token; one that can never be done (Background, `without_cancel`) yields a
    /// token that is never cancelled by it.
    ///
    /// The returned [`AfterFunc`] is the link: [`stop`](AfterFunc::stop) it to detach the token
    /// from the context (the token then stays as it is); dropping it keeps the link. The token
    /// is an ordinary one: cancelling it does **not** cancel the context.
    ///
    /// ```
    /// use ctxtree::Child;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ctxtree::CreateError> {
    /// let Child { ctx, cancel: _cancel } = ctxtree::background().with_timeout(Duration::from_millis(20))?;
    /// let (token, _link) = ctx.to_cancellation_token()?;
    /// // Hand `token` to code written against tokio-util:
    /// token.cancelled().await; // the timer thread fires the deadline
    /// assert_eq!(ctx.err(), Some(ctxtree::Error::DeadlineExceeded));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Errors: [`CreateError::ArenaFull`] (the callback needs a node).
    pub fn to_cancellation_token(&self) -> Result<(CancellationToken, AfterFunc<'a>), CreateError> {
        let token = CancellationToken::new();
        let theirs = token.clone();
        let link = self.after_func_boxed(move || theirs.cancel())?;
        Ok((token, link))
    }
}

/// A child of `parent` that is also cancelled when `token` is (tokio-to-Go direction), with the
/// future that watches the token.
///
/// Returns `(ctx, cancel, bridge)`:
/// * `ctx` is done when `token` is cancelled (error [`Canceled`](crate::Error::Canceled), cause
///   [`TOKEN_CANCELED`]), when `cancel` is, or when `parent` is done (with its error and cause,
///   deadline included).
/// * `cancel` is `ctx`'s [`Canceler`], as from [`with_cancel`](Context::with_cancel): dropping it
///   cancels `ctx` — which also ends the bridge.
/// * `bridge` is a [`TokenBridge`]: it must be **polled** for the token to reach the context —
///   spawn it (`tokio::spawn(bridge)` for a `'static` context) or run it beside your work. It
///   completes as soon as the token is cancelled or `ctx` is done for any reason, so it never
///   outlives the context. Dropping it before then cancels `ctx` with [`BRIDGE_DROPPED`].
///
/// A token already cancelled when this is called yields a context born done (no polling
/// needed). Uses two arena nodes: `ctx`, and a link node between `parent` and `ctx` that the
/// bridge cancels.
///
/// ```
/// use ctxtree::{Error, TOKEN_CANCELED};
/// use tokio_util::sync::CancellationToken;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ctxtree::CreateError> {
/// let token = CancellationToken::new(); // e.g. from a framework's shutdown signal
/// let (ctx, _cancel, bridge) = ctxtree::context_from_token(&ctxtree::background(), token.clone())?;
/// let bridge = tokio::spawn(bridge);
///
/// token.cancel();
/// assert_eq!(ctx.done().await, Error::Canceled);
/// assert!(ctx.cause().unwrap().is_static(&TOKEN_CANCELED));
/// bridge.await.unwrap(); // the bridge has finished
/// # Ok(())
/// # }
/// ```
///
/// Errors: [`CreateError::ArenaFull`].
pub fn context_from_token<'a>(
    parent: &Context<'a>,
    token: CancellationToken,
) -> Result<(Context<'a>, Canceler<'a>, TokenBridge<'a>), CreateError> {
    let Child {
        ctx: link,
        cancel: link_cancel,
    } = parent.with_cancel()?;
    let Child { ctx, cancel } = link.with_cancel()?;
    drop(link); // `ctx` holds its parent; `link_cancel` cancels it.
    let mut guard = LinkGuard(Some(link_cancel));
    if token.is_cancelled() {
        guard.fire();
    }
    let watched = ctx.clone();
    let fut = async move {
        let guard = &mut guard;
        if guard.0.is_none() {
            return;
        }
        let mut done = pin!(watched.done());
        let mut fired = pin!(token.cancelled());
        let token_won = poll_fn(|cx| {
            // The context first: if both are done, the context's own outcome stands anyway.
            if done.as_mut().poll(cx).is_ready() {
                Poll::Ready(false)
            } else if fired.as_mut().poll(cx).is_ready() {
                Poll::Ready(true)
            } else {
                Poll::Pending
            }
        })
        .await;
        if token_won {
            guard.fire();
        } else {
            guard.disarm();
        }
    };
    Ok((ctx, cancel, TokenBridge { fut: Box::pin(fut) }))
}

/// Owns the link node's canceler; cancels with [`BRIDGE_DROPPED`] unless fired or disarmed.
struct LinkGuard<'a>(Option<Canceler<'a>>);

impl LinkGuard<'_> {
    /// The token was cancelled: cancel the link (and so the context) with `TOKEN_CANCELED`.
    fn fire(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel_with(&TOKEN_CANCELED);
        }
    }

    /// The context is done by other means: release the link (its cancel reaches nothing live).
    fn disarm(&mut self) {
        drop(self.0.take());
    }
}

impl Drop for LinkGuard<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel_with(&BRIDGE_DROPPED);
        }
    }
}

/// The future returned by [`context_from_token`]: carries a `CancellationToken`'s cancellation
/// into a context. Completes when the token is cancelled or the context is done.
///
/// It is `Send` and `Unpin`; dropping it before it completes cancels the context with
/// [`BRIDGE_DROPPED`].
#[must_use = "the token reaches the context only while the bridge is polled: spawn or await it"]
pub struct TokenBridge<'a> {
    fut: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
}

impl Future for TokenBridge<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<()> {
        self.fut.as_mut().poll(cx)
    }
}

impl fmt::Debug for TokenBridge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBridge").finish_non_exhaustive()
    }
}
