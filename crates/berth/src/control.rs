//! The control socket: how `berth status` and `berth machine …` talk to the running
//! daemon. It sits next to the first API socket (`<socket>.ctl`, mode 0600) so that
//! every command given the same `--config` finds the same daemon. Small JSON over
//! HTTP/1.1; it never carries Docker API traffic.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use berth_gateway::BoundSocket;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;

use crate::machines::{MachineReport, MachineSet};
use crate::tenants::TenantControl;

/// The control socket that belongs to an API socket.
pub(crate) fn control_path(api_socket: &Path) -> PathBuf {
    let mut name = api_socket.as_os_str().to_owned();
    name.push(".ctl");
    PathBuf::from(name)
}

/// What `GET /status` returns.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DaemonReport {
    pub(crate) pid: u32,
    pub(crate) version: String,
    pub(crate) listeners: Vec<String>,
    /// Where Prometheus metrics are served (`http://ADDR/metrics`), if anywhere.
    #[serde(default)]
    pub(crate) metrics_addr: Option<String>,
    pub(crate) machines: Vec<MachineReport>,
    #[serde(default)]
    pub(crate) forwards: Vec<serde_json::Value>,
}

/// Daemon-side state the control server reads.
#[derive(Debug)]
pub(crate) struct ControlState {
    pub(crate) machines: Arc<MachineSet>,
    pub(crate) listeners: Vec<String>,
    pub(crate) metrics_addr: Option<String>,
    pub(crate) tenants: Arc<TenantControl>,
}

/// Serves the control socket until the task is dropped.
pub(crate) async fn serve(socket: BoundSocket, state: Arc<ControlState>) {
    loop {
        let Ok(stream) = socket.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(state: &ControlState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["tenants"]) => match state.tenants.report().await {
            Ok(report) => json(StatusCode::OK, &report),
            Err(e) => message(StatusCode::BAD_GATEWAY, &format!("{e:#}")),
        },
        (&Method::POST, ["tenants"]) => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return message(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            match state.tenants.add(&body) {
                Ok(name) => message(StatusCode::OK, &format!("tenant {name} added")),
                Err(e) => message(StatusCode::BAD_REQUEST, &format!("{e:#}")),
            }
        }
        (&Method::DELETE, ["tenants", name]) => match state.tenants.remove(name).await {
            Ok(summary) => message(StatusCode::OK, &summary),
            Err(e) => message(StatusCode::CONFLICT, &format!("{e:#}")),
        },
        (&Method::GET, ["status"]) => {
            let mut machines = Vec::new();
            for m in &state.machines.machines {
                machines.push(m.report().await);
            }
            json(
                StatusCode::OK,
                &DaemonReport {
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    listeners: state.listeners.clone(),
                    metrics_addr: state.metrics_addr.clone(),
                    machines,
                    forwards: state.machines.forwards(),
                },
            )
        }
        (&Method::GET, ["machines", name, "logs"]) => match managed(state, name) {
            Ok((sup, _)) => text(StatusCode::OK, sup.log_tail(200)),
            Err(res) => res,
        },
        (&Method::POST, ["machines", name, action]) => {
            let (sup, dir) = match managed(state, name) {
                Ok(m) => m,
                Err(res) => return res,
            };
            let result = match *action {
                "start" => sup
                    .ensure_running()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                "stop" => sup.stop().await.map_err(|e| e.to_string()),
                "restart" => match sup.stop().await {
                    Ok(()) => sup
                        .ensure_running()
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                "rm" => match sup.teardown().await {
                    Ok(()) => remove_data(dir),
                    Err(e) => Err(e.to_string()),
                },
                _ => return message(StatusCode::NOT_FOUND, &format!("unknown action {action}")),
            };
            match result {
                Ok(()) => message(StatusCode::OK, &format!("machine {name}: {action} done")),
                Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, &e),
            }
        }
        _ => message(StatusCode::NOT_FOUND, "unknown control request"),
    }
}

/// A managed machine's supervisor and directory, or the response explaining why not.
#[allow(clippy::result_large_err)]
fn managed<'a>(
    state: &'a ControlState,
    name: &str,
) -> Result<(&'a Arc<berth_engine::EngineSupervisor>, &'a Path), Response<Full<Bytes>>> {
    let Some(machine) = state.machines.get(name) else {
        return Err(message(
            StatusCode::NOT_FOUND,
            &format!("no machine named {name:?}"),
        ));
    };
    match (&machine.supervisor, &machine.state_dir) {
        (Some(sup), Some(dir)) => Ok((sup, dir)),
        _ => Err(message(
            StatusCode::CONFLICT,
            &format!("machine {name:?} is external: berth does not run its engine"),
        )),
    }
}

/// Deletes a stopped machine's data (images, volumes, containers, logs).
fn remove_data(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", dir.display())),
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res
}

fn message(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "message": text }))
}

fn text(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(text)));
    *res.status_mut() = status;
    res
}

/// Sends one control request to the daemon behind `control`; returns the body.
pub(crate) async fn request(control: &Path, method: Method, path: &str) -> Result<Bytes> {
    request_with(control, method, path, Bytes::new()).await
}

/// Sends one control request with a JSON body; returns the answer's body.
pub(crate) async fn request_with(
    control: &Path,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<Bytes> {
    let stream = match UnixStream::connect(control).await {
        Ok(s) => s,
        Err(e) => bail!(
            "no berth daemon is running for this configuration (control socket {}: {}); start one with `berth serve`",
            control.display(),
            e.kind()
        ),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("talking to the berth daemon")?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "berth")
        .body(Full::new(body))?;
    let res = sender
        .send_request(req)
        .await
        .context("talking to the berth daemon")?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{msg}");
    }
    Ok(body)
}
