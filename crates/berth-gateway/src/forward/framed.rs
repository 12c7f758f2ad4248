//! Ordinary exchanges framed by berth itself (docs/conventions.md, "Framed
//! pass-through"): the request head goes to the guest as the client's bytes with the
//! hop-by-hop lines taken out, the response head comes back as the guest's bytes with
//! the trace id put in, and both bodies are relayed by their framing
//! ([`crate::framing`]) without being decoded or re-encoded; what is left of a long
//! body with a `Content-Length` is spliced (`splice(2)`, socket to pipe to socket), so
//! its bytes never enter user space. Nothing builds a `HeaderMap` for the response,
//! and one task drives both sockets.
//!
//! The request body is relayed while the answer is awaited: dockerd may answer before
//! it read the body (an error), and then stops reading. An answer that ends the
//! guest's connection (`Connection: close`, a body delimited by the close, an HTTP/1.0
//! answer) ends the client's too, with `Connection: close`; so does an answer that came
//! before the request body was whole. Informational answers (1xx) are dropped, as
//! hyper's client does (requests with `Expect` are not framed here).

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use berth_guest::splice::splice_exact;
use berth_guest::LeanSocket;
use bytes::{Buf, BufMut, BytesMut};

use crate::error::GatewayError;
use crate::framing::{self, BodyLength, ChunkedScanner, FramingError, Head};
use crate::guest::lease::{deadline_in, HeadTimer, StreamLease};
use crate::guest::Guest;
use crate::headers::{connection_may_drop, drops_when_framed};
use crate::trace::TRACE_ID;

/// Bytes read from a socket at once while relaying a body.
const RELAY_CHUNK: usize = 64 * 1024;

/// Bodies with at least this many bytes still to come after the head's read are
/// spliced (`splice(2)` through a pipe) rather than copied: below it, making and closing
/// the pipe costs more than the copy.
const SPLICE_AT_LEAST: u64 = 64 * 1024;

/// The longest response head taken (hyper's client takes ~400 KiB).
const MAX_RESPONSE_HEAD: usize = 1 << 20;

/// A finished exchange.
#[derive(Debug)]
pub(crate) struct Exchanged {
    /// The guest's status.
    pub(crate) status: u16,
    /// Whether the client connection may carry another request.
    pub(crate) keep_alive: bool,
    /// Body bytes relayed from the client and to it, as they went (chunked framing
    /// included).
    pub(crate) received: u64,
    pub(crate) sent: u64,
}

/// How an exchange failed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// Before the client got any of an answer: berth answers with this; the client
    /// connection goes on when its request was read whole (`request_read`).
    Answer {
        error: GatewayError,
        request_read: bool,
    },
    /// After: the client connection is closed as it is.
    Broken(io::Error),
}

impl Failed {
    fn answer(error: GatewayError, request_read: bool) -> Self {
        Self::Answer {
            error,
            request_read,
        }
    }
}

/// What one client connection's framed exchanges reuse.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    request: Vec<u8>,
    response: Vec<u8>,
    guest: BytesMut,
    head: Head,
    timer: Option<HeadTimer>,
}

