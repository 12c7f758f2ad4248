//! `TestGateway`: berth's gateway in the test's own tokio runtime, on a socket in a temp
//! dir, in front of real engines ([`TestEngine`](crate::TestEngine)s) or of sockets a
//! test controls. Tests of the request path's stages run here, without a berth process.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_gateway::{
    BoundSocket, Config, EngineRouter, Gateway, Guest, GuestOptions, GuestTimeouts, Listener,
};
use berth_guest::{GuestConnector, GuestEndpoint};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A gateway serving on `gateway.sock` in its own temp dir until [`TestGateway::stop`].
#[derive(Debug)]
pub struct TestGateway {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    /// Serves `router` with `config` in the current tokio runtime. The socket is bound
    /// before this returns, so a client may connect at once (it waits in the backlog
    /// until the accept loop runs).
    pub fn start(config: Config, router: EngineRouter) -> TestGateway {
        let dir = tempfile::Builder::new()
            .prefix("bt-gw-")
            .tempdir()
            .expect("a temp dir for the gateway's socket");
        let socket = dir.path().join("gateway.sock");
        let bound = BoundSocket::bind(&socket, 0o600, None).expect("binding the gateway socket");
        let (stop, stopped) = oneshot::channel::<()>();
        let gateway = Gateway::new(config, router);
        let task = tokio::spawn(gateway.run(vec![Listener::Unix(bound)], async move {
            let _ = stopped.await;
        }));
        TestGateway {
            socket,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Serves one engine, reached at `engine` (a Unix socket), with default settings.
    pub fn in_front_of(engine: &Path) -> TestGateway {
        Self::start(
            Config::default(),
            EngineRouter::new(vec![guest("default", engine)]),
        )
    }

    /// The socket clients connect to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://…` for the docker CLI.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Stops accepting, lets in-flight exchanges drain, and joins the gateway's task, so
    /// that a panic in it fails the test.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the gateway task panicked");
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A guest engine named `name` at the Unix socket `socket`, with default timeouts.
pub fn guest(name: &str, socket: &Path) -> Arc<Guest> {
    guest_with(name, socket, GuestTimeouts::default())
}

/// [`guest`] with the given timeouts.
pub fn guest_with(name: &str, socket: &Path, timeouts: GuestTimeouts) -> Arc<Guest> {
    Guest::new(
        name,
        GuestConnector::new(GuestEndpoint::Unix(socket.to_owned()), timeouts.connect),
        timeouts,
        GuestOptions::default(),
    )
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Answer {
    /// Status and headers.
    pub head: http::response::Parts,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status.as_u16()
    }

    /// A header's value as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `method path` with `headers` and `body` over a new connection to `socket`
/// (hyper's client) and reads the answer whole, within 30 s (scaled by
/// [`patience`](crate::patience)).
pub async fn send(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Answer> {
    let within = crate::patient(Duration::from_secs(30));
    tokio::time::timeout(within, send_now(socket, method, path, headers, body))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{method} {path}")))?
}

async fn send_now(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Answer> {
    let stream = UnixStream::connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let conn = tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "berth-test");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(io::Error::other)?;
    let res = sender.send_request(req).await.map_err(io::Error::other)?;
    let (head, body) = res.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    drop(sender);
    conn.abort();
    Ok(Answer { head, body })
}

/// Writes `request` (raw bytes) on a new connection to `socket` and reads until the
/// server closes it (at most 30 s, scaled by [`patience`](crate::patience)).
pub async fn send_raw(socket: &Path, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket).await?;
    stream.write_all(request).await?;
    let mut out = Vec::new();
    let within = crate::patient(Duration::from_secs(30));
    tokio::time::timeout(within, stream.read_to_end(&mut out))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no EOF from the server"))??;
    Ok(out)
}
