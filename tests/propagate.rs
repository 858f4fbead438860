//! `ctxtree::propagate`: the `grpc-timeout` codec (round-trip properties over a fixed-seed
//! generator, a table of malformed values), the value codecs, and `inject`/`extract` on a
//! `ManualClock` arena (deterministic time: no sleeps, no timing tolerance).

// Heap-keyed values and `BTreeMap` carriers throughout: the file needs `alloc`.
#![cfg(feature = "alloc")]

use std::collections::BTreeMap;
use std::time::Duration;

use ctxtree::propagate::grpc_timeout::{self, DecodeError, EncodeError, MAX_DIGITS};
use ctxtree::propagate::{
    self, Carrier, CarrierError, Header, InjectError, Malformed, Propagator, Rejections, Token,
    TraceParent, ValueError, Wire,
};
use ctxtree::{Arena, Child, CreateError, Error, HeapKey, Key, ManualClock};

/// xorshift64*: a small, fixed-seed generator, so every run checks the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A duration spread over every unit's range: 1 ns to ~10⁶ years (log-uniform-ish).
    fn duration(&mut self) -> Duration {
        let bits = 1 + self.next() % 127; // up to 2^127 ns
        let nanos = (u128::from(self.next()) << 64 | u128::from(self.next())) >> (128 - bits);
        let nanos = nanos.max(1);
        Duration::new(
            u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX / 4),
            (nanos % 1_000_000_000) as u32,
        )
    }
}

/// Property cases per test (fewer under Miri, same checks).
const CASES: usize = if cfg!(miri) { 300 } else { 100_000 };

const UNIT_NANOS: [(u8, u128); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60_000_000_000),
    (b'H', 3_600_000_000_000),
];

fn unit_nanos(unit: u8) -> u128 {
    UNIT_NANOS
        .iter()
        .find(|(u, _)| *u == unit)
        .expect("a unit")
        .1
}

#[test]
fn encode_rounds_down_by_less_than_one_unit_of_the_finest_unit_that_fits() {
    let mut rng = Rng(0x5eed_0001);
    for _ in 0..CASES {
        let d = rng.duration();
        let t = grpc_timeout::encode(d).expect("positive");
        let text = t.as_bytes();
        let (unit, digits) = text.split_last().unwrap();
        assert!((1..=MAX_DIGITS).contains(&digits.len()), "{t:?} for {d:?}");
        assert!(digits.iter().all(u8::is_ascii_digit), "{t:?}");
        assert!(
            digits.len() == 1 || digits[0] != b'0',
            "no leading zeros: {t:?}"
        );
        let back = grpc_timeout::decode(text).expect("encode's output decodes");
        assert_eq!(back, t.duration());
        // Never more time than was left.
        assert!(back <= d, "{d:?} encoded as {t:?} = {back:?}");
        let u = unit_nanos(*unit);
        let clamped = back == Duration::from_secs(99_999_999 * 3600);
        // Less than one unit lost, unless clamped at 99999999H.
        assert!(
            clamped || d.as_nanos() - back.as_nanos() < u,
            "{d:?} -> {t:?}"
        );
        // The finest unit that fits: one finer would need more than 8 digits.
        if let Some(pos) = UNIT_NANOS
            .iter()
            .position(|(x, _)| x == unit)
            .filter(|&p| p > 0)
        {
            let finer = UNIT_NANOS[pos - 1].1;
            assert!(
                d.as_nanos() / finer > 99_999_999,
                "{t:?} is not the finest for {d:?}"
            );
        }
    }
}

