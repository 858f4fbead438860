//! Waiting for a context to be done: a canceller node's list of waiters.
//!
//! A waiter is a [`Waiter`] pinned inside a `done()` future (or on the stack of a blocking
//! `wait`): waiting costs no arena node and no allocation. The list is intrusive and doubly
//! linked, guarded by a two-bit lock in the node: a [`WaitList`]. This module knows nothing of
//! the node it lives in; of the node's `head` word it uses only the `WAITERS`/`DONE` handshake,
//! through [`HeadWord::announce_waiter`].
//!
//! # Registering
//! A registrant takes the lock, announces itself by setting `WAITERS` in the node's `head` word
//! (a compare-and-swap that fails if `DONE` is there), links its waiter and stores its `Waker`,
//! and unlocks. On `no_std` targets it does so inside a critical section, so a task can never
//! be preempted while holding the lock by another task that would then spin on it. Registrants
//! may wait (briefly) for each other; the canceller never waits for anyone.
//!
//! # Waking
//! `publish` sets `DONE` with a compare-and-swap on `head`; if the old word had `WAITERS`, it
//! drains: it takes the lock if it is free, or, if a registrant holds it (possibly the very task
//! an interrupt handler preempted), sets `PENDING` and returns at once — the holder drains when it
//! unlocks. Draining moves up to 8 wakers out of the list under the lock, marks their waiters
//! `NOTIFIED`, unlocks, and wakes them outside the lock, until the list is empty.
//!
//! # A potential race
//! A registrant that checks `head`, finds it not done, and links itself, while a canceller
//! publishes `DONE` at the same moment: whichever compare-and-swap on `head` comes second sees
//! the other's bit. If the registrant's `WAITERS` comes first, the canceller sees it and drains
//! (under the lock, so after the registrant's unlock, or delegated to it): the new waiter is in
//! the list. If `DONE` comes first, the registrant's compare-and-swap fails on it and it returns
//! ready. When `WAITERS` was already set, the registrant only loads `head`; then a canceller
//! that published `DONE` before must drain under the lock, and the registrant's lock acquisition
//! (Acquire) orders it after that drain's unlock — so the load sees `DONE`. No wake-up is lost.
//!
//! # Wakers that panic
//! A `Waker` is user code: its `clone`, `wake` and `drop` may panic. None of them runs with a
//! waiter in a half-linked state: a clone under the lock is guarded (with `std` the panic is
//! caught, the lock released and any delegated drain run before it is resumed), a replaced
//! waker is dropped after the unlock, and a drain wakes each waker of its batch on its own, so
//! one that panics cannot keep the others from being woken (see [`crate::unwind`]).
//!
//! # Critical sections, and only where they are needed
//! On `no_std` targets, registration and draining run inside a critical section (see
//! [`sync::no_preempt`]), which the final binary must implement (`critical-section`). A
//! firmware that never awaits `done()` should not need one — yet every cancel reaches the
//! drain. So the cancel path never names the drain: a canceller that finds `WAITERS` calls it
//! through a function pointer that the first registration installs ([`sync::install_drain`];
//! null, in `.bss`, until then). A binary that never registers a waiter never takes the drain's
//! address, and the linker drops it, critical section and all. The pointer is installed before
//! the registrant's compare-and-swap sets `WAITERS` on `head`, and a canceller reads it after
//! its own compare-and-swap on `head` saw `WAITERS`, so it always finds it installed. With
//! `std` (no critical section) and under loom the drain is called directly.
//!
//! # Memory ordering
//! The lock is Acquire/Release. The drainer's last access to a waiter is the Release store of
//! `NOTIFIED`; a waiter's owner frees it only after an Acquire load that sees `NOTIFIED` (or
//! after unlinking it under the lock).

use core::marker::PhantomPinned;
use core::ptr;
use core::task::{Poll, Waker};

use crate::state::{Announce, HeadWord};
use crate::sync::{self, AtomicU8, AtomicU32, Ordering, UnsafeCell};
use crate::unwind::Panics;

const IDLE: u8 = 0;
const LINKED: u8 = 1;
const NOTIFIED: u8 = 2;

/// The lock: the list is locked.
const LOCKED: u32 = 1;
/// The lock: a canceller found the list locked and left the drain to the holder.
const PENDING: u32 = 2;
/// The lock's bits in the node's `meta` word; the node keeps its kind and parent in the others.
pub(crate) const LOCK_BITS: u32 = LOCKED | PENDING;

/// Waking is done in batches of this many wakers, outside the lock.
const BATCH: usize = 8;

