//! The differential checks behind the `framing` fuzz target (crates/berth-gateway/fuzz)
//! and its stable stand-in (tests/fuzz_stable.rs): the bytes of a client connection
//! are read as requests by this module and by hyper's own server ([`requests`]), the
//! bytes of a guest connection as responses by this module and by hyper's client
//! ([`responses`]), and both must agree.
//!
//! Requests:
//! - Every request this module frames, hyper reads too, with the same method, target
//!   and body (chunked bodies decoded), so the next request starts at the same byte.
//! - Where this module refuses, hyper reads no complete request there either, except
//!   for the refusals that are stricter on purpose ([`FramingError::LengthAndChunked`],
//!   [`FramingError::UnsupportedTransferEncoding`]: dockerd's Go server refuses the
//!   second, and proxies must not guess at the first).
//! - What berth hands to hyper instead of framing it (upgrades, HTTP/1.0, `Expect`, a
//!   target `http` does not take) ends the comparison.
//!
//! Responses (to `GET`s, or to `HEAD`s when the first byte is odd; the rest of the input
//! is the guest's bytes):
//! - Every response this module frames (its informational answers skipped, as
//!   `forward::framed` does), hyper's client reads from the same bytes with the same
//!   status and decoded body; and from exactly the bytes this module took for it,
//!   hyper reads that response whole and finds nothing left over (the body ends at
//!   the same byte).
//! - Where this module refuses a response, hyper's client reads no complete response
//!   from those bytes either, except the refusals stricter on purpose (both lengths, a
//!   `Transfer-Encoding` other than one `chunked`: hyper reads such a body until the
//!   close; an invalid length on an answer without a body, which hyper does not read;
//!   a `101` to a request without `Upgrade`).
//! - A body delimited by the close ends the comparison after its status.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use super::{parse_request, parse_response, BodyLength, ChunkedScanner, FramingError, Head};

/// One request as read: method, target, body.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// How reading the requests stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The input ended (maybe inside a request).
    End,
    /// Refused, stricter than hyper on purpose.
    Stricter,
    /// Refused like hyper.
    Refused,
    /// Handed to hyper (or the connection closes after the last request).
    NotFramed,
}

/// Runs `data` through both readers; panics where they disagree.
pub fn requests(data: &[u8]) {
    let (ours, stop) = framed(data);
    let theirs = hyper_reads(data);
    let agreed = theirs.len().min(ours.len());
    assert_eq!(
        ours[..agreed],
        theirs[..agreed],
        "framed {ours:?} ({stop:?}), hyper read {theirs:?}"
    );
    match stop {
        // hyper may read more (or refuse) past where berth stopped framing.
        Stop::Stricter | Stop::NotFramed => {}
        Stop::End | Stop::Refused => assert_eq!(
            ours.len(),
            theirs.len(),
            "framed {ours:?} then {stop:?}, hyper read {theirs:?}"
        ),
    }
}

/// The requests berth frames in `data`, and why it stopped.
fn framed(data: &[u8]) -> (Vec<Read>, Stop) {
    let mut reads = Vec::new();
    let mut rest = data;
    let mut head = Head::default();
    loop {
        match parse_request(rest, &mut head) {
            Ok(true) => {}
            Ok(false) => return (reads, Stop::End),
            Err(FramingError::LengthAndChunked | FramingError::UnsupportedTransferEncoding) => {
                return (reads, Stop::Stricter)
            }
            // hyper answers these itself in berth (431, 414): not framed.
            Err(FramingError::TooManyHeaders | FramingError::TargetTooLong) => {
                return (reads, Stop::NotFramed)
            }
            Err(_) => return (reads, Stop::Refused),
        }
        let target = &rest[head.target.clone()];
        let method = &rest[head.method.clone()];
        // What serve hands to hyper (`serve/framed.rs`, `plain_request`).
        if !head.http11
            || head.expect_continue
            || head.upgrade
            || !target.starts_with(b"/")
            || http::Method::from_bytes(method).is_err()
            || http::Uri::try_from(target).is_err()
        {
            return (reads, Stop::NotFramed);
        }
        // As `http` holds the target (hyper's is read through it too).
        let target = http::Uri::try_from(target).map_or_else(|_| String::new(), |u| u.to_string());
        let read = Read {
            method: String::from_utf8_lossy(method).into_owned(),
            target,
            body: Vec::new(),
        };
        let close = head.close;
        rest = &rest[head.len..];
        let mut read = read;
        match head.body {
            BodyLength::Empty => {}
            BodyLength::Length(n) => {
                let Some(body) = usize::try_from(n).ok().and_then(|n| rest.get(..n)) else {
                    return (reads, Stop::End);
                };
                read.body = body.to_vec();
                rest = &rest[body.len()..];
            }
            BodyLength::Chunked => {
                let mut scanner = ChunkedScanner::default();
                match scanner.scan(rest, |d| read.body.extend_from_slice(d)) {
                    Ok((n, true)) => rest = &rest[n..],
                    Ok((_, false)) => return (reads, Stop::End),
                    Err(_) => return (reads, Stop::Refused),
                }
            }
            BodyLength::UntilClose => unreachable!("requests never read until the close"),
        }
        reads.push(read);
        if close {
            return (reads, Stop::NotFramed);
        }
    }
}

