//! Request values that travel: a key opts in with a [`Header`] and a [`Wire`] codec.

use core::fmt;

use crate::value::KeyKind;
use crate::{Context, CreateError, Key};

/// The longest value text a [`Wire`] codec may write (bytes); [`inject`](super::inject) encodes
/// into a stack buffer of this size.
pub const MAX_VALUE_LEN: usize = 256;

/// How a value type is written to and read from a header value: text, allocation-free.
///
/// Implemented for `u32` and `u64` (decimal), [`Token<N>`] (opaque text passed through
/// unchanged) and [`TraceParent`] (W3C Trace Context). Implement it for your own types; `decode`
/// gets untrusted input and must return an error, never panic.
///
/// ```
/// use ctxtree::propagate::{Wire, ValueError};
///
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// struct Tenant(u16);
///
/// impl Wire for Tenant {
///     fn encode(&self, out: &mut [u8]) -> Result<usize, ValueError> {
///         u64::from(self.0).encode(out)
///     }
///     fn decode(text: &[u8]) -> Result<Self, ValueError> {
///         let n = u64::decode(text)?;
///         u16::try_from(n).map(Tenant).map_err(|_| ValueError::Overflow)
///     }
/// }
/// assert_eq!(Tenant::decode(b"7"), Ok(Tenant(7)));
/// assert_eq!(Tenant::decode(b"70000"), Err(ValueError::Overflow));
/// ```
pub trait Wire: Sized {
    /// Writes the header text of `self` to the front of `out` and returns its length.
    ///
    /// Errors: [`ValueError::TooLong`] when `out` is too small.
    fn encode(&self, out: &mut [u8]) -> Result<usize, ValueError>;

    /// Reads a value from header text.
    ///
    /// Errors: [`ValueError`], saying what is wrong with `text`.
    fn decode(text: &[u8]) -> Result<Self, ValueError>;
}

/// Why a request value's header was dropped (or could not be written).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValueError {
    /// The value is empty.
    Empty,
    /// Longer than the type allows (or than the output buffer, when encoding).
    TooLong {
        /// The length given.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A byte that the format does not allow, at this position.
    InvalidByte {
        /// Position of the first offending byte.
        at: usize,
    },
    /// A number too large for its type.
    Overflow,
    /// The format's own rule, named (e.g. "all-zero trace-id").
    Malformed(&'static str),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ValueError::Empty => f.write_str("empty value"),
            ValueError::TooLong { len, max } => write!(f, "{len} bytes, more than {max}"),
            ValueError::InvalidByte { at } => write!(f, "invalid byte at position {at}"),
            ValueError::Overflow => f.write_str("number too large"),
            ValueError::Malformed(why) => f.write_str(why),
        }
    }
}

impl core::error::Error for ValueError {}

/// Copies `text` to the front of `out`.
fn put(out: &mut [u8], text: &[u8]) -> Result<usize, ValueError> {
    let max = out.len();
    let dst = out.get_mut(..text.len()).ok_or(ValueError::TooLong {
        len: text.len(),
        max,
    })?;
    dst.copy_from_slice(text);
    Ok(text.len())
}

/// Decimal digits only, no sign, no leading `+`, no whitespace; leading zeros allowed.
fn decode_decimal(text: &[u8], max: u64) -> Result<u64, ValueError> {
    if text.is_empty() {
        return Err(ValueError::Empty);
    }
    let mut n: u64 = 0;
    for (at, &b) in text.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(ValueError::InvalidByte { at });
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .filter(|&n| n <= max)
            .ok_or(ValueError::Overflow)?;
    }
    Ok(n)
}

fn encode_decimal(mut n: u64, out: &mut [u8]) -> Result<usize, ValueError> {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put(out, &digits[start..])
}

/// Decimal.
impl Wire for u64 {
    fn encode(&self, out: &mut [u8]) -> Result<usize, ValueError> {
        encode_decimal(*self, out)
    }
    fn decode(text: &[u8]) -> Result<Self, ValueError> {
        decode_decimal(text, u64::MAX)
    }
}

/// Decimal.
impl Wire for u32 {
    fn encode(&self, out: &mut [u8]) -> Result<usize, ValueError> {
        encode_decimal(u64::from(*self), out)
    }
    fn decode(text: &[u8]) -> Result<Self, ValueError> {
        decode_decimal(text, u64::from(u32::MAX)).map(|n| n as u32)
    }
}