/// A node's waiter-list lock: the `LOCKED` and `PENDING` bits of its `meta` word. Every change
/// of the lock is a read-modify-write of those two bits only: the node's other bits (its kind
/// and parent, immutable while anyone can lock) are left as they are.
#[repr(transparent)]
pub(crate) struct WaitLock(AtomicU32);

/// The head of a node's intrusive waiter list; accessed only under its [`WaitLock`].
#[repr(transparent)]
pub(crate) struct WaitHead(UnsafeCell<*const Waiter>);

/// A node's waiter list: its lock and its head, two fields of the node borrowed together. (Two
/// fields rather than one struct: the lock is two bits of a word the node shares with its kind
/// and parent, which keeps a node at 48 bytes on 32-bit targets.)
#[derive(Clone, Copy)]
pub(crate) struct WaitList<'a> {
    lock: &'a WaitLock,
    head: &'a WaitHead,
}

impl WaitLock {
    crate::state::const_unless_loom! {
        /// An unlocked lock in a free node's word: zero.
        pub(crate) fn new() -> WaitLock {
            WaitLock(AtomicU32::new(0))
        }
    }

    /// Whether the lock is free and no drain is delegated (single-threaded use: tests).
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        // ORDERING: Relaxed: single-threaded (every other thread is joined).
        self.0.load(Ordering::Relaxed) & LOCK_BITS == 0
    }

    /// Loads the whole word, for the node's bits (`crate::node::Meta`).
    #[inline(always)]
    pub(crate) fn load_meta(&self, order: Ordering) -> u32 {
        self.0.load(order)
    }

    /// Writes the node's bits of a node owned exclusively, whose lock is idle (nobody can lock
    /// it: locking needs a reference).
    #[inline(always)]
    pub(crate) fn init_meta(&self, word: u32) {
        // ORDERING: Relaxed: a check on a word nobody else writes now.
        debug_assert!(word & LOCK_BITS == 0 && self.0.load(Ordering::Relaxed) & LOCK_BITS == 0);
        // ORDERING: Relaxed: published by the Release store of `refs` (allocation) or of the
        // free stack's head (`push`), like the node's other plain fields.
        self.0.store(word, Ordering::Relaxed);
    }
}

impl WaitHead {
    crate::state::const_unless_loom! {
        /// An empty list.
        pub(crate) fn new() -> WaitHead {
            WaitHead(UnsafeCell::new(ptr::null()))
        }
    }

    /// Whether the list is empty.
    ///
    /// # Safety
    /// Nothing accesses the list concurrently (its owner holds the node exclusively, or every
    /// other thread is joined).
    pub(crate) unsafe fn is_empty(&self) -> bool {
        // SAFETY: no concurrent access, per the caller's contract.
        self.0.with(|p| unsafe { (*p).is_null() })
    }
}

impl<'a> WaitList<'a> {
    /// The list made of a node's `lock` and `head` fields.
    #[inline(always)]
    pub(crate) fn new(lock: &'a WaitLock, head: &'a WaitHead) -> Self {
        WaitList { lock, head }
    }
}

/// One waiter: an intrusive list entry, pinned where it lives.
pub(crate) struct Waiter {
    prev: UnsafeCell<*const Waiter>,
    next: UnsafeCell<*const Waiter>,
    waker: UnsafeCell<Option<Waker>>,
    /// `IDLE`, `LINKED` or `NOTIFIED`; changed only under the lock.
    state: AtomicU8,
    _pin: PhantomPinned,
}

// SAFETY: the raw pointers are list links whose every access is serialised by the owning node's
// lock; the waker is `Send + Sync`.
unsafe impl Send for Waiter {}
// SAFETY: as above.
unsafe impl Sync for Waiter {}

impl Waiter {
    pub(crate) fn new() -> Self {
        Waiter {
            prev: UnsafeCell::new(ptr::null()),
            next: UnsafeCell::new(ptr::null()),
            waker: UnsafeCell::new(None),
            state: AtomicU8::new(IDLE),
            _pin: PhantomPinned,
        }
    }
}

