//! Admission: the access-policy stage, between classify and route. Nothing of a refused
//! request reaches a guest.
//!
//! Without a policy ([`Config::policy`](crate::Config) is `None`) this stage is one
//! branch. With one, the request is judged on its head
//! ([`AccessPolicy::check_request`]); when a limit needs the body, the body is read
//! whole whatever its framing (chunked or with a length, at most the policy's bound
//! plus one byte), judged ([`AccessPolicy::check_body`]) and held: the forward stage
//! sends the held bytes with a `Content-Length` and never reads the client again
//! (`forward::HeldBody`). A container create that bind-mounts the Docker socket gets
//! berth's own container socket instead (`admit/socket.rs`), so the container stays
//! under the policy.
//!
//! Raw hijacks (attach/exec start without `Upgrade`) are judged on their head before
//! the socket is spliced ([`admit_raw`]); they carry no body a limit reads.

mod socket;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use berth_policy::{AccessPolicy, ClientIdentity, Decision, PolicyRecorder, RequestFacts};
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Either};
use hyper::body::Incoming;

use crate::classify::{Classified, Endpoint};
use crate::error::GatewayError;
use crate::forward::{HeldBody, ResponseBody};
use crate::listen::PeerIdentity;
use crate::serve::ClientIo;
use crate::Shared;

pub(crate) use socket::rewrite_socket_binds;

/// Create bodies read only for the socket rewrite (no limit judges them) are held up
/// to this size, as the forward stage holds bodies it edits.
const MAX_HELD_BODY: usize = 16 << 20;

/// The policy a gateway enforces, swappable while it serves (SIGHUP), with what goes
/// with it: an optional recorder and the container socket.
#[derive(Debug)]
pub struct PolicyGate {
    current: RwLock<Arc<AccessPolicy>>,
    recorder: Option<Arc<PolicyRecorder>>,
    container_socket: Option<ContainerSocket>,
}

/// Bind sources that are the Docker API, and the socket containers get instead.
#[derive(Clone, Debug)]
pub(crate) struct ContainerSocket {
    /// berth's socket for containers (peers are `internal`).
    pub(crate) served: PathBuf,
    /// Sockets a container must not get directly: dockerd's default paths, berth's own
    /// listeners, the guests' sockets (as given and canonicalized).
    pub(crate) replaced: Vec<PathBuf>,
}

impl PolicyGate {
    /// A gate enforcing `policy`.
    pub fn new(policy: AccessPolicy) -> Self {
        Self {
            current: RwLock::new(Arc::new(policy)),
            recorder: None,
            container_socket: None,
        }
    }

