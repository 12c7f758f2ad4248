//! Serve one client connection: hyper HTTP/1.1 with upgrades, after a look at the
//! first request head so that a raw hijack can take the socket instead (see
//! `forward::hijack`).
//!
//! This is the one composer of the request path: [`Shared::handle`] runs the stages in
//! travel order (normalize, classify, admit, route, readiness, host work around
//! forward, or fanout), each of which knows nothing of the others, and is the one
//! place where a refusal or failure becomes an answer and an audit line.

mod framed;

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use bytes::BytesMut;
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tracing::Instrument;

use crate::admit::PolicyGate;
use crate::body::{discard_unread, ClientBody, HeldBody};
use crate::classify::{classify, Classified, Exchange};
use crate::conn::{ClientIo, ClientStream, PeerIdentity};
use crate::drain::{stopped, Drain};
use crate::error::GatewayError;
use crate::metrics::{GatewayMetrics, Kind};
use crate::normalize::{normalize, RequestMeta};
use crate::route::EngineRouter;
use crate::route::Routed;
use crate::tenant::{Scoped, Tenant, TenantSet, Who};
use crate::trace::{new_trace_id, trace_id, TRACE_ID};
use crate::{admit, audit, fanout, forward, guest, host, metrics, tenant};

/// What every connection task shares: the gateway's settings and engines.
#[derive(Debug)]
pub(crate) struct Shared {
    /// How long a client may take to send its first request head.
    pub(crate) header_read_timeout: std::time::Duration,
    /// Where requests are recorded, if anywhere.
    pub(crate) audit: Option<audit::AuditLog>,
    /// The access policy, if any.
    pub(crate) policy: Option<Arc<PolicyGate>>,
    /// Where exchanges and policy decisions are counted, if anywhere.
    pub(crate) metrics: Option<Arc<GatewayMetrics>>,
    /// Tenants, if any.
    pub(crate) tenants: Option<Arc<TenantSet>>,
    pub(crate) router: EngineRouter,
    pub(crate) drain: Drain,
    /// Plain pass-through exchanges are framed by berth (`serve/framed.rs`), not hyper.
    pub(crate) framed_pass_through: bool,
}

impl Shared {
    /// Whether a connection starts on the framed path: not for TLS (the framed path
    /// moves a socket's bytes as they are), nor for a client that is not the admin (a
    /// tenant's every request is scoped; a refused one is refused). A policy and
    /// several engines are decided per request there (`serve/framed.rs`).
    fn frames(&self, stream: &ClientStream, peer: &PeerIdentity) -> bool {
        self.framed_pass_through
            && matches!(stream, ClientStream::Plain(_))
            && self
                .tenants
                .as_ref()
                .is_none_or(|set| matches!(set.who(peer), Who::Admin))
    }
}

/// Heads larger than this are left to hyper, which refuses them.
const MAX_SNIFF: usize = 64 * 1024;

