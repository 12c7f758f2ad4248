//! Reaching a guest engine.
//!
//! ```text
//! gateway ─► GuestConnector::connect() ─► GuestStream (unix | tcp) ─► dockerd
//! ```
//!
//! An engine is named by a [`GuestEndpoint`] (`unix:///path` or `tcp://host:port`).
//! [`GuestConnector`] opens one stream to it with a bounded connect time; it is also a
//! `tower::Service<Uri>` so that hyper-util's pooled client can use it directly (the
//! URI is ignored: one connector always reaches one engine).
//!
//! [`LeanSocket`] and [`splice`] move bytes once a connection stops being HTTP: the
//! gateway's upgraded and hijacked sessions and the host's port forwards.
//! [`LeanListener`] accepts the gateway's client connections for `LeanSocket`.

mod endpoint;
mod error;
mod lean_listener;
mod lean_socket;
pub mod splice;
mod stream;

pub use endpoint::{EndpointParseError, GuestEndpoint};
pub use error::ConnectError;
pub use lean_listener::{LeanListener, Listening};
pub use lean_socket::LeanSocket;
pub use stream::GuestStream;

use std::future::Future;
use std::pin::Pin;
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
}

impl GuestConnector {
    /// A connector for `endpoint` that gives up after `connect_timeout`.
    pub fn new(endpoint: GuestEndpoint, connect_timeout: Duration) -> Self {
        Self {
            endpoint,
            connect_timeout,
        }
    }

    /// The engine this connector reaches.
    pub fn endpoint(&self) -> &GuestEndpoint {
        &self.endpoint
    }

    /// Opens a new stream to the engine.
    pub async fn connect(&self) -> Result<GuestStream, ConnectError> {
        let attempt = async {
            match &self.endpoint {
                GuestEndpoint::Unix(path) => LeanSocket::connect_unix(path).map(GuestStream::new),
                GuestEndpoint::Tcp(addr) => {
                    let s = TcpStream::connect(addr.as_str()).await?;
                    // Docker API exchanges are small request/response pairs: latency matters.
                    s.set_nodelay(true)?;
                    LeanSocket::from_tcp(s).map(GuestStream::new)
                }
            }
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(ConnectError::io(&self.endpoint, e)),
            Err(_) => Err(ConnectError::timeout(&self.endpoint, self.connect_timeout)),
        }
    }
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