    /// Also records every admitted request into `recorder` (record mode).
    pub fn with_recorder(mut self, recorder: Arc<PolicyRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Container creates that bind-mount one of `docker_sockets` (or
    /// `/var/run/docker.sock`, `/run/docker.sock`) get `served` instead: a socket berth
    /// listens on for containers ([`BoundSocket::for_containers`](crate::BoundSocket)).
    pub fn with_container_socket(mut self, served: PathBuf, docker_sockets: Vec<PathBuf>) -> Self {
        let mut replaced: Vec<PathBuf> = ["/var/run/docker.sock", "/run/docker.sock"]
            .into_iter()
            .map(PathBuf::from)
            .chain(docker_sockets)
            .collect();
        let canonical: Vec<PathBuf> = replaced
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        replaced.extend(canonical);
        replaced.sort();
        replaced.dedup();
        self.container_socket = Some(ContainerSocket { served, replaced });
        self
    }

    /// Puts `policy` in force for every request that starts from now on.
    pub fn replace(&self, policy: AccessPolicy) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<AccessPolicy> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The policy's view of a peer.
pub(crate) fn client_identity(peer: &PeerIdentity) -> ClientIdentity {
    match peer {
        PeerIdentity::Unix { uid, gid, pid } => ClientIdentity::Unix {
            uid: *uid,
            gid: *gid,
            pid: Some(*pid),
        },
        PeerIdentity::Tls { subject, .. } => ClientIdentity::Tls {
            subject: subject.clone(),
        },
        PeerIdentity::Internal => ClientIdentity::Internal,
        PeerIdentity::Tcp { .. } | PeerIdentity::Unknown => ClientIdentity::Anonymous,
    }
}

/// Response bodies a refusal fits in: the one-engine body, or one that wraps it.
pub(crate) trait RefusalBody {
    /// Wraps berth's own answer.
    fn wrap(body: ResponseBody) -> Self;
}

impl RefusalBody for ResponseBody {
    fn wrap(body: ResponseBody) -> Self {
        body
    }
}

impl<R> RefusalBody for Either<ResponseBody, R> {
    fn wrap(body: ResponseBody) -> Self {
        Either::Left(body)
    }
}

/// Judges `req`: `Ok` with the request to forward (its body held if it was read), or
/// `Err` with the answer (403, or 400 for an unreadable body), already audited.
pub(crate) async fn admit<B: RefusalBody>(
    shared: &Shared,
    req: Request<Incoming>,
    classified: &Classified,
    peer: &PeerIdentity,
    trace_id: &HeaderValue,
) -> Result<Request<Incoming>, Response<B>> {
    let Some(gate) = &shared.config.policy else {
        return Ok(req);
    };
    // Boxed: reading and judging a body is large and only runs with a policy.
    Box::pin(judge(shared, gate, req, classified, peer))
        .await
        .map_err(|(e, rule)| refuse(shared, e, rule, peer, trace_id).map(B::wrap))
}

/// A refusal: the error, the request line for the audit, the rule that refused.
type Refusal = (GatewayError, Option<RefusedRequest>);

/// What the audit log needs of a refused request.
struct RefusedRequest {
    method: String,
    path: String,
    rule: Option<String>,
}

async fn judge(
    shared: &Shared,
    gate: &PolicyGate,
    req: Request<Incoming>,
    classified: &Classified,
    peer: &PeerIdentity,
) -> Result<Request<Incoming>, Refusal> {
    let policy = gate.current();
    let client = client_identity(peer);
    let (mut parts, mut body) = req.into_parts();
    let audit_line = |rule: Option<String>| {
        shared.config.audit.as_ref().map(|_| RefusedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            rule,
        })
    };
    let held = {
        let mut facts = RequestFacts::new(parts.method.as_str(), parts.uri.path(), &client);
        if let Some(q) = parts.uri.query() {
            facts = facts.with_query(q);
        }
        if let Some(ct) = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            facts = facts.with_content_type(ct);
        }
        let decision = policy.check_request(&facts);
        let socket = gate
            .container_socket
            .as_ref()
            .filter(|_| classified.endpoint == Endpoint::ContainerCreate);
        let record = gate.recorder.as_ref().filter(|_| decision.is_allow());
        let bound = match &decision {
            Decision::Deny { rule, .. } => {
                let rule = Some(rule.clone());
                crate::serve::discard_unread(&mut body).await;
                return Err((denied(&decision), audit_line(rule)));
            }
            Decision::NeedsBody { limit } => Some(*limit),
            Decision::Allow => {
                let recorded = record.and_then(|r| r.wants_body(&facts));
                match (socket, recorded) {
                    (Some(_), _) => Some(MAX_HELD_BODY),
                    (None, Some(limit)) => Some(limit),
                    (None, None) => None,
                }
            }
        };
        let Some(bound) = bound else {
            if let Some(r) = record {
                r.record(&facts, None);
            }
            return Ok(Request::from_parts(parts, body));
        };
        let bytes = read_bounded(&mut body, bound)
            .await
            .map_err(|e| (e, audit_line(None)))?;
        if matches!(decision, Decision::NeedsBody { .. }) {
            let decision = policy.check_body(&facts, &bytes);
            if let Decision::Deny { rule, .. } = &decision {
                let rule = Some(rule.clone());
                return Err((denied(&decision), audit_line(rule)));
            }
        } else if bytes.len() > bound {
            return Err((
                GatewayError::BadRequest(format!("request body over {bound} bytes")),
                audit_line(None),
            ));
        }
        if let Some(r) = &gate.recorder {
            r.record(&facts, Some(&bytes));
        }
        match socket {
            Some(socket) => {
                rewrite_socket_binds(&bytes, socket).map_err(|e| (e, audit_line(None)))?
            }
            None => bytes,
        }
    };
    parts.extensions.insert(HeldBody(held));
    Ok(Request::from_parts(parts, body))
}

/// The 403 for a denial.
fn denied(decision: &Decision) -> GatewayError {
    let (Decision::Deny { rule, .. }, Some(message)) = (decision, decision.denial_message()) else {
        return GatewayError::Internal("a denial without a rule".into());
    };
    GatewayError::Denied {
        rule: rule.clone(),
        message,
    }
}

/// Reads the whole body, whatever its framing, stopping after `bound + 1` bytes.
async fn read_bounded(body: &mut Incoming, bound: usize) -> Result<Bytes, GatewayError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| GatewayError::BadRequest(format!("reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            let room = (bound + 1).saturating_sub(buf.len());
            buf.extend_from_slice(&data[..data.len().min(room)]);
            if buf.len() > bound {
                break;
            }
        }
    }
    Ok(buf.freeze())
}

