//! What the gateway tells the policy about a request, and what the policy answers.

use crate::client::ClientIdentity;

/// The parts of a request the policy decides on; all borrowed from the request.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// The HTTP method, exactly as sent (dockerd matches it case-sensitively).
    pub method: &'a str,
    /// The request path, still percent-encoded, with or without its `/vX.Y` prefix
    /// (the policy strips it itself, as dockerd does: gateway notes 1.8).
    pub path: &'a str,
    /// The query string without `?`, if any.
    pub query: Option<&'a str>,
    /// The `Content-Type` header, if any: dockerd reads form fields from
    /// `application/x-www-form-urlencoded` bodies as if they were query parameters.
    pub content_type: Option<&'a str>,
    /// Who is asking.
    pub client: &'a ClientIdentity,
    /// The gateway's tenant the client belongs to, if any (`tenant:NAME` selects it).
    pub tenant: Option<&'a str>,
}

impl<'a> RequestFacts<'a> {
    /// A request without query string or content type.
    pub fn new(method: &'a str, path: &'a str, client: &'a ClientIdentity) -> Self {
        Self {
            method,
            path,
            query: None,
            content_type: None,
            client,
            tenant: None,
        }
    }

    /// The same request from a client of tenant `name`.
    pub fn with_tenant(self, name: &'a str) -> Self {
        Self {
            tenant: Some(name),
            ..self
        }
    }

    /// The same request with a query string (without `?`).
    pub fn with_query(self, query: &'a str) -> Self {
        Self {
            query: Some(query),
            ..self
        }
    }

    /// The same request with a `Content-Type`.
    pub fn with_content_type(self, content_type: &'a str) -> Self {
        Self {
            content_type: Some(content_type),
            ..self
        }
    }
}

/// The policy's answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Forward the request untouched.
    Allow,
    /// Read the whole request body (whatever its framing), at most `limit` bytes plus one
    /// to tell "over the bound" apart, and ask again with
    /// [`AccessPolicy::check_body`](crate::AccessPolicy::check_body).
    NeedsBody {
        /// The size bound in bytes.
        limit: usize,
    },
    /// Refuse with 403 and [`Decision::denial_message`]; nothing reaches the guest.
    Deny {
        /// The name of the rule or limit that refused (`default` and `read_only` for the
        /// top-level keys).
        rule: String,
        /// What it refuses, as a noun phrase (`privileged containers`).
        what: String,
    },
}

impl Decision {
    pub(crate) fn deny(rule: &str, what: impl Into<String>) -> Self {
        Self::Deny {
            rule: rule.to_owned(),
            what: what.into(),
        }
    }

    /// Whether the request may pass as it is.
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow)
    }

    /// Whether the request is refused.
    pub fn is_deny(&self) -> bool {
        matches!(self, Self::Deny { .. })
    }

    /// The `message` of the 403 body for a denial:
    /// `berth policy: rule "no-privileged" denies privileged containers`.
    pub fn denial_message(&self) -> Option<String> {
        match self {
            Self::Deny { rule, what } => Some(format!("berth policy: rule {rule:?} denies {what}")),
            _ => None,
        }
    }
}
