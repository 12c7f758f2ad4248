//! Admission: the access-policy stage, between classify and route. Nothing of a refused
//! request reaches a guest.
//!
//! Without a policy ([`Config::policy`](crate::Config) is `None`) this stage is one
//! branch. With one, the request is judged on its head
//! ([`AccessPolicy::check_request`]); when a limit needs the body, the body is read
//! whole whatever its framing (chunked or with a length, at most the policy's bound
//! plus one byte), judged ([`AccessPolicy::check_body`]) and held: the forward stage
//! sends the held bytes with a `Content-Length` and never reads the client again
//! (`forward::HeldBody`). A body berth judges or rewrites is decoded once into the body
//! model ([`DockerBody`]): the limits judge it, a container create that bind-mounts the
//! Docker socket gets berth's own container socket in it (`admit/socket.rs`), and what
//! is held and forwarded is the model encoded again, so dockerd reads what was judged.
//! That work resolves bind sources on the filesystem, so it runs on a blocking thread,
//! within [`JUDGE_TIMEOUT`].
//!
//! Raw hijacks (attach/exec start without `Upgrade`) are judged on their head, parsed
//! once by `serve`'s sniff, before the socket is spliced ([`admit_raw`]); they carry no
//! body a limit reads.
//!
//! A refusal is a [`GatewayError`]; `serve` answers and audits it like any other.

mod socket;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use berth_policy::{
    AccessPolicy, BodyKind, ClientIdentity, Decision, DockerBody, PolicyRecorder, RequestFacts,
};
use bytes::{Bytes, BytesMut};
use http::{Request, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{discard_unread, HeldBody};
use crate::classify::{Classified, Endpoint};
use crate::conn::PeerIdentity;
use crate::error::GatewayError;

/// Create bodies read only for the socket rewrite (no limit judges them) are held up
/// to this size, as the forward stage holds bodies it edits.
const MAX_HELD_BODY: usize = 16 << 20;

/// How long judging and rewriting one body may take: resolving a bind source on a hung
/// mount must not hold the request (or, on a runtime thread, every client) forever.
const JUDGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The policy a gateway enforces, swappable while it serves (SIGHUP), with what goes
/// with it: an optional recorder and the container socket.
#[derive(Debug)]
pub struct PolicyGate {
    current: RwLock<Arc<AccessPolicy>>,
    recorder: Option<Arc<PolicyRecorder>>,
    container_socket: Option<Arc<ContainerSocket>>,
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
        self.container_socket = Some(Arc::new(ContainerSocket { served, replaced }));
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
        PeerIdentity::Unix { uid, gid, pid } | PeerIdentity::TenantSocket { uid, gid, pid, .. } => {
            ClientIdentity::Unix {
                uid: *uid,
                gid: *gid,
                pid: Some(*pid),
            }
        }
        PeerIdentity::Tls { subject, .. } => ClientIdentity::Tls {
            subject: subject.clone(),
        },
        PeerIdentity::Internal => ClientIdentity::Internal,
        PeerIdentity::Tcp { .. } | PeerIdentity::Unknown => ClientIdentity::Anonymous,
    }
}

/// Judges `req` under `gate` (none: everything passes, at the cost of one branch):
/// `Ok` with the request to forward (its body held if it was read), or `Err` with
/// the refusal (403, or 400 for an unreadable body).
pub(crate) async fn admit(
    gate: Option<&PolicyGate>,
    req: Request<Incoming>,
    classified: &Classified,
    peer: &PeerIdentity,
    tenant: Option<&str>,
) -> Result<Request<Incoming>, GatewayError> {
    let Some(gate) = gate else {
        return Ok(req);
    };
    // Boxed (docs/conventions.md, "Futures"): only runs with a policy.
    Box::pin(judge(gate, req, classified, peer, tenant)).await
}

/// Judges a request on its head alone, for the framed pass-through (`serve/framed.rs`,
/// the admin's own requests): `true` when `gate` lets it pass without its body being
/// read; `false` when it needs more than its head (a limit or the recorder reads the
/// body, a create's socket binds may be rewritten) or is refused: hyper's path then
/// judges it again, whole, and answers. Nothing is recorded here: a request the framed
/// path still hands to hyper must be recorded once, there ([`record_head`]).
pub(crate) fn admit_head(
    gate: &PolicyGate,
    method: &str,
    uri: &Uri,
    content_type: Option<&str>,
    classified: &Classified,
    peer: &PeerIdentity,
) -> bool {
    let client = client_identity(peer);
    let facts = head_facts(method, uri, content_type, &client);
    gate.current().check_request(&facts).is_allow()
        && !(gate.container_socket.is_some() && classified.endpoint == Endpoint::ContainerCreate)
        && gate
            .recorder
            .as_ref()
            .is_none_or(|r| r.wants_body(&facts).is_none())
}

/// Records a request [`admit_head`] let pass, in record mode, as [`admit`] records it.
pub(crate) fn record_head(
    gate: &PolicyGate,
    method: &str,
    uri: &Uri,
    content_type: Option<&str>,
    peer: &PeerIdentity,
) {
    if let Some(r) = &gate.recorder {
        let client = client_identity(peer);
        r.record(&head_facts(method, uri, content_type, &client), None);
    }
}