/// The requests hyper's server reads whole (head and body) from `data`.
fn hyper_reads(data: &[u8]) -> Vec<Read> {
    use http_body_util::BodyExt;
    let reads = Arc::new(Mutex::new(Vec::new()));
    let service = {
        let reads = Arc::clone(&reads);
        hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let reads = Arc::clone(&reads);
            async move {
                let method = req.method().to_string();
                let target = req.uri().to_string();
                if let Ok(body) = req.into_body().collect().await {
                    reads.lock().unwrap_or_else(|e| e.into_inner()).push(Read {
                        method,
                        target,
                        body: body.to_bytes().to_vec(),
                    });
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                    bytes::Bytes,
                >::new()))
            }
        })
    };
    // Polled by hand until it stops moving: the replayed connection never ends (at its
    // end hyper would drop a request it buffered whole), and nothing here needs a
    // runtime (no timer, no spawn; the service is polled inside the connection).
    let io = hyper_util::rt::TokioIo::new(Replay(data.to_vec(), 0));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for _ in 0..256 {
        if conn.as_mut().poll(&mut cx).is_ready() {
            break;
        }
    }
    let reads = std::mem::take(&mut *reads.lock().unwrap_or_else(|e| e.into_inner()));
    reads
}

/// A client connection that sends its bytes, then waits, and takes whatever is written.
struct Replay(Vec<u8>, usize);

impl tokio::io::AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let at = self.1;
        if at == self.0.len() {
            return Poll::Pending;
        }
        let n = buf.remaining().min(self.0.len() - at);
        buf.put_slice(&self.0[at..at + n]);
        self.1 += n;
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One response as read: status and decoded body (`None`: delimited by the close, so
/// not compared).
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    body: Option<Vec<u8>>,
}

/// Runs `data` (a flag byte, then a guest's bytes) through both readers of responses;
/// panics where they disagree.
pub fn responses(data: &[u8]) {
    let Some((&flag, data)) = data.split_first() else {
        return;
    };
    let head_request = flag & 1 == 1;
    let mut start = 0;
    loop {
        let rest = &data[start..];
        let (ours, taken) = framed_response(rest, head_request);
        match ours {
            Ok(Some(answer)) => {
                let theirs = hyper_response(rest, head_request);
                assert_eq!(
                    theirs.as_ref().map(|(a, _)| a),
                    Some(&answer),
                    "framed {answer:?} from {rest:?}, hyper's client read {theirs:?}"
                );
                if answer.body.is_none() {
                    return;
                }
                let exact = hyper_response(&rest[..taken], head_request);
                assert!(
                    matches!(&exact, Some((a, true)) if *a == answer),
                    "framed {answer:?} in {:?}; from those bytes alone hyper's client read {exact:?} (true: nothing left over)",
                    &rest[..taken]
                );
                start += taken;
            }
            // Not complete: hyper's client must not find a whole response there.
            Ok(None) => {
                let theirs = hyper_response(rest, head_request);
                assert!(
                    theirs.as_ref().is_none_or(|(a, _)| a.body.is_none()),
                    "framed nothing whole in {rest:?}, hyper's client read {theirs:?}"
                );
                return;
            }
            Err(Stop::Stricter | Stop::NotFramed | Stop::End) => return,
            Err(Stop::Refused) => {
                let theirs = hyper_response(rest, head_request);
                assert!(
                    theirs.as_ref().is_none_or(|(a, _)| a.body.is_none()),
                    "berth refused {rest:?}, hyper's client read {theirs:?}"
                );
                return;
            }
        }
    }
}

