//! The trace id every answer carries (`X-Trace-Id`): the client's own, or a fresh one.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderValue};

/// The request/trace id header; a client's own value is kept.
pub(crate) const TRACE_ID: &str = "x-trace-id";

/// The client's trace id from `headers`, or a fresh one.
pub(crate) fn trace_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(TRACE_ID) {
        Some(v) => v.clone(),
        None => new_trace_id(),
    }
}

/// A fresh trace id: 16 hex digits, unique within the process, unlikely across runs.
pub(crate) fn new_trace_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ (u64::from(std::process::id()) << 32)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut hex = [0u8; 16];
    for (i, b) in hex.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((id >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&hex).unwrap_or(HeaderValue::from_static("0"))
}
