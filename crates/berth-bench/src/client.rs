//! The one client used identically for every target: hyper's HTTP/1 client connection
//! over a `UnixStream`, and raw hijacked streams for attach/exec.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

/// The `Host` the docker CLI sends on Unix sockets.
pub(crate) const HOST_VALUE: HeaderValue = HeaderValue::from_static("docker");

/// Connects, retrying while the listener's backlog is full (a burst of connects to a
/// Unix socket fails with `EAGAIN` instead of waiting).
pub(crate) async fn connect(path: &Path) -> Result<UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(path).await {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
        }
    }
}

/// An HTTP/1 client connection, and its connection task (spawned on the current
/// runtime; it ends when the connection closes).
pub(crate) async fn http<B>(path: &Path) -> Result<(SendRequest<B>, JoinHandle<()>)>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(connect(path).await?);
    let (sender, conn) = http1::handshake(io).await?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, task))
}

/// `GET uri` on `sender`; drains the body and returns its length. Fails on a non-2xx.
pub(crate) async fn get(sender: &mut SendRequest<Empty<Bytes>>, uri: &Uri) -> Result<u64> {
    sender.ready().await?;
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = uri.clone();
    req.headers_mut().insert(HOST, HOST_VALUE);
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
        }
    }
    if !status.is_success() {
        bail!("GET {uri}: {status}");
    }
    Ok(n)
}

/// Sends `req` and collects the whole response body.
pub(crate) async fn send<B>(
    sender: &mut SendRequest<B>,
    req: Request<B>,
) -> Result<(StatusCode, Bytes)>
where
    B: Body + Send + 'static,
{
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// One API call on a fresh connection (setup and bookkeeping, never timed).
pub(crate) async fn api(
    path: &Path,
    method: Method,
    uri: &str,
    json: Option<serde_json::Value>,
) -> Result<(StatusCode, Bytes)> {
    let (mut sender, _conn) = http::<Full<Bytes>>(path).await?;
    let body = json.map(|j| j.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(HOST, HOST_VALUE)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, body.len())
        .body(Full::new(Bytes::from(body)))?;
    send(&mut sender, req).await
}

/// [`api`], requiring a 2xx answer; returns the body parsed as JSON (null when empty).
pub(crate) async fn api_ok(
    path: &Path,
    method: Method,
    uri: &str,
    json: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    let (status, body) = api(path, method.clone(), uri, json).await?;
    if !status.is_success() {
        bail!(
            "{method} {uri}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    if body.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    Ok(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

/// A hijacked stream: `POST uri` with `Connection: Upgrade`, `Upgrade: tcp`, answered
/// `101` (or `200`, which dockerd sends without the upgrade headers). Returns the stream
/// and whatever arrived after the response head.
pub(crate) async fn hijack(path: &Path, uri: &str, body: &str) -> Result<(UnixStream, Vec<u8>)> {
    let mut s = connect(path).await?;
    let head = format!(
        "POST {uri} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n\
         Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            bail!("POST {uri}: response head too long");
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!(
                "POST {uri}: closed before the response head: {}",
                String::from_utf8_lossy(&buf)
            );
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let status_line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    if !(status_line.starts_with(b"HTTP/1.1 101") || status_line.starts_with(b"HTTP/1.1 200")) {
        bail!("POST {uri}: {}", String::from_utf8_lossy(&buf));
    }
    Ok((s, buf.split_off(end)))
}

/// Splits Docker's multiplexed stream (non-TTY attach/exec: 8-byte headers
/// `[stream, 0, 0, 0, len_be32]`) into payloads.
#[derive(Debug, Default)]
pub(crate) struct Demux {
    head: [u8; 8],
    head_len: usize,
    left: usize,
    stream: u8,
}

impl Demux {
    /// Feeds bytes; calls `payload(stream, bytes)` for each piece of payload.
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        mut payload: impl FnMut(u8, &[u8]) -> Result<()>,
    ) -> Result<()> {
        while !data.is_empty() {
            if self.left == 0 {
                let n = (8 - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&data[..n]);
                self.head_len += n;
                data = &data[n..];
                if self.head_len == 8 {
                    self.head_len = 0;
                    self.stream = self.head[0];
                    if self.stream > 2 || self.head[1..4] != [0, 0, 0] {
                        bail!("bad stream frame header {:?}", self.head);
                    }
                    self.left = u32::from_be_bytes([
                        self.head[4],
                        self.head[5],
                        self.head[6],
                        self.head[7],
                    ]) as usize;
                }
            } else {
                let n = self.left.min(data.len());
                payload(self.stream, &data[..n])?;
                self.left -= n;
                data = &data[n..];
            }
        }
        Ok(())
    }
}

/// p50 (µs) of `n` container creates (`body`, `query(i)` appended to the path of the
/// i-th) on one keep-alive connection to `socket`; each container is removed, untimed,
/// through `remover` (the same socket, or one that may remove what `socket` made).
pub(crate) async fn create_p50(
    socket: &Path,
    remover: &Path,
    query: &dyn Fn(usize) -> String,
    body: &Bytes,
    n: usize,
) -> Result<f64> {
    let (mut sender, _conn) = http::<Full<Bytes>>(socket).await?;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("/v1.41/containers/create{}", query(i)))
            .header(HOST, HOST_VALUE)
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, body.len())
            .body(Full::new(body.clone()))?;
        let t = Instant::now();
        let (status, answer) = send(&mut sender, req).await?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if !status.is_success() {
            bail!("create: {status}: {}", String::from_utf8_lossy(&answer));
        }
        let id = serde_json::from_slice::<serde_json::Value>(&answer)?["Id"]
            .as_str()
            .context("create answered no Id")?
            .to_owned();
        api_ok(
            remover,
            Method::DELETE,
            &format!("/v1.41/containers/{id}?force=1"),
            None,
        )
        .await?;
    }
    Ok(crate::stats::percentile(&mut times, 50.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_across_splits() {
        let mut wire = vec![1, 0, 0, 0, 0, 0, 0, 3];
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        wire.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2]);
        wire.extend_from_slice(b"de");
        for split in 0..wire.len() {
            let mut d = Demux::default();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                d.feed(part, |s, b| {
                    got.push((s, b.to_vec()));
                    Ok(())
                })
                .unwrap();
            }
            let out: Vec<u8> = got
                .iter()
                .filter(|(s, _)| *s == 1)
                .flat_map(|(_, b)| b.clone())
                .collect();
            let err: Vec<u8> = got
                .iter()
                .filter(|(s, _)| *s == 2)
                .flat_map(|(_, b)| b.clone())
                .collect();
            assert_eq!((out.as_slice(), err.as_slice()), (&b"abc"[..], &b"de"[..]));
        }
    }
}