/// Opaque text of 1 to `N` bytes (`N` ≤ 255), passed on byte for byte: a request id minted
/// elsewhere, a tenant name. Accepts visible ASCII (`!` to `~`) only — no spaces, no control
/// characters — so it can be written back to any HTTP header unchanged.
///
/// `Token<15>` fits a [`Key`] (16 bytes, stored in the node, no allocation); longer ones
/// need a `HeapKey` (feature `alloc`).
///
/// ```
/// use ctxtree::propagate::{Token, Wire, ValueError};
/// let id = Token::<15>::decode(b"req-7f3a")?;
/// assert_eq!(id.as_str(), "req-7f3a");
/// assert_eq!(Token::<15>::decode(b"has space"), Err(ValueError::InvalidByte { at: 3 }));
/// # Ok::<(), ValueError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token<const N: usize> {
    buf: [u8; N],
    len: u8,
}

impl<const N: usize> Token<N> {
    const FITS: () = assert!(N > 0 && N <= 255, "ctxtree: Token<N> needs 1 <= N <= 255");

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl<const N: usize> Wire for Token<N> {
    fn encode(&self, out: &mut [u8]) -> Result<usize, ValueError> {
        put(out, self.as_bytes())
    }

    fn decode(text: &[u8]) -> Result<Self, ValueError> {
        let () = Self::FITS;
        if text.is_empty() {
            return Err(ValueError::Empty);
        }
        if text.len() > N {
            return Err(ValueError::TooLong {
                len: text.len(),
                max: N,
            });
        }
        if let Some(at) = text.iter().position(|b| !b.is_ascii_graphic()) {
            return Err(ValueError::InvalidByte { at });
        }
        let mut buf = [0u8; N];
        buf[..text.len()].copy_from_slice(text);
        Ok(Token {
            buf,
            len: text.len() as u8,
        })
    }
}

impl<const N: usize> fmt::Debug for Token<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({:?})", self.as_str())
    }
}

impl<const N: usize> fmt::Display for Token<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A W3C Trace Context `traceparent` (version-format `00`): version, trace-id, parent-id and
/// flags, validated as the recommendation says. Passed through unchanged: a version-`00`
/// header is re-encoded byte for byte (the format allows lower-case hex only, so there is one
/// spelling). A header of a later version is parsed by its version-`00` prefix, as the
/// recommendation asks, and re-encoded as that prefix with its version.
///
/// 26 bytes: with `alloc`, travel it under a `HeapKey`.
///
/// ```
/// use ctxtree::propagate::{TraceParent, Wire, ValueError};
/// let text = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let tp = TraceParent::decode(text)?;
/// assert!(tp.sampled());
/// let mut out = [0u8; 55];
/// assert_eq!(tp.encode(&mut out)?, 55);
/// assert_eq!(&out[..], &text[..]);
/// assert_eq!(
///     TraceParent::decode(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
///     Err(ValueError::Malformed("traceparent: all-zero trace-id"))
/// );
/// # Ok::<(), ValueError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    version: u8,
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// The length of a version-`00` header.
    pub const LEN: usize = 55;

    /// The version byte (`0` for the current format).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The 16-byte trace id (never all zero).
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The 8-byte id of the caller's span (never all zero).
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller may have recorded its span (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// Decodes lower-case hex from `text[at..at + 2 * out.len()]` into `out`.
fn hex_into(text: &[u8], at: usize, out: &mut [u8]) -> Result<(), ValueError> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        let p = at + 2 * i;
        let hi = nibble(text[p]).ok_or(ValueError::InvalidByte { at: p })?;
        let lo = nibble(text[p + 1]).ok_or(ValueError::InvalidByte { at: p + 1 })?;
        *o = hi << 4 | lo;
    }
    Ok(())
}

fn hex_out(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

impl Wire for TraceParent {
    fn encode(&self, out: &mut [u8]) -> Result<usize, ValueError> {
        let mut text = [b'-'; Self::LEN];
        hex_out(&[self.version], &mut text[0..2]);
        hex_out(&self.trace_id, &mut text[3..35]);
        hex_out(&self.parent_id, &mut text[36..52]);
        hex_out(&[self.flags], &mut text[53..55]);
        put(out, &text)
    }

    fn decode(text: &[u8]) -> Result<Self, ValueError> {
        if text.is_empty() {
            return Err(ValueError::Empty);
        }
        if text.len() < Self::LEN {
            return Err(ValueError::Malformed("traceparent: shorter than 55 bytes"));
        }
        let mut version = [0u8; 1];
        hex_into(text, 0, &mut version)?;
        let version = version[0];
        if version == 0xff {
            return Err(ValueError::Malformed("traceparent: version ff is invalid"));
        }
        if version == 0 && text.len() != Self::LEN {
            return Err(ValueError::TooLong {
                len: text.len(),
                max: Self::LEN,
            });
        }
        if text.len() > Self::LEN && text[Self::LEN] != b'-' {
            return Err(ValueError::InvalidByte { at: Self::LEN });
        }
        for at in [2, 35, 52] {
            if text[at] != b'-' {
                return Err(ValueError::InvalidByte { at });
            }
        }
        let mut tp = TraceParent {
            version,
            trace_id: [0; 16],
            parent_id: [0; 8],
            flags: 0,
        };
        hex_into(text, 3, &mut tp.trace_id)?;
        hex_into(text, 36, &mut tp.parent_id)?;
        let mut flags = [0u8; 1];
        hex_into(text, 53, &mut flags)?;
        tp.flags = flags[0];
        if tp.trace_id == [0; 16] {
            return Err(ValueError::Malformed("traceparent: all-zero trace-id"));
        }
        if tp.parent_id == [0; 8] {
            return Err(ValueError::Malformed("traceparent: all-zero parent-id"));
        }
        Ok(tp)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; Self::LEN];
        let n = self.encode(&mut text).unwrap_or(0);
        let s = core::str::from_utf8(&text[..n]).unwrap_or("");
        write!(f, "TraceParent({s:?})")
    }
}

