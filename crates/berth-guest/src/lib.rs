//! Reaching a guest engine.
//!
//! ```text
//! gateway ─► GuestConnector::connect() ─► GuestStream (socket | TLS | SSH channel) ─► dockerd
//! ```
//!
//! An engine is named by a [`GuestEndpoint`] (`unix:///path`, `tcp://host:port`, or
//! `ssh://user@host`). [`GuestConnector`] opens one stream to it with a bounded connect
//! time, over mutual TLS ([`tls`]) or an SSH connection ([`ssh`]) for remote engines.
//! A stream is a socket (Unix or TCP) that the gateway may splice and frame itself, or a
//! TLS stream or SSH channel read and written through its transport
//! ([`GuestConnector::streams_are_sockets`]; [`copy_relay`] bridges those after an
//! upgrade or hijack). The connector is also a
//! `tower::Service<Uri>` so that hyper-util's pooled client can use it directly (the
//! URI is ignored: one connector always reaches one engine).
//!
//! [`LeanSocket`] and [`splice`] move bytes once a connection stops being HTTP: the
//! gateway's upgraded and hijacked sessions and the host's port forwards.
//! [`LeanListener`] accepts the gateway's client connections for `LeanSocket`.

mod copy_relay;
mod endpoint;
mod error;
mod lean_listener;
mod lean_socket;
pub mod netns;
#[cfg(test)]
mod relay_test_io;
pub mod splice;
pub mod ssh;
mod stream;
pub mod tls;

pub use copy_relay::copy_relay;
pub use endpoint::{EndpointParseError, GuestEndpoint, SshDestination};
pub use error::ConnectError;
pub use lean_listener::{LeanListener, Listening};
pub use lean_socket::LeanSocket;
pub use stream::GuestStream;

use netns::NetnsSockets;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Opens streams to one guest engine.
#[derive(Clone, Debug)]
pub struct GuestConnector {
    endpoint: GuestEndpoint,
    connect_timeout: Duration,
    transport: Transport,
}

/// What is between berth and the engine besides the socket.
#[derive(Clone, Debug)]
enum Transport {
    Plain,
    Tls(Arc<tls::TlsClient>),
    Ssh(Arc<ssh::SshTunnel>),
    /// [`GuestEndpoint::NetnsTcp`]: the thread that makes sockets in the namespace (or
    /// why it could not be started).
    Netns(Arc<std::io::Result<NetnsSockets>>),
}

impl GuestConnector {
    /// A connector for `endpoint` that gives up after `connect_timeout`.
    pub fn new(endpoint: GuestEndpoint, connect_timeout: Duration) -> Self {
        let transport = match &endpoint {
            GuestEndpoint::NetnsTcp { netns, .. } => {
                Transport::Netns(Arc::new(NetnsSockets::new(netns)))
            }
            _ => Transport::Plain,
        };
        Self {
            endpoint,
            connect_timeout,
            transport,
        }
    }

    /// A connector for a `tcp://` endpoint spoken to with mutual TLS.
    pub fn with_tls(
        endpoint: GuestEndpoint,
        tls: tls::TlsClient,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            endpoint,
            connect_timeout,
            transport: Transport::Tls(Arc::new(tls)),
        }
    }

    /// A connector opening channels over `tunnel` (an `ssh://` endpoint).
    pub fn over_ssh(
        endpoint: GuestEndpoint,
        tunnel: Arc<ssh::SshTunnel>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            endpoint,
            connect_timeout,
            transport: Transport::Ssh(tunnel),
        }
    }

    /// The SSH connection of an `ssh://` machine.
    pub fn ssh_tunnel(&self) -> Option<&Arc<ssh::SshTunnel>> {
        match &self.transport {
            Transport::Ssh(t) => Some(t),
            _ => None,
        }
    }

    /// Whether the streams this connector opens are sockets, which the gateway may
    /// splice and frame itself; TLS streams and SSH channels are read and written
    /// through their transport.
    pub fn streams_are_sockets(&self) -> bool {
        !matches!(self.transport, Transport::Tls(_) | Transport::Ssh(_))
    }

    /// The engine this connector reaches.
    pub fn endpoint(&self) -> &GuestEndpoint {
        &self.endpoint
    }

    /// Opens a new stream to the engine.
    pub async fn connect(&self) -> Result<GuestStream, ConnectError> {
        if let Transport::Ssh(tunnel) = &self.transport {
            return tunnel
                .open(self.connect_timeout)
                .await
                .map_err(|reason| ConnectError::transport(&self.endpoint, reason));
        }
        let attempt = async {
            match &self.endpoint {
                GuestEndpoint::Unix(path) => LeanSocket::connect_unix(path)
                    .map(GuestStream::new)
                    .map_err(Failure::Io),
                GuestEndpoint::Tcp(addr) => {
                    let s = TcpStream::connect(addr.as_str())
                        .await
                        .map_err(Failure::Io)?;
                    // Docker API exchanges are small request/response pairs: latency matters.
                    s.set_nodelay(true).map_err(Failure::Io)?;
                    keep_alive(&s).map_err(Failure::Io)?;
                    match &self.transport {
                        Transport::Tls(tls) => {
                            let s = LeanSocket::from_tcp(s).map_err(Failure::Io)?;
                            tls.connect(s).await.map_err(Failure::Tls)
                        }
                        _ => LeanSocket::from_tcp(s)
                            .map(GuestStream::new)
                            .map_err(Failure::Io),
                    }
                }
                GuestEndpoint::Ssh(_) => Err(Failure::Io(std::io::Error::other(
                    "an ssh:// endpoint needs its SSH connection",
                ))),
                GuestEndpoint::NetnsTcp { addr, .. } => {
                    let sockets = match &self.transport {
                        Transport::Netns(sockets) => match sockets.as_ref() {
                            Ok(sockets) => sockets,
                            Err(e) => {
                                return Err(Failure::Io(std::io::Error::new(
                                    e.kind(),
                                    e.to_string(),
                                )))
                            }
                        },
                        _ => {
                            return Err(Failure::Io(std::io::Error::other(
                                "no thread for the network namespace",
                            )))
                        }
                    };
                    let s = sockets.connect_tcp(*addr).await.map_err(Failure::Io)?;
                    LeanSocket::from_tcp(s)
                        .map(GuestStream::new)
                        .map_err(Failure::Io)
                }
            }
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(Failure::Io(e))) => Err(ConnectError::io(&self.endpoint, e)),
            Ok(Err(Failure::Tls(e))) => Err(ConnectError::transport(
                &self.endpoint,
                format!("TLS handshake failed: {}", tls::describe(&e)),
            )),
            Err(_) => Err(ConnectError::timeout(&self.endpoint, self.connect_timeout)),
        }
    }
}

/// TCP keep-alive probes after 15 s of silence, every 5 s, 3 unanswered: a remote engine
/// that vanished (host down, link gone) ends a silent stream (`logs -f`, attach) in
/// about half a minute instead of never.
fn keep_alive(s: &TcpStream) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(s, sockopt::KeepAlive, &true)?;
    setsockopt(s, sockopt::TcpKeepIdle, &15)?;
    setsockopt(s, sockopt::TcpKeepInterval, &5)?;
    setsockopt(s, sockopt::TcpKeepCount, &3)?;
    Ok(())
}

/// Why one connect attempt failed, before it is worded for clients.
enum Failure {
    Io(std::io::Error),
    Tls(std::io::Error),
}

impl tower_service::Service<Uri> for GuestConnector {
    type Response = TokioIo<GuestStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect().await.map(TokioIo::new) })
    }
}
