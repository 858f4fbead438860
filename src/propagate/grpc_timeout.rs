//! gRPC's `grpc-timeout` header: how much time the caller gives the callee, as text.
//!
//! The format (gRPC over HTTP/2, "Requests"): `TimeoutValue TimeoutUnit`, where the value is a
//! positive integer of at most 8 ASCII digits and the unit one of
//!
//! | unit | meaning |
//! |---|---|
//! | `H` | hours |
//! | `M` | minutes |
//! | `S` | seconds |
//! | `m` | milliseconds |
//! | `u` | microseconds |
//! | `n` | nanoseconds |
//!
//! The value is *relative*: the callee's deadline is its own clock at receipt plus the value, so
//! each hop's deadline moves later by the time the request spent in transit. That is gRPC's
//! choice (no clock agreement between machines); it is why [`encode`] rounds **down**.
//!
//! Neither function allocates, panics or needs `std`.
//!
//! ```
//! use core::time::Duration;
//! use ctxtree::propagate::grpc_timeout::{decode, encode, DecodeError};
//!
//! let t = encode(Duration::from_millis(287))?;
//! assert_eq!(t.as_str(), "287000u"); // the finest unit whose value fits 8 digits
//! assert_eq!(decode(t.as_bytes()), Ok(Duration::from_millis(287)));
//! assert_eq!(decode(b"5x"), Err(DecodeError::UnknownUnit(b'x')));
//! # Ok::<(), ctxtree::propagate::grpc_timeout::EncodeError>(())
//! ```

use core::fmt;
use core::time::Duration;

/// The header's name (lower case, as HTTP/2 sends it).
pub const HEADER: &str = "grpc-timeout";

/// The most digits a value may have.
pub const MAX_DIGITS: usize = 8;

/// The largest value (8 nines).
const MAX_VALUE: u64 = 99_999_999;

/// The units from the finest to the coarsest, with their length in nanoseconds. Each divides
/// the next, so a value in one unit is exactly representable in any finer one that fits.
const UNITS: [(u8, u64); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60 * 1_000_000_000),
    (b'H', 3_600 * 1_000_000_000),
];

/// An encoded `grpc-timeout` value: at most 8 digits and a unit, kept inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeout {
    buf: [u8; MAX_DIGITS + 1],
    len: u8,
}

