//! The `defmt` layer on the host: a global logger that keeps each frame's raw bytes (as the
//! target would send them, before the transport's encoding) so the tests can check what the
//! `Format` impls and `dump_defmt` emit.
//!
//! defmt sends an index into the ELF's string table instead of a format string; the arguments
//! follow as bytes: integers little-endian (`usize` as 4 bytes), `{=str}` as a length and the
//! UTF-8. The tests check those argument bytes, the number of frames, and that different values
//! give different frames (the indices of different strings differ).
#![cfg(feature = "defmt")]

use std::sync::{Mutex, MutexGuard};

use ctxtree::{Arena, ArenaStats, Cause, Child, CreateError, Error, Instant, Key, StaticCause};

/// Frames logged so far; `acquire` starts one, `write` appends to it.
static FRAMES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[defmt::global_logger]
struct Capture;

// SAFETY: the tests log from one thread at a time (`serial`), and every access to `FRAMES` goes
// through its mutex, so the logger's contract (no overlapping frames) holds.
unsafe impl defmt::Logger for Capture {
    fn acquire() {
        lock().push(Vec::new());
    }
    unsafe fn flush() {}
    unsafe fn release() {}
    unsafe fn write(bytes: &[u8]) {
        lock()
            .last_mut()
            .expect("write outside a frame")
            .extend_from_slice(bytes);
    }
}

defmt::timestamp!("");

fn lock() -> MutexGuard<'static, Vec<Vec<u8>>> {
    FRAMES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The logger is global to this test binary: the tests take turns.
fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The frames `f` logs.
fn frames(f: impl FnOnce()) -> Vec<Vec<u8>> {
    lock().clear();
    f();
    std::mem::take(&mut *lock())
}

/// The one frame `defmt::println!("{}", v)` logs.
fn frame_of(v: impl defmt::Format) -> Vec<u8> {
    let mut f = frames(|| defmt::println!("{}", v));
    assert_eq!(f.len(), 1);
    f.pop().unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `{=str}`'s encoding: the length as a 4-byte `usize`, then the bytes.
fn str_bytes(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b
}

#[test]
fn errors_encode_each_variant_apart() {
    let _turn = serial();
    let canceled = frame_of(Error::Canceled);
    assert_eq!(frame_of(Error::Canceled), canceled);
    assert_ne!(frame_of(Error::DeadlineExceeded), canceled);
    let full = frame_of(CreateError::ArenaFull);
    assert_eq!(frame_of(CreateError::ArenaFull), full);
    assert_ne!(frame_of(CreateError::NoClock), full);
    // `Cause::Error` is the bare error's text.
    assert_ne!(
        frame_of(Cause::Error(Error::Canceled)),
        frame_of(Cause::Error(Error::DeadlineExceeded))
    );
}

#[test]
fn stats_instant_and_static_causes_carry_their_values() {
    let _turn = serial();
    let stats = ArenaStats {
        capacity: 64,
        max_capacity: 128,
        live: 3,
        high_water: 9,
        failed_allocs: 2,
    };
    let words: Vec<u8> = [64u32, 128, 3, 9, 2]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    assert!(contains(&frame_of(stats), &words));

    let at = 0x0123_4567_89ab_cdef_u64;
    assert!(contains(
        &frame_of(Instant::from_ticks(at)),
        &at.to_le_bytes()
    ));

    static WATCHDOG: StaticCause = StaticCause::with_code(0x5eed, "watchdog expired");
    let f = frame_of(&WATCHDOG);
    assert!(contains(&f, &str_bytes("watchdog expired")));
    assert!(contains(&f, &0x5eed_u32.to_le_bytes()));
    // The cause a context reports encodes as the static cause itself.
    assert_eq!(frame_of(Cause::Static(&WATCHDOG)), f);
}

#[test]
fn dump_defmt_logs_one_frame_per_line_of_dump() {
    static ARENA: Arena<16> = Arena::new();
    static USER: Key<u32> = Key::new("user");
    static SHUTDOWN: StaticCause = StaticCause::with_code(3, "shutting down");
    let _turn = serial();
    assert!(frames(|| ARENA.dump_defmt()).is_empty(), "an empty arena");

    let Child { ctx: req, cancel } = ARENA.background().with_cancel_cause().unwrap();
    let val = req.with_value(&USER, 7).unwrap();
    let _job = val.with_cancel().unwrap();
    let _side = ARENA
        .todo()
        .with_deadline(Instant::from_ticks(500))
        .unwrap();
    let live = frames(|| ARENA.dump_defmt());
    let mut text = String::new();
    ARENA.dump(&mut text).unwrap();
    // context.Background, three nodes under it, context.TODO, one node under it.
    assert_eq!(text.lines().count(), 6, "{text}");
    assert_eq!(live.len(), 6, "{text}");
    assert!(live.iter().any(|f| contains(f, &str_bytes("user"))));
    assert!(live.iter().any(|f| contains(f, &str_bytes("u32"))));
    assert!(live.iter().any(|f| contains(f, &500u64.to_le_bytes())));
    assert_eq!(
        frames(|| ARENA.dump_defmt()),
        live,
        "same tree, same frames"
    );

    cancel.cancel_with(&SHUTDOWN);
    let done = frames(|| ARENA.dump_defmt());
    assert_eq!(done.len(), 6);
    // The cancelled node's line changes (state, cause); the TODO subtree's does not.
    assert_ne!(done[1], live[1]);
    assert!(contains(&done[1], &str_bytes("shutting down")));
    assert_eq!(done[4..], live[4..]);
}
