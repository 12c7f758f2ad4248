//! The request path of berth, in the order a request travels.
//!
//! ```text
//! docker CLI ─► listen   (Unix socket: stale check, mode, drain)
//!            ─► serve    (hyper HTTP/1.1 + upgrades; raw-hijack sniff; trace id)
//!            ─► normalize(/vX.Y prefix split off, original URI kept)
//!            ─► classify (Endpoint + Exchange, once)
//!            ─► route    (EngineRouter → Guest)
//!            ─► guest    (readiness: Unverified → Verifying → Verified; pooled client)
//!            ─► forward  (ordinary | upgrade | hijack) ─► guest dockerd
//! ```
//!
//! Every error berth answers itself is a [`GatewayError`], turned into Docker's JSON
//! shape in one place (`serve`); everything the guest answers passes through as is.

mod admit;
pub mod audit;
pub mod classify;
pub mod error;
mod fanout;
mod forward;
pub mod guest;
mod heap;
pub mod host;
pub mod listen;
pub(crate) mod merge;
pub mod normalize;
pub mod route;
mod serve;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use admit::PolicyGate;
pub use error::{GatewayError, ListenError};
pub use guest::{EngineLifecycle, Guest, GuestOptions, GuestTimeouts, PortPublisher};
pub use host::paths::PathTranslator;
pub use listen::{tls::TlsSettings, BoundSocket, Listener, PeerIdentity, TcpEndpoint};
pub use route::EngineRouter;

/// Gateway-wide settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a client may take to send a request head (dockerd: 5 min).
    pub header_read_timeout: Duration,
    /// How long in-flight exchanges may run on after a shutdown signal.
    pub drain_timeout: Duration,
    /// Where mutating requests are recorded, if anywhere.
    pub audit: Option<audit::AuditLog>,
    /// The access policy, if any (`None`: everything passes, at the cost of one branch).
    pub policy: Option<Arc<PolicyGate>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(10),
            audit: None,
            policy: None,
        }
    }
}

/// The gateway: serves the Docker Engine API on its listeners.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    drain_rx: mpsc::Receiver<()>,
    stop_tx: watch::Sender<bool>,
}

/// State every connection task shares.
#[derive(Debug)]
struct Shared {
    config: Config,
    router: EngineRouter,
    drain: Drain,
}

impl Gateway {
    /// A gateway routing to `router`'s engines.
    pub fn new(config: Config, router: EngineRouter) -> Self {
        let (drain_tx, drain_rx) = mpsc::channel(1);
        let (stop_tx, stop_rx) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                config,
                router,
                drain: Drain {
                    tx: drain_tx,
                    stop: stop_rx,
                },
            }),
            drain_rx,
            stop_tx,
        }
    }

    /// The router, for host-side services that need the engines.
    pub fn router(&self) -> &EngineRouter {
        &self.shared.router
    }

    /// Serves `listeners` until `shutdown` resolves, then stops accepting and lets
    /// in-flight exchanges finish for up to `drain_timeout`.
    pub async fn run(mut self, listeners: Vec<Listener>, shutdown: impl Future<Output = ()>) {
        let (accept_stop_tx, _) = watch::channel(false);
        let mut accept_tasks = Vec::new();
        for listener in listeners {
            let shared = Arc::clone(&self.shared);
            let mut stop = accept_stop_tx.subscribe();
            accept_tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok(connecting) => {
                                let shared = Arc::clone(&shared);
                                // Boxed: tokio moves a task's future several times while
                                // spawning it and again when it ends; a connection's is
                                // ~3 KiB (~4 000 instructions of memcpy per connection).
                                tokio::spawn(Box::pin(async move {
                                    match connecting.await {
                                        Ok((stream, peer)) => {
                                            serve::serve_connection(shared, stream, peer).await;
                                        }
                                        Err(e) => tracing::debug!(error = %e, "client connection not established"),
                                    }
                                }));
                            }
                            Err(e) => {
                                // EMFILE and friends: back off instead of spinning.
                                tracing::warn!(error = %e, "accept failed");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        },
                        _ = stopped(&mut stop) => break,
                    }
                }
                drop(listener);
            }));
        }
        let trimmer = tokio::spawn(heap::trim_when_quiet());
        shutdown.await;
        trimmer.abort();
        tracing::info!("shutting down: no longer accepting, draining in-flight requests");
        let _ = accept_stop_tx.send(true);
        for task in accept_tasks {
            let _ = task.await;
        }
        let _ = self.stop_tx.send(true);
        let drain_timeout = self.shared.config.drain_timeout;
        drop(self.shared);
        if tokio::time::timeout(drain_timeout, self.drain_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                ?drain_timeout,
                "drain timed out; closing remaining connections"
            );
        }
    }
}

/// Tracks in-flight work for a graceful shutdown (mini-redis `Shutdown`): every
/// connection and spliced stream holds a guard; the gateway waits until none is left.
#[derive(Debug)]
pub(crate) struct Drain {
    tx: mpsc::Sender<()>,
    stop: watch::Receiver<bool>,
}

/// Held while a piece of in-flight work lives; also what `heap` counts to give freed
/// memory back after bursts and when berth goes quiet.
#[derive(Debug)]
pub(crate) struct DrainGuard {
    _tx: mpsc::Sender<()>,
    _in_flight: heap::Held,
}

impl Drain {
    pub(crate) fn guard(&self) -> DrainGuard {
        DrainGuard {
            _tx: self.tx.clone(),
            _in_flight: heap::IN_FLIGHT.hold(),
        }
    }

    pub(crate) fn signal(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