/// Serves one accepted connection until it closes or the gateway drains.
pub(crate) async fn serve_connection(
    shared: Arc<Shared>,
    stream: ClientStream,
    peer: PeerIdentity,
) {
    let _guard = shared.drain.guard();
    let mut shutdown = shared.drain.signal();
    let sniffed = tokio::select! {
        s = tokio::time::timeout(shared.header_read_timeout, sniff(stream)) => s,
        _ = stopped(&mut shutdown) => return,
    };
    let (io, hijack) = match sniffed {
        Ok(Ok(Some(First::Request(io, hijack)))) => (io, hijack),
        Ok(Ok(Some(First::Malformed(mut stream, reason)))) => {
            let error = GatewayError::BadRequest(format!("malformed HTTP request: {reason}"));
            Box::pin(answer_raw(&mut stream, &error, &new_trace_id())).await;
            return;
        }
        // Closed, failed or silent before sending a request: nothing to answer.
        Ok(Ok(None) | Err(_)) | Err(_) => return,
    };
    let io = match hijack {
        None if shared.frames(io.get_ref(), &peer) => {
            let (stream, prefix) = io.into_parts();
            let ClientStream::Plain(socket) = stream else {
                unreachable!("frames() checked the stream")
            };
            // Boxed: the framed loop's state stays out of every connection's task
            // (idle hijacks are many and small: docs/conventions.md, "Futures").
            let framed = Box::pin(shared.serve_framed(socket, prefix.into(), &peer, &mut shutdown));
            match framed.await {
                framed::Framed::Ended => return,
                framed::Framed::HandOver(socket, rest) => {
                    ClientIo::new(ClientStream::Plain(socket), rest.freeze())
                }
            }
        }
        // Boxed (docs/conventions.md, "Futures").
        Some(raw) => match Box::pin(raw_hijack(&shared, io, &peer, raw)).await {
            Some(io) => io,
            None => return,
        },
        None => io,
    };

    let handler = Arc::clone(&shared);
    let peer = Arc::new(peer);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&handler);
        let peer = Arc::clone(&peer);
        async move { Ok::<_, Infallible>(shared.handle(req, &peer).await) }
    });
    // No header-read timer per request: it costs a timer-wheel entry and two clock reads
    // on every exchange; the first head is bounded by the sniff above, and dockerd keeps
    // idle keep-alive connections open indefinitely too.
    // The guest connection this client connection holds lives as long as `conn` runs.
    // `conn` is built inside the scope's future (conventions, "Futures").
    let result = guest::lease::scope(async move {
        let conn = http1::Builder::new()
            .max_buf_size(MAX_HEAD.max(MAX_SNIFF * 2))
            // dockerd's responses carry their own Date: keep it, add none. Header names
            // go out lower-case (clients match them case-insensitively: notes 1.7);
            // re-casing every header cost measurable CPU per request.
            .auto_date_header(false)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = stopped(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Splices a raw hijack (attach/exec without `Upgrade`) to its engine; gives the
/// connection back when the engine is unavailable, for hyper to answer with the error.
async fn raw_hijack(
    shared: &Arc<Shared>,
    io: ClientIo,
    peer: &PeerIdentity,
    raw: Box<RawHijack>,
) -> Option<ClientIo> {
    let RawHijack {
        trace,
        target,
        meta,
        classified,
    } = *raw;
    let trace = trace.unwrap_or_else(new_trace_id);
    let admitted = match shared.tenants.as_deref().map(|set| set.who(peer)) {
        None | Some(Who::Admin) => admit::admit_raw(shared.policy.as_deref(), &target, peer),
        Some(Who::Refused) => Err(tenant::untenanted()),
        // A tenant's hijack must be scoped like any of its requests; berth cannot edit
        // a head it splices as sent.
        Some(Who::Tenant(t)) => Err(tenant::refused(
            &t,
            "attach and exec need an Upgrade header (as the docker CLI sends) for tenants",
        )),
    };
    if shared.policy.is_some() {
        count_decision(shared.metrics.as_deref(), admitted.as_ref().err());
    }
    if let Err(refused) = admitted {
        tracing::info!(status = %refused.status(), error = %refused, peer = ?peer, trace_id = trace.to_str().unwrap_or_default(), "berth refused a raw hijack");
        if let Some(audit) = &shared.audit {
            let record = Decision::refused(&refused);
            audit.record(record.audit_record(
                "POST",
                target.path(),
                peer,
                trace.as_bytes(),
                refused.status(),
            ));
        }
        let (mut stream, _) = io.into_parts();
        answer_raw(&mut stream, &refused, &trace).await;
        return None;
    }
    let guest = match shared
        .router
        .route(
            &classified,
            &Method::POST,
            &target,
            meta.path(&target),
            &http::HeaderMap::new(),
            None,
        )
        .await
    {
        Ok(Routed::Engine { guest, .. }) => Arc::clone(guest),
        // Routing failed: let hyper answer with berth's error.
        Ok(Routed::Merged(_)) | Err(_) => Arc::clone(shared.router.default_guest()),
    };
    match forward::hijack::splice_raw(&guest, io, trace.as_bytes()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "raw hijack ended with an error");
            None
        }
        // The guest is unavailable: let hyper answer with a proper error.
        Err(io) => Some(io),
    }
}

/// Header blocks up to this size are accepted (`X-Registry-Config` can be tens of KiB).
const MAX_HEAD: usize = 1 << 20;

impl Shared {
    /// The per-request stack: trace id → normalize → classify → admit → route → ready →
    /// host work around forward (or fanout), and the one place where a
    /// `GatewayError` becomes a response and a request becomes an audit line.
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: &PeerIdentity,
    ) -> Response<ClientBody> {
        let trace_id = trace_id(req.headers());
        let method = req.method().clone();
        // Only kept when an audit log wants it: no allocation on the plain path.
        let path = self.audit.is_some().then(|| req.uri().path().to_owned());
        let meta = normalize(req.uri());
        let classified: Classified = classify(req.method(), meta.path(req.uri()), req.headers());
        let span = tracing::debug_span!(
            "request",
            trace_id = trace_id.to_str().unwrap_or_default(),
            method = %req.method(),
            path = meta.path(req.uri()),
            endpoint = ?classified.endpoint,
            peer = ?peer,
        );
        let who = self.tenants.as_ref().map(|set| (set, set.who(peer)));
        let admitted = match &who {
            Some((_, Who::Refused)) => {
                let mut req = req;
                Box::pin(discard_unread(req.body_mut())).await;
                Err(tenant::untenanted())
            }
            Some((_, Who::Tenant(t))) => {
                admit::admit(
                    self.policy.as_deref(),
                    req,
                    &classified,
                    peer,
                    Some(t.name()),
                )
                .await
            }
            _ => admit::admit(self.policy.as_deref(), req, &classified, peer, None).await,
        };
        if self.policy.is_some() {
            count_decision(self.metrics.as_deref(), admitted.as_ref().err());
        }
        let tenant = match who {
            Some((set, Who::Tenant(t))) => Some((Arc::clone(set), t)),
            _ => None,
        };
        let (result, refused) = match admitted {
            // A tenant's request is scoped by the tenant stage instead of routed.
            Ok(req) if tenant.is_some() => {
                let (set, t) = tenant.unwrap_or_else(|| unreachable!());
                (
                    Box::pin(self.tenant_exchange(set, t, req, &meta))
                        .instrument(span.clone())
                        .await,
                    false,
                )
            }
            // Entering a disabled span on every poll is not free: instrument only
            // when on. The exchange future is made inside each `.await` (conventions,
            // "Futures").
            Ok(req) if span.is_disabled() => (self.exchange(req, &meta, &classified).await, false),
            Ok(req) => (
                self.exchange(req, &meta, &classified)
                    .instrument(span.clone())
                    .await,
                false,
            ),
            Err(e) => {
                tracing::info!(status = %e.status(), error = %e, peer = ?peer, trace_id = trace_id.to_str().unwrap_or_default(), "berth refused");
                (Err(e), true)
            }
        };
        let (mut res, decision) = match result {
            Ok(res) => (res, Decision::Allow),
            Err(e) => {
                let decision = if refused {
                    Decision::refused(&e)
                } else {
                    span.in_scope(|| log_answered(&e, trace_id.to_str().unwrap_or_default()));
                    Decision::Allow
                };
                (
                    e.into_response().map(|b| Either::Left(Either::Right(b))),
                    decision,
                )
            }
        };
        // Every refusal is audited; of what passed, what may change something.
        if let Some(audit) = self
            .audit
            .as_ref()
            .filter(|_| refused || method_mutates(&method))
        {
            let path = path.as_deref().unwrap_or_default();
            audit.record(decision.audit_record(
                method.as_str(),
                path,
                peer,
                trace_id.as_bytes(),
                res.status(),
            ));
        }
        res.headers_mut().insert(TRACE_ID, trace_id);
        res
    }

    /// A tenant's request: scoped by the tenant stage, then host work around forward on
    /// the default engine, and the answer mapped back into the tenant's names.
    async fn tenant_exchange(
        &self,
        set: Arc<TenantSet>,
        tenant: Arc<Tenant>,
        mut req: Request<Incoming>,
        meta: &RequestMeta,
    ) -> Result<Response<ClientBody>, GatewayError> {
        let guest = self.router.default_guest();
        if let Err(e) = guest.ready().await {
            discard_unread(req.body_mut()).await;
            return Err(e);
        }
        let (req, answer) = match tenant::scope(&set, &tenant, guest, req, meta).await? {
            Scoped::Answer(res) => return Ok(res.map(Either::Left)),
            Scoped::Forward(req, answer) => (req, answer),
        };
        let meta = normalize(req.uri());
        let classified = classify(req.method(), meta.path(req.uri()), req.headers());
        let path = meta.path(req.uri()).to_owned();
        let res = match host::plan(guest, &classified, &path, None) {
            None => forward::forward(guest, req, &classified, &self.drain).await?,
            Some(work) => {
                let req = work.prepare(guest, req).await?;
                let res = forward::forward(guest, req, &classified, &self.drain).await?;
                work.finish(guest, None, res).await?
            }
        };
        answer.finish(res).await
    }

    /// route → ready → host work around forward (or a merged view) for an admitted
    /// request.
    async fn exchange(
        &self,
        req: Request<Incoming>,
        meta: &RequestMeta,
        classified: &Classified,
    ) -> Result<Response<ClientBody>, GatewayError> {
        let placed = crate::route::placed_by_body(
            &self.router,
            classified,
            req.method(),
            meta.path(req.uri()),
            req.uri().query(),
        );
        let req = match placed {
            // Boxed, as every rare arm (docs/conventions.md, "Futures").
            Some(_) => Box::pin(crate::route::hold_body(req)).await?,
            None => req,
        };
        let path = meta.path(req.uri());
        let held = req.extensions().get::<HeldBody>().map(|h| &h.0);
        let routed = self
            .router
            .route(
                classified,
                req.method(),
                req.uri(),
                path,
                req.headers(),
                held,
            )
            .await;
        let ready = match &routed {
            Ok(Routed::Engine { guest, .. }) => guest.ready().await,
            _ => Ok(()),
        };
        // An engine that could not be made ready answers through berth: count it.
        if let (Ok(Routed::Engine { guest, .. }), Err(e)) = (&routed, &ready) {
            if let Some(record) = guest
                .meter()
                .and_then(|m| m.begin(Kind::of(classified, req.method())))
            {
                record.answered(e.status());
            }
        }
        let routed = match (routed, ready) {
            (Ok(routed), Ok(())) => routed,
            (Err(e), _) | (_, Err(e)) => {
                Box::pin(discard_unread(&mut req.into_body())).await;
                return Err(e);
            }
        };
        match routed {
            Routed::Engine {
                index,
                guest,
                after,
            } => {
                let work = host::plan(guest, classified, path, after.map(|after| (index, after)));
                let Some(work) = work else {
                    let res = forward::forward(guest, req, classified, &self.drain).await?;
                    return Ok(res.map(Either::Left));
                };
                // Boxed, as every rare arm (docs/conventions.md, "Futures").
                let res = Box::pin(async {
                    let req = work.prepare(guest, req).await?;
                    let res = forward::forward(guest, req, classified, &self.drain).await?;
                    work.finish(guest, self.router.registry(), res).await
                })
                .await?;
                Ok(res.map(Either::Left))
            }
            Routed::Merged(view) => {
                let record = self.metrics.as_ref().and_then(|m| m.merged_record());
                let answer = Box::pin(fanout::answer(self.router.guests(), view, req)).await;
                Ok(metrics::merged(answer, record)?.map(Either::Right))
            }
        }
    }
}