#[test]
fn decode_then_encode_then_decode_is_the_identity_on_valid_values() {
    let mut rng = Rng(0x5eed_0002);
    for _ in 0..CASES {
        let digits = 1 + (rng.next() % 8) as usize;
        let mut text = Vec::with_capacity(9);
        for _ in 0..digits {
            text.push(b'0' + (rng.next() % 10) as u8);
        }
        text.push(UNIT_NANOS[(rng.next() % 6) as usize].0);
        let d = grpc_timeout::decode(&text).expect("valid by construction");
        let value: u128 = std::str::from_utf8(&text[..digits])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(d.as_nanos(), value * unit_nanos(text[digits]), "{text:?}");
        if d.is_zero() {
            assert_eq!(grpc_timeout::encode(d), Err(EncodeError::Expired));
            continue;
        }
        // Every unit divides the coarser ones: re-encoding in a finer unit is exact.
        let again = grpc_timeout::encode(d).unwrap();
        assert_eq!(
            grpc_timeout::decode(again.as_bytes()),
            Ok(d),
            "{text:?} -> {again:?}"
        );
    }
}

#[test]
fn encode_at_the_unit_boundaries() {
    let cases: &[(Duration, &str)] = &[
        (Duration::from_nanos(1), "1n"),
        (Duration::from_nanos(99_999_999), "99999999n"),
        (Duration::from_nanos(100_000_000), "100000u"),
        (Duration::from_nanos(100_000_999), "100000u"), // 999 ns rounded away
        (Duration::from_millis(300), "300000u"),
        (Duration::from_micros(99_999_999), "99999999u"),
        (
            Duration::from_micros(99_999_999) + Duration::from_nanos(999),
            "99999999u",
        ),
        (Duration::from_secs(100), "100000m"),
        (Duration::from_millis(99_999_999), "99999999m"),
        (Duration::from_secs(100_000), "100000S"),
        (Duration::from_secs(99_999_999), "99999999S"),
        (Duration::from_secs(100_000_000), "1666666M"), // 1,666,666.67 min, rounded down
        (Duration::from_secs(99_999_999 * 60), "99999999M"),
        (Duration::from_secs(99_999_999 * 60 + 59), "99999999M"),
        (Duration::from_secs(6_000_000_000), "1666666H"),
        (Duration::from_secs(99_999_999 * 3600), "99999999H"),
        (Duration::MAX, "99999999H"), // clamped, rounded down
    ];
    for &(d, want) in cases {
        assert_eq!(grpc_timeout::encode(d).unwrap().as_str(), want, "{d:?}");
    }
    assert_eq!(
        grpc_timeout::encode(Duration::ZERO),
        Err(EncodeError::Expired)
    );
}

/// Every kind of malformed `grpc-timeout`: rejected with the error that names the rule.
#[test]
fn decode_rejects_each_kind_of_malformed_value() {
    use DecodeError::*;
    let table: &[(&[u8], DecodeError)] = &[
        (b"", Empty),
        (b"S", NoDigits),
        (b"n", NoDigits),
        (b"100", MissingUnit),
        (b"0", MissingUnit),
        (b"5s", UnknownUnit(b's')),
        (b"5h", UnknownUnit(b'h')),
        (b"5U", UnknownUnit(b'U')),
        (b"5N", UnknownUnit(b'N')),
        (b"5x", UnknownUnit(b'x')),
        (b"5ms", UnknownUnit(b's')),
        (b"1S ", UnknownUnit(b' ')),
        (b"1S\n", UnknownUnit(b'\n')),
        (b"5\xffS"[..2].as_ref(), UnknownUnit(0xff)),
        (b" 1S", NonDigit { at: 0, byte: b' ' }),
        (b"-5S", NonDigit { at: 0, byte: b'-' }),
        (b"+5S", NonDigit { at: 0, byte: b'+' }),
        (b"1.5S", NonDigit { at: 1, byte: b'.' }),
        (b"1_000m", NonDigit { at: 1, byte: b'_' }),
        (b"0x10S", NonDigit { at: 1, byte: b'x' }),
        (b"1e3m", NonDigit { at: 1, byte: b'e' }),
        ("\u{0663}S".as_bytes(), NonDigit { at: 0, byte: 0xd9 }), // Arabic-Indic three
        (b"123456789S", TooLong { digits: 9 }),
        (b"000000001S", TooLong { digits: 9 }), // leading zeros count
        (b"99999999999H", TooLong { digits: 11 }),
        // Would overflow a u64 (and a Duration in hours): rejected on length, no arithmetic.
        (b"18446744073709551616n", TooLong { digits: 20 }),
        (
            b"99999999999999999999999999999999999999H",
            TooLong { digits: 38 },
        ),
    ];
    for &(text, want) in table {
        assert_eq!(
            grpc_timeout::decode(text),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(text)
        );
        assert!(!want.to_string().is_empty());
    }
    // The valid edges, for contrast.
    assert_eq!(grpc_timeout::decode(b"0n"), Ok(Duration::ZERO));
    assert_eq!(
        grpc_timeout::decode(b"00000001S"),
        Ok(Duration::from_secs(1))
    );
    assert_eq!(
        grpc_timeout::decode(b"99999999H"),
        Ok(Duration::from_secs(99_999_999 * 3600))
    );
    assert_eq!(grpc_timeout::decode(b"1m"), Ok(Duration::from_millis(1)));
    assert_eq!(grpc_timeout::decode(b"1M"), Ok(Duration::from_secs(60)));
}

