//! Hijack without `Upgrade`: attach or exec start sent on a fresh connection with no
//! `Upgrade` header. dockerd answers `200 OK` and then uses the connection as a raw
//! bidirectional stream (notes 4.1). hyper cannot carry stdin after a 200, so the
//! whole client connection is spliced to a new guest connection at the socket level:
//! the bytes already read (the request head, perhaps a body) go first, then both
//! directions flow with half-close. What the client sees is exactly what dockerd wrote.

use std::io;
use std::sync::Arc;

use berth_guest::GuestStream;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::splice;
use crate::conn::ClientIo;
use crate::guest::Guest;
use crate::metrics::Kind;

/// Splices `client` to the guest after replaying the bytes already read; `Err` hands the
/// untouched client back when the guest cannot be reached, so the caller can answer
/// properly. dockerd's response head gets the `X-Trace-Id` header like every answer.
pub(crate) async fn splice_raw(
    guest: &Arc<Guest>,
    client: ClientIo,
    trace_id: &[u8],
) -> Result<io::Result<()>, ClientIo> {
    if guest.ready().await.is_err() {
        return Err(client);
    }
    let upstream = match guest.connector().connect().await {
        Ok(s) => s,
        Err(e) => {
            let _ = guest.connect_error(&e);
            return Err(client);
        }
    };
    let _activity = guest.activity().begin();
    let record = guest.meter().and_then(|m| m.begin(Kind::Hijack));
    let (mut stream, prelude) = client.into_parts();
    let mut upstream = upstream;
    Ok(async {
        upstream.write_all(&prelude).await?;
        let head = with_trace_id(&read_head(&mut upstream).await?, trace_id);
        if let Some(r) = &record {
            r.answered(status_of(&head));
        }
        stream.write_all(&head).await?;
        let mut bridge = splice::bridge_client(stream, Vec::new(), upstream, Bytes::new());
        let result = (&mut bridge).await;
        if let Some(r) = &record {
            // Sessions count every byte, heads included.
            let (to_guest, to_client) = bridge.bytes();
            r.received(prelude.len() as u64 + to_guest);
            r.sent(head.len() as u64 + to_client);
        }
        result
    }
    .await)
}

/// The status of a response head (`HTTP/1.1 200 OK`); 502 if it has none.
fn status_of(head: &[u8]) -> http::StatusCode {
    head.get(9..12)
        .and_then(|code| http::StatusCode::from_bytes(code).ok())
        .unwrap_or(http::StatusCode::BAD_GATEWAY)
}

/// Heads larger than this are passed on as they are.
const MAX_HEAD: usize = 64 * 1024;

/// Reads until the end of the guest's response head (or EOF, or `MAX_HEAD`); returns
/// what was read, which may include the first stream bytes after the head.
async fn read_head(upstream: &mut GuestStream) -> io::Result<BytesMut> {
    let mut buf = BytesMut::with_capacity(1024);
    while head_end(&buf).is_none() && buf.len() < MAX_HEAD {
        if upstream.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok(buf)
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The head with an `X-Trace-Id` line added before its blank line; anything after the
/// head is kept as it is.
fn with_trace_id(buf: &[u8], trace_id: &[u8]) -> Vec<u8> {
    let Some(end) = head_end(buf) else {
        return buf.to_vec();
    };
    let mut out = Vec::with_capacity(buf.len() + trace_id.len() + 16);
    out.extend_from_slice(&buf[..end + 2]);
    out.extend_from_slice(b"X-Trace-Id: ");
    out.extend_from_slice(trace_id);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&buf[end + 2..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_goes_before_the_blank_line_and_stream_bytes_stay() {
        let head =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n\x01\x00";
        let out = with_trace_id(head, b"abc");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\nX-Trace-Id: abc\r\n\r\n\x01\x00"
        );
        assert_eq!(with_trace_id(b"partial", b"x"), b"partial");
        assert_eq!(status_of(head), http::StatusCode::OK);
        assert_eq!(status_of(b"junk"), http::StatusCode::BAD_GATEWAY);
    }
}