/// Counts what the policy decided (`refused`: the error admission answered with).
fn count_decision(metrics: Option<&GatewayMetrics>, refused: Option<&GatewayError>) {
    match (metrics, refused) {
        (None, _) => {}
        (Some(m), None) => m.decided(true, ""),
        (Some(m), Some(GatewayError::Denied { rule, .. })) => m.decided(false, rule),
        // Not a decision: a body admission could not read.
        (Some(_), Some(_)) => {}
    }
}

/// What admission decided, as the audit log writes it.
enum Decision {
    Allow,
    /// The policy refused (with the rule that did).
    Deny(String),
    /// Admission could not judge (an unreadable body).
    Error,
}

impl Decision {
    fn refused(error: &GatewayError) -> Self {
        match error {
            GatewayError::Denied { rule, .. } => Self::Deny(rule.clone()),
            _ => Self::Error,
        }
    }

    fn audit_record(
        self,
        method: &str,
        path: &str,
        peer: &PeerIdentity,
        trace_id: &[u8],
        status: http::StatusCode,
    ) -> audit::AuditRecord {
        let (decision, rule) = match self {
            Self::Allow => ("allow", None),
            Self::Deny(rule) => ("deny", Some(rule)),
            Self::Error => ("error", None),
        };
        audit::AuditRecord {
            time: audit::rfc3339_now(),
            client: audit::describe_peer(peer),
            method: method.to_owned(),
            path: path.to_owned(),
            decision,
            rule,
            trace_id: String::from_utf8_lossy(trace_id).into_owned(),
            status: status.as_u16(),
        }
    }
}

