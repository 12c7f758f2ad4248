//! A real dockerd in its own network namespace, one per test binary, with a busybox
//! image: berth-test's `TestEngine` (its watchdog stops dockerd and removes its
//! namespace and files when the test process is gone, however it ends), with the
//! async helpers these tests use.

// Shared by several test binaries; each uses a part.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use berth_test::TestEngine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The image every test runs: busybox-static with `/www/index.html` = "hello\n".
pub(crate) const IMAGE: &str = "bp-busybox:latest";

#[derive(Debug)]
pub(crate) struct Engine(TestEngine);

impl Engine {
    /// Starts dockerd in namespace `<name>-<pid>` (`name` up to 7 characters) and
    /// imports [`IMAGE`]; panics with the reason.
    pub(crate) fn start(name: &str) -> Engine {
        let engine = TestEngine::start(&format!("{name}-{}", std::process::id()))
            .unwrap_or_else(|e| panic!("starting engine {name}: {e}"));
        engine
            .import_busybox(IMAGE)
            .unwrap_or_else(|e| panic!("importing {IMAGE}: {e}"));
        Engine(engine)
    }

    /// The engine's API socket.
    pub(crate) fn socket(&self) -> PathBuf {
        self.0.socket().to_owned()
    }

    /// The engine's network namespace.
    pub(crate) fn netns(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(self.0.netns())
    }

    /// Runs `docker args…` against the engine; stdout, or the failure.
    pub(crate) async fn docker(&self, args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.0.host())
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("docker: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `docker inspect` of one container, parsed.
    pub(crate) async fn inspect(&self, container: &str) -> serde_json::Value {
        let out = self.docker(&["inspect", container]).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }
}

/// A TCP port free on the host right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` over plain HTTP/1.0 at `addr`; the whole response, or the I/O error.
pub(crate) async fn http_get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no answer in 10 s"))??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Whether a TCP connect to `addr` is refused right now.
pub(crate) async fn refused(addr: std::net::SocketAddr) -> bool {
    matches!(
        tokio::net::TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}
