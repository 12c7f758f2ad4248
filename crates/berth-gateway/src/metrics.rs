//! What the request path records for Prometheus (opt-in: `Config::metrics`). A leaf
//! below `guest` and the stages: they hold its handles; it knows none of them.
//!
//! Every series a request touches is made when the gateway is built: each machine has
//! one [`MachineMeter`] (reached through its `Guest`) holding, per kind of exchange,
//! the counters, histogram and gauge themselves, so recording is an atomic add on a
//! handle already in hand, never a label lookup. With metrics off, the request path
//! pays one `Option` test per request and per body frame.
//!
//! Series (prefix `berth_`, labels in braces):
//! - `requests_total{machine,kind,status_class}`: answers, by class (`2xx`…); berth's
//!   own errors for a known machine count too. Policy refusals are counted by
//!   `policy_decisions_total` instead (they reach no machine).
//! - `request_duration_seconds{machine,kind}`: from forwarding until the response body
//!   ended (a session: until it closed).
//! - `received_bytes_total` / `sent_bytes_total{machine,kind}`: body bytes from and to
//!   clients (sessions: all bytes, counted when the session ends).
//! - `open_sessions{machine,kind}`: exchanges in progress.
//! - `readiness_failures_total{machine}`: readiness pings (engine starts) that failed.
//! - `policy_decisions_total{decision,rule}`: `allow` (rule empty) or `deny` by rule.
//!
//! `kind` is `ordinary`, `stream` (streamed uploads and streamed answers: logs, events,
//! stats, pull, export, save, wait), `hijack` (attach/exec without `Upgrade`),
//! `upgrade` (101 sessions) or `merged` (one answer from every machine; machine `all`).

use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::body::{MergedBody, Metered, Tally};
use crate::classify::{Classified, Endpoint, Exchange};
use crate::error::GatewayError;

/// The kinds of exchange, in label order.
const KINDS: [&str; 5] = ["ordinary", "stream", "hijack", "upgrade", "merged"];

/// A kind of exchange (an index into [`KINDS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Ordinary = 0,
    Stream = 1,
    Hijack = 2,
    Upgrade = 3,
    Merged = 4,
}

impl Kind {
    /// The kind a classified request is counted as.
    pub(crate) fn of(classified: &Classified, method: &Method) -> Self {
        match classified.exchange {
            Exchange::Upgrade => Self::Upgrade,
            Exchange::Hijack => Self::Hijack,
            Exchange::StreamedUpload => Self::Stream,
            Exchange::Ordinary => match classified.endpoint {
                Endpoint::Events
                | Endpoint::ContainerLogs
                | Endpoint::ContainerStats
                | Endpoint::ContainerExport
                | Endpoint::ContainerWait
                | Endpoint::ImageSave => Self::Stream,
                Endpoint::ImageCreate if method == Method::POST => Self::Stream,
                _ => Self::Ordinary,
            },
        }
    }
}

/// Seconds: half a millisecond (a proxied `/_ping`) to ten minutes (a long session).
const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
    600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    machine: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    machine: String,
    kind: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MachineLabels {
    machine: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    rule: String,
}

/// The families, registered once.
#[derive(Debug)]
struct Families {
    requests: Family<RequestLabels, Counter>,
    duration: Family<ExchangeLabels, Histogram, fn() -> Histogram>,
    received: Family<ExchangeLabels, Counter>,
    sent: Family<ExchangeLabels, Counter>,
    open: Family<ExchangeLabels, Gauge>,
    readiness_failures: Family<MachineLabels, Counter>,
}

/// The gateway's metrics: one meter per machine, one for merged views, and the policy's
/// decisions.
#[derive(Debug)]
pub struct GatewayMetrics {
    machines: Vec<(String, Arc<MachineMeter>)>,
    merged: Arc<MachineMeter>,
    decisions: Family<DecisionLabels, Counter>,
}

