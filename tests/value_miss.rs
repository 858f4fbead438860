//! Value lookups of keys bound nowhere are O(1) (issue 14); these tests pin the semantics that
//! the shortcut must keep: a key bound on the path is found, whatever thread bound it; a key
//! bound only off the path is not; a key never bound is not.

use ctxtree::{Arena, Key};

static A: Arena<64> = Arena::new();

#[test]
fn never_bound_bound_elsewhere_and_bound_on_the_path() {
    static NEVER: Key<u32> = Key::new("never");
    static ELSEWHERE: Key<u32> = Key::new("elsewhere");
    static ON_PATH: Key<u32> = Key::new("on path");
    let root = A.background().with_value(&ON_PATH, 7).unwrap();
    let mut ctx = root.clone();
    for _ in 0..20 {
        ctx = ctx.without_cancel().unwrap();
    }
    let other = A.background().with_value(&ELSEWHERE, 9).unwrap();
    assert_eq!(ctx.value(&NEVER), None);
    assert_eq!(ctx.value(&ELSEWHERE), None);
    assert_eq!(other.value(&ELSEWHERE), Some(9));
    assert_eq!(ctx.value(&ON_PATH), Some(7));
    assert_eq!(root.value(&ON_PATH), Some(7));
    // Binding `NEVER` now, elsewhere, changes nothing on `ctx`'s path ...
    let late = A.background().with_value(&NEVER, 1).unwrap();
    assert_eq!(ctx.value(&NEVER), None);
    // ... and a child binding it is found from below.
    let below = ctx.with_value(&NEVER, 2).unwrap();
    assert_eq!(below.value(&NEVER), Some(2));
    assert_eq!(late.value(&NEVER), Some(1));
}

#[test]
#[cfg(feature = "alloc")] // a `HeapKey` too
fn a_key_first_bound_on_another_thread_is_found_by_the_receiver() {
    use ctxtree::{Context, HeapKey};
    use std::sync::mpsc;
    use std::thread;
    static FIRST_HERE: Key<u64> = Key::new("first bound on the sender");
    static HEAP_FIRST_HERE: HeapKey<String> = HeapKey::new("heap, first bound on the sender");
    static B: Arena<64> = Arena::new();
    // At most 4 in flight (two nodes each): the arena never fills.
    let (tx, rx) = mpsc::sync_channel::<Context<'static>>(4);
    let sender = thread::spawn(move || {
        for i in 0..100u64 {
            let ctx = B
                .background()
                .with_value(&FIRST_HERE, i)
                .and_then(|c| c.with_value(&HEAP_FIRST_HERE, format!("v{i}")))
                .unwrap();
            tx.send(ctx).unwrap();
        }
    });
    for i in 0..100u64 {
        let ctx = rx.recv().unwrap();
        assert_eq!(ctx.value(&FIRST_HERE), Some(i));
        assert_eq!(
            ctx.value(&HEAP_FIRST_HERE).as_deref().map(String::as_str),
            Some(format!("v{i}").as_str())
        );
    }
    sender.join().unwrap();
}
