//! The `tokio` feature's bridge to and from tokio-util's `CancellationToken`:
//! [`Context::to_cancellation_token`] and [`ctxtree::context_from_token`].

#![cfg(feature = "tokio")]

use ctxtree::Child;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use ctxtree::{
    BRIDGE_DROPPED, Cause, Context, CreateError, Error, HeapArena, StdClock, TOKEN_CANCELED,
    TokenBridge, background, context_from_token,
};
use futures::executor::block_on;
use futures::future::join;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const LIVENESS: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Because(&'static str);

impl fmt::Display for Because {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Because {}

fn is_cause(ctx: &Context<'_>, s: &'static ctxtree::StaticCause) -> bool {
    ctx.cause().is_some_and(|c| c.is_static(s))
}

// ---------------------------------------------------------------------------------------------
// Context -> CancellationToken
// ---------------------------------------------------------------------------------------------

#[test]
fn token_is_cancelled_synchronously_when_the_context_is() {
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let (token, link) = ctx.to_cancellation_token().unwrap();
    assert!(!token.is_cancelled());
    cancel.cancel();
    assert!(token.is_cancelled(), "cancelled inside cancel()");
    assert!(!link.stop(), "the callback has run");
    block_on(token.cancelled());
}

#[test]
fn token_follows_cancellation_through_ancestors() {
    let Child {
        ctx: parent,
        cancel: cancel_parent,
    } = background().with_cancel().unwrap();
    let Child {
        ctx: child,
        cancel: _cc,
    } = parent.with_cancel().unwrap();
    let (token, _link) = child.to_cancellation_token().unwrap();
    let Child {
        ctx: sibling,
        cancel: _sc,
    } = background().with_cancel().unwrap();
    let (other, _ol) = sibling.to_cancellation_token().unwrap();
    cancel_parent.cancel();
    assert!(token.is_cancelled());
    assert!(!other.is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_reaches_the_token_without_anyone_polling_the_context() {
    let Child {
        ctx,
        cancel: _cancel,
    } = background()
        .with_timeout(Duration::from_millis(40))
        .unwrap();
    let dl = StdClock::to_std(ctx.deadline().unwrap());
    let (token, _link) = ctx.to_cancellation_token().unwrap();
    drop(ctx);
    timeout(LIVENESS, token.cancelled())
        .await
        .expect("the deadline never reached the token");
    assert!(
        StdInstant::now() >= dl,
        "token cancelled before the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherited_deadline_reaches_the_token_of_a_child() {
    let Child {
        ctx: parent,
        cancel: _pc,
    } = background()
        .with_timeout(Duration::from_millis(30))
        .unwrap();
    let Child {
        ctx: child,
        cancel: _cc,
    } = parent.with_timeout(Duration::from_secs(3600)).unwrap();
    let (token, _link) = child.to_cancellation_token().unwrap();
    timeout(LIVENESS, token.cancelled())
        .await
        .expect("the parent's deadline never reached the token");
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn token_of_a_done_context_is_born_cancelled() {
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    cancel.cancel();
    let (token, link) = ctx.to_cancellation_token().unwrap();
    assert!(token.is_cancelled());
    assert!(!link.stop());
}

#[test]
fn token_of_a_context_that_can_never_be_done_is_never_cancelled() {
    let arena = HeapArena::growable();
    let detached = arena.background().without_cancel().unwrap();
    for ctx in [arena.background(), arena.todo(), detached] {
        let live = arena.stats().live;
        let (token, link) = ctx.to_cancellation_token().unwrap();
        assert!(!token.is_cancelled());
        assert_eq!(arena.stats().live, live, "no node used");
        assert!(link.stop(), "nothing ran: stop() prevented it");
    }
}

#[test]
fn stopping_the_link_detaches_the_token() {
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let (token, link) = ctx.to_cancellation_token().unwrap();
    assert!(link.stop());
    cancel.cancel();
    assert!(!token.is_cancelled());
}

#[test]
fn dropping_the_link_keeps_it() {
    let Child { ctx, cancel } = background().with_cancel().unwrap();
    let (token, link) = ctx.to_cancellation_token().unwrap();
    drop(link);
    cancel.cancel();
    assert!(token.is_cancelled());
}

#[test]
fn cancelling_the_token_does_not_cancel_the_context() {
    let Child {
        ctx,
        cancel: _cancel,
    } = background().with_cancel().unwrap();
    let (token, _link) = ctx.to_cancellation_token().unwrap();
    token.cancel();
    assert_eq!(ctx.err(), None);
    // Child tokens follow the context too.
    let Child {
        ctx: ctx2,
        cancel: cancel2,
    } = background().with_cancel().unwrap();
    let (token2, _link2) = ctx2.to_cancellation_token().unwrap();
    let grandchild = token2.child_token();
    cancel2.cancel();
    assert!(grandchild.is_cancelled());
}

#[test]
fn to_cancellation_token_reports_a_full_arena() {
    let arena = HeapArena::with_capacity(1);
    let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
    assert_eq!(
        ctx.to_cancellation_token().err(),
        Some(CreateError::ArenaFull)
    );
    assert_eq!(arena.stats().failed_allocs, 1);
    drop((ctx, cancel));
    assert_eq!(arena.stats().live, 0);
}

#[test]
fn token_bridge_releases_its_node() {
    let arena = HeapArena::growable();
    let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
    let (token, link) = ctx.to_cancellation_token().unwrap();
    assert_eq!(arena.stats().live, 2);
    cancel.cancel();
    assert!(token.is_cancelled());
    drop((link, ctx, cancel));
    assert_eq!(arena.stats().live, 0);
}

// ---------------------------------------------------------------------------------------------
// CancellationToken -> Context
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_token_cancels_the_context_and_its_children() {
    let Child {
        ctx: parent,
        cancel: _pc,
    } = background().with_cancel().unwrap();
    let token = CancellationToken::new();
    let (ctx, _cancel, bridge) = context_from_token(&parent, token.clone()).unwrap();
    let Child {
        ctx: work,
        cancel: _wc,
    } = ctx.with_cancel().unwrap();
    let bridge = tokio::spawn(bridge);
    tokio::task::yield_now().await;
    assert_eq!(ctx.err(), None);
    token.cancel();
    let e = timeout(LIVENESS, work.done())
        .await
        .expect("never cancelled");
    assert_eq!(e, Error::Canceled);
    assert!(is_cause(&ctx, &TOKEN_CANCELED));
    assert!(is_cause(&work, &TOKEN_CANCELED));
    assert_eq!(parent.err(), None, "the parent is untouched");
    timeout(LIVENESS, bridge).await.unwrap().unwrap();
    assert!(
        ctx.to_string()
            .starts_with("context.Background.WithCancel.WithCancel")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_cancel_ends_the_bridge_and_carries_the_parents_cause() {
    let Child {
        ctx: parent,
        cancel: cancel_parent,
    } = background().with_cancel_cause().unwrap();
    let token = CancellationToken::new();
    let (ctx, _cancel, bridge) = context_from_token(&parent, token.clone()).unwrap();
    let bridge = tokio::spawn(bridge);
    let why: Arc<dyn StdError + Send + Sync> = Arc::new(Because("request aborted"));
    cancel_parent.cancel_with(why.clone());
    timeout(LIVENESS, bridge)
        .await
        .expect("the bridge outlived its context")
        .unwrap();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    match ctx.cause() {
        Some(Cause::Shared(s)) => assert!(Arc::ptr_eq(&s.to_arc(), &why)),
        other => panic!("cause() = {other:?}"),
    }
    assert!(!token.is_cancelled(), "the bridge never cancels the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_cancel_ends_the_bridge() {
    let token = CancellationToken::new();
    let (ctx, cancel, bridge) = context_from_token(&background(), token.clone()).unwrap();
    let bridge = tokio::spawn(bridge);
    drop(cancel);
    timeout(LIVENESS, bridge)
        .await
        .expect("bridge hung")
        .unwrap();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(ctx.cause().unwrap().is(Error::Canceled));
    assert!(!token.is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_deadline_ends_the_bridge() {
    let Child {
        ctx: parent,
        cancel: _pc,
    } = background()
        .with_timeout(Duration::from_millis(30))
        .unwrap();
    let dl = StdClock::to_std(parent.deadline().unwrap());
    let token = CancellationToken::new();
    let (ctx, _cancel, bridge) = context_from_token(&parent, token).unwrap();
    assert_eq!(ctx.deadline(), parent.deadline());
    timeout(LIVENESS, bridge)
        .await
        .expect("the deadline never ended the bridge");
    assert!(StdInstant::now() >= dl);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn a_done_parent_gives_a_context_born_done_and_a_bridge_that_ends_at_once() {
    let Child {
        ctx: parent,
        cancel: cancel_parent,
    } = background().with_cancel().unwrap();
    cancel_parent.cancel();
    let token = CancellationToken::new();
    let (ctx, _cancel, bridge) = context_from_token(&parent, token.clone()).unwrap();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(ctx.cause().unwrap().is(Error::Canceled));
    let noop = std::task::Waker::noop();
    let mut bridge = Box::pin(bridge);
    assert!(
        bridge
            .as_mut()
            .poll(&mut std::task::Context::from_waker(noop))
            .is_ready()
    );
    assert!(!token.is_cancelled());
}

#[test]
fn an_already_cancelled_token_gives_a_context_born_done() {
    let token = CancellationToken::new();
    token.cancel();
    let (ctx, _cancel, bridge) = context_from_token(&background(), token).unwrap();
    assert_eq!(ctx.err(), Some(Error::Canceled), "no polling needed");
    assert!(is_cause(&ctx, &TOKEN_CANCELED));
    block_on(bridge); // completes at once
}

#[test]
fn dropping_the_bridge_cancels_the_context() {
    let token = CancellationToken::new();
    let (ctx, _cancel, bridge) = context_from_token(&background(), token.clone()).unwrap();
    // Polled once (watching), then dropped.
    let mut bridge = Box::pin(bridge);
    let noop = std::task::Waker::noop();
    assert!(
        bridge
            .as_mut()
            .poll(&mut std::task::Context::from_waker(noop))
            .is_pending()
    );
    assert_eq!(ctx.err(), None);
    drop(bridge);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(is_cause(&ctx, &BRIDGE_DROPPED));
    // Never polled, then dropped: the same.
    let (ctx2, _c2, bridge2) = context_from_token(&background(), token.clone()).unwrap();
    drop(bridge2);
    assert!(is_cause(&ctx2, &BRIDGE_DROPPED));
    // Dropping a bridge that has completed changes nothing.
    let (ctx3, _c3, bridge3) = context_from_token(&background(), token.clone()).unwrap();
    token.cancel();
    block_on(bridge3);
    assert!(is_cause(&ctx3, &TOKEN_CANCELED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_the_spawned_bridge_cancels_the_context() {
    let token = CancellationToken::new();
    let (ctx, _cancel, bridge) = context_from_token(&background(), token).unwrap();
    let task = tokio::spawn(bridge);
    tokio::task::yield_now().await;
    task.abort();
    assert!(
        timeout(LIVENESS, task)
            .await
            .unwrap()
            .unwrap_err()
            .is_cancelled()
    );
    assert_eq!(
        timeout(LIVENESS, ctx.done()).await.unwrap(),
        Error::Canceled
    );
    assert!(is_cause(&ctx, &BRIDGE_DROPPED));
}

#[test]
fn bridge_works_on_a_non_static_arena_and_releases_every_node() {
    let arena = HeapArena::growable();
    let token = CancellationToken::new();
    let (ctx, cancel, bridge) = context_from_token(&arena.background(), token.clone()).unwrap();
    assert_eq!(arena.stats().live, 2, "the context and its link node");
    let work = async {
        token.cancel();
        ctx.done().await
    };
    let ((), e) = block_on(join(bridge, work));
    assert_eq!(e, Error::Canceled);
    assert!(is_cause(&ctx, &TOKEN_CANCELED));
    drop((ctx, cancel));
    assert_eq!(arena.stats().live, 0);
}

#[test]
fn context_from_token_reports_a_full_arena_and_leaks_nothing() {
    let arena = HeapArena::with_capacity(1);
    let token = CancellationToken::new();
    assert_eq!(
        context_from_token(&arena.background(), token.clone()).err(),
        Some(CreateError::ArenaFull)
    );
    assert_eq!(arena.stats().live, 0, "the link node was released");
    let arena = HeapArena::with_capacity(2);
    let (ctx, cancel, bridge) = context_from_token(&arena.background(), token).unwrap();
    drop((bridge, ctx, cancel));
    assert_eq!(arena.stats().live, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_context_to_token_to_context() {
    let Child {
        ctx: origin,
        cancel: cancel_origin,
    } = background().with_cancel().unwrap();
    let (token, _link) = origin.to_cancellation_token().unwrap();
    let (mirror, _mc, bridge) = context_from_token(&background(), token).unwrap();
    let bridge: TokenBridge<'static> = bridge;
    let bridge = tokio::spawn(bridge);
    cancel_origin.cancel();
    assert_eq!(
        timeout(LIVENESS, mirror.done()).await.unwrap(),
        Error::Canceled
    );
    assert!(is_cause(&mirror, &TOKEN_CANCELED));
    timeout(LIVENESS, bridge).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_bridges_follow_one_parent_token() {
    let shutdown = CancellationToken::new();
    let mut ctxs = Vec::new();
    let mut bridges = Vec::new();
    for _ in 0..200 {
        let (ctx, cancel, bridge) =
            context_from_token(&background(), shutdown.child_token()).unwrap();
        ctxs.push((ctx, cancel));
        bridges.push(tokio::spawn(bridge));
    }
    shutdown.cancel();
    for b in bridges {
        timeout(LIVENESS, b).await.expect("a bridge hung").unwrap();
    }
    for (ctx, _) in &ctxs {
        assert!(is_cause(ctx, &TOKEN_CANCELED));
    }
}

#[test]
fn bridge_debug_and_static_causes() {
    let (_ctx, _c, bridge) = context_from_token(&background(), CancellationToken::new()).unwrap();
    assert_eq!(format!("{bridge:?}"), "TokenBridge { .. }");
    assert_eq!(TOKEN_CANCELED.message(), "cancellation token cancelled");
    assert!(!BRIDGE_DROPPED.message().is_empty());
    fn assert_send<T: Send>(_: &T) {}
    assert_send(&bridge);
}
