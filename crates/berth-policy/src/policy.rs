//! `AccessPolicy`: the parsed policy and the two questions the gateway asks it.
//!
//! Order of a decision: read-only mode, then the endpoint rules in file order (first
//! match wins, else `default`), then the limits that apply to this client and
//! operation (all of them, in file order). Limits apply whatever rule allowed the
//! request.

use std::fmt;
use std::sync::Arc;

use crate::body::{self, DockerBody};
use crate::client::ClientSet;
use crate::endpoint::{self, Classified, Section};
use crate::error::PolicyError;
use crate::hostpath::{FsPathResolver, PathResolver};
use crate::limit::Limit;
use crate::pattern::Glob;
use crate::request::{Decision, RequestFacts};

mod config;

/// Bodies judged by limits are read up to this size unless `max_body_bytes` says.
pub(crate) const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The HTTP methods a rule can name, in the order of their bits.
pub(crate) const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

pub(crate) fn method_bit(method: &str) -> u16 {
    METHODS
        .iter()
        .position(|m| *m == method)
        .map_or(0, |i| 1 << i)
}

/// The access policy: parsed once, immutable, cheap to evaluate.
#[derive(Clone)]
pub struct AccessPolicy {
    pub(crate) rules: Vec<Rule>,
    pub(crate) limits: Vec<Limit>,
    pub(crate) default_allow: bool,
    pub(crate) read_only: bool,
    pub(crate) max_body: usize,
    pub(crate) resolver: Arc<dyn PathResolver>,
}

/// One `[[rule]]`: allow or deny the requests it matches.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) allow: bool,
    pub(crate) clients: ClientSet,
    /// Bits from [`method_bit`]; `None` matches every method.
    pub(crate) methods: Option<u16>,
    /// Bits from [`Section::bit`]; `None` matches every section.
    pub(crate) sections: Option<u32>,
    /// Patterns on the clean unversioned path; `None` matches every path.
    pub(crate) paths: Option<Vec<Glob>>,
}

impl Rule {
    fn matches(&self, req: &RequestFacts<'_>, c: &Classified<'_>) -> bool {
        self.methods.is_none_or(|m| m & method_bit(req.method) != 0)
            && self.sections.is_none_or(|s| s & c.section.bit() != 0)
            && self.clients.contains(req.client, req.tenant)
            && self
                .paths
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| p.matches(&c.path)))
    }
}

impl fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("rules", &self.rules.len())
            .field("limits", &self.limits.len())
            .field("default_allow", &self.default_allow)
            .field("read_only", &self.read_only)
            .field("max_body", &self.max_body)
            .field("resolver", &self.resolver)
            .finish()
    }
}