/// Turns a refusal into the client's answer; the audit line carries the decision.
fn refuse(
    shared: &Shared,
    error: GatewayError,
    request: Option<RefusedRequest>,
    peer: &PeerIdentity,
    trace_id: &HeaderValue,
) -> Response<ResponseBody> {
    tracing::info!(status = %error.status(), error = %error, peer = ?peer, trace_id = trace_id.to_str().unwrap_or_default(), "berth refused");
    let mut res = error.clone().into_response().map(Either::Right);
    if let (Some(audit), Some(request)) = (&shared.config.audit, request) {
        audit.record(audit_record(&error, request, peer, trace_id, res.status()));
    }
    res.headers_mut().insert("x-trace-id", trace_id.clone());
    res
}

fn audit_record(
    error: &GatewayError,
    request: RefusedRequest,
    peer: &PeerIdentity,
    trace_id: &HeaderValue,
    status: http::StatusCode,
) -> crate::audit::AuditRecord {
    let rule = match error {
        GatewayError::Denied { rule, .. } => Some(rule.clone()),
        _ => request.rule,
    };
    crate::audit::AuditRecord {
        time: crate::audit::rfc3339_now(),
        client: crate::audit::describe_peer(peer),
        method: request.method,
        path: request.path,
        decision: if matches!(error, GatewayError::Denied { .. }) {
            "deny"
        } else {
            "error"
        },
        rule,
        trace_id: String::from_utf8_lossy(trace_id.as_bytes()).into_owned(),
        status: status.as_u16(),
    }
}

/// Judges a raw hijack (attach/exec start without `Upgrade`) on the head already read:
/// `Some` gives the connection back to splice, `None` means it was refused (answered
/// with a 403 and closed).
pub(crate) async fn admit_raw(
    shared: &Shared,
    io: ClientIo,
    peer: &PeerIdentity,
    trace_id: &HeaderValue,
) -> Option<ClientIo> {
    let Some(gate) = &shared.config.policy else {
        return Some(io);
    };
    let (mut stream, prelude) = io.into_parts();
    // The head parsed when it was sniffed; if it does not now, refuse (fail closed).
    let (method, path, decision) =
        judge_raw_head(&gate.current(), &prelude, peer).unwrap_or_else(|| {
            let what = "raw hijacks whose head cannot be read".to_owned();
            let rule = "default";
            (
                String::new(),
                String::new(),
                Decision::Deny {
                    rule: rule.into(),
                    what,
                },
            )
        });
    let error = match &decision {
        Decision::Allow => {
            if let Some(r) = &gate.recorder {
                let client = client_identity(peer);
                r.record(&RequestFacts::new(&method, &path, &client), None);
            }
            return Some(ClientIo::new(stream, prelude));
        }
        Decision::Deny { .. } => denied(&decision),
        // No limit reads these bodies today; if one ever does, refuse rather than
        // splice a body nobody judged.
        Decision::NeedsBody { .. } => GatewayError::Denied {
            rule: "default".into(),
            message: format!(
                "berth policy: {method} {path} needs a body check a raw hijack cannot have"
            ),
        },
    };
    tracing::info!(status = %error.status(), error = %error, peer = ?peer, trace_id = trace_id.to_str().unwrap_or_default(), "berth refused a raw hijack");
    let status = error.status();
    if let Some(audit) = &shared.config.audit {
        let request = RefusedRequest {
            method,
            path,
            rule: None,
        };
        audit.record(audit_record(&error, request, peer, trace_id, status));
    }
    let body = serde_json::json!({ "message": error.to_string() }).to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Trace-Id: {}\r\nConnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len() + 1,
        String::from_utf8_lossy(trace_id.as_bytes()),
    );
    use tokio::io::AsyncWriteExt;
    let _ = stream.write_all(format!("{head}{body}\n").as_bytes()).await;
    let _ = stream.shutdown().await;
    None
}

/// Method, path and decision for a raw request head; `None` if it does not parse (it
/// did when it was sniffed, so this does not happen).
fn judge_raw_head(
    policy: &AccessPolicy,
    prelude: &[u8],
    peer: &PeerIdentity,
) -> Option<(String, String, Decision)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Request::new(&mut headers);
    head.parse(prelude).ok()?;
    let method = head.method?;
    let uri: http::Uri = head.path?.parse().ok()?;
    let path = uri.path();
    let client = client_identity(peer);
    let mut facts = RequestFacts::new(method, path, &client);
    if let Some(q) = uri.query() {
        facts = facts.with_query(q);
    }
    let decision = policy.check_request(&facts);
    Some((method.to_owned(), path.to_owned(), decision))
}