/// The request whose head `req` was parsed from the start of `client_buf`, sent to
/// `guest` over the connection in `held`, and its answer relayed to `client`. On
/// success `client_buf` holds what the client sent after the request.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange(
    guest: &Arc<Guest>,
    held: &mut Option<StreamLease>,
    client: &LeanSocket,
    client_buf: &mut BytesMut,
    req: &Head,
    trace_id: &[u8],
    head_deadline: Option<Duration>,
    scratch: &mut Scratch,
) -> Result<Exchanged, Failed> {
    let head_request = &client_buf[req.method.clone()] == b"HEAD";
    write_request_head(client_buf, req, &mut scratch.request);
    client_buf.advance(req.len);
    let mut upload = BodyLeft::new(req.body);
    let n = upload
        .take(client_buf)
        .map_err(|e| Failed::answer(bad_request(&e), false))?;
    scratch.request.extend_from_slice(&client_buf[..n]);
    client_buf.advance(n);
    let sent_whole = upload.is_done();
    let mut received = n as u64;

    let failed = |error| Failed::answer(error, sent_whole);
    let lease = StreamLease::hold(guest, held).await.map_err(failed)?;
    lease.begin();
    let mut retried = false;
    let result = loop {
        if let Err(e) = write_all(lease.socket(), &scratch.request, &[]).await {
            if lease.reused() && !retried && sent_whole {
                retried = true;
                lease.reconnect().await.map_err(failed)?;
                continue;
            }
            lease.discard();
            return Err(failed(
                guest.upstream_io_error(format!("sending the request: {e}")),
            ));
        }
        let answer = answer(
            guest,
            lease.socket(),
            client,
            head_request,
            req.close,
            trace_id,
            head_deadline,
            Buffers {
                response: &mut scratch.response,
                guest: &mut scratch.guest,
                head: &mut scratch.head,
                timer: &mut scratch.timer,
            },
        );
        let result = if sent_whole {
            answer.await.map(|a| (a, true))
        } else {
            // Boxed: streamed uploads are rare next to plain exchanges.
            Box::pin(alongside_upload(
                relay(
                    client,
                    lease.socket(),
                    client_buf,
                    &mut upload,
                    &mut received,
                ),
                answer,
            ))
            .await
        };
        match result {
            // The engine had closed the held connection: nothing was answered.
            Err(Unanswered::Closed) if lease.reused() && !retried && sent_whole => {
                retried = true;
                lease.reconnect().await.map_err(failed)?;
            }
            other => break other,
        }
    };
    match result {
        Ok((answered, uploaded)) => {
            let in_step = answered.guest_in_step && uploaded;
            if in_step {
                lease.done();
            } else {
                lease.discard();
            }
            Ok(Exchanged {
                status: answered.status,
                keep_alive: answered.keep_alive && uploaded,
                received,
                sent: answered.sent,
            })
        }
        Err(e) => {
            lease.discard();
            Err(match e {
                Unanswered::Closed => failed(
                    guest.upstream_io_error("the engine closed the connection before answering"),
                ),
                Unanswered::NoHead(error) => failed(error),
                Unanswered::Broken(e) => Failed::Broken(e),
            })
        }
    }
}

/// Reads and drops the request whose head `req` was parsed from the start of
/// `client_buf`, body included (up to 256 KiB, for at most a second, as
/// `body::discard_unread` does for hyper's connections): `true` when it was read whole,
/// and `client_buf` then holds what the client sent after it.
pub(crate) async fn discard_request(
    client: &LeanSocket,
    client_buf: &mut BytesMut,
    req: &Head,
) -> bool {
    client_buf.advance(req.len);
    let mut body = BodyLeft::new(req.body);
    let Ok(n) = body.take(client_buf) else {
        return false;
    };
    client_buf.advance(n);
    let discard = async {
        let mut left = 256 * 1024usize;
        while !body.is_done() && left > 0 {
            client_buf.reserve(body.read_limit().min(left));
            let read = poll_fn(|cx| client.poll_read_buf(cx, &mut *client_buf)).await;
            match read {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            let Ok(n) = body.take(client_buf) else {
                return false;
            };
            client_buf.advance(n);
            left = left.saturating_sub(n);
        }
        body.is_done()
    };
    tokio::time::timeout(Duration::from_secs(1), discard)
        .await
        .unwrap_or(false)
}

/// Runs `upload` (the rest of the request body) while `answer` runs; done when the
/// answer is. An upload still running then is dropped (`false`: the request was not
/// whole, so neither connection is in step any more).
async fn alongside_upload(
    upload: impl Future<Output = io::Result<()>>,
    answer: impl Future<Output = Result<Answered, Unanswered>>,
) -> Result<(Answered, bool), Unanswered> {
    let mut upload = pin!(upload);
    let mut answer = pin!(answer);
    let mut uploaded = false;
    poll_fn(|cx| {
        if !uploaded {
            match upload.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => uploaded = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Unanswered::Broken(e))),
                Poll::Pending => {}
            }
        }
        answer.as_mut().poll(cx).map_ok(|a| (a, uploaded))
    })
    .await
}

/// The answer, relayed.
struct Answered {
    status: u16,
    /// Body bytes relayed.
    sent: u64,
    keep_alive: bool,
    /// The guest connection may carry another request.
    guest_in_step: bool,
}

/// Why no answer was relayed.
enum Unanswered {
    /// The guest connection was closed before any byte of an answer.
    Closed,
    /// No answer head came: berth answers with this error.
    NoHead(GatewayError),
    /// The exchange broke after the client got part of the answer (or while the
    /// client sent its body).
    Broken(io::Error),
}

