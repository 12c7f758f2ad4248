//! Serve one client connection: hyper HTTP/1.1 with upgrades, after a look at the
//! first request head so that a raw hijack can take the socket instead (see
//! `forward::hijack`). `Gateway::handle` is the whole per-request stack, in order.

use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::listen::PeerIdentity;
use bytes::BytesMut;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tracing::Instrument;

use crate::classify::{classify, Classified, Exchange};
use crate::error::GatewayError;
use crate::fanout::{self, MergedBody};
use crate::forward::{self, ResponseBody};
use crate::normalize::normalize;
use crate::route::Routed;
use crate::Shared;

mod client_io;

pub(crate) use client_io::{ClientIo, ClientStream, Prefixed};

/// The request/trace id header; a client's own value is kept.
const TRACE_ID: &str = "x-trace-id";

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
        s = tokio::time::timeout(shared.config.header_read_timeout, sniff(stream)) => s,
        _ = crate::stopped(&mut shutdown) => return,
    };
    let (io, hijack) = match sniffed {
        Ok(Ok(Some(First::Request(io, hijack)))) => (io, hijack),
        Ok(Ok(Some(First::Malformed(mut stream, reason)))) => {
            Box::pin(reject_malformed(&mut stream, &reason)).await;
            return;
        }
        // Closed, failed or silent before sending a request: nothing to answer.
        Ok(Ok(None) | Err(_)) | Err(_) => return,
    };
    let io = match hijack {
        // Boxed: this future is moved whole when the connection's task is spawned.
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
    // `conn` is built inside the scope's future: built outside and moved in, it would
    // take its (large) size twice in this task's future.
    let result = crate::guest::lease::scope(async move {
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
            _ = crate::stopped(&mut shutdown) => {
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
    RawHijack { trace, target }: RawHijack,
) -> Option<ClientIo> {
    let trace = trace.unwrap_or_else(new_trace_id);
    let io = crate::admit::admit_raw(shared, io, peer, &trace).await?;
    let guest = match raw_hijack_guest(shared, &target).await {
        Some(guest) => guest,
        // Routing failed: let hyper answer with berth's error.
        None => Arc::clone(shared.router.default_guest()),
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

/// What a client is answered with: one engine's answer, or a merged one.
type ClientBody = Either<ResponseBody, MergedBody>;

/// The engine that owns the container or exec a raw hijack names.
async fn raw_hijack_guest(shared: &Shared, target: &str) -> Option<Arc<crate::guest::Guest>> {
    let uri: http::Uri = target.parse().ok()?;
    let path = normalize(&uri).path(&uri);
    match shared
        .router
        .route(&Method::POST, &uri, path, &http::HeaderMap::new())
        .await
    {
        Ok(Routed::Engine { guest, .. }) => Some(Arc::clone(guest)),
        Ok(Routed::Merged(_)) | Err(_) => None,
    }
}

/// Header blocks up to this size are accepted (`X-Registry-Config` can be tens of KiB).
const MAX_HEAD: usize = 1 << 20;

impl Shared {
    /// The per-request stack: trace id → normalize → classify → route → ready → forward,
    /// and the one place where a `GatewayError` becomes a response.
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: &PeerIdentity,
    ) -> Response<ClientBody> {
        let trace_id = trace_id(&req);
        let method = req.method().clone();
        // Only kept when an audit log wants it: no allocation on the plain path.
        let path = self
            .config
            .audit
            .is_some()
            .then(|| req.uri().path().to_owned());
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
        let req = match crate::admit::admit(&self, req, &classified, peer, &trace_id).await {
            Ok(req) => req,
            Err(refused) => return refused,
        };
        // Entering a disabled span on every poll is not free: instrument only when on.
        // The exchange future is made inside each `.await`: held in a local first, it
        // would take its size twice in this future.
        let result = if span.is_disabled() {
            self.exchange(req, &meta, &classified).await
        } else {
            self.exchange(req, &meta, &classified)
                .instrument(span.clone())
                .await
        };
        let audit = self
            .config
            .audit
            .as_ref()
            .filter(|_| method_mutates(&method));
        let mut res = match result {
            Ok(res) => res,
            Err(e) => {
                // The trace id is named here too: at the default level the span is off.
                span.in_scope(|| {
                    tracing::info!(
                        status = %e.status(),
                        error = %e,
                        trace_id = trace_id.to_str().unwrap_or_default(),
                        "berth answered"
                    )
                });
                e.into_response().map(|b| Either::Left(Either::Right(b)))
            }
        };
        if let Some(audit) = audit {
            audit.record(crate::audit::AuditRecord {
                time: crate::audit::rfc3339_now(),
                client: crate::audit::describe_peer(peer),
                method: method.to_string(),
                path: path.unwrap_or_default(),
                decision: "allow",
                rule: None,
                trace_id: String::from_utf8_lossy(trace_id.as_bytes()).into_owned(),
                status: res.status().as_u16(),
            });
        }
        res.headers_mut().insert(TRACE_ID, trace_id);
        res
    }

    /// route → ready → forward (or a merged view) for an admitted request.
    async fn exchange(
        &self,
        req: Request<Incoming>,
        meta: &crate::normalize::RequestMeta,
        classified: &Classified,
    ) -> Result<Response<ClientBody>, GatewayError> {
        let path = meta.path(req.uri());
        let routed = self
            .router
            .route(req.method(), req.uri(), path, req.headers())
            .await;
        let ready = match &routed {
            Ok(Routed::Engine { guest, .. }) => guest.ready().await,
            _ => Ok(()),
        };
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
                let res = forward::forward(guest, req, classified, &self.drain).await?;
                let res = match (after, self.router.registry()) {
                    (Some(after), Some(registry)) => {
                        Box::pin(after.record(registry, index, res)).await?
                    }
                    _ => res,
                };
                Ok(res.map(Either::Left))
            }
            // Boxed, as every rare arm: a request's future is moved whole on each
            // request, so the largest arm's size is paid by every `/_ping`.
            Routed::Merged(view) => Ok(Box::pin(fanout::answer(&self.router, view, req))
                .await?
                .map(Either::Right)),
        }
    }
}

/// Reads and drops what is left of a request body that berth answers without
/// forwarding (up to 256 KiB, for at most a second), as Go's net/http does: closing the
/// connection on unread bytes makes the client's write fail with "broken pipe" before it
/// can read the answer.
pub(crate) async fn discard_unread(body: &mut Incoming) {
    use http_body_util::BodyExt;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let mut left = 256 * 1024usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                left = left.saturating_sub(data.len());
                if left == 0 {
                    break;
                }
            }
        }
    })
    .await;
}

