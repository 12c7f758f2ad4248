//! The Prometheus endpoint (`metrics_addr` / `--metrics-addr`, opt-in): `GET /metrics`
//! in the text format, encoded by `prometheus-client`. The request path records into
//! `berth_gateway::GatewayMetrics`; machine facts are read at scrape time
//! ([`MachineCollector`]), so nothing here runs per request.
//!
//! Machine series (prefix `berth_`):
//! - `machine_state{machine,state}`: 1 for the state the machine is in, 0 for the others
//!   (`stopped`, `starting`, `running`, `stopping`, `failed`; `external` for engines
//!   berth does not run).
//! - `machine_restarts_total{machine}`: starts of a managed engine after its first one
//!   in this berth process (restarts on demand, after crashes, `machine restart`).
//! - `machine_generation_start_time_seconds{machine}`: when the running dockerd became
//!   ready (Unix time).
//! - `port_forwards_open{machine}`: host ports forwarded into the machine now.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::machines::MachineSet;

/// The states `machine_state` enumerates.
const STATES: [&str; 6] = [
    "stopped", "starting", "running", "stopping", "failed", "external",
];

/// Serves `registry` on `addr` until the task is dropped; returns the bound address.
pub(crate) async fn serve(
    addr: &str,
    registry: Registry,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics_addr {addr}: binding"))?;
    let bound = listener.local_addr()?;
    let registry = Arc::new(registry);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let registry = Arc::clone(&registry);
                    async move { Ok::<_, Infallible>(answer(&registry, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

fn answer(registry: &Registry, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        res
    };
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "berth serves its metrics on GET /metrics\n".into(),
        );
    }
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("encoding metrics: {e}\n"),
        ),
    }
}

/// Machine facts, read from the supervisors and forwarders at each scrape.
#[derive(Debug)]
pub(crate) struct MachineCollector(pub(crate) Arc<MachineSet>);

impl Collector for MachineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let machines = &self.0.machines;
        let statuses: Vec<_> = machines
            .iter()
            .map(|m| m.supervisor.as_ref().map(|s| s.status()))
            .collect();

        let mut family = encoder.encode_descriptor(
            "machine_state",
            "1 for the state the machine is in, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for (m, status) in machines.iter().zip(&statuses) {
            // The state's name as `berth status` shows it, without a failure's reason.
            let current = status.as_ref().map_or_else(
                || "external".to_owned(),
                |s| {
                    s.state
                        .to_string()
                        .split(':')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_owned()
                },
            );
            let extra = (!STATES.contains(&current.as_str())).then_some(current.as_str());
            for state in STATES.into_iter().chain(extra) {
                let labels = [("machine", m.name.as_str()), ("state", state)];
                ConstGauge::new(i64::from(state == current))
                    .encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "machine_restarts",
            "Starts of a managed engine after its first one in this berth process",
            None,
            MetricType::Counter,
        )?;
        for (m, status) in machines.iter().zip(&statuses) {
            if let Some(status) = status {
                let restarts = status.generation.get().saturating_sub(1);
                ConstCounter::new(restarts)
                    .encode(family.encode_family(&[("machine", m.name.as_str())])?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "machine_generation_start_time_seconds",
            "When the running engine became ready (Unix time)",
            None,
            MetricType::Gauge,
        )?;
        for (m, status) in machines.iter().zip(&statuses) {
            let started = status
                .as_ref()
                .and_then(|s| s.started_at)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            if let Some(started) = started {
                ConstGauge::new(started.as_secs_f64())
                    .encode(family.encode_family(&[("machine", m.name.as_str())])?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "port_forwards_open",
            "Host ports forwarded into the machine",
            None,
            MetricType::Gauge,
        )?;
        for m in machines {
            if let Some(ports) = &m.ports {
                let open = i64::try_from(ports.list().len()).unwrap_or(i64::MAX);
                ConstGauge::new(open)
                    .encode(family.encode_family(&[("machine", m.name.as_str())])?)?;
            }
        }
        Ok(())
    }
}
