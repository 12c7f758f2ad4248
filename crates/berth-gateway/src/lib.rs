//! The request path of berth, in the order a request travels.
//!
//! ```text
//! docker CLI ─► listen    (sockets: stale check, mode, peer identity)
//!            ─► serve     (hyper HTTP/1.1 + upgrades; raw-hijack sniff; the composer)
//!               ├─ normalize (/vX.Y prefix split off, original URI kept)
//!               ├─ classify  (Endpoint + Exchange, once)
//!               ├─ admit     (access policy; 403 before any guest I/O)
//!               ├─ route     (EngineRouter → one Guest, or a merged view)
//!               ├─ guest     (readiness: Unverified → Verifying → Verified)
//!               ├─ host      (work around the exchange: binds, ports, bookkeeping)
//!               ├─ forward   (ordinary | upgrade | hijack) ─► guest dockerd
//!               └─ fanout    (every engine asked, answers merged by `merge`)
//! ```
//!
//! `serve` is the one composer: the stages never import each other (nor `serve`), only
//! the leaf modules below them (`conn`, `body`, `headers`, `trace`, `drain`, `error`,
//! …) and `guest`/`workloads`. docs/architecture.md declares the layers; the
//! `layering` test checks every `crate::` path against them. Every error berth answers
//! itself is a [`GatewayError`], turned into Docker's JSON shape in one place
//! (`error.rs`, called from `serve`); everything the guest answers passes through as is.

// The stages, in travel order (one group each, so that rustfmt keeps the order).
pub mod listen;

mod serve;
pub mod tenant;

pub mod normalize;

pub mod classify;

mod admit;

pub mod route;

mod host;

mod forward;

mod fanout;

// Below the stages (docs/architecture.md, "Layers of the gateway"): engines and their
// state, then the leaves.
pub mod guest;
mod workloads;

pub mod audit;
mod body;
mod conn;
mod drain;
pub mod error;
pub mod framing;
mod headers;
mod heap;
pub(crate) mod merge;
pub mod metrics;
mod paths;
mod trace;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use admit::PolicyGate;
pub use conn::PeerIdentity;
pub use error::{GatewayError, ListenError};
pub use guest::{EngineLifecycle, Guest, GuestOptions, GuestTimeouts, PortPublisher, ServiceError};
pub use listen::{tls::TlsSettings, BoundSocket, Listener, TcpEndpoint};
pub use metrics::GatewayMetrics;
pub use paths::PathTranslator;
pub use route::EngineRouter;
pub use tenant::{Quotas, Tenant, TenantClient, TenantSet, Untenanted};

use drain::{stopped, DrainControl};
use serve::Shared;

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
    /// Where exchanges are counted for Prometheus, if anywhere (`None`: one branch).
    pub metrics: Option<Arc<GatewayMetrics>>,
    /// Plain pass-through exchanges are framed by berth itself (`httparse` heads, bodies
    /// relayed by their framing) instead of hyper; `false` keeps hyper for all of them
    /// (`berth serve --hyper-pass-through`, for A/B measurements).
    pub framed_pass_through: bool,
    /// Tenants, if any (`None`: every client is the admin).
    pub tenants: Option<Arc<TenantSet>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(10),
            audit: None,
            policy: None,
            metrics: None,
            framed_pass_through: true,
            tenants: None,
        }
    }
}

/// The gateway: serves the Docker Engine API on its listeners.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    drain: DrainControl,
    drain_timeout: Duration,
    /// Tells every accept loop (also those added at run time) to stop.
    accept_stop: watch::Sender<bool>,
}

/// Adds listeners to a running gateway (a tenant's socket, `berth tenant add`).
#[derive(Clone, Debug)]
pub struct ListenerSpawner {
    shared: std::sync::Weak<Shared>,
    stop: watch::Receiver<bool>,
}

impl ListenerSpawner {
    /// Serves `listener` until the gateway stops or the returned task is aborted (which
    /// drops the listener: a Unix socket's file goes with it). `None` once the gateway
    /// has stopped.
    pub fn serve(&self, listener: Listener) -> Option<tokio::task::JoinHandle<()>> {
        let shared = self.shared.upgrade()?;
        Some(tokio::spawn(accept_loop(
            shared,
            listener,
            self.stop.clone(),
        )))
    }
}

/// Accepts clients on `listener` until `stop` says so.
async fn accept_loop(shared: Arc<Shared>, listener: Listener, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connecting) => {
                    let shared = Arc::clone(&shared);
                    // Boxed (docs/conventions.md, "Futures").
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
}

impl Gateway {
    /// A gateway routing to `router`'s engines.
    pub fn new(config: Config, router: EngineRouter) -> Self {
        let (drain, control) = drain::drain();
        if let Some(metrics) = &config.metrics {
            for guest in router.guests() {
                if let Some(meter) = metrics.machine(guest.name()) {
                    guest.install_meter(Arc::clone(meter));
                }
            }
        }
        let (accept_stop, _) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                header_read_timeout: config.header_read_timeout,
                audit: config.audit,
                policy: config.policy,
                metrics: config.metrics,
                framed_pass_through: config.framed_pass_through,
                tenants: config.tenants,
                router,
                drain,
            }),
            drain: control,
            drain_timeout: config.drain_timeout,
            accept_stop,
        }
    }

    /// What adds listeners once the gateway runs.
    pub fn listener_spawner(&self) -> ListenerSpawner {
        ListenerSpawner {
            shared: Arc::downgrade(&self.shared),
            stop: self.accept_stop.subscribe(),
        }
    }

    /// The router, for host-side services that need the engines.
    pub fn router(&self) -> &EngineRouter {
        &self.shared.router
    }

    /// Serves `listeners` until `shutdown` resolves, then stops accepting and lets
    /// in-flight exchanges finish for up to `drain_timeout`.
    pub async fn run(self, listeners: Vec<Listener>, shutdown: impl Future<Output = ()>) {
        let mut accept_tasks = Vec::new();
        for listener in listeners {
            let shared = Arc::clone(&self.shared);
            accept_tasks.push(tokio::spawn(accept_loop(
                shared,
                listener,
                self.accept_stop.subscribe(),
            )));
        }
        let trimmer = tokio::spawn(heap::trim_when_quiet());
        shutdown.await;
        trimmer.abort();
        tracing::info!("shutting down: no longer accepting, draining in-flight requests");
        let _ = self.accept_stop.send(true);
        for task in accept_tasks {
            let _ = task.await;
        }
        let drain_timeout = self.drain_timeout;
        drop(self.shared);
        if !self.drain.stop_and_wait(drain_timeout).await {
            tracing::warn!(
                ?drain_timeout,
                "drain timed out; closing remaining connections"
            );
        }
    }
}
