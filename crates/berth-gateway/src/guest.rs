//! One guest engine as the request path sees it: how to reach it, a pool of
//! keep-alive connections to it, and whether it has been verified to answer.

mod activity;
mod health;
pub(crate) mod lease;
mod readiness;

pub use activity::{Activity, ActivityGuard};
pub use health::{Health, HealthState};
pub use readiness::{Readiness, ReadinessState};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use berth_guest::{ConnectError, GuestConnector};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Either, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use crate::body::UpstreamBody;
use crate::error::GatewayError;
use crate::metrics::MachineMeter;
use crate::paths::PathTranslator;

/// A pooled HTTP/1.1 client bound to one engine.
pub type GuestClient = Client<GuestConnector, UpstreamBody>;

/// An error from another crate's side of a trait below (the engine supervisor, the
/// port forwarder), kept whole with its causes; the gateway decides what it becomes.
pub type ServiceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Starts or revives an engine that berth runs itself (a managed machine).
///
/// The request path only needs two facts from the supervisor: "make it run" and "which
/// run is this", so that connections pooled to an earlier run are dropped.
pub trait EngineLifecycle: Send + Sync + fmt::Debug + 'static {
    /// Starts the engine if it is not running; returns its generation. An error makes
    /// the engine "not ready" (503), its text the reason.
    fn ensure_running(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<u64, ServiceError>> + Send + '_>>;
    /// The generation of the current (or last) run; cheap, called per request.
    fn generation(&self) -> u64;
    /// Whether the engine runs now. A failed exchange with an engine that does not
    /// (stopped, or restarting after it exited or was found wedged) is "not ready"
    /// (503), not "unreachable".
    fn is_running(&self) -> bool {
        true
    }
}

/// Brings a container's published ports to the host (engines in their own network
/// namespace). An error's text is dockerd-style ("Bind for 0.0.0.0:8080 failed: port
/// is already allocated"): the client reads it in dockerd's own failure shape.
pub trait PortPublisher: Send + Sync + fmt::Debug + 'static {
    /// Makes host listeners match one container's published ports, from its whole
    /// inspect answer (`Id`, `NetworkSettings.Ports`, networks); all are bound before it
    /// returns.
    fn publish<'a>(
        &'a self,
        inspect: &'a serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<(), ServiceError>> + Send + 'a>>;
    /// Drops a container's host listeners.
    fn unpublish<'a>(
        &'a self,
        container_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// Per-engine timeouts.
#[derive(Clone, Copy, Debug)]
pub struct GuestTimeouts {
    /// Opening a connection to the engine.
    pub connect: Duration,
    /// The readiness ping (`GET /_ping`) answering.
    pub verify: Duration,
    /// The response head of a quick read (see `Classified::head_deadline_applies`).
    pub head: Duration,
}

impl Default for GuestTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            verify: Duration::from_secs(10),
            head: Duration::from_secs(120),
        }
    }
}

/// One guest engine.
#[derive(Debug)]
pub struct Guest {
    name: String,
    connector: GuestConnector,
    timeouts: GuestTimeouts,
    /// Replaced when a managed engine starts a new generation: pooled connections of
    /// the previous dockerd must not be reused.
    client: RwLock<(u64, GuestClient)>,
    readiness: Readiness,
    lifecycle: Option<Arc<dyn EngineLifecycle>>,
    ports: Option<Arc<dyn PortPublisher>>,
    paths: Option<PathTranslator>,
    /// Long exchanges open on this guest (for stopping idle managed engines).
    activity: Arc<Activity>,
    /// Guest connections no client connection holds (see `lease`).
    idle: lease::IdleConnections,
    /// Guest connections no client connection holds, for framed exchanges.
    idle_streams: lease::IdleStreams,
    /// Up or down as last checked (remote engines).
    health: Health,
    /// This machine's series, when the gateway records metrics.
    meter: std::sync::OnceLock<Arc<MachineMeter>>,
}