/// The scratch buffers the answer uses.
struct Buffers<'a> {
    response: &'a mut Vec<u8>,
    guest: &'a mut BytesMut,
    head: &'a mut Head,
    timer: &'a mut Option<HeadTimer>,
}

/// Reads the guest's response head (within `head_deadline`, when one applies) and
/// relays the answer to the client.
#[allow(clippy::too_many_arguments)]
async fn answer(
    guest: &Guest,
    from: &LeanSocket,
    client: &LeanSocket,
    head_request: bool,
    client_closes: bool,
    trace_id: &[u8],
    head_deadline: Option<Duration>,
    bufs: Buffers<'_>,
) -> Result<Answered, Unanswered> {
    let Buffers {
        response,
        guest: buf,
        head,
        timer,
    } = bufs;
    buf.clear();
    let read = read_head(guest, from, buf, head_request, head);
    let read = match head_deadline.and_then(|after| Some((after, deadline_in(after)?))) {
        None => read.await,
        Some((after, deadline)) => {
            let timer = timer.get_or_insert_with(|| HeadTimer::new(deadline));
            match timer.within(deadline, pin!(read)).await {
                Some(read) => read,
                None => return Err(Unanswered::NoHead(guest.head_timeout(after))),
            }
        }
    };
    read?;
    let keep_alive =
        !client_closes && !head.close && head.http11 && head.body != BodyLength::UntilClose;
    write_response_head(buf, head, trace_id, keep_alive, response);
    buf.advance(head.len);
    let mut body = BodyLeft::new(head.body);
    let broken = Unanswered::Broken;
    let n = body.take(buf).map_err(|e| broken(invalid_data(e)))?;
    write_all(client, response, &buf[..n])
        .await
        .map_err(broken)?;
    buf.advance(n);
    let mut sent = n as u64;
    relay(from, client, buf, &mut body, &mut sent)
        .await
        .map_err(broken)?;
    Ok(Answered {
        status: head.status,
        sent,
        keep_alive,
        guest_in_step: keep_alive && buf.is_empty(),
    })
}

/// Reads until a final (not 1xx) response head is complete at the start of `buf`.
async fn read_head(
    guest: &Guest,
    from: &LeanSocket,
    buf: &mut BytesMut,
    head_request: bool,
    head: &mut Head,
) -> Result<(), Unanswered> {
    let bad = |reason: String| Unanswered::NoHead(guest.bad_answer(reason));
    let mut answered = false;
    loop {
        if !buf.is_empty() {
            match framing::parse_response(buf, head_request, head) {
                Ok(true) if head.status == 101 => {
                    return Err(bad(
                        "101 Switching Protocols to a request without Upgrade".into()
                    ))
                }
                Ok(true) if head.status < 200 => {
                    buf.advance(head.len);
                    continue;
                }
                Ok(true) => return Ok(()),
                Ok(false) if buf.len() > MAX_RESPONSE_HEAD => {
                    return Err(bad("a response head over 1 MiB".into()))
                }
                Ok(false) => {}
                Err(e) => return Err(bad(e.to_string())),
            }
        }
        buf.reserve(8 * 1024);
        match poll_fn(|cx| from.poll_read_buf(cx, buf)).await {
            Ok(0) if !answered => return Err(Unanswered::Closed),
            Ok(0) => {
                return Err(Unanswered::NoHead(guest.upstream_io_error(
                    "the engine closed the connection in the middle of a response head",
                )))
            }
            Ok(_) => answered = true,
            // A reset of an idle connection the engine closed is a close too.
            Err(e) if !answered && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(Unanswered::Closed)
            }
            Err(e) => {
                return Err(Unanswered::NoHead(
                    guest.upstream_io_error(format!("reading the response: {e}")),
                ))
            }
        }
    }
}

/// Where a relayed body stands.
#[derive(Debug)]
enum BodyLeft {
    Bytes(u64),
    Chunked(ChunkedScanner),
    UntilClose,
    Done,
}

