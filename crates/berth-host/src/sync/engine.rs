//! The few engine calls `PortSync` makes: events, list, inspect. One HTTP/1 connection
//! per call over the engine's `GuestConnector`; the events response is a stream of JSON
//! objects, one per line (gateway notes 13).

use std::fmt::Write as _;
use std::time::Duration;

use berth_guest::GuestConnector;
use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::PortError;

/// How long a list or inspect may take before the session is considered broken.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The container events that change what a container publishes.
const EVENT_FILTERS: &str = r#"{"type":["container"],"event":["start","die","stop","destroy"]}"#;

/// An event line longer than this is not dockerd's: the stream is dropped.
const MAX_EVENT_LINE: usize = 1024 * 1024;

/// Makes engine calls.
#[derive(Debug)]
pub(super) struct EngineClient {
    connector: GuestConnector,
}

/// A response with the task driving its connection; dropping it closes the connection.
#[derive(Debug)]
struct Exchange {
    status: StatusCode,
    body: Incoming,
    _driver: Driver,
}

/// The task driving one connection, aborted on drop.
#[derive(Debug)]
struct Driver(JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The followed `GET /events` stream.
#[derive(Debug)]
pub(super) struct Events {
    exchange: Exchange,
    buf: BytesMut,
}

impl EngineClient {
    pub(super) fn new(connector: GuestConnector) -> Self {
        Self { connector }
    }

    /// The engine, for logs.
    pub(super) fn endpoint(&self) -> &berth_guest::GuestEndpoint {
        self.connector.endpoint()
    }

    /// Subscribes to container events since `since` (unix seconds). The engine has
    /// subscribed when this returns, and replays its buffered events from `since`,
    /// which covers the gap between its response head and its subscription.
    pub(super) async fn events(&self, since: u64) -> Result<Events, PortError> {
        let path = format!(
            "/events?since={since}&filters={}",
            percent_encode(EVENT_FILTERS)
        );
        let exchange = tokio::time::timeout(CALL_TIMEOUT, self.send(&path))
            .await
            .map_err(|_| {
                PortError::Engine(format!("GET /events: no answer in {CALL_TIMEOUT:?}"))
            })??;
        if exchange.status != StatusCode::OK {
            return Err(PortError::Engine(format!(
                "GET /events answered {}",
                exchange.status
            )));
        }
        Ok(Events {
            exchange,
            buf: BytesMut::new(),
        })
    }

    /// The full IDs of running containers.
    pub(super) async fn running(&self) -> Result<Vec<String>, PortError> {
        let list = self
            .get_json("/containers/json")
            .await?
            .ok_or_else(|| PortError::Engine("GET /containers/json answered 404".into()))?;
        Ok(list
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["Id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `GET /containers/{id}/json`; `None` when the container no longer exists.
    pub(super) async fn inspect(&self, id: &str) -> Result<Option<Value>, PortError> {
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(PortError::Engine(format!("unexpected container ID {id:?}")));
        }
        self.get_json(&format!("/containers/{id}/json")).await
    }

    /// A whole JSON answer; `None` on 404. Other statuses are errors.
    async fn get_json(&self, path: &str) -> Result<Option<Value>, PortError> {
        let call = async {
            let exchange = self.send(path).await?;
            let status = exchange.status;
            let body = exchange
                .body
                .collect()
                .await
                .map_err(|e| PortError::Engine(format!("GET {path}: {e}")))?
                .to_bytes();
            Ok::<_, PortError>((status, body))
        };
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| {
                PortError::Engine(format!("GET {path}: no answer in {CALL_TIMEOUT:?}"))
            })??;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(PortError::Engine(format!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| PortError::Engine(format!("GET {path}: invalid JSON: {e}")))
    }

    /// Sends `GET path` on a new connection and returns once the response head is in.
    async fn send(&self, path: &str) -> Result<Exchange, PortError> {
        let engine = |e: &dyn std::fmt::Display| PortError::Engine(format!("GET {path}: {e}"));
        let stream = self.connector.connect().await.map_err(|e| engine(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| engine(&e))?;
        let driver = Driver(tokio::spawn(async move {
            let _ = conn.await;
        }));
        // dockerd requires a Host header (gateway notes 1.1).
        let req = Request::get(path)
            .header(http::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| engine(&e))?;
        let res = sender.send_request(req).await.map_err(|e| engine(&e))?;
        Ok(Exchange {
            status: res.status(),
            body: res.into_body(),
            _driver: driver,
        })
    }
}

impl Events {
    /// The next event; `None` when the engine ended the stream.
    pub(super) async fn next(&mut self) -> Result<Option<Value>, PortError> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(end + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| PortError::Engine(format!("invalid event: {e}")));
            }
            if self.buf.len() > MAX_EVENT_LINE {
                return Err(PortError::Engine("event line too long".into()));
            }
            match self.exchange.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(PortError::Engine(format!("event stream: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_percent_encoded() {
        assert_eq!(
            percent_encode(r#"{"a":["b c"]}"#),
            "%7B%22a%22%3A%5B%22b%20c%22%5D%7D"
        );
    }
}
