//! The `http` feature: [`Carrier`] for `http::HeaderMap`, the header map hyper, axum, tonic and
//! reqwest share.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::propagate::{Carrier, CarrierError};

/// HTTP headers: names case-insensitive; `set` replaces every value of the name.
///
/// ```
/// use std::time::Duration;
/// let ctxtree::Child { ctx, cancel: _cancel } = ctxtree::background().with_timeout(Duration::from_secs(1))?;
/// let mut headers = http::HeaderMap::new();
/// ctxtree::propagate::inject(&ctx, &mut headers)?;
/// let req = ctxtree::propagate::extract(&ctxtree::background(), &headers)?;
/// assert!(req.ctx.remaining().unwrap() <= Duration::from_secs(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Carrier for HeaderMap {
    fn get(&self, name: &str) -> Option<&[u8]> {
        HeaderMap::get(self, name).map(HeaderValue::as_bytes)
    }

    fn set(&mut self, name: &'static str, value: &[u8]) -> Result<(), CarrierError> {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| CarrierError::InvalidName)?;
        let value = HeaderValue::from_bytes(value).map_err(|_| CarrierError::InvalidValue)?;
        self.insert(name, value);
        Ok(())
    }
}
