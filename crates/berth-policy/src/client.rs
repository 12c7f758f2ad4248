//! Who is asking ([`ClientIdentity`]) and the `clients` selectors that rules and limits
//! use to pick clients (`uid:1000`, `tls:CN=ci, O=acme`, …).

use std::fmt;

use crate::pattern::Glob;

/// The identity of the client on the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientIdentity {
    /// A local process on the Unix socket, from `SO_PEERCRED` (primary gid only).
    Unix {
        /// Effective user id.
        uid: u32,
        /// Effective primary group id.
        gid: u32,
        /// Process id, when known (not used for decisions).
        pid: Option<i32>,
    },
    /// A TLS client; `subject` is its certificate's subject as the gateway prints it
    /// (`CN=alice, O=dev`), `None` when it sent no certificate.
    Tls {
        /// Certificate subject.
        subject: Option<String>,
    },
    /// A container using the socket berth gives it.
    Internal,
    /// A client berth knows nothing about (plain TCP, unreadable credentials).
    Anonymous,
}

impl fmt::Display for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix { uid, gid, .. } => write!(f, "uid {uid} gid {gid}"),
            Self::Tls { subject: Some(s) } => write!(f, "tls {s:?}"),
            Self::Tls { subject: None } => f.write_str("tls without certificate"),
            Self::Internal => f.write_str("internal"),
            Self::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// One entry of a `clients` or `except` list.
#[derive(Clone, Debug)]
pub(crate) enum ClientSelector {
    /// `*`: everyone.
    Any,
    /// `unix`: any local process.
    Unix,
    /// `uid:N`.
    Uid(u32),
    /// `gid:N` (primary group).
    Gid(u32),
    /// `tls`: any TLS client, with or without certificate.
    Tls,
    /// `tls:PATTERN`: a TLS client whose certificate subject matches.
    TlsSubject(Glob),
    /// `internal`.
    Internal,
    /// `anonymous`.
    Anonymous,
    /// `tenant:NAME`: every client of berth's tenant `NAME` (its clients and socket).
    Tenant(String),
}

pub(crate) const SELECTOR_HELP: &str = "expected \"*\", \"unix\", \"uid:N\", \"gid:N\", \"tls\", \
     \"tls:SUBJECT\", \"internal\", \"anonymous\" or \"tenant:NAME\"";

impl ClientSelector {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let number = |n: &str, what: &str| {
            n.parse::<u32>()
                .map_err(|_| format!("client {s:?}: {what} must be a number"))
        };
        Ok(match s {
            "*" => Self::Any,
            "unix" => Self::Unix,
            "tls" => Self::Tls,
            "internal" => Self::Internal,
            "anonymous" => Self::Anonymous,
            _ => {
                if let Some(n) = s.strip_prefix("uid:") {
                    Self::Uid(number(n, "uid")?)
                } else if let Some(n) = s.strip_prefix("gid:") {
                    Self::Gid(number(n, "gid")?)
                } else if let Some(p) = s.strip_prefix("tls:") {
                    if p.is_empty() {
                        return Err(format!("client {s:?}: empty subject; use \"tls\" for any"));
                    }
                    Self::TlsSubject(Glob::new(p, None).map_err(|e| format!("client {s:?}: {e}"))?)
                } else if let Some(name) = s.strip_prefix("tenant:") {
                    if name.is_empty() {
                        return Err(format!("client {s:?}: empty tenant name"));
                    }
                    Self::Tenant(name.to_owned())
                } else {
                    return Err(format!("unknown client {s:?}; {SELECTOR_HELP}"));
                }
            }
        })
    }

    /// Whether this selects `client`, a client of tenant `tenant` (if any).
    pub(crate) fn matches(&self, client: &ClientIdentity, tenant: Option<&str>) -> bool {
        use ClientIdentity as C;
        match (self, client) {
            (Self::Any, _) => true,
            (Self::Tenant(want), _) => tenant == Some(want.as_str()),
            (Self::Unix, C::Unix { .. }) => true,
            (Self::Uid(want), C::Unix { uid, .. }) => want == uid,
            (Self::Gid(want), C::Unix { gid, .. }) => want == gid,
            (Self::Tls, C::Tls { .. }) => true,
            (Self::TlsSubject(p), C::Tls { subject: Some(s) }) => p.matches(s),
            (Self::Internal, C::Internal) => true,
            (Self::Anonymous, C::Anonymous) => true,
            _ => false,
        }
    }

    /// The selector that names exactly this client (or the narrowest there is).
    pub(crate) fn text_for(client: &ClientIdentity) -> String {
        match client {
            ClientIdentity::Unix { uid, .. } => format!("uid:{uid}"),
            ClientIdentity::Tls { subject: Some(s) } => format!("tls:{}", Glob::escape(s)),
            ClientIdentity::Tls { subject: None } => "tls".to_owned(),
            ClientIdentity::Internal => "internal".to_owned(),
            ClientIdentity::Anonymous => "anonymous".to_owned(),
        }
    }
}

/// The clients a rule or limit applies to: `clients` (absent: everyone) minus `except`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientSet {
    pub(crate) only: Option<Vec<ClientSelector>>,
    pub(crate) except: Vec<ClientSelector>,
}

impl ClientSet {
    pub(crate) fn contains(&self, client: &ClientIdentity, tenant: Option<&str>) -> bool {
        let included = match &self.only {
            None => true,
            Some(list) => list.iter().any(|s| s.matches(client, tenant)),
        };
        included && !self.except.iter().any(|s| s.matches(client, tenant))
    }
}