impl BodyLeft {
    fn new(length: BodyLength) -> Self {
        match length {
            BodyLength::Empty | BodyLength::Length(0) => Self::Done,
            BodyLength::Length(n) => Self::Bytes(n),
            BodyLength::Chunked => Self::Chunked(ChunkedScanner::default()),
            BodyLength::UntilClose => Self::UntilClose,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }

    /// How many of `buf`'s leading bytes belong to the body; the rest follow it.
    fn take(&mut self, buf: &[u8]) -> Result<usize, FramingError> {
        let n = match self {
            Self::Done => 0,
            Self::Bytes(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= n as u64;
                if *left == 0 {
                    *self = Self::Done;
                }
                n
            }
            Self::Chunked(scanner) => {
                let (n, done) = scanner.scan(buf, |_| {})?;
                if done {
                    *self = Self::Done;
                }
                n
            }
            Self::UntilClose => buf.len(),
        };
        Ok(n)
    }

    /// The most worth reading at once.
    fn read_limit(&self) -> usize {
        match self {
            Self::Bytes(left) => usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(RELAY_CHUNK),
            _ => RELAY_CHUNK,
        }
    }

    /// The sender closed: the end of a body delimited by the close, else an error.
    fn at_eof(&mut self) -> io::Result<()> {
        match self {
            Self::UntilClose | Self::Done => {
                *self = Self::Done;
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before the body's end",
            )),
        }
    }
}

/// Relays the rest of `body` from `from` to `to` through `buf` (empty on entry),
/// counting the bytes in `moved`; what follows the body stays in `buf`. A long body
/// of known length is spliced.
async fn relay(
    from: &LeanSocket,
    to: &LeanSocket,
    buf: &mut BytesMut,
    body: &mut BodyLeft,
    moved: &mut u64,
) -> io::Result<()> {
    while !body.is_done() {
        if let BodyLeft::Bytes(left) = *body {
            if left >= SPLICE_AT_LEAST && buf.is_empty() {
                // Bytes no one reads: socket to pipe to socket, never through user space.
                splice_exact(from, to, left, moved).await?;
                *body = BodyLeft::Done;
                break;
            }
        }
        let limit = body.read_limit();
        buf.reserve(limit);
        let n = poll_fn(|cx| from.poll_read_buf(cx, &mut (&mut *buf).limit(limit))).await?;
        if n == 0 {
            body.at_eof()?;
            break;
        }
        let n = body.take(buf).map_err(invalid_data)?;
        write_all(to, &buf[..n], &[]).await?;
        buf.advance(n);
        *moved += n as u64;
    }
    Ok(())
}