/// A request value that travels: the header `name` carries the value bound to `key`, written
/// and read with the value type's [`Wire`] codec. Values travel only when their key opts in
/// this way; nothing else a context carries leaves the process.
///
/// ```
/// use ctxtree::propagate::{Field, Header};
/// use ctxtree::Key;
/// static REQUEST_ID: Key<u64> = Key::new("request-id");
/// static REQUEST_ID_HEADER: Header<Key<u64>> = Header::new("x-request-id", &REQUEST_ID);
/// static FIELDS: [&dyn Field; 1] = [&REQUEST_ID_HEADER];
/// ```
pub struct Header<K: 'static> {
    name: &'static str,
    key: &'static K,
}

impl<K: 'static> Header<K> {
    /// The header `name` (lower case: `"x-request-id"`) for the values bound to `key`.
    pub const fn new(name: &'static str, key: &'static K) -> Self {
        Header { name, key }
    }

    /// The header's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<K> fmt::Debug for Header<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Header({:?})", self.name)
    }
}

pub(crate) mod sealed {
    use super::ValueError;
    use crate::{Context, CreateError};

    /// What [`Field`](super::Field) does, out of sight (sealed).
    pub trait FieldImpl {
        /// The header name.
        fn name(&self) -> &'static str;
        /// Encodes the value `ctx` carries into `out`: `None` when it carries none.
        fn encode_from(
            &self,
            ctx: &Context<'_>,
            out: &mut [u8],
        ) -> Option<Result<usize, ValueError>>;
        /// Decodes `text` and binds the value on a child of `ctx`. The outer error is the
        /// arena's, the inner one the value's.
        fn bind<'a>(
            &self,
            ctx: &Context<'a>,
            text: &[u8],
        ) -> Result<Result<Context<'a>, ValueError>, CreateError>;
    }
}

/// A request value that opts in to travelling: a [`Header`] on a [`Key`] (or, with `alloc`, a
/// `HeapKey`) whose type implements [`Wire`]. Sealed; used as `&dyn Field` in
/// a [`Propagator`](super::Propagator)'s list.
pub trait Field: Sync + sealed::FieldImpl {}

impl<T: Wire + Copy + Send + Sync + 'static> sealed::FieldImpl for Header<Key<T>> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn encode_from(&self, ctx: &Context<'_>, out: &mut [u8]) -> Option<Result<usize, ValueError>> {
        ctx.value(self.key).map(|v| v.encode(out))
    }

    fn bind<'a>(
        &self,
        ctx: &Context<'a>,
        text: &[u8],
    ) -> Result<Result<Context<'a>, ValueError>, CreateError> {
        bind_value(ctx, self.key, text)
    }
}

impl<T: Wire + Copy + Send + Sync + 'static> Field for Header<Key<T>> {}

#[cfg(feature = "alloc")]
impl<T: Wire + Send + Sync + 'static> sealed::FieldImpl for Header<crate::HeapKey<T>> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn encode_from(&self, ctx: &Context<'_>, out: &mut [u8]) -> Option<Result<usize, ValueError>> {
        ctx.value(self.key).map(|v| v.encode(out))
    }

    fn bind<'a>(
        &self,
        ctx: &Context<'a>,
        text: &[u8],
    ) -> Result<Result<Context<'a>, ValueError>, CreateError> {
        bind_value(ctx, self.key, text)
    }
}

#[cfg(feature = "alloc")]
impl<T: Wire + Send + Sync + 'static> Field for Header<crate::HeapKey<T>> {}

fn bind_value<'a, K>(
    ctx: &Context<'a>,
    key: &'static K,
    text: &[u8],
) -> Result<Result<Context<'a>, ValueError>, CreateError>
where
    K: KeyKind,
    K::Value: Wire,
{
    match K::Value::decode(text) {
        Ok(v) => ctx.with_value(key, v).map(Ok),
        Err(e) => Ok(Err(e)),
    }
}
