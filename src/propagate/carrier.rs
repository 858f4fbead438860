//! [`Carrier`]: where [`inject`](super::inject) writes and [`extract`](super::extract) reads.

use core::fmt;

/// Header-like name/value pairs that a context crosses a process boundary in: HTTP headers, gRPC
/// metadata, a message queue's properties (OpenTelemetry's `Injector` and `Extractor` in one).
///
/// Names are ASCII and compared case-insensitively where the protocol says so (HTTP); the
/// names ctxtree uses are lower case (`grpc-timeout`), as HTTP/2 sends them. Values are bytes
/// (HTTP allows a little more than UTF-8's ASCII subset); ctxtree writes visible ASCII only.
///
/// Implemented for `http::HeaderMap` (feature `http`) and, with `alloc`, for a
/// `BTreeMap<String, String>` with lower-case keys. Implement it for your own protocol's
/// headers; it needs no allocation:
///
/// ```
/// use ctxtree::propagate::{Carrier, CarrierError};
///
/// /// A fixed set of slots, for a firmware protocol without an allocator.
/// struct Slots { timeout: [u8; 9], timeout_len: usize }
///
/// impl Carrier for Slots {
///     fn get(&self, name: &str) -> Option<&[u8]> {
///         (name.eq_ignore_ascii_case("grpc-timeout") && self.timeout_len > 0)
///             .then(|| &self.timeout[..self.timeout_len])
///     }
///     fn set(&mut self, name: &'static str, value: &[u8]) -> Result<(), CarrierError> {
///         if name != "grpc-timeout" {
///             return Err(CarrierError::Unsupported);
///         }
///         let dst = self.timeout.get_mut(..value.len()).ok_or(CarrierError::Full)?;
///         dst.copy_from_slice(value);
///         self.timeout_len = value.len();
///         Ok(())
///     }
/// }
/// ```
pub trait Carrier {
    /// The value of the pair named `name`, or `None`. With several pairs of that name, the
    /// first.
    fn get(&self, name: &str) -> Option<&[u8]>;

    /// Sets the pair named `name` to `value`, replacing any pair of that name.
    ///
    /// Errors: [`CarrierError`] when the carrier cannot hold it.
    fn set(&mut self, name: &'static str, value: &[u8]) -> Result<(), CarrierError>;
}

/// Why a [`Carrier`] refused a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CarrierError {
    /// The name is not valid for this carrier (e.g. not an HTTP token).
    InvalidName,
    /// The value is not valid for this carrier (e.g. a control character in an HTTP header).
    InvalidValue,
    /// No room left (a fixed-capacity carrier).
    Full,
    /// The carrier does not carry this name.
    Unsupported,
}

impl fmt::Display for CarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CarrierError::InvalidName => "invalid header name",
            CarrierError::InvalidValue => "invalid header value",
            CarrierError::Full => "carrier full",
            CarrierError::Unsupported => "carrier does not carry this header",
        })
    }
}

impl core::error::Error for CarrierError {}

/// Lower-case keys (as OpenTelemetry's `HashMap` carrier): `set` lower-cases the name; `get`
/// finds an exact match, else one equal ignoring ASCII case.
#[cfg(feature = "alloc")]
impl Carrier for ::alloc::collections::BTreeMap<::alloc::string::String, ::alloc::string::String> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        match ::alloc::collections::BTreeMap::get(self, name) {
            Some(v) => Some(v.as_bytes()),
            None => self
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes()),
        }
    }

    fn set(&mut self, name: &'static str, value: &[u8]) -> Result<(), CarrierError> {
        let value = core::str::from_utf8(value).map_err(|_| CarrierError::InvalidValue)?;
        self.insert(name.to_ascii_lowercase(), value.into());
        Ok(())
    }
}