impl AccessPolicy {
    /// Parses a policy file. Errors name the line, the key and what is wrong; nothing in
    /// the text makes this panic.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        config::parse(text)
    }

    /// The policy of a berth without a policy file: everything passes, no body is read.
    pub fn allow_all() -> Self {
        Self {
            rules: Vec::new(),
            limits: Vec::new(),
            default_allow: true,
            read_only: false,
            max_body: DEFAULT_MAX_BODY,
            resolver: Arc::new(FsPathResolver),
        }
    }

    /// The same policy resolving bind sources through `resolver` (tests, or a host whose
    /// paths the gateway translates).
    pub fn with_resolver(mut self, resolver: Arc<dyn PathResolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// The bound on bodies this policy reads (`max_body_bytes`).
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Decides on method, path, query, content type and client, without the body.
    /// Allocates only to build a denial.
    pub fn check_request(&self, req: &RequestFacts<'_>) -> Decision {
        let c = endpoint::classify(req.method, req.path);
        if let Some(denied) = self.check_endpoint(req, &c) {
            return denied;
        }
        let Some(op) = c.operation else {
            return Decision::Allow;
        };
        let mut applicable = self.limits_for(req, op);
        if op.reads_body() {
            return match applicable.next() {
                Some(_) => Decision::NeedsBody {
                    limit: self.max_body,
                },
                None => Decision::Allow,
            };
        }
        for limit in applicable {
            if let Some(what) = limit.judge_query(op, req) {
                return Decision::deny(&limit.name, what);
            }
        }
        Decision::Allow
    }

    /// Judges a request with its whole body: call it when [`check_request`] answered
    /// [`Decision::NeedsBody`], with every byte read (at most `limit + 1` of them; a
    /// longer body is refused). It asks [`check_request`] again first, so it never
    /// allows what that refuses. An unreadable body is refused.
    ///
    /// [`check_request`]: AccessPolicy::check_request
    pub fn check_body(&self, req: &RequestFacts<'_>, body: &[u8]) -> Decision {
        self.check_body_with(req, body.len(), |op| body::facts(op, body))
    }

    /// [`check_body`](AccessPolicy::check_body) on a body already decoded: the model
    /// the gateway then rewrites and forwards, so what is judged is what is sent.
    pub fn check_parsed(&self, req: &RequestFacts<'_>, body: &DockerBody<'_>) -> Decision {
        self.check_body_with(req, body.sent_len(), |op| body.facts_for(op))
    }

    fn check_body_with(
        &self,
        req: &RequestFacts<'_>,
        len: usize,
        facts: impl FnOnce(endpoint::Operation) -> Result<body::BodyFacts, String>,
    ) -> Decision {
        match self.check_request(req) {
            Decision::NeedsBody { .. } => {}
            other => return other,
        }
        let c = endpoint::classify(req.method, req.path);
        let Some(op) = c.operation else {
            return Decision::Allow;
        };
        let Some(first) = self.limits_for(req, op).next() else {
            return Decision::Allow;
        };
        // Fail closed (CVE-2024-41110 was an authz check that never saw chunked bodies).
        if len > self.max_body {
            return Decision::deny(
                &first.name,
                format!("request bodies over {} bytes", self.max_body),
            );
        }
        let facts = match facts(op) {
            Ok(facts) => facts,
            Err(e) => {
                return Decision::deny(&first.name, format!("unreadable request bodies ({e})"))
            }
        };
        for limit in self.limits_for(req, op) {
            if let Some(what) = limit.judge(op, &facts, &*self.resolver) {
                return Decision::deny(&limit.name, what);
            }
        }
        Decision::Allow
    }

    /// Read-only mode and the endpoint rules; `Some` is a denial.
    fn check_endpoint(&self, req: &RequestFacts<'_>, c: &Classified<'_>) -> Option<Decision> {
        if self.read_only && !is_read(req.method, c) {
            return Some(Decision::deny(
                "read_only",
                format!("{} {} in read-only mode", req.method, c.path),
            ));
        }
        let allowed = match self.rules.iter().find(|r| r.matches(req, c)) {
            Some(rule) if rule.allow => true,
            Some(rule) => return Some(deny_endpoint(&rule.name, req, c)),
            None => self.default_allow,
        };
        (!allowed).then(|| deny_endpoint("default", req, c))
    }

    fn limits_for<'s>(
        &'s self,
        req: &'s RequestFacts<'_>,
        op: endpoint::Operation,
    ) -> impl Iterator<Item = &'s Limit> + 's {
        self.limits
            .iter()
            .filter(move |l| l.judges(op) && l.clients.contains(req.client, req.tenant))
    }
}

/// GET and HEAD, except the websocket attach, which writes to the container's stdin.
fn is_read(method: &str, c: &Classified<'_>) -> bool {
    (method == "GET" || method == "HEAD")
        && !(c.section == Section::Containers && c.path.ends_with("/attach/ws"))
}

fn deny_endpoint(rule: &str, req: &RequestFacts<'_>, c: &Classified<'_>) -> Decision {
    Decision::deny(
        rule,
        format!("{} {} ({} section)", req.method, c.path, c.section.name()),
    )
}
