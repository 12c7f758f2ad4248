//! The trace id every answer carries (`X-Trace-Id`): the client's own, or a fresh one.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};

/// The request/trace id header; a client's own value is kept.
pub(crate) const TRACE_ID: &str = "x-trace-id";

/// [`TRACE_ID`] as a header name (looked up without parsing the name each time).
pub(crate) static TRACE_ID_NAME: HeaderName = HeaderName::from_static(TRACE_ID);

/// The client's trace id from `headers`, or a fresh one.
pub(crate) fn trace_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&TRACE_ID_NAME) {
        Some(v) => v.clone(),
        None => new_trace_id(),
    }
}

/// A fresh trace id: 16 hex digits, unique within the process, unlikely across runs.
pub(crate) fn new_trace_id() -> HeaderValue {
    TraceId::fresh().to_header()
}

/// A trace id as the framed path carries it: a fresh one held inline (no allocation
/// per request; a `HeaderValue` always holds its bytes on the heap), or the client's.
#[derive(Clone, Debug)]
pub(crate) enum TraceId {
    Fresh([u8; 16]),
    Given(HeaderValue),
}

impl TraceId {
    /// The client's `given` id, or a fresh one.
    pub(crate) fn of(given: Option<&HeaderValue>) -> Self {
        match given {
            Some(v) => Self::Given(v.clone()),
            None => Self::fresh(),
        }
    }

    fn fresh() -> Self {
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
        Self::Fresh(hex)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Fresh(hex) => hex,
            Self::Given(v) => v.as_bytes(),
        }
    }

    /// As `HeaderValue::to_str` reads it (empty when not visible ASCII).
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Fresh(hex) => std::str::from_utf8(hex).unwrap_or_default(),
            Self::Given(v) => v.to_str().unwrap_or_default(),
        }
    }

    pub(crate) fn to_header(&self) -> HeaderValue {
        match self {
            Self::Fresh(hex) => {
                HeaderValue::from_bytes(hex).unwrap_or(HeaderValue::from_static("0"))
            }
            Self::Given(v) => v.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_16_hex_digits_and_differ() {
        let (a, b) = (TraceId::fresh(), TraceId::fresh());
        assert_eq!(a.as_str().len(), 16);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(a.to_header().as_bytes(), a.as_bytes());
    }
}
