//! The differential check behind the `framing` fuzz target (crates/berth-gateway/fuzz)
//! and its stable stand-in (tests/fuzz_stable.rs): the bytes of a client connection
//! are read as requests by this module and by hyper's own server, and both must agree.
//!
//! - Every request this module frames, hyper reads too, with the same method, target
//!   and body (chunked bodies decoded), so the next request starts at the same byte.
//! - Where this module refuses, hyper reads no complete request there either, except
//!   for the refusals that are stricter on purpose ([`FramingError::LengthAndChunked`],
//!   [`FramingError::UnsupportedTransferEncoding`]: dockerd's Go server refuses the
//!   second, and proxies must not guess at the first).
//! - What berth hands to hyper instead of framing it (upgrades, HTTP/1.0, `Expect`, a
//!   target `http` does not take) ends the comparison.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use super::{parse_request, BodyLength, ChunkedScanner, FramingError, Head};

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