/// What a guest has beyond a way to reach it.
#[derive(Clone, Debug, Default)]
pub struct GuestOptions {
    /// Set for engines berth runs itself.
    pub lifecycle: Option<Arc<dyn EngineLifecycle>>,
    /// Set for engines whose published ports must be brought to the host.
    pub ports: Option<Arc<dyn PortPublisher>>,
    /// Set for engines that see the host's files under other paths.
    pub paths: Option<PathTranslator>,
}

impl Guest {
    /// A guest reached through `connector`; `lifecycle` is set for managed engines.
    pub fn new(
        name: impl Into<String>,
        connector: GuestConnector,
        timeouts: GuestTimeouts,
        options: GuestOptions,
    ) -> Arc<Self> {
        let generation = options.lifecycle.as_ref().map_or(0, |l| l.generation());
        Arc::new(Self {
            name: name.into(),
            client: RwLock::new((generation, build_client(&connector))),
            connector,
            timeouts,
            readiness: Readiness::default(),
            lifecycle: options.lifecycle,
            ports: options.ports,
            paths: options.paths,
            activity: Arc::default(),
            idle: lease::IdleConnections::default(),
            idle_streams: lease::IdleStreams::default(),
            health: Health::default(),
            meter: std::sync::OnceLock::new(),
        })
    }

    /// This machine's metrics, if the gateway records any.
    pub(crate) fn meter(&self) -> Option<&Arc<MachineMeter>> {
        self.meter.get()
    }

    /// Records this machine's exchanges into `meter` (set once, by the gateway).
    pub(crate) fn install_meter(&self, meter: Arc<MachineMeter>) {
        let _ = self.meter.set(meter);
    }

    /// The long exchanges (hijacks, upgrades, streamed uploads) open on this guest.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Bind-mount path mappings, if this engine sees host files under other paths.
    pub fn paths(&self) -> Option<&PathTranslator> {
        self.paths.as_ref()
    }

    /// The port publisher, if this engine's ports must be brought to the host.
    pub fn ports(&self) -> Option<&Arc<dyn PortPublisher>> {
        self.ports.as_ref()
    }

    /// `GET path` on the engine, JSON-decoded; for host-side behaviour (not pass-through).
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, GatewayError> {
        let (status, body) = self.request(http::Method::GET, path).await?;
        if !status.is_success() {
            return Err(self.bad_answer(format!("{status} to GET {path}")));
        }
        serde_json::from_slice(&body)
            .map_err(|e| self.bad_answer(format!("invalid JSON for GET {path}: {e}")))
    }

    /// The error for an answer that is not what an engine sends.
    pub fn bad_answer(&self, reason: String) -> GatewayError {
        GatewayError::GuestBadAnswer {
            engine: self.name.clone(),
            reason,
        }
    }

