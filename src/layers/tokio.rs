//! Interop with tokio-util's `CancellationToken` (feature `tokio`).