fn head_facts<'a>(
    method: &'a str,
    uri: &'a Uri,
    content_type: Option<&'a str>,
    client: &'a ClientIdentity,
) -> RequestFacts<'a> {
    let mut facts = RequestFacts::new(method, uri.path(), client);
    if let Some(q) = uri.query() {
        facts = facts.with_query(q);
    }
    if let Some(ct) = content_type {
        facts = facts.with_content_type(ct);
    }
    facts
}

async fn judge(
    gate: &PolicyGate,
    req: Request<Incoming>,
    classified: &Classified,
    peer: &PeerIdentity,
    tenant: Option<&str>,
) -> Result<Request<Incoming>, GatewayError> {
    let policy = gate.current();
    let client = client_identity(peer);
    let (mut parts, mut body) = req.into_parts();
    let held = {
        let mut facts = RequestFacts::new(parts.method.as_str(), parts.uri.path(), &client);
        if let Some(t) = tenant {
            facts = facts.with_tenant(t);
        }
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
            Decision::Deny { .. } => {
                discard_unread(&mut body).await;
                return Err(denied(&decision));
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
        let bytes = read_bounded(&mut body, bound).await?;
        let judgement = BodyJudgement {
            policy: Arc::clone(&policy),
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: facts.query.map(str::to_owned),
            content_type: facts.content_type.map(str::to_owned),
            client: client.clone(),
            tenant: tenant.map(str::to_owned),
            needs_body: matches!(decision, Decision::NeedsBody { .. }),
            bound,
            socket: socket.cloned(),
        };
        let judged = tokio::task::spawn_blocking({
            let bytes = bytes.clone();
            move || judgement.run(bytes)
        });
        let held = match tokio::time::timeout(JUDGE_TIMEOUT, judged).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => {
                return Err(GatewayError::Internal(format!(
                    "judging a request body: {e}"
                )))
            }
            Err(_) => {
                return Err(GatewayError::BadRequest(format!(
                    "berth: the request body could not be judged within {JUDGE_TIMEOUT:?} (a bind source on a hung filesystem?)"
                )))
            }
        };
        if let Some(r) = &gate.recorder {
            r.record(&facts, Some(&bytes));
        }
        held
    };
    parts.extensions.insert(HeldBody(held));
    Ok(Request::from_parts(parts, body))
}

/// A body to judge, rewrite and encode, with what that needs, owned: it runs on a
/// blocking thread.
struct BodyJudgement {
    policy: Arc<AccessPolicy>,
    method: String,
    path: String,
    query: Option<String>,
    content_type: Option<String>,
    client: ClientIdentity,
    tenant: Option<String>,
    /// The policy answered `NeedsBody`.
    needs_body: bool,
    bound: usize,
    /// The create's Docker-socket binds are rewritten.
    socket: Option<Arc<ContainerSocket>>,
}

impl BodyJudgement {
    /// The body to forward, or the refusal (with the rule that refused).
    fn run(self, bytes: Bytes) -> Result<Bytes, GatewayError> {
        let mut facts = RequestFacts::new(&self.method, &self.path, &self.client);
        facts.tenant = self.tenant.as_deref();
        facts.query = self.query.as_deref();
        facts.content_type = self.content_type.as_deref();
        let parsed = BodyKind::of(&self.method, &self.path).map(|k| DockerBody::parse(k, &bytes));
        if self.needs_body {
            let decision = match &parsed {
                Some(Ok(model)) => self.policy.check_parsed(&facts, model),
                // Unreadable (or not modelled): the policy refuses it with its rule.
                _ => self.policy.check_body(&facts, &bytes),
            };
            if decision.is_deny() {
                return Err(denied(&decision));
            }
        } else if bytes.len() > self.bound {
            return Err(GatewayError::BadRequest(format!(
                "request body over {} bytes",
                self.bound
            )));
        }
        if !self.needs_body && self.socket.is_none() {
            return Ok(bytes); // only recorded: nothing was decided on it
        }
        match parsed {
            Some(Ok(mut model)) => {
                if let Some(socket) = &self.socket {
                    socket::rewrite_socket_binds(&mut model, socket);
                }
                Ok(Bytes::from(model.encode()))
            }
            Some(Err(e)) => Err(GatewayError::BadRequest(format!(
                "berth: unreadable request body: {e}"
            ))),
            None => Ok(bytes),
        }
    }
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

/// Judges a raw hijack (attach/exec start without `Upgrade`, always a `POST`) on its
/// request target, parsed once when the head was sniffed: `Err` is the refusal.
pub(crate) fn admit_raw(
    gate: Option<&PolicyGate>,
    target: &Uri,
    peer: &PeerIdentity,
) -> Result<(), GatewayError> {
    let Some(gate) = gate else {
        return Ok(());
    };
    let (method, path) = ("POST", target.path());
    let client = client_identity(peer);
    let mut facts = RequestFacts::new(method, path, &client);
    if let Some(q) = target.query() {
        facts = facts.with_query(q);
    }
    let decision = gate.current().check_request(&facts);
    match &decision {
        Decision::Allow => {
            if let Some(r) = &gate.recorder {
                r.record(&RequestFacts::new(method, path, &client), None);
            }
            Ok(())
        }
        Decision::Deny { .. } => Err(denied(&decision)),
        // No limit reads these bodies today; if one ever does, refuse rather than
        // splice a body nobody judged.
        Decision::NeedsBody { .. } => Err(GatewayError::Denied {
            rule: "default".into(),
            message: format!(
                "berth policy: {method} {path} needs a body check a raw hijack cannot have"
            ),
        }),
    }
}