/// The log line of an error berth answered (not a refusal). The trace id is named here
/// too: at the default level the request span is off.
fn log_answered(e: &GatewayError, trace_id: &str) {
    tracing::info!(
        status = %e.status(),
        error = %e,
        trace_id,
        "berth answered"
    );
}

/// GET and HEAD only read; everything else is audited.
fn method_mutates(method: &Method) -> bool {
    method != Method::GET && method != Method::HEAD
}

/// What the first request head on a connection turned out to be.
enum First {
    /// A request for hyper, or a raw hijack.
    /// (The raw hijack is boxed: rare, and the connection's future holds this.)
    Request(ClientIo, Option<Box<RawHijack>>),
    /// Bytes that are not HTTP/1.x.
    Malformed(ClientStream, String),
}

/// attach or exec start without `Upgrade`, found by the sniff.
struct RawHijack {
    /// The client's own trace id, if it sent one.
    trace: Option<HeaderValue>,
    /// The request target, parsed once: admitted and routed on.
    target: Uri,
    /// Its version prefix, split off once.
    meta: RequestMeta,
    /// Its classification (routing reads it).
    classified: Classified,
}

/// Answers a connection hyper does not serve with berth's error, then closes it.
async fn answer_raw(stream: &mut ClientStream, error: &GatewayError, trace_id: &HeaderValue) {
    use tokio::io::AsyncWriteExt;
    let _ = stream
        .write_all(&error.to_raw_response(trace_id.as_bytes(), true))
        .await;
    let _ = stream.shutdown().await;
}

