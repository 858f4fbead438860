//! loom models of the lock-free core: one file per race, each named after it.
//!
//! Compiled into the library's own unit tests under `--cfg ctxtree_loom` (see `src/lib.rs` and
//! `ci/loom.sh`), so the models drive the crate's internals — the very code that ships, its
//! atomics swapped for loom's by `src/sync.rs` — and can assert on private state (reference
//! counts, child lists, the free list). Every model runs on an arena of 1–4 nodes with 2–3
//! threads, asserts its invariant (not merely "no crash"), and ends with the arena back at its
//! baseline (`support::assert_quiescent`: nothing live, every slot on the free stack exactly
//! once). loom itself checks every plain-field access against the atomics' happens-before (data
//! races), every loom `Arc` for leaks (wakers, after_func closures), and deadlock (a lost wake-up
//! leaves a `block_on` thread blocked forever).
//!
//! # Models that cannot pass vacuously
//! loom's partial-order reduction can miss interleavings (it remembers only the last access to
//! each atomic: tokio-rs/loom#166, #392). So read-only observers run on spawned threads, and
//! most models record an outcome per execution and assert afterwards that every outcome they
//! are about occurred (`support::Outcomes`: the child was linked *and* born done; each of two
//! causes won; the future waited *and* found it done; ...). Each core mechanism was also checked
//! to be load-bearing by breaking it and watching a model fail: the free-stack tag
//! (`free_list_aba`), Harris helping and the marked-predecessor restart (`unlink_helping`), the
//! restriction of the unmarked unlink to a list's last member (`unlink_by_hint`: unlinking every
//! node without a mark fails it), the re-validation of a link after `try_acquire`
//! (`cancel_vs_release`), the winner's error on a
//! lost cause slot (`concurrent_cancel_causes`), the Release of `DONE` (`err_implies_done`), the
//! Release of `link` (`create_vs_cancel`), the waiter drain's hand-off to the lock holder
//! (`waiter_wakeup`: deadlock), a `Deadline` node's own record when a traversal reaches it
//! after its deadline (`nested_deadlines_expire_vs_lazy`); for linked contexts, firing the
//! registration on a closed list (`linked_create_vs_cancel_other`), stopping it when the
//! linked context's own list is found closed (`linked_create_vs_cancel_ctx`) and a second
//! canceller's help (`linked_two_cancellers_of_other`); and in the std timer's protocol the
//! order "read the inbox link, then clear `QUEUED`", the compare-and-swap of `fired` and the
//! `SeqCst` fences of the sleep/wake hand-off (`timer_watch_vs_release`); and in the per-thread
//! slot caches, either fence of the owner/thief handshake and the thief's wait for the owner's
//! critical section (`slot_cache_steal`: every one of its three models fails without each).

extern crate std;

mod support;

mod after_func_stop_vs_cancel;
mod cancel_slot_vs_rebind;
mod cancel_vs_release;
mod chain_cancel_two_levels;
mod clone_drop_vs_release;
mod concurrent_cancel_causes;
mod create_vs_cancel;
mod dump_vs_cancel;
mod err_implies_done;
mod exhaustion;
mod expire_vs_cancel_vs_lazy;
mod free_list_aba;
mod linked_create_vs_cancel;
mod linked_release_vs_cancel_other;
mod list_pin;
mod nested_deadlines_expire_vs_lazy;
mod paged_growth_vs_scan;
mod slot_cache_steal;
mod timer_watch_vs_release;
mod unlink_by_hint;
mod unlink_helping;
mod unlink_last;
mod value_publication;
mod waiter_wakeup;
mod without_cancel_vs_cancel;