/// GET and HEAD only read; everything else is audited.
fn method_mutates(method: &Method) -> bool {
    method != Method::GET && method != Method::HEAD
}

fn trace_id(req: &Request<Incoming>) -> HeaderValue {
    match req.headers().get(TRACE_ID) {
        Some(v) => v.clone(),
        None => new_trace_id(),
    }
}

/// A fresh trace id: 16 hex digits, unique within the process, unlikely across runs.
fn new_trace_id() -> HeaderValue {
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

/// What the first request head on a connection turned out to be.
enum First {
    /// A request for hyper, or a raw hijack.
    Request(ClientIo, Option<RawHijack>),
    /// Bytes that are not HTTP/1.x.
    Malformed(ClientStream, String),
}

/// attach or exec start without `Upgrade`, found by the sniff.
struct RawHijack {
    /// The client's own trace id, if it sent one.
    trace: Option<HeaderValue>,
    /// The request target, for routing.
    target: String,
}

/// Answers a connection whose first bytes are not HTTP with Docker's JSON error shape,
/// then closes it (hyper would answer a bare 400 with no body).
async fn reject_malformed(stream: &mut ClientStream, reason: &str) {
    use tokio::io::AsyncWriteExt;
    let body =
        serde_json::json!({ "message": format!("malformed HTTP request: {reason}") }).to_string();
    let trace = new_trace_id();
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Trace-Id: {}\r\nConnection: close\r\n\r\n",
        body.len() + 1,
        String::from_utf8_lossy(trace.as_bytes())
    );
    let _ = stream.write_all(format!("{head}{body}\n").as_bytes()).await;
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
            Ok(httparse::Status::Complete(_)) => is_raw_hijack(&req).then(|| RawHijack {
                trace: req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(TRACE_ID))
                    .and_then(|h| HeaderValue::from_bytes(h.value).ok()),
                target: req.path.unwrap_or("/").to_owned(),
            }),
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

fn is_raw_hijack(req: &httparse::Request<'_, '_>) -> bool {
    if req.method != Some("POST") {
        return false;
    }
    let Some(Ok(uri)) = req.path.map(http::Uri::try_from) else {
        return false;
    };
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
    classify(&Method::POST, normalize(&uri).path(&uri), &headers).exchange == Exchange::Hijack
}