    /// Sends a body-less request berth makes itself; returns status and whole body.
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
    ) -> Result<(StatusCode, Bytes), GatewayError> {
        self.request_with(method, path, None).await
    }

    /// Sends a request berth makes itself, with a JSON body if given; returns status
    /// and whole body.
    pub async fn request_with(
        &self,
        method: http::Method,
        path: &str,
        json: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), GatewayError> {
        self.request_headed(method, path, json, http::HeaderMap::new())
            .await
    }

    /// [`Guest::request_with`] with `headers` added (a client's `X-Registry-Auth`
    /// for a request berth makes on its behalf).
    pub async fn request_headed(
        &self,
        method: http::Method,
        path: &str,
        json: Option<Bytes>,
        headers: http::HeaderMap,
    ) -> Result<(StatusCode, Bytes), GatewayError> {
        use http_body_util::BodyExt;
        let uri: http::Uri = path
            .parse()
            .map_err(|_| GatewayError::Internal(format!("bad path {path}")))?;
        let mut builder = Request::builder().method(method).uri(guest_uri_from(&uri));
        if json.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        if let Some(h) = builder.headers_mut() {
            h.extend(headers);
        }
        let req = builder
            .body(Either::Right(Full::new(json.unwrap_or_default())))
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        let res = self
            .client()
            .request(req)
            .await
            .map_err(|e| self.upstream_error(&e))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| GatewayError::GuestUnreachable {
                engine: self.name.clone(),
                reason: format!("reading a response: {e}"),
            })?
            .to_bytes();
        Ok((status, body))
    }

    /// The engine's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How to open a raw stream to it.
    pub fn connector(&self) -> &GuestConnector {
        &self.connector
    }

    /// Its timeouts.
    pub fn timeouts(&self) -> &GuestTimeouts {
        &self.timeouts
    }

    /// Its readiness state machine.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Up or down, as last checked.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// One health check: `GET /_ping` within the verify timeout, recorded in
    /// [`Self::health`]. A failure also sends the engine back to Unverified.
    pub async fn check_health(&self) -> HealthState {
        let ping = tokio::time::timeout(
            self.timeouts.verify,
            self.request(http::Method::GET, "/_ping"),
        )
        .await;
        match ping {
            Ok(Ok((status, _))) if status.is_success() => {
                if self.health.up() {
                    tracing::info!(engine = %self.name, "engine is back up");
                }
            }
            failed => {
                let error = match failed {
                    Ok(Ok((status, _))) => format!("_ping answered {status}"),
                    Ok(Err(
                        GatewayError::GuestUnreachable { reason, .. }
                        | GatewayError::GuestNotReady { reason, .. },
                    )) => reason,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("_ping not answered within {:?}", self.timeouts.verify),
                };
                self.readiness.reset();
                if self.health.down(error.clone()) {
                    tracing::warn!(engine = %self.name, %error, "engine is down");
                }
            }
        }
        self.health.state()
    }

    /// The run of a managed engine that connections are opened to now (0 otherwise).
    fn generation(&self) -> u64 {
        self.lifecycle.as_ref().map_or(0, |l| l.generation())
    }

    /// The pooled client for the current generation.
    pub fn client(&self) -> GuestClient {
        let current = self.generation();
        {
            let guard = self.client.read().unwrap_or_else(|e| e.into_inner());
            if guard.0 == current {
                return guard.1.clone();
            }
        }
        let mut guard = self.client.write().unwrap_or_else(|e| e.into_inner());
        if guard.0 != current {
            *guard = (current, build_client(&self.connector));
        }
        guard.1.clone()
    }

    /// Waits until the engine is verified to answer; single-flight across callers.
    pub async fn ready(self: &Arc<Self>) -> Result<(), GatewayError> {
        if let Some(lifecycle) = &self.lifecycle {
            // A managed engine that restarted since it was verified must be verified
            // again (and its old pooled connections are dropped by `client()`).
            self.readiness.forget_unless(lifecycle.generation());
        }
        self.readiness.ensure(self).await
    }

    /// [`Self::ready`], except that an engine the health check found down fails at once
    /// with that error (for look-ups across engines, which should not wait for it).
    pub async fn ready_unless_down(self: &Arc<Self>) -> Result<(), GatewayError> {
        if let HealthState::Down { error, .. } = self.health.state() {
            return Err(GatewayError::GuestUnreachable {
                engine: self.name.clone(),
                reason: format!("down ({error})"),
            });
        }
        self.ready().await
    }

    /// Verifies the engine once: start it if it is managed, then ping it.
    pub(crate) async fn verify(&self) -> Result<u64, GatewayError> {
        let generation = match &self.lifecycle {
            Some(lifecycle) => {
                lifecycle
                    .ensure_running()
                    .await
                    .map_err(|e| GatewayError::GuestNotReady {
                        engine: self.name.clone(),
                        reason: e.to_string(),
                    })?
            }
            None => 0,
        };
        let req = Request::get(guest_uri("/_ping"))
            .body(Either::Right(Full::new(Bytes::new())))
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        let client = self.client();
        match tokio::time::timeout(self.timeouts.verify, client.request(req)).await {
            Ok(Ok(res)) if res.status() != StatusCode::BAD_GATEWAY => {
                // Back before the next health check noticed: merged views take it again.
                if self.health.is_down() && self.health.up() {
                    tracing::info!(engine = %self.name, "engine is back up");
                }
                Ok(generation)
            }
            Ok(Ok(res)) => Err(GatewayError::GuestUnreachable {
                engine: self.name.clone(),
                reason: format!("readiness ping answered {}", res.status()),
            }),
            Ok(Err(e)) => Err(self.upstream_error(&e)),
            Err(_) => Err(GatewayError::GuestTimeout {
                engine: self.name.clone(),
                what: "the readiness ping",
                after: self.timeouts.verify,
            }),
        }
    }

    /// Maps a failed upstream exchange to the client-facing error, and sends the engine
    /// back to Unverified: any transport error means berth no longer knows it answers.
    pub fn upstream_error(&self, e: &hyper_util::client::legacy::Error) -> GatewayError {
        self.readiness.reset();
        let reason =
            match std::error::Error::source(e).and_then(|s| s.downcast_ref::<ConnectError>()) {
                Some(c) if c.is_timeout() => {
                    return GatewayError::GuestTimeout {
                        engine: self.name.clone(),
                        what: "the connection",
                        after: self.timeouts.connect,
                    };
                }
                Some(c) => c.to_string(),
                None => describe_transport_error(e),
            };
        self.unreachable(reason)
    }

    /// Maps a failed exchange on a held connection (see `lease`) like `upstream_error`.
    pub(crate) fn upstream_hyper_error(&self, e: &hyper::Error) -> GatewayError {
        self.readiness.reset();
        self.unreachable(describe_transport_error(e))
    }

    /// Unreachable (502), or not ready (503) when a managed engine no longer runs: its
    /// connections were cut because it stopped or is being restarted.
    fn unreachable(&self, reason: String) -> GatewayError {
        match &self.lifecycle {
            Some(lifecycle) if !lifecycle.is_running() => GatewayError::GuestNotReady {
                engine: self.name.clone(),
                reason: format!("{reason} (the engine stopped or is restarting)"),
            },
            _ => GatewayError::GuestUnreachable {
                engine: self.name.clone(),
                reason,
            },
        }
    }

    /// The error of a quick request whose response head did not come within `after`
    /// (the connection it was sent on is closed with the exchange).
    pub(crate) fn head_timeout(&self, after: Duration) -> GatewayError {
        GatewayError::GuestTimeout {
            engine: self.name.clone(),
            what: "the response head",
            after,
        }
    }

    /// Maps a failed exchange on a framed guest connection like `upstream_error`.
    pub(crate) fn upstream_io_error(&self, reason: impl Into<String>) -> GatewayError {
        self.readiness.reset();
        self.unreachable(reason.into())
    }

    /// Maps a failed raw connect (hijack path) the same way as `upstream_error`.
    pub fn connect_error(&self, e: &ConnectError) -> GatewayError {
        self.readiness.reset();
        if e.is_timeout() {
            GatewayError::GuestTimeout {
                engine: self.name.clone(),
                what: "the connection",
                after: self.timeouts.connect,
            }
        } else {
            GatewayError::GuestUnreachable {
                engine: self.name.clone(),
                reason: e.to_string(),
            }
        }
    }
}

/// Walks to the innermost cause for a readable message without OS phrases that the
/// docker CLI would turn into exit codes (notes 3.3).
fn describe_transport_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.contains("no such file") || text.contains("permission denied") {
        "connection failed".to_owned()
    } else {
        text
    }
}

fn build_client(connector: &GuestConnector) -> GuestClient {
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector.clone())
}

/// An absolute URI for the pooled client; the authority is a placeholder (one
/// connector reaches one engine) and hyper sends only the origin form upstream.
pub(crate) fn guest_uri(path_and_query: &'static str) -> http::Uri {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static(path_and_query));
    with_guest_authority(parts)
}

/// The client's request target, verbatim, made absolute for the pooled client.
pub(crate) fn guest_uri_from(uri: &http::Uri) -> http::Uri {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = uri.path_and_query().cloned();
    with_guest_authority(parts)
}

fn with_guest_authority(mut parts: http::uri::Parts) -> http::Uri {
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(http::uri::Authority::from_static("guest"));
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    http::Uri::from_parts(parts).unwrap_or_else(|_| http::Uri::from_static("http://guest/"))
}
