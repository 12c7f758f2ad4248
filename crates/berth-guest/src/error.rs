use std::io;
use std::time::Duration;

use crate::GuestEndpoint;

/// A failure to open a stream to a guest engine.
///
/// Opaque on purpose: callers decide what it means for a client with the `is_*`
/// predicates, not by matching on a kind that would grow.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct ConnectError {
    msg: String,
    kind: Kind,
    #[source]
    source: Option<io::Error>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Refused,
    NotFound,
    Timeout,
    Other,
}

impl ConnectError {
    pub(crate) fn io(endpoint: &GuestEndpoint, e: io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::ConnectionRefused => Kind::Refused,
            io::ErrorKind::NotFound => Kind::NotFound,
            io::ErrorKind::TimedOut => Kind::Timeout,
            _ => Kind::Other,
        };
        // Worded without the OS text ("no such file or directory") on purpose: the docker
        // CLI maps those phrases to exit codes 126/127 (gateway notes 3.3).
        let what = match kind {
            Kind::Refused => "connection refused".to_owned(),
            Kind::NotFound => "socket missing".to_owned(),
            Kind::Timeout => "connect timed out".to_owned(),
            Kind::Other => format!("connect failed ({:?})", e.kind()),
        };
        Self {
            msg: format!("cannot reach engine at {endpoint}: {what}"),
            kind,
            source: Some(e),
        }
    }

    pub(crate) fn timeout(endpoint: &GuestEndpoint, after: Duration) -> Self {
        Self {
            msg: format!("cannot reach engine at {endpoint}: connect timed out after {after:?}"),
            kind: Kind::Timeout,
            source: None,
        }
    }

    /// A failure of the transport above the socket (TLS, SSH), in its own words.
    pub(crate) fn transport(endpoint: &GuestEndpoint, reason: String) -> Self {
        Self {
            msg: format!("cannot reach engine at {endpoint}: {reason}"),
            kind: Kind::Other,
            source: None,
        }
    }

    /// Nothing listens at the endpoint.
    pub fn is_refused(&self) -> bool {
        self.kind == Kind::Refused
    }

    /// The socket file does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == Kind::NotFound
    }

    /// The engine did not accept within the connect timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }
}