/// Reads until the first request head is complete; tells whether it is a raw hijack.
async fn sniff(mut stream: ClientStream) -> io::Result<Option<First>> {
    let mut buf = BytesMut::with_capacity(4096);
    // Usually the request came with the connection: read it at once, so that the
    // first read neither waits for the reactor nor arms the sniff's timeout (armed
    // only when this future is pending; on an idle gateway arming it also wakes the
    // reactor's thread through its eventfd).
    let mut arrived = stream.try_read_buf(&mut buf)?;
    loop {
        let n = match arrived.take() {
            Some(n) => n,
            None => stream.read_buf(&mut buf).await?,
        };
        if n == 0 {
            return Ok(None);
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let hijack = match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => raw_hijack_of(&req),
            Ok(httparse::Status::Partial) if buf.len() < MAX_SNIFF => continue,
            // Beyond what berth sniffs: hyper applies its own limits.
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => None,
            Err(e) => return Ok(Some(First::Malformed(stream, e.to_string()))),
        };
        return Ok(Some(First::Request(
            ClientIo::new(stream, buf.freeze()),
            hijack,
        )));
    }
}

/// The raw hijack `req` is, if it is one (attach or exec start, `POST`, no `Upgrade`).
fn raw_hijack_of(req: &httparse::Request<'_, '_>) -> Option<Box<RawHijack>> {
    if req.method != Some("POST") {
        return None;
    }
    let target = Uri::try_from(req.path?).ok()?;
    let headers = req
        .headers
        .iter()
        .filter_map(|h| {
            Some((
                http::HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                HeaderValue::from_bytes(h.value).ok()?,
            ))
        })
        .collect();
    let meta = normalize(&target);
    let classified = classify(&Method::POST, meta.path(&target), &headers);
    (classified.exchange == Exchange::Hijack).then(|| {
        Box::new(RawHijack {
            trace: headers.get(TRACE_ID).cloned(),
            target,
            meta,
            classified,
        })
    })
}