impl GatewayMetrics {
    /// Registers the gateway's series in `registry` for machines `names`.
    pub fn register(registry: &mut Registry, names: &[&str]) -> Arc<Self> {
        let families = Families {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            received: Family::default(),
            sent: Family::default(),
            open: Family::default(),
            readiness_failures: Family::default(),
        };
        let decisions = Family::<DecisionLabels, Counter>::default();
        let meter =
            |name: &str, kinds: &[Kind]| Arc::new(MachineMeter::new(&families, name, kinds));
        let all = [Kind::Ordinary, Kind::Stream, Kind::Hijack, Kind::Upgrade];
        let metrics = Self {
            machines: names
                .iter()
                .map(|n| ((*n).to_owned(), meter(n, &all)))
                .collect(),
            merged: meter("all", &[Kind::Merged]),
            decisions: decisions.clone(),
        };
        registry.register(
            "requests",
            "Answers to clients, by machine, kind of exchange and status class",
            families.requests,
        );
        registry.register(
            "request_duration_seconds",
            "From forwarding until the response body ended (sessions: until closed)",
            families.duration,
        );
        registry.register(
            "received_bytes",
            "Body bytes received from clients",
            families.received,
        );
        registry.register("sent_bytes", "Body bytes sent to clients", families.sent);
        registry.register("open_sessions", "Exchanges in progress", families.open);
        registry.register(
            "readiness_failures",
            "Readiness pings (and engine starts) that failed",
            families.readiness_failures,
        );
        registry.register(
            "policy_decisions",
            "Access-policy decisions: allow, or deny by rule",
            decisions,
        );
        Arc::new(metrics)
    }

    /// The meter of machine `name`.
    pub(crate) fn machine(&self, name: &str) -> Option<&Arc<MachineMeter>> {
        self.machines
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
    }

    /// A record for one merged view.
    pub(crate) fn merged_record(&self) -> Option<Recording> {
        self.merged.begin(Kind::Merged)
    }

    /// Counts one policy decision (`rule` empty for an allow).
    pub(crate) fn decided(&self, allow: bool, rule: &str) {
        let labels = DecisionLabels {
            decision: if allow { "allow" } else { "deny" },
            rule: rule.to_owned(),
        };
        self.decisions.get_or_create(&labels).inc();
    }
}

/// One machine's series, per kind of exchange.
#[derive(Debug)]
pub struct MachineMeter {
    kinds: [Option<KindMeter>; 5],
    readiness_failures: Counter,
}

/// The series of one machine and kind.
#[derive(Debug)]
struct KindMeter {
    /// By status class: 1xx to 5xx.
    by_class: [Counter; 5],
    duration: Histogram,
    received: Counter,
    sent: Counter,
    open: Gauge,
}

impl MachineMeter {
    fn new(families: &Families, machine: &str, kinds: &[Kind]) -> Self {
        let mut meters: [Option<KindMeter>; 5] = Default::default();
        for &kind in kinds {
            let labels = ExchangeLabels {
                machine: machine.to_owned(),
                kind: KINDS[kind as usize],
            };
            let class = |c: &'static str| {
                families.requests.get_or_create_owned(&RequestLabels {
                    machine: machine.to_owned(),
                    kind: KINDS[kind as usize],
                    status_class: c,
                })
            };
            meters[kind as usize] = Some(KindMeter {
                by_class: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(class),
                duration: families.duration.get_or_create_owned(&labels),
                received: families.received.get_or_create_owned(&labels),
                sent: families.sent.get_or_create_owned(&labels),
                open: families.open.get_or_create_owned(&labels),
            });
        }
        Self {
            kinds: meters,
            readiness_failures: families
                .readiness_failures
                .get_or_create_owned(&MachineLabels {
                    machine: machine.to_owned(),
                }),
        }
    }

    /// Starts recording one exchange of `kind`; the returned record ends it when dropped.
    pub(crate) fn begin(self: &Arc<Self>, kind: Kind) -> Option<Recording> {
        let meter = self.kinds[kind as usize].as_ref()?;
        meter.open.inc();
        Some(Recording {
            machine: Arc::clone(self),
            kind,
            start: Instant::now(),
        })
    }

    /// Counts a failed readiness ping.
    pub(crate) fn readiness_failed(&self) {
        self.readiness_failures.inc();
    }

    fn kind(&self, kind: Kind) -> &KindMeter {
        // `begin` made the record only for kinds this meter has.
        self.kinds[kind as usize]
            .as_ref()
            .unwrap_or_else(|| unreachable!("a record for a kind its meter lacks"))
    }
}