fn lock(list: WaitList<'_>) {
    loop {
        // ORDERING: Relaxed: seeds the CAS.
        let w = list.lock.0.load(Ordering::Relaxed);
        if w & LOCKED == 0 {
            // ORDERING: Acquire pairs with the previous holder's Release unlock.
            if list
                .lock
                .0
                .compare_exchange_weak(w, w | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        } else {
            // Held by another registrant or a drain: a short, bounded section (see module docs).
            sync::spin_wait();
        }
    }
}

/// Unlocks; returns whether a canceller left a drain to us.
fn unlock(list: WaitList<'_>) -> bool {
    // ORDERING: AcqRel: Release hands our list writes to the next holder; Acquire makes the
    // delegating canceller's `DONE` visible to the drain we may now run.
    list.lock.0.fetch_and(!LOCK_BITS, Ordering::AcqRel) & PENDING != 0
}

/// Takes the lock if free (true), or asks its holder to drain (false). Never waits.
fn try_lock_or_delegate(list: WaitList<'_>) -> bool {
    // ORDERING: Relaxed: seeds the CAS.
    let mut w = list.lock.0.load(Ordering::Relaxed);
    loop {
        let (new, locks) = if w & LOCKED == 0 {
            // Unlocked, so `PENDING` is clear too (only set while locked, cleared by unlock).
            (w | LOCKED, true)
        } else if w & PENDING != 0 {
            return false;
        } else {
            (w | PENDING, false)
        };
        // ORDERING: AcqRel: taking the lock acquires the last holder's writes; setting PENDING
        // releases our `DONE` to the holder's unlock.
        match list
            .lock
            .0
            .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => return locks,
            Err(x) => w = x,
        }
    }
}

/// Registers `waiter` to be woken through `waker` when the node whose waiter list is `list` and
/// whose `head` word is `head` is done. `Ready` if it already is.
///
/// # Safety
/// `waiter` must stay where it is until [`deregister`] returns for it (it is pinned), and must
/// only ever be registered on this `list`.
pub(crate) unsafe fn register(
    list: WaitList<'_>,
    head: &HeadWord,
    waiter: &Waiter,
    waker: &Waker,
) -> Poll<()> {
    // ORDERING: Acquire: a done context's publication (see `HeadWord::publish_done`).
    if head.load(Ordering::Acquire).is_done() {
        return Poll::Ready(());
    }
    // ORDERING: Acquire pairs with the drainer's Release store of NOTIFIED.
    if waiter.state.load(Ordering::Acquire) == NOTIFIED {
        return Poll::Ready(());
    }
    let mut panics = Panics::new();
    let mut replaced = None;
    // Before `WAITERS` can be set (module docs, "Critical sections").
    sync::install_drain(drain_locked_out);
    let (poll, must_drain) = sync::no_preempt(|| {
        lock(list);
        // SAFETY: we hold the lock; `waiter` is pinned per the caller's contract.
        let poll =
            unsafe { register_locked(list, head, waiter, waker, &mut replaced, &mut panics) };
        (poll, unlock(list))
    });
    if must_drain {
        drain_locked_out(list, &mut panics);
    }
    if replaced.is_some() {
        // A waker's drop is user code: outside the lock.
        panics.run(|| drop(replaced));
    }
    panics.resume();
    poll
}

/// The waker it replaces, if any, is moved to `replaced` (for the caller to drop after the
/// unlock); a panicking `clone` of `waker` leaves the old one in place and goes to `panics`.
///
/// # Safety
/// The caller holds `list`'s lock; `waiter` is pinned.
unsafe fn register_locked(
    list: WaitList<'_>,
    head: &HeadWord,
    waiter: &Waiter,
    waker: &Waker,
    replaced: &mut Option<Waker>,
    panics: &mut Panics,
) -> Poll<()> {
    // ORDERING: Relaxed: the state changes only under the lock we hold.
    let st = waiter.state.load(Ordering::Relaxed);
    if st == NOTIFIED {
        return Poll::Ready(());
    }
    if head.announce_waiter() == Announce::AlreadyDone {
        if st == LINKED {
            // SAFETY: we hold the lock and the waiter is in this list.
            unsafe { remove(list, waiter) };
        }
        return Poll::Ready(());
    }
    if st == IDLE {
        // SAFETY: we hold the lock; every entry of the list is a pinned, registered waiter.
        unsafe { push_front(list, waiter) };
        // ORDERING: Relaxed: read under the lock, or with Acquire after a Release of NOTIFIED.
        waiter.state.store(LINKED, Ordering::Relaxed);
    }
    // SAFETY: the waker slot is accessed only under the lock.
    waiter.waker.with_mut(|p| unsafe {
        match &mut *p {
            Some(old) if old.will_wake(waker) => {}
            slot => {
                if let Some(new) = panics.call(|| waker.clone()) {
                    *replaced = slot.replace(new);
                }
            }
        }
    });
    Poll::Pending
}