/// Writes `a` then `b` whole (one `writev` when the socket takes them).
pub(crate) async fn write_all(to: &LeanSocket, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let n = poll_fn(|cx| {
            to.poll_write_with(cx, |fd| {
                if b.is_empty() {
                    Ok(nix::unistd::write(fd, a)?)
                } else if a.is_empty() {
                    Ok(nix::unistd::write(fd, b)?)
                } else {
                    Ok(nix::sys::uio::writev(
                        fd,
                        &[IoSlice::new(a), IoSlice::new(b)],
                    )?)
                }
            })
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

/// The client's head as the guest gets it: its lines but the hop-by-hop ones, and a
/// `Host` if it had none (Go's server refuses HTTP/1.1 without one).
fn write_request_head(buf: &[u8], head: &Head, out: &mut Vec<u8>) {
    out.clear();
    if untouched(buf, head, b"host") == Some(true) {
        // The usual head: nothing to take out, a Host in it. Copied at once.
        out.extend_from_slice(&buf[..head.len]);
        return;
    }
    out.extend_from_slice(&buf[..head.first_line]);
    let mut host = false;
    for line in &head.headers {
        let name = &buf[line.name.clone()];
        if dropped(buf, head, name) {
            continue;
        }
        host |= name.eq_ignore_ascii_case(b"host");
        out.extend_from_slice(&buf[line.line.clone()]);
    }
    if !host {
        out.extend_from_slice(b"Host: guest\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether `head` has no line to take out (hop-by-hop ones): then `Some` of whether it
/// has a line named `name` (any case). One pass over the names, by length first.
fn untouched(buf: &[u8], head: &Head, name: &[u8]) -> Option<bool> {
    if head.connection {
        return None;
    }
    let mut named = false;
    for line in &head.headers {
        let n = &buf[line.name.clone()];
        if drops_when_framed(n) {
            return None;
        }
        named |= n.len() == name.len() && n.eq_ignore_ascii_case(name);
    }
    Some(named)
}

/// The guest's head as the client gets it: its lines but the hop-by-hop ones and its
/// own trace id, with berth's trace id, and `Connection: close` when the client
/// connection ends after it.
fn write_response_head(
    buf: &[u8],
    head: &Head,
    trace_id: &[u8],
    keep_alive: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    if untouched(buf, head, TRACE_ID.as_bytes()) == Some(false) {
        // The usual head: nothing to take out. Its lines copied at once.
        let lines_end = head.headers.last().map_or(head.first_line, |l| l.line.end);
        out.extend_from_slice(&buf[..lines_end]);
    } else {
        out.extend_from_slice(&buf[..head.first_line]);
        for line in &head.headers {
            let name = &buf[line.name.clone()];
            if dropped(buf, head, name) || name.eq_ignore_ascii_case(TRACE_ID.as_bytes()) {
                continue;
            }
            out.extend_from_slice(&buf[line.line.clone()]);
        }
    }
    out.extend_from_slice(b"X-Trace-Id: ");
    out.extend_from_slice(trace_id);
    out.extend_from_slice(b"\r\n");
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether the line named `name` stays out of a forwarded head: hop-by-hop, or named
/// by its `Connection` header.
fn dropped(buf: &[u8], head: &Head, name: &[u8]) -> bool {
    drops_when_framed(name)
        || (head.connection
            && connection_may_drop(name)
            && head
                .headers
                .iter()
                .filter(|h| buf[h.name.clone()].eq_ignore_ascii_case(b"connection"))
                .flat_map(|h| buf[h.value.clone()].split(|&b| b == b','))
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(name)))
}

fn bad_request(e: &FramingError) -> GatewayError {
    GatewayError::BadRequest(format!("malformed HTTP request: {e}"))
}

fn invalid_data(e: FramingError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> Vec<u8> {
        let mut head = Head::default();
        assert_eq!(framing::parse_request(raw.as_bytes(), &mut head), Ok(true));
        let mut out = Vec::new();
        write_request_head(raw.as_bytes(), &head, &mut out);
        out
    }

    fn response(raw: &str, keep_alive: bool) -> Vec<u8> {
        let mut head = Head::default();
        assert_eq!(
            framing::parse_response(raw.as_bytes(), false, &mut head),
            Ok(true)
        );
        let mut out = Vec::new();
        write_response_head(raw.as_bytes(), &head, b"t1", keep_alive, &mut out);
        out
    }

    #[test]
    fn request_heads_go_as_sent_but_for_hop_by_hop_lines_and_a_missing_host() {
        // Nothing to edit: the bytes as they came (the body after the head is not
        // the head's).
        let plain = "GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: x\r\n\r\n";
        assert_eq!(request(&format!("{plain}GET /")), plain.as_bytes());
        assert_eq!(
            request("GET /_ping HTTP/1.1\nUser-Agent: x\n\n"),
            b"GET /_ping HTTP/1.1\nUser-Agent: x\nHost: guest\r\n\r\n"
        );
        assert_eq!(
            request("GET / HTTP/1.1\r\nHost: d\r\nKeep-Alive: 5\r\nConnection: X-A, keep-alive\r\nX-A: 1\r\nX-B: 2\r\n\r\n"),
            b"GET / HTTP/1.1\r\nHost: d\r\nX-B: 2\r\n\r\n"
        );
        assert_eq!(
            request("GET / HTTP/1.1\r\nTE: trailers\r\nhost: d\r\n\r\n"),
            b"GET / HTTP/1.1\r\nhost: d\r\n\r\n"
        );
    }

    #[test]
    fn response_heads_get_berths_trace_id_and_lose_hop_by_hop_lines() {
        assert_eq!(
            response(
                "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK",
                true
            ),
            b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\nX-Trace-Id: t1\r\n\r\n"
        );
        assert_eq!(
            response("HTTP/1.1 204 No Content\r\n\r\n", false),
            b"HTTP/1.1 204 No Content\r\nX-Trace-Id: t1\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            response(
                "HTTP/1.1 200 OK\r\nx-trace-id: guest\r\nContent-Length: 0\r\n\r\n",
                true
            ),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Trace-Id: t1\r\n\r\n"
        );
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nKeep-Alive: 5\r\nContent-Length: 0\r\n\r\n", true),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Trace-Id: t1\r\n\r\n"
        );
    }
}
