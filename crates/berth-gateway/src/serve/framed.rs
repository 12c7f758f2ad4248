//! A client connection's plain pass-through exchanges, framed by berth
//! (`forward::framed`) instead of hyper, for as long as they are plain.
//!
//! Each request head is parsed in place ([`crate::framing`]) and seen by the same
//! stages as in [`Shared::handle`] (trace id, normalize, classify, route, readiness;
//! the audit line). The first request that needs more than pass-through (an upgrade,
//! a hijack, host work, a merged view, `Expect`, HTTP/1.0, a target not in origin
//! form, an over-long head, a policy that needs the body or refuses, a create placed by
//! its body) hands the connection, with that request still unread, to hyper for the
//! rest of its life. A policy judges each request on its head here
//! (`admit::admit_head`) as hyper's path would. TLS connections and tenants' are
//! hyper's from the start (`Shared::frames`).

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use berth_guest::LeanSocket;
use bytes::BytesMut;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use tokio::sync::watch;
use tracing::Instrument;

use super::{log_answered, Decision, Shared, MAX_SNIFF};
use crate::admit;
use crate::classify::{classify, Exchange};
use crate::conn::PeerIdentity;
use crate::drain::stopped;
use crate::error::GatewayError;
use crate::forward::framed::{self, Failed, Scratch};
use crate::framing::{self, FramingError, Head};
use crate::guest::lease::StreamLease;
use crate::metrics::Kind;
use crate::normalize::normalize;
use crate::route::Routed;
use crate::trace::{TraceId, TRACE_ID_NAME};

/// What a framed client connection became.
pub(super) enum Framed {
    /// It ended (closed, failed, answered with an error, or the gateway drains).
    Ended,
    /// hyper serves the rest: the socket and the bytes read from it, a request head
    /// first.
    HandOver(LeanSocket, BytesMut),
}