/// One exchange being recorded: it is open until this is dropped, which observes its
/// duration.
#[derive(Debug)]
pub(crate) struct Recording {
    machine: Arc<MachineMeter>,
    kind: Kind,
    start: Instant,
}

impl Recording {
    /// Counts the answer's status.
    pub(crate) fn answered(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.meter().by_class[class].inc();
    }

    /// Bytes received from the client.
    pub(crate) fn received(&self, n: u64) {
        self.meter().received.inc_by(n);
    }

    /// Bytes sent to the client.
    pub(crate) fn sent(&self, n: u64) {
        self.meter().sent.inc_by(n);
    }

    /// What counts a request body's bytes as received (the body may outlive this
    /// record's owner).
    pub(crate) fn receiving(&self) -> Box<dyn Tally> {
        Box::new(Received(self.meter().received.clone()))
    }

    fn meter(&self) -> &KindMeter {
        self.machine.kind(self.kind)
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let meter = self.meter();
        meter.duration.observe(self.start.elapsed().as_secs_f64());
        meter.open.dec();
    }
}

/// Counts a merged view's answer; its record ends with the answer's body.
pub(crate) fn merged(
    answer: Result<http::Response<MergedBody>, GatewayError>,
    record: Option<Recording>,
) -> Result<http::Response<MergedBody>, GatewayError> {
    let Some(record) = record else {
        return answer;
    };
    match answer {
        Ok(res) => {
            record.answered(res.status());
            Ok(res.map(|body| MergedBody::new(Metered::plain(body).ending(Box::new(record)))))
        }
        Err(e) => {
            record.answered(e.status());
            Err(e)
        }
    }
}

/// A response body's bytes are sent to the client; the exchange ends with the body.
impl Tally for Recording {
    fn add(&self, bytes: u64) {
        self.sent(bytes);
    }
}

/// A request body's bytes, received from the client.
#[derive(Debug)]
struct Received(Counter);

impl Tally for Received {
    fn add(&self, bytes: u64) {
        self.0.inc_by(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[tokio::test]
    async fn a_metered_exchange_counts_its_status_bytes_and_duration_once() {
        let mut registry = Registry::with_prefix("berth");
        let metrics = GatewayMetrics::register(&mut registry, &["m1"]);
        let meter = metrics.machine("m1").unwrap();
        let record = meter.begin(Kind::Stream).unwrap();
        record.answered(StatusCode::OK);
        let upload = Metered::counted(
            Full::new(bytes::Bytes::from_static(b"12345")),
            Some(record.receiving()),
        );
        assert_eq!(upload.collect().await.unwrap().to_bytes().len(), 5);
        let text = scrape(&registry);
        assert!(
            text.contains("berth_open_sessions{machine=\"m1\",kind=\"stream\"} 1"),
            "{text}"
        );
        let body =
            Metered::plain(Full::new(bytes::Bytes::from_static(b"abc"))).ending(Box::new(record));
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 3);
        metrics.decided(false, "no-privileged");
        meter.readiness_failed();
        let text = scrape(&registry);
        for line in [
            "berth_requests_total{machine=\"m1\",kind=\"stream\",status_class=\"2xx\"} 1",
            "berth_requests_total{machine=\"m1\",kind=\"ordinary\",status_class=\"5xx\"} 0",
            "berth_received_bytes_total{machine=\"m1\",kind=\"stream\"} 5",
            "berth_sent_bytes_total{machine=\"m1\",kind=\"stream\"} 3",
            "berth_open_sessions{machine=\"m1\",kind=\"stream\"} 0",
            "berth_request_duration_seconds_count{machine=\"m1\",kind=\"stream\"} 1",
            "berth_readiness_failures_total{machine=\"m1\"} 1",
            "berth_policy_decisions_total{decision=\"deny\",rule=\"no-privileged\"} 1",
            "berth_requests_total{machine=\"all\",kind=\"merged\",status_class=\"2xx\"} 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