/// Unregisters `waiter` if it is still in `list`. After this returns, nothing else touches
/// `waiter`.
pub(crate) fn deregister(list: WaitList<'_>, waiter: &Waiter) {
    // ORDERING: Acquire pairs with the drainer's Release store of NOTIFIED (its last access).
    if waiter.state.load(Ordering::Acquire) != LINKED {
        return;
    }
    let must_drain = sync::no_preempt(|| {
        lock(list);
        // ORDERING: Relaxed: under the lock.
        if waiter.state.load(Ordering::Relaxed) == LINKED {
            // SAFETY: we hold the lock and the waiter is in the list.
            unsafe { remove(list, waiter) };
        }
        unlock(list)
    });
    if must_drain {
        let mut panics = Panics::new();
        drain_locked_out(list, &mut panics);
        panics.resume();
    }
}

/// Wakes every waiter of `list`, whose node is done and whose `head` had `WAITERS` when the
/// caller published `DONE`. Never waits: if the lock is held, its holder drains on unlock. Each
/// waker is woken on its own: one that panics leaves the others to be woken, and its panic goes
/// to `panics`.
///
/// On `no_std` targets it calls the drain through the pointer the first registration installed
/// (module docs, "Critical sections"), so that the cancel path does not link it.
#[inline]
pub(crate) fn drain_in(list: WaitList<'_>, panics: &mut Panics) {
    sync::call_drain(list, panics, drain_locked_out);
}

/// The drain itself (see [`drain_in`]).
fn drain_locked_out(list: WaitList<'_>, panics: &mut Panics) {
    loop {
        let mut batch: heapless::Vec<Waker, BATCH> = heapless::Vec::new();
        let again = sync::no_preempt(|| {
            if !try_lock_or_delegate(list) {
                return false;
            }
            // SAFETY: we hold the lock.
            let more = unsafe { take_batch(list, &mut batch) };
            let pending = unlock(list);
            more || pending
        });
        for w in batch {
            panics.run(|| w.wake());
        }
        if !again {
            return;
        }
    }
}

/// Moves up to `BATCH` wakers out of the list, marking their waiters `NOTIFIED`. Returns
/// whether waiters remain.
///
/// # Safety
/// The caller holds the lock.
unsafe fn take_batch(list: WaitList<'_>, batch: &mut heapless::Vec<Waker, BATCH>) -> bool {
    // SAFETY: the list and its entries are accessed only under the lock we hold; every entry is a
    // pinned waiter that stays valid until it is unlinked and marked.
    list.head.0.with_mut(|head| unsafe {
        while !batch.is_full() {
            let w = *head;
            if w.is_null() {
                return false;
            }
            let wr = &*w;
            let nx = wr.next.with(|p| *p);
            *head = nx;
            if !nx.is_null() {
                (*nx).prev.with_mut(|p| *p = ptr::null());
            }
            wr.next.with_mut(|p| *p = ptr::null());
            if let Some(k) = wr.waker.with_mut(|p| (*p).take()) {
                let _ = batch.push(k);
            }
            // ORDERING: Release: our last access to this waiter; its owner may free it after
            // an Acquire load that sees NOTIFIED.
            wr.state.store(NOTIFIED, Ordering::Release);
        }
        !(*head).is_null()
    })
}

/// # Safety
/// The caller holds the lock; `waiter` is pinned and in no list.
unsafe fn push_front(list: WaitList<'_>, waiter: &Waiter) {
    let me: *const Waiter = waiter;
    // SAFETY: under the lock; entries are pinned waiters.
    list.head.0.with_mut(|head| unsafe {
        let old = *head;
        waiter.prev.with_mut(|p| *p = ptr::null());
        waiter.next.with_mut(|p| *p = old);
        if !old.is_null() {
            (*old).prev.with_mut(|p| *p = me);
        }
        *head = me;
    });
}

/// # Safety
/// The caller holds the lock; `waiter` is in `list`.
unsafe fn remove(list: WaitList<'_>, waiter: &Waiter) {
    // SAFETY: under the lock; entries are pinned waiters.
    unsafe {
        let prev = waiter.prev.with(|p| *p);
        let next = waiter.next.with(|p| *p);
        if prev.is_null() {
            list.head.0.with_mut(|h| *h = next);
        } else {
            (*prev).next.with_mut(|p| *p = next);
        }
        if !next.is_null() {
            (*next).prev.with_mut(|p| *p = prev);
        }
        waiter.prev.with_mut(|p| *p = ptr::null());
        waiter.next.with_mut(|p| *p = ptr::null());
    }
    // ORDERING: Relaxed: under the lock.
    waiter.state.store(IDLE, Ordering::Relaxed);
}
