//! `GatewayError` and its one mapping to Docker's JSON error shape.
//!
//! Who failed decides the status (style guide, "Error style"): the client gets 4xx, an
//! unreachable guest or a bad answer from one 502, a guest that is not ready 503, a
//! slow guest 504, and only a bug in berth 500 (and dockerd's own 500 shape for a host
//! port that is taken). Errors that dockerd itself returns never pass through here: they are
//! forwarded byte for byte.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// An error that berth answers itself, instead of the guest.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The request cannot be understood; dockerd would answer 400 as well.
    #[error("{0}")]
    BadRequest(String),
    /// The guest could not be reached (refused, missing socket, broken connection).
    #[error("berth: engine {engine:?} unreachable: {reason}")]
    GuestUnreachable { engine: String, reason: String },
    /// The guest exists but cannot serve yet (starting, failed to start).
    #[error("berth: engine {engine:?} not ready: {reason}")]
    GuestNotReady { engine: String, reason: String },
    /// The guest answered, but not as an engine does: an error where berth needs an
    /// answer, or a body that is not the JSON it should be.
    #[error("berth: engine {engine:?} sent a bad answer: {reason}")]
    GuestBadAnswer { engine: String, reason: String },
    /// The guest did not answer in time.
    #[error("berth: engine {engine:?} did not answer {what} within {after:?}")]
    GuestTimeout {
        engine: String,
        what: &'static str,
        after: Duration,
    },
    /// A host port that a container publishes is taken on the host; worded as dockerd
    /// words its own "port is already allocated" failure, with its status (notes 3.2).
    #[error("{0}")]
    PortUnavailable(String),
    /// The access policy refuses the request; `message` names the rule and what it
    /// refuses (`berth policy: rule "no-privileged" denies privileged containers`).
    #[error("{message}")]
    Denied { rule: String, message: String },
    /// The request is valid but clashes with what the engines hold (an identifier that
    /// matches on several machines, a container name taken on another machine).
    #[error("{0}")]
    Conflict(String),
    /// The object does not exist for this client: worded as dockerd words its own
    /// not-found answer (a tenant's view of another tenant's object is this too).
    #[error("{0}")]
    NotFound(String),
    /// A fault in berth itself.
    #[error("berth: internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// The HTTP status this error is answered with; the only place that decides it.
    /// The engine could not be reached, was not ready or too slow: views merged from
    /// several engines go on without it.
    pub fn is_engine_unavailable(&self) -> bool {
        matches!(
            self,
            Self::GuestUnreachable { .. } | Self::GuestNotReady { .. } | Self::GuestTimeout { .. }
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Denied { .. } => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::GuestUnreachable { .. } | Self::GuestBadAnswer { .. } => StatusCode::BAD_GATEWAY,
            Self::GuestNotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::GuestTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::PortUnavailable(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Docker's error shape: `{"message": "..."}` with exactly `application/json`, which
    /// is what the Go client requires before it parses the body (gateway notes 3.1).
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut res = Response::new(Full::new(Bytes::from(self.json_body())));
        *res.status_mut() = self.status();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }

    /// The same answer as whole bytes for a socket hyper does not serve (a first
    /// request that is not HTTP, a refused raw hijack, a framed exchange), with the
    /// trace id; `close` when the connection is closed after it.
    pub(crate) fn to_raw_response(&self, trace_id: &[u8], close: bool) -> Vec<u8> {
        let status = self.status();
        let body = self.json_body();
        let mut raw = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Trace-Id: {}\r\n{}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len(),
            String::from_utf8_lossy(trace_id),
            if close { "Connection: close\r\n" } else { "" },
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        raw
    }

    /// `{"message": "..."}` and a newline, as dockerd's encoder writes it.
    fn json_body(&self) -> Vec<u8> {
        let mut body = serde_json::to_vec(&serde_json::json!({ "message": self.to_string() }))
            .unwrap_or_else(|_| b"{\"message\":\"berth: error\"}".to_vec());
        body.push(b'\n');
        body
    }
}

/// A listener could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {path}: {what}")]
pub struct ListenError {
    path: PathBuf,
    what: String,
    #[source]
    source: Option<io::Error>,
}

impl ListenError {
    pub(crate) fn new(path: &Path, what: &str, source: io::Error) -> Self {
        Self {
            path: path.to_owned(),
            what: format!("{what}: {source}"),
            source: Some(source),
        }
    }

    pub(crate) fn config(path: &Path, what: &str) -> Self {
        Self {
            path: path.to_owned(),
            what: what.to_owned(),
            source: None,
        }
    }

    pub(crate) fn in_use(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            what: "another server is already answering on this socket".to_owned(),
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_use_docker_json_shape_and_status_by_who_failed() {
        let e = GatewayError::GuestTimeout {
            engine: "default".into(),
            what: "the readiness ping",
            after: Duration::from_secs(2),
        };
        let res = e.into_response();
        assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["message"].as_str().unwrap().contains("default"));
        assert_eq!(
            GatewayError::GuestUnreachable {
                engine: "e".into(),
                reason: "x".into()
            }
            .status(),
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn raw_answers_carry_the_same_body_as_hyper_answers() {
        let e = GatewayError::BadRequest("malformed HTTP request: invalid token".into());
        let raw = e.to_raw_response(b"abc", true);
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: application/json\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nX-Trace-Id: abc\r\n"), "{head}");
        assert!(head.ends_with("\r\nConnection: close"), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{head}"
        );
        assert_eq!(body.as_bytes(), e.json_body());
        assert_eq!(
            body,
            "{\"message\":\"malformed HTTP request: invalid token\"}\n"
        );
    }
}