/// The first final response at the start of `data` as `forward::framed` reads it, and
/// the bytes it took (informational answers before it included); `Ok(None)` when it is
/// not whole in `data`.
fn framed_response(data: &[u8], head_request: bool) -> (Result<Option<Answer>, Stop>, usize) {
    let mut head = Head::default();
    let mut at = 0;
    loop {
        let rest = &data[at..];
        match parse_response(rest, head_request, &mut head) {
            Ok(true) => {}
            Ok(false) => return (Ok(None), at),
            Err(FramingError::LengthAndChunked | FramingError::UnsupportedTransferEncoding) => {
                return (Err(Stop::Stricter), at)
            }
            // hyper's client does not read the length of an answer without a body.
            Err(FramingError::InvalidLength) if bodiless(rest, head_request) => {
                return (Err(Stop::Stricter), at)
            }
            Err(_) => return (Err(Stop::Refused), at),
        }
        match head.status {
            101 => return (Err(Stop::NotFramed), at),
            100..=199 => {
                at += head.len;
                continue;
            }
            _ => {}
        }
        let status = head.status;
        let rest = &rest[head.len..];
        at += head.len;
        let body = match head.body {
            BodyLength::Empty => Vec::new(),
            BodyLength::Length(n) => {
                let Some(body) = usize::try_from(n).ok().and_then(|n| rest.get(..n)) else {
                    return (Ok(None), at);
                };
                at += body.len();
                body.to_vec()
            }
            BodyLength::Chunked => {
                let mut body = Vec::new();
                let mut scanner = ChunkedScanner::default();
                match scanner.scan(rest, |d| body.extend_from_slice(d)) {
                    Ok((n, true)) => at += n,
                    Ok((_, false)) => return (Ok(None), at),
                    Err(_) => return (Err(Stop::Refused), at),
                }
                body
            }
            BodyLength::UntilClose => return (Ok(Some(Answer { status, body: None })), data.len()),
        };
        return (
            Ok(Some(Answer {
                status,
                body: Some(body),
            })),
            at,
        );
    }
}

/// Whether the response head at the start of `data` has no body by its status or the
/// request's method (1xx, 204, 304, an answer to `HEAD`).
fn bodiless(data: &[u8], head_request: bool) -> bool {
    let mut lines = [httparse::EMPTY_HEADER; super::MAX_HEADERS];
    let mut res = httparse::Response::new(&mut lines);
    head_request || (res.parse(data).is_ok() && matches!(res.code, Some(100..=199 | 204 | 304)))
}

/// The first response hyper's client reads from `data` for one request (`None`: no
/// head), its body `None` unless read whole; and whether the connection then stayed
/// usable with nothing left over (hyper's client errs on bytes after a response).
fn hyper_response(data: &[u8], head_request: bool) -> Option<(Answer, bool)> {
    use http_body_util::BodyExt;
    type Empty = http_body_util::Empty<bytes::Bytes>;
    let answer: Arc<Mutex<Option<Answer>>> = Arc::default();
    let conn_ok = Arc::new(Mutex::new(None::<bool>));
    let io = hyper_util::rt::TokioIo::new(Answering {
        replay: Replay(data.to_vec(), 0),
        asked: false,
    });
    let exchange = {
        let answer = Arc::clone(&answer);
        let conn_ok = Arc::clone(&conn_ok);
        async move {
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake::<_, Empty>(io).await
            else {
                return;
            };
            let method = if head_request { "HEAD" } else { "GET" };
            let req = http::Request::builder()
                .method(method)
                .uri("/")
                .header("host", "guest")
                .body(Empty::new());
            let Ok(req) = req else { return };
            let mut conn = std::pin::pin!(conn);
            let mut request = std::pin::pin!(async {
                let Ok(res) = sender.send_request(req).await else {
                    return;
                };
                let status = res.status().as_u16();
                *answer.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Answer { status, body: None });
                if let Ok(body) = res.into_body().collect().await {
                    *answer.lock().unwrap_or_else(|e| e.into_inner()) = Some(Answer {
                        status,
                        body: Some(body.to_bytes().to_vec()),
                    });
                }
                // Keep the sender: a dropped one closes the connection.
                std::future::pending::<()>().await;
            });
            std::future::poll_fn(|cx| {
                let _ = request.as_mut().poll(cx);
                match conn.as_mut().poll(cx) {
                    Poll::Ready(r) => {
                        *conn_ok.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.is_ok());
                        // What the connection delivered before it ended.
                        let _ = request.as_mut().poll(cx);
                        Poll::Ready(())
                    }
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
        }
    };
    let mut exchange = std::pin::pin!(exchange);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for _ in 0..256 {
        if exchange.as_mut().poll(&mut cx).is_ready() {
            break;
        }
    }
    let answer = answer.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    // hyper's client errs when bytes are left after a response it read.
    // (It ends without an error after an answer that closes the connection.)
    let usable = *conn_ok.lock().unwrap_or_else(|e| e.into_inner()) != Some(false);
    Some((answer, usable))
}

/// A guest connection: sends its bytes once a request was written to it (hyper's
/// client refuses bytes on a connection it sent nothing on), then waits.
struct Answering {
    replay: Replay,
    asked: bool,
}

impl tokio::io::AsyncRead for Answering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.asked {
            return Poll::Pending;
        }
        Pin::new(&mut self.replay).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Answering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.asked = true;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