#[test]
fn decode_never_panics_on_random_bytes() {
    let mut rng = Rng(0x5eed_0003);
    let alphabet = b"0123456789HMSmun sx-+.\xff\x00";
    let mut accepted = 0;
    for _ in 0..CASES {
        let len = (rng.next() % 14) as usize;
        let text: Vec<u8> = if rng.next().is_multiple_of(3) {
            // Well-shaped (digits, then a unit) in a third of the cases, so that valid values
            // and the over-long ones are reached too.
            let mut t: Vec<u8> = (0..len).map(|_| b'0' + (rng.next() % 10) as u8).collect();
            t.push(b"HMSmun"[(rng.next() % 6) as usize]);
            t
        } else {
            (0..len)
                .map(|_| {
                    if rng.next().is_multiple_of(4) {
                        rng.next() as u8
                    } else {
                        alphabet[(rng.next() % alphabet.len() as u64) as usize]
                    }
                })
                .collect()
        };
        if let Ok(d) = grpc_timeout::decode(&text) {
            accepted += 1;
            // Accepted text is exactly digits then one unit.
            let (unit, digits) = text.split_last().unwrap();
            assert!(b"HMSmun".contains(unit) && digits.iter().all(u8::is_ascii_digit));
            assert!(d <= Duration::from_secs(99_999_999 * 3600));
        }
    }
    assert!(accepted > 0, "the generator reaches valid values too");
}

// ---------------------------------------------------------------------------------------------
// Value codecs
// ---------------------------------------------------------------------------------------------

#[test]
fn decimal_values_round_trip_and_reject_malformed_text() {
    let mut rng = Rng(0x5eed_0004);
    let mut buf = [0u8; 32];
    for _ in 0..CASES / 10 {
        let n = rng.next() >> (rng.next() % 64);
        let len = n.encode(&mut buf).unwrap();
        assert_eq!(std::str::from_utf8(&buf[..len]).unwrap(), n.to_string());
        assert_eq!(u64::decode(&buf[..len]), Ok(n));
    }
    assert_eq!(u64::decode(b""), Err(ValueError::Empty));
    assert_eq!(u64::decode(b"-1"), Err(ValueError::InvalidByte { at: 0 }));
    assert_eq!(u64::decode(b"12 "), Err(ValueError::InvalidByte { at: 2 }));
    assert_eq!(u64::decode(b"18446744073709551615"), Ok(u64::MAX));
    assert_eq!(
        u64::decode(b"18446744073709551616"),
        Err(ValueError::Overflow)
    );
    assert_eq!(u32::decode(b"4294967296"), Err(ValueError::Overflow));
    assert_eq!(u32::decode(b"0004294967295"), Ok(u32::MAX));
    assert_eq!(
        12345u64.encode(&mut [0u8; 4]),
        Err(ValueError::TooLong { len: 5, max: 4 })
    );
}