impl Timeout {
    /// The header text, e.g. `"287000u"`.
    pub fn as_str(&self) -> &str {
        // `encode` writes ASCII digits and an ASCII unit only.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The header text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The time this value stands for (what [`decode`] returns for it).
    pub fn duration(&self) -> Duration {
        // A `Timeout` is always well-formed; `ZERO` is unreachable.
        decode(self.as_bytes()).unwrap_or(Duration::ZERO)
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timeout({:?})", self.as_str())
    }
}

/// Why [`encode`] wrote nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncodeError {
    /// No time is left (`Duration::ZERO`): the deadline has passed. A caller should fail with
    /// `DeadlineExceeded` instead of sending a request that has no time to run.
    Expired,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Expired => {
                f.write_str("grpc-timeout: no time left to give (deadline passed)")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// The `grpc-timeout` value for `remaining`: the finest unit whose value fits in 8 digits, the
/// value rounded **down**, so the callee is never given more time than the caller has left.
///
/// The loss is under one unit: exact below 100 ms (nanoseconds), under 1 µs below 100 s, under
/// 1 ms below ~27.7 h, and so on. A `remaining` beyond 99,999,999 hours (~11,400 years) is
/// clamped to `99999999H`.
///
/// Errors: [`EncodeError::Expired`] for `Duration::ZERO` (gRPC's value is positive).
///
/// ```
/// use core::time::Duration;
/// use ctxtree::propagate::grpc_timeout::{encode, EncodeError};
/// assert_eq!(encode(Duration::from_nanos(99_999_999))?.as_str(), "99999999n");
/// assert_eq!(encode(Duration::from_nanos(100_000_001))?.as_str(), "100000u"); // rounded down
/// assert_eq!(encode(Duration::from_secs(3 * 86_400))?.as_str(), "259200S");
/// assert_eq!(encode(Duration::ZERO), Err(EncodeError::Expired));
/// # Ok::<(), EncodeError>(())
/// ```
pub fn encode(remaining: Duration) -> Result<Timeout, EncodeError> {
    let nanos = remaining.as_nanos();
    if nanos == 0 {
        return Err(EncodeError::Expired);
    }
    let mut unit = UNITS[UNITS.len() - 1].0;
    let mut value = MAX_VALUE;
    for (u, len) in UNITS {
        let v = nanos / u128::from(len);
        if v <= u128::from(MAX_VALUE) {
            // `v <= MAX_VALUE` fits in a u64.
            value = v as u64;
            unit = u;
            break;
        }
    }
    // Write the digits right to left, then move them to the front.
    let mut digits = [0u8; MAX_DIGITS];
    let mut start = MAX_DIGITS;
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    let n = MAX_DIGITS - start;
    let mut buf = [0u8; MAX_DIGITS + 1];
    buf[..n].copy_from_slice(&digits[start..]);
    buf[n] = unit;
    Ok(Timeout {
        buf,
        len: (n + 1) as u8,
    })
}

/// Why a `grpc-timeout` value was rejected. Each says which rule the text broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeError {
    /// The value is empty.
    Empty,
    /// A unit with no digits before it (`"S"`).
    NoDigits,
    /// The last character is a digit: the unit is missing (`"100"`).
    MissingUnit,
    /// The last character is not one of `H M S m u n` (`"5s"`, `"5 "`); the byte is given.
    UnknownUnit(u8),
    /// A byte of the value is not an ASCII digit (`"-5S"`, `" 5S"`, `"1.5S"`): its position
    /// and the byte.
    NonDigit {
        /// Position of the first offending byte.
        at: usize,
        /// The byte.
        byte: u8,
    },
    /// More than 8 digits (`"123456789S"`, or a 20-digit number that would overflow a `u64`):
    /// rejected on its length, before any arithmetic, so no input can overflow.
    TooLong {
        /// How many digits the value has.
        digits: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("grpc-timeout: ")?;
        match *self {
            DecodeError::Empty => f.write_str("empty value"),
            DecodeError::NoDigits => f.write_str("no digits before the unit"),
            DecodeError::MissingUnit => f.write_str("missing unit (one of H M S m u n)"),
            DecodeError::UnknownUnit(b) => {
                write!(
                    f,
                    "unknown unit {:?} (expected one of H M S m u n)",
                    char::from(b)
                )
            }
            DecodeError::NonDigit { at, byte } => {
                write!(
                    f,
                    "byte {at} ({:?}) is not an ASCII digit",
                    char::from(byte)
                )
            }
            DecodeError::TooLong { digits } => {
                write!(f, "{digits} digits, more than the {MAX_DIGITS} allowed")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

/// The time a `grpc-timeout` value stands for.
///
/// Strict: no whitespace, sign or decimal point; at most 8 digits (leading zeros count); the
/// unit is case-sensitive (`m` is milliseconds, `M` minutes). A value of zero (`"0n"`, which
/// some encoders send for a deadline already passed) decodes to `Duration::ZERO`: a context
/// made from it is born `DeadlineExceeded`, which is safer than treating it as "no deadline".
/// Every accepted value fits a `Duration` (the largest, `99999999H`, is ~11,400 years).
///
/// Errors: [`DecodeError`], saying which rule the text broke. Never panics.
///
/// ```
/// use core::time::Duration;
/// use ctxtree::propagate::grpc_timeout::{decode, DecodeError};
/// assert_eq!(decode(b"2M"), Ok(Duration::from_secs(120)));
/// assert_eq!(decode(b"1S "), Err(DecodeError::UnknownUnit(b' ')));
/// assert_eq!(decode(b"123456789n"), Err(DecodeError::TooLong { digits: 9 }));
/// ```
pub fn decode(text: &[u8]) -> Result<Duration, DecodeError> {
    let Some((&unit, digits)) = text.split_last() else {
        return Err(DecodeError::Empty);
    };
    if unit.is_ascii_digit() {
        return Err(DecodeError::MissingUnit);
    }
    let Some(&(_, unit_nanos)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(DecodeError::UnknownUnit(unit));
    };
    if digits.is_empty() {
        return Err(DecodeError::NoDigits);
    }
    if let Some(at) = digits.iter().position(|b| !b.is_ascii_digit()) {
        return Err(DecodeError::NonDigit {
            at,
            byte: digits[at],
        });
    }
    if digits.len() > MAX_DIGITS {
        return Err(DecodeError::TooLong {
            digits: digits.len(),
        });
    }
    // At most 8 digits: at most 99,999,999, no overflow in a u64.
    let value = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Ok(if unit_nanos >= 1_000_000_000 {
        // Seconds, minutes, hours: at most 99,999,999 × 3,600 s, well inside a u64 of seconds.
        Duration::from_secs(value * (unit_nanos / 1_000_000_000))
    } else {
        // At most 99,999,999 × 10⁶ ns, well inside a u64 of nanoseconds.
        Duration::from_nanos(value * unit_nanos)
    })
}