/// One request's head as the stages read it.
struct RequestLine {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Shared {
    /// Serves `socket`'s requests (the first one's head already in `buf`) until one
    /// is not plain pass-through.
    pub(super) async fn serve_framed(
        self: &Arc<Self>,
        socket: LeanSocket,
        mut buf: BytesMut,
        peer: &PeerIdentity,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Framed {
        let mut head = Head::default();
        let mut scratch = Scratch::default();
        let mut held: Option<StreamLease> = None;
        let mut last_uri: Option<Uri> = None;
        // One wait for the stop signal per connection, not one per read: it stays
        // registered with the watch while the connection lives, and once registered it
        // is polled again only when `probe` sees the signal change (polling it costs
        // a lock and a coop budget unit on every idle read).
        let probe = shutdown.clone();
        let mut stop = pin!(stopped(shutdown));
        let mut stop_registered = false;
        loop {
            match framing::parse_request(&buf, &mut head) {
                Ok(true) => {}
                Ok(false) if buf.len() >= MAX_SNIFF => return Framed::HandOver(socket, buf),
                Ok(false) => {
                    buf.reserve(4096);
                    let read = poll_fn(|cx| {
                        if let Poll::Ready(read) = socket.poll_read_buf(cx, &mut buf) {
                            return Poll::Ready(Some(read));
                        }
                        if !stop_registered || probe.has_changed().unwrap_or(true) {
                            stop_registered = true;
                            if stop.as_mut().poll(cx).is_ready() {
                                return Poll::Ready(None);
                            }
                        }
                        Poll::Pending
                    })
                    .await;
                    match read {
                        Some(Ok(n)) if n > 0 => continue,
                        _ => return Framed::Ended,
                    }
                }
                // hyper answers these as it always did (431, 414).
                Err(FramingError::TooManyHeaders | FramingError::TargetTooLong) => {
                    return Framed::HandOver(socket, buf)
                }
                Err(e) => {
                    let error = GatewayError::BadRequest(format!("malformed HTTP request: {e}"));
                    answer_and_close(socket, &error, TraceId::of(None).as_bytes()).await;
                    return Framed::Ended;
                }
            }
            let Some(line) = plain_request(&buf, &head, &mut last_uri) else {
                return Framed::HandOver(socket, buf);
            };
            let trace_id = TraceId::of(line.headers.get(&TRACE_ID_NAME));
            let meta = normalize(&line.uri);
            let path = meta.path(&line.uri);
            let classified = classify(&line.method, path, &line.headers);
            if !matches!(
                classified.exchange,
                Exchange::Ordinary | Exchange::StreamedUpload
            ) {
                return Framed::HandOver(socket, buf);
            }
            // A policy that needs more than the head, or refuses, and a create placed
            // by its body (several engines) are hyper's.
            let content_type = self
                .policy
                .as_ref()
                .and_then(|_| header_str(&buf, &head, b"content-type"));
            if self.policy.as_deref().is_some_and(|gate| {
                !admit::admit_head(
                    gate,
                    line.method.as_str(),
                    &line.uri,
                    content_type,
                    &classified,
                    peer,
                )
            }) || crate::route::placed_by_body(
                &self.router,
                &classified,
                &line.method,
                path,
                line.uri.query(),
            )
            .is_some()
            {
                return Framed::HandOver(socket, buf);
            }
            let routed = self
                .router
                .route(
                    &classified,
                    &line.method,
                    &line.uri,
                    path,
                    &line.headers,
                    None,
                )
                .await;
            let guest = match routed {
                Ok(Routed::Engine {
                    guest,
                    index,
                    after,
                }) => {
                    let work =
                        crate::host::plan(guest, &classified, path, after.map(|a| (index, a)));
                    // A TLS stream or SSH channel cannot be spliced: hyper's.
                    if work.is_some() || !guest.connector().streams_are_sockets() {
                        return Framed::HandOver(socket, buf);
                    }
                    Ok(Arc::clone(guest))
                }
                Ok(Routed::Merged(_)) => return Framed::HandOver(socket, buf),
                Err(e) => Err(e),
            };
            // Framed from here on: what admission decided is recorded and counted
            // once, as hyper's path does.
            if let Some(gate) = &self.policy {
                let content_type = header_str(&buf, &head, b"content-type");
                admit::record_head(gate, line.method.as_str(), &line.uri, content_type, peer);
                super::count_decision(self.metrics.as_deref(), None);
            }
            let guest = match guest {
                Ok(guest) => match guest.ready().await {
                    Ok(()) => guest,
                    Err(e) => {
                        // An engine that could not be made ready answers through berth.
                        if let Some(r) = guest
                            .meter()
                            .and_then(|m| m.begin(Kind::of(&classified, &line.method)))
                        {
                            r.answered(e.status());
                        }
                        if !self
                            .answered_unread(&socket, &mut buf, &head, &line, peer, &trace_id, e)
                            .await
                        {
                            return Framed::Ended;
                        }
                        continue;
                    }
                },
                Err(e) => {
                    if !self
                        .answered_unread(&socket, &mut buf, &head, &line, peer, &trace_id, e)
                        .await
                    {
                        return Framed::Ended;
                    }
                    continue;
                }
            };
            let span = tracing::debug_span!(
                "request",
                trace_id = trace_id.as_str(),
                method = %line.method,
                path,
                endpoint = ?classified.endpoint,
                peer = ?peer,
            );
            let deadline = classified
                .head_deadline_applies(&line.method)
                .then_some(guest.timeouts().head);
            let record = guest
                .meter()
                .and_then(|m| m.begin(Kind::of(&classified, &line.method)));
            let exchange = async {
                // Uploads keep an idle managed engine up while their body flows.
                let _activity = matches!(classified.exchange, Exchange::StreamedUpload)
                    .then(|| guest.activity().begin());
                framed::exchange(
                    &guest,
                    &mut held,
                    &socket,
                    &mut buf,
                    &head,
                    trace_id.as_bytes(),
                    deadline,
                    &mut scratch,
                )
                .await
            };
            let result = if span.is_disabled() {
                exchange.await
            } else {
                exchange.instrument(span.clone()).await
            };
            match result {
                Ok(done) => {
                    let status = StatusCode::from_u16(done.status).unwrap_or(StatusCode::OK);
                    if let Some(r) = &record {
                        r.answered(status);
                        r.received(done.received);
                        r.sent(done.sent);
                    }
                    self.audit_framed(&line, peer, &trace_id, status);
                    if !done.keep_alive {
                        return Framed::Ended;
                    }
                }
                Err(Failed::Answer {
                    error,
                    request_read,
                }) => {
                    if let Some(r) = &record {
                        r.answered(error.status());
                    }
                    self.audit_framed(&line, peer, &trace_id, error.status());
                    span.in_scope(|| log_answered(&error, trace_id.as_str()));
                    if !request_read || head.close {
                        answer_and_close(socket, &error, trace_id.as_bytes()).await;
                        return Framed::Ended;
                    }
                    if answer(&socket, &error, trace_id.as_bytes()).await.is_err() {
                        return Framed::Ended;
                    }
                }
                Err(Failed::Broken(e)) => {
                    tracing::debug!(error = %e, "framed exchange broke off");
                    return Framed::Ended;
                }
            }
        }
    }

    /// Answers `error` to a request not forwarded (still at the start of `buf`): it is
    /// read and dropped, body included (within `discard_request`'s bounds), and the
    /// connection goes on (`true`); a body not read whole (or `Connection: close`)
    /// closes it after the answer, as hyper's path does.
    #[allow(clippy::too_many_arguments)]
    async fn answered_unread(
        &self,
        socket: &LeanSocket,
        buf: &mut BytesMut,
        head: &Head,
        line: &RequestLine,
        peer: &PeerIdentity,
        trace_id: &TraceId,
        error: GatewayError,
    ) -> bool {
        self.audit_framed(line, peer, trace_id, error.status());
        log_answered(&error, trace_id.as_str());
        if framed::discard_request(socket, buf, head).await && !head.close {
            return answer(socket, &error, trace_id.as_bytes()).await.is_ok();
        }
        let raw = error.to_raw_response(trace_id.as_bytes(), true);
        if framed::write_all(socket, &raw, &[]).await.is_ok() {
            linger(socket).await;
        }
        false
    }

    /// The audit line of a framed exchange: written for what may change something.
    fn audit_framed(
        &self,
        line: &RequestLine,
        peer: &PeerIdentity,
        trace_id: &TraceId,
        status: StatusCode,
    ) {
        if let Some(audit) = self
            .audit
            .as_ref()
            .filter(|_| super::method_mutates(&line.method))
        {
            audit.record(Decision::Allow.audit_record(
                line.method.as_str(),
                line.uri.path(),
                peer,
                trace_id.as_bytes(),
                status,
            ));
        }
    }
}

/// The headers the stages before forwarding read: the trace id; classify's
/// `Upgrade`, `Content-Length` and `Transfer-Encoding`; routing's session id. The
/// framed path gives the stages a map of these only (a map of every header cost about
/// a sixth of a framed `/_ping`'s instructions). A stage that reads another header
/// must name it here.
static STAGE_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static(crate::trace::TRACE_ID),
    header::UPGRADE,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    HeaderName::from_static("x-docker-expose-session-uuid"),
];

/// The request line and the stages' headers of a head berth frames itself, or `None`
/// when it is hyper's: HTTP/1.0, `Expect`, `Upgrade` or `CONNECT`, a target not in
/// origin form, a value `http` refuses. (httparse took only token names and the
/// values `http` takes, as hyper's server relies on too.) `last_uri` is the
/// connection's last target, parsed: a keep-alive client often asks for the same one
/// again (a poller's `/_ping` or `/containers/json`), and parsing a `Uri` copies it.
fn plain_request(buf: &[u8], head: &Head, last_uri: &mut Option<Uri>) -> Option<RequestLine> {
    if !head.http11 || head.expect_continue || head.upgrade {
        return None;
    }
    let target = &buf[head.target.clone()];
    if !target.starts_with(b"/") {
        return None;
    }
    let method = Method::from_bytes(&buf[head.method.clone()]).ok()?;
    let uri = match last_uri {
        // The same bytes parse to the same `Uri` (a target with a fragment never
        // matches: the parsed one lost it).
        Some(uri) if uri.path_and_query().map(|p| p.as_str().as_bytes()) == Some(target) => {
            uri.clone()
        }
        _ => last_uri.insert(Uri::try_from(target).ok()?).clone(),
    };
    let mut headers = HeaderMap::new();
    for line in &head.headers {
        let name = &buf[line.name.clone()];
        let Some(known) = STAGE_HEADERS
            .iter()
            .find(|h| h.as_str().len() == name.len() && name.eq_ignore_ascii_case(h.as_ref()))
        else {
            continue;
        };
        headers.append(
            known.clone(),
            HeaderValue::from_bytes(&buf[line.value.clone()]).ok()?,
        );
    }
    Some(RequestLine {
        method,
        uri,
        headers,
    })
}

/// The first `name` header of `head` (lower-case `name`) as a string, as
/// `HeaderValue::to_str` reads it (visible ASCII only).
fn header_str<'a>(buf: &'a [u8], head: &Head, name: &[u8]) -> Option<&'a str> {
    let line = head.headers.iter().find(|l| {
        let n = &buf[l.name.clone()];
        n.len() == name.len() && n.eq_ignore_ascii_case(name)
    })?;
    let value = &buf[line.value.clone()];
    if !value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// Answers with berth's error on a connection that goes on.
async fn answer(socket: &LeanSocket, error: &GatewayError, trace_id: &[u8]) -> std::io::Result<()> {
    framed::write_all(socket, &error.to_raw_response(trace_id, false), &[]).await
}

/// Answers with berth's error and closes.
async fn answer_and_close(socket: LeanSocket, error: &GatewayError, trace_id: &[u8]) {
    let raw = error.to_raw_response(trace_id, true);
    if framed::write_all(&socket, &raw, &[]).await.is_ok() {
        linger(&socket).await;
    }
}

/// Closes the write side, then reads and drops what the client still sends (up to
/// 256 KiB, for at most a second), so that an unread request body does not turn the
/// close into a reset before the client read the answer (as `body::discard_unread`
/// does for hyper's connections).
async fn linger(socket: &LeanSocket) {
    let _ = socket.shutdown_write();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let mut sink = BytesMut::with_capacity(8192);
        let mut left = 256 * 1024usize;
        while left > 0 {
            sink.clear();
            match poll_fn(|cx| socket.poll_read_buf(cx, &mut sink)).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}