#[test]
fn tokens_pass_through_unchanged_and_reject_what_a_header_cannot_carry() {
    let t = Token::<15>::decode(b"req-7f3a/9~!").unwrap();
    let mut out = [0u8; 15];
    let n = t.encode(&mut out).unwrap();
    assert_eq!(&out[..n], b"req-7f3a/9~!");
    assert_eq!(Token::<15>::decode(b""), Err(ValueError::Empty));
    assert_eq!(
        Token::<4>::decode(b"12345"),
        Err(ValueError::TooLong { len: 5, max: 4 })
    );
    assert_eq!(
        Token::<15>::decode(b"a b"),
        Err(ValueError::InvalidByte { at: 1 })
    );
    assert_eq!(
        Token::<15>::decode(b"ab\r\n"),
        Err(ValueError::InvalidByte { at: 2 })
    );
    assert_eq!(
        Token::<15>::decode("é".as_bytes()),
        Err(ValueError::InvalidByte { at: 0 })
    );
}

#[test]
fn traceparent_follows_the_w3c_rules() {
    const OK: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tp = TraceParent::decode(OK).unwrap();
    assert_eq!(tp.version(), 0);
    assert_eq!(tp.trace_id()[0], 0x4b);
    assert_eq!(tp.parent_id()[7], 0xb7);
    assert!(tp.sampled());
    let mut out = [0u8; 64];
    let n = tp.encode(&mut out).unwrap();
    assert_eq!(&out[..n], OK, "passed through byte for byte");

    // A later version: parsed by its 00 prefix; more fields after a '-' are allowed.
    let v1 = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
    let tp1 = TraceParent::decode(v1).unwrap();
    assert_eq!((tp1.version(), tp1.sampled()), (1, false));

    let bad: &[(&[u8], ValueError)] = &[
        (b"", ValueError::Empty),
        (
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            ValueError::Malformed("traceparent: shorter than 55 bytes"),
        ),
        (
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ValueError::Malformed("traceparent: version ff is invalid"),
        ),
        (
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            ValueError::TooLong { len: 56, max: 55 },
        ),
        (
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            ValueError::InvalidByte { at: 55 },
        ),
        (
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            ValueError::InvalidByte { at: 4 },
        ),
        (
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ValueError::InvalidByte { at: 2 },
        ),
        (
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ValueError::Malformed("traceparent: all-zero trace-id"),
        ),
        (
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            ValueError::Malformed("traceparent: all-zero parent-id"),
        ),
        (
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            ValueError::InvalidByte { at: 54 },
        ),
    ];
    for &(text, want) in bad {
        assert_eq!(
            TraceParent::decode(text),
            Err(want),
            "{}",
            String::from_utf8_lossy(text)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// inject / extract
// ---------------------------------------------------------------------------------------------

/// A clock and an arena of the test's own (tests run in parallel; each moves its own clock).
macro_rules! fresh {
    () => {{
        static CLOCK: ManualClock = ManualClock::new(1_000_000); // 1 tick = 1 µs
        static ARENA: Arena<64> = Arena::new().with_clock(&CLOCK);
        (&CLOCK, &ARENA)
    }};
}

static REQUEST_ID: Key<u64> = Key::new("request-id");
static TENANT: Key<Token<15>> = Key::new("tenant");
static TRACE: HeapKey<TraceParent> = HeapKey::new("traceparent");
static REQUEST_ID_HEADER: Header<Key<u64>> = Header::new("x-request-id", &REQUEST_ID);
static TENANT_HEADER: Header<Key<Token<15>>> = Header::new("x-tenant", &TENANT);
static TRACE_HEADER: Header<HeapKey<TraceParent>> = Header::new("traceparent", &TRACE);
static PROPAGATOR: Propagator<'static> =
    Propagator::new().with_fields(&[&REQUEST_ID_HEADER, &TENANT_HEADER, &TRACE_HEADER]);

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn inject_writes_the_remaining_time_rounded_down_and_the_opted_in_values() {
    let (clock, arena) = fresh!();
    let req = arena
        .background()
        .with_value(&REQUEST_ID, 42)
        .unwrap()
        .with_value(&TRACE, TraceParent::decode(TRACEPARENT.as_bytes()).unwrap())
        .unwrap();
    let Child {
        ctx,
        cancel: _cancel,
    } = req.with_timeout(Duration::from_millis(300)).unwrap();
    clock.advance(12_345); // 12.345 ms pass
    let mut h = BTreeMap::new();
    let sent = PROPAGATOR.inject(&ctx, &mut h).unwrap().unwrap();
    assert_eq!(sent.as_str(), "287655u");
    assert_eq!(
        h,
        headers(&[
            ("grpc-timeout", "287655u"),
            ("x-request-id", "42"),
            ("traceparent", TRACEPARENT),
        ]),
        "no x-tenant: the context binds none"
    );

    // No deadline: no timeout header, values still travel.
    let mut h = BTreeMap::new();
    assert_eq!(PROPAGATOR.inject(&req, &mut h), Ok(None));
    assert_eq!(h.len(), 2);
}

#[test]
fn inject_fails_fast_on_a_done_context() {
    let (clock, arena) = fresh!();
    let Child { ctx, cancel } = arena
        .background()
        .with_timeout(Duration::from_millis(5))
        .unwrap();
    clock.advance(5_000);
    let mut h = BTreeMap::new();
    assert_eq!(
        propagate::inject(&ctx, &mut h),
        Err(InjectError::Done(Error::DeadlineExceeded))
    );
    assert!(h.is_empty(), "nothing written");
    drop(cancel);

    let Child { ctx, cancel } = arena.background().with_cancel().unwrap();
    cancel.cancel();
    assert_eq!(
        propagate::inject(&ctx, &mut h),
        Err(InjectError::Done(Error::Canceled))
    );
}

#[test]
fn inject_reports_a_carrier_that_refuses() {
    let (_, arena) = fresh!();
    struct ReadOnly;
    impl Carrier for ReadOnly {
        fn get(&self, _: &str) -> Option<&[u8]> {
            None
        }
        fn set(&mut self, _: &'static str, _: &[u8]) -> Result<(), CarrierError> {
            Err(CarrierError::Full)
        }
    }
    let Child {
        ctx,
        cancel: _cancel,
    } = arena
        .background()
        .with_timeout(Duration::from_secs(1))
        .unwrap();
    let err = propagate::inject(&ctx, &mut ReadOnly).unwrap_err();
    assert_eq!(
        err,
        InjectError::Carrier {
            header: "grpc-timeout",
            error: CarrierError::Full
        }
    );
    assert_eq!(err.to_string(), "grpc-timeout: carrier full");
}

#[test]
fn extract_gives_the_callee_the_callers_time_capped_and_the_values() {
    let (clock, arena) = fresh!();
    let h = headers(&[
        ("grpc-timeout", "250m"),
        ("x-request-id", "7"),
        ("x-tenant", "acme"),
        ("traceparent", TRACEPARENT),
    ]);
    let Child {
        ctx: server,
        cancel: stop,
    } = arena.background().with_cancel().unwrap();
    let x = PROPAGATOR.extract(&server, &h).unwrap();
    assert_eq!(x.timeout, Some(Duration::from_millis(250)));
    assert_eq!(x.ctx.remaining(), Some(Duration::from_millis(250)));
    assert_eq!(x.ctx.value(&REQUEST_ID), Some(7));
    assert_eq!(x.ctx.value(&TENANT).unwrap().as_str(), "acme");
    assert_eq!(
        x.ctx.value(&TRACE).as_deref(),
        TraceParent::decode(TRACEPARENT.as_bytes()).ok().as_ref()
    );
    assert!(x.rejected.is_empty());

    // The server's cap wins when it is shorter, and bounds a request without a timeout.
    let capped = PROPAGATOR.with_max_timeout(Duration::from_millis(100));
    let y = capped.extract(&server, &h).unwrap();
    assert_eq!(
        y.timeout,
        Some(Duration::from_millis(250)),
        "what the caller sent"
    );
    assert_eq!(y.ctx.remaining(), Some(Duration::from_millis(100)));
    let z = capped
        .extract(&arena.background(), &BTreeMap::new())
        .unwrap();
    assert_eq!(
        (z.timeout, z.ctx.remaining()),
        (None, Some(Duration::from_millis(100)))
    );
    let longer = PROPAGATOR.with_max_timeout(Duration::from_secs(10));
    let w = longer.extract(&server, &h).unwrap();
    assert_eq!(w.ctx.remaining(), Some(Duration::from_millis(250)));

    // The request context is a child of the server's: shutdown reaches it, and its own
    // canceler (the end of the request) reaches everything under it.
    let Child {
        ctx: work,
        cancel: _w,
    } = x.ctx.with_cancel().unwrap();
    x.cancel.cancel();
    assert_eq!(work.err(), Some(Error::Canceled));
    assert_eq!(server.err(), None);
    drop(stop);
    assert_eq!(y.ctx.err(), Some(Error::Canceled));

    // The deadline itself.
    clock.advance(100_000);
    assert_eq!(z.ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(w.ctx.err(), Some(Error::Canceled), "shut down first");
}

#[test]
fn extract_without_a_timeout_and_cap_makes_a_cancellable_child_without_deadline() {
    let (_, arena) = fresh!();
    let x = propagate::extract(&arena.background(), &BTreeMap::new()).unwrap();
    assert_eq!((x.timeout, x.ctx.deadline()), (None, None));
    assert!(x.ctx.can_be_done());
    drop(x.cancel);
    assert_eq!(x.ctx.err(), Some(Error::Canceled));
}

#[test]
fn extract_of_a_zero_timeout_is_born_expired() {
    let (_, arena) = fresh!();
    let x = propagate::extract(&arena.background(), &headers(&[("grpc-timeout", "0n")])).unwrap();
    assert_eq!(x.ctx.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn extract_drops_malformed_headers_and_says_why() {
    let (_, arena) = fresh!();
    let h = headers(&[
        ("grpc-timeout", "1.5S"),
        ("x-request-id", "-7"),
        ("x-tenant", "a tenant with spaces"),
        (
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ),
    ]);
    let Child {
        ctx: server,
        cancel: _stop,
    } = arena.background().with_cancel().unwrap();
    let x = PROPAGATOR
        .with_max_timeout(Duration::from_secs(2))
        .extract(&server, &h)
        .unwrap();
    // As if absent: the cap applies, no values are bound.
    assert_eq!(
        (x.timeout, x.ctx.remaining()),
        (None, Some(Duration::from_secs(2)))
    );
    assert_eq!(x.ctx.value(&REQUEST_ID), None);
    assert_eq!(x.ctx.value(&TENANT), None);
    assert!(x.ctx.value(&TRACE).is_none());
    let why: Vec<(&str, Malformed)> = x.rejected.iter().map(|r| (r.header, r.error)).collect();
    assert_eq!(
        why,
        [
            (
                "grpc-timeout",
                Malformed::Timeout(DecodeError::NonDigit { at: 1, byte: b'.' })
            ),
            (
                "x-request-id",
                Malformed::Value(ValueError::InvalidByte { at: 0 })
            ),
            (
                "x-tenant",
                Malformed::Value(ValueError::TooLong { len: 20, max: 15 })
            ),
            (
                "traceparent",
                Malformed::Value(ValueError::Malformed("traceparent: all-zero trace-id"))
            ),
        ]
    );
    assert_eq!(x.rejected.len(), 4);
    let text: Vec<String> = x.rejected.iter().map(ToString::to_string).collect();
    assert_eq!(
        text[0],
        "grpc-timeout dropped: grpc-timeout: byte 1 ('.') is not an ASCII digit"
    );
    assert_eq!(
        text[3],
        "traceparent dropped: traceparent: all-zero trace-id"
    );
}

#[test]
fn rejections_beyond_capacity_are_counted() {
    let (_, arena) = fresh!();
    static K: [Key<u64>; 6] = [
        Key::new("k0"),
        Key::new("k1"),
        Key::new("k2"),
        Key::new("k3"),
        Key::new("k4"),
        Key::new("k5"),
    ];
    static H: [Header<Key<u64>>; 6] = [
        Header::new("h0", &K[0]),
        Header::new("h1", &K[1]),
        Header::new("h2", &K[2]),
        Header::new("h3", &K[3]),
        Header::new("h4", &K[4]),
        Header::new("h5", &K[5]),
    ];
    static P: Propagator<'static> =
        Propagator::new().with_fields(&[&H[0], &H[1], &H[2], &H[3], &H[4], &H[5]]);
    let h = headers(&[
        ("h0", "x"),
        ("h1", "x"),
        ("h2", "x"),
        ("h3", "x"),
        ("h4", "x"),
        ("h5", "1"),
    ]);
    let x = P.extract(&arena.background(), &h).unwrap();
    assert_eq!(x.rejected.len(), 5);
    assert_eq!(x.rejected.iter().count(), Rejections::CAPACITY);
    assert_eq!(x.ctx.value(&K[5]), Some(1));
}

#[test]
fn extract_reports_a_full_arena_as_an_error() {
    static SMALL: Arena<1> = Arena::new();
    let Child {
        ctx: _held,
        cancel: _c,
    } = SMALL.background().with_cancel().unwrap();
    assert_eq!(
        propagate::extract(&SMALL.background(), &BTreeMap::new()).unwrap_err(),
        CreateError::ArenaFull
    );
    static NO_CLOCK: Arena<2> = Arena::new();
    assert_eq!(
        propagate::extract(&NO_CLOCK.background(), &headers(&[("grpc-timeout", "1S")]))
            .unwrap_err(),
        CreateError::NoClock
    );
}

#[test]
fn btreemap_carrier_is_case_insensitive_on_get_and_lower_cases_on_set() {
    let mut h = headers(&[("Grpc-Timeout", "5S")]);
    assert_eq!(Carrier::get(&h, "grpc-timeout"), Some(&b"5S"[..]));
    h.clear();
    Carrier::set(&mut h, "X-Request-Id", b"1").unwrap();
    assert_eq!(h, headers(&[("x-request-id", "1")]));
    assert_eq!(
        Carrier::set(&mut h, "x", b"\xff"),
        Err(CarrierError::InvalidValue)
    );
}

#[cfg(feature = "http")]
#[test]
fn header_map_carrier_round_trips_and_refuses_invalid_pairs() {
    let (_, arena) = fresh!();
    let Child {
        ctx,
        cancel: _cancel,
    } = arena
        .background()
        .with_value(&REQUEST_ID, 9)
        .unwrap()
        .with_timeout(Duration::from_secs(3))
        .unwrap();
    let mut h = http::HeaderMap::new();
    PROPAGATOR.inject(&ctx, &mut h).unwrap();
    assert_eq!(h["grpc-timeout"], "3000000u");
    assert_eq!(h["x-request-id"], "9");
    let x = PROPAGATOR.extract(&arena.background(), &h).unwrap();
    assert_eq!(x.ctx.remaining(), Some(Duration::from_secs(3)));
    assert_eq!(x.ctx.value(&REQUEST_ID), Some(9));
    assert_eq!(
        Carrier::set(&mut h, "bad name", b"1"),
        Err(CarrierError::InvalidName)
    );
    assert_eq!(
        Carrier::set(&mut h, "ok", b"a\nb"),
        Err(CarrierError::InvalidValue)
    );
    assert_eq!(Carrier::get(&h, "bad name"), None);
}
