//! Host-side behaviour: what berth does around a pass-through exchange because the
//! engine lives behind a boundary. Everything not listed here is plain pass-through.
//!
//! - `POST /containers/{id}/start` and `/restart`: once the engine answers 204, the
//!   container's published ports are bound on the host *before* the client gets its
//!   answer, so a client connecting right after `docker start` returns never finds the
//!   port closed. If a host port is taken, the container is stopped again and the client
//!   gets dockerd's own 500 "port is already allocated" shape.
//! - `POST /containers/create` and `POST /volumes/create` on an engine with path
//!   mappings: host paths (bind sources, a local volume's bind `device`) are translated
//!   on the body model (`paths.rs`, `host/create.rs`) and the model is forwarded; an
//!   unmapped host path, or a body the model cannot read, is a 400.
//! - With several engines, what the registry learns from an answer (a container or
//!   exec created, a container removed: [`Bookkeeping`]) is recorded before the client
//!   gets it, so that the client's next request finds its owner.
//!
//! `serve` plans this work before the exchange ([`plan`]), lets it edit the request
//! ([`HostWork::prepare`]), forwards, and finishes it on the answer
//! ([`HostWork::finish`]); the forward stage knows nothing of it.

mod create;

use std::sync::Arc;

use berth_policy::{BodyKind, DockerBody, HostPathKind};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{HeldBody, ResponseBody};
use crate::classify::{Classified, Endpoint, Exchange};
use crate::error::GatewayError;
use crate::guest::{Guest, PortPublisher};
use crate::workloads::{Bookkeeping, WorkloadRegistry};

/// Request bodies berth edits (JSON) are held whole up to this size; dockerd itself
/// reads create bodies without a limit, but no real one comes near it.
const MAX_EDITED_BODY: usize = 16 << 20;

/// What berth does around one exchange with one engine, decided before it is forwarded
/// (the request is moved into the exchange).
#[derive(Debug)]
pub(crate) struct HostWork {
    task: Option<Task>,
    /// What the registry learns from the answer of engine `.0` (several engines).
    record: Option<(usize, Bookkeeping)>,
}

/// Work on the host itself.
#[derive(Debug)]
enum Task {
    /// Bind the container's published ports once it started.
    PublishPorts { container: String },
    /// Translate the host paths in a create body of this kind (container or volume).
    TranslateHostPaths(BodyKind),
}

/// What host-side work `classified` needs on `guest` (engine `record.0` when there are
/// several, with what its answer must be recorded for); `path` is the unversioned path.
/// `None` for plain pass-through (the common case: nothing is allocated). Upgrades
/// carry none of it but the bookkeeping: they are forwarded as they are.
pub(crate) fn plan(
    guest: &Guest,
    classified: &Classified,
    path: &str,
    record: Option<(usize, Bookkeeping)>,
) -> Option<HostWork> {
    let task = match classified.endpoint {
        _ if classified.exchange == Exchange::Upgrade => None,
        Endpoint::ContainerStart | Endpoint::ContainerRestart if guest.ports().is_some() => {
            let range = classified.name.clone();
            range
                .and_then(|range| path.get(range))
                .map(|container| Task::PublishPorts {
                    container: container.to_owned(),
                })
        }
        Endpoint::ContainerCreate if guest.paths().is_some() => {
            Some(Task::TranslateHostPaths(BodyKind::ContainerCreate))
        }
        Endpoint::VolumeCreate if guest.paths().is_some() => {
            Some(Task::TranslateHostPaths(BodyKind::VolumeCreate))
        }
        _ => None,
    };
    (task.is_some() || record.is_some()).then_some(HostWork { task, record })
}

impl HostWork {
    /// Edits the request before it is forwarded: a create body whose host paths are
    /// translated is read whole (or taken from the held one) and held, rewritten.
    pub(crate) async fn prepare(
        &self,
        guest: &Guest,
        req: Request<Incoming>,
    ) -> Result<Request<Incoming>, GatewayError> {
        use http_body_util::{BodyExt, Limited};
        let Some(Task::TranslateHostPaths(kind)) = self.task else {
            return Ok(req);
        };
        let (mut parts, mut client_body) = req.into_parts();
        let body = match parts.extensions.remove::<HeldBody>() {
            Some(HeldBody(held)) => held,
            None => Limited::new(&mut client_body, MAX_EDITED_BODY)
                .collect()
                .await
                .map_err(|e| GatewayError::BadRequest(format!("reading request body: {e}")))?
                .to_bytes(),
        };
        let body = translate_host_paths(guest, kind, &body)?.unwrap_or(body);
        parts.extensions.insert(HeldBody(body));
        Ok(Request::from_parts(parts, client_body))
    }

    /// Runs after the guest answered `res`, before the client gets it.
    pub(crate) async fn finish(
        self,
        guest: &Arc<Guest>,
        registry: Option<&WorkloadRegistry>,
        res: Response<ResponseBody>,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        if let Some(Task::PublishPorts { container }) = &self.task {
            if let (StatusCode::NO_CONTENT, Some(ports)) = (res.status(), guest.ports()) {
                publish_ports(guest, ports.as_ref(), container).await?;
            }
        }
        match (self.record, registry) {
            (Some((index, bookkeeping)), Some(registry)) => {
                bookkeeping.record(registry, index, guest, res).await
            }
            _ => Ok(res),
        }
    }
}

/// A `kind` create body with its host paths translated for `guest`; `None` when it
/// needs no change.
fn translate_host_paths(
    guest: &Guest,
    kind: BodyKind,
    body: &[u8],
) -> Result<Option<Bytes>, GatewayError> {
    let Some(paths) = guest.paths() else {
        return Ok(None);
    };
    if body.is_empty() {
        // dockerd answers an empty create body itself.
        return Ok(None);
    }
    let mut model = DockerBody::parse(kind, body)
        .map_err(|e| GatewayError::BadRequest(format!("berth: unreadable create body: {e}")))?;
    create::translate_host_paths(&mut model, paths).map_err(|(at, p)| {
        let what = match at {
            HostPathKind::VolumeDevice => "volume device",
            _ => "bind mount source",
        };
        GatewayError::BadRequest(format!(
            "berth: {what} {p:?} is not shared with engine {:?}: no path_mappings entry (a vm machine: no shares entry) covers it",
            guest.name()
        ))
    })?;
    Ok(Some(Bytes::from(model.encode())))
}

async fn publish_ports(
    guest: &Guest,
    ports: &dyn PortPublisher,
    name: &str,
) -> Result<(), GatewayError> {
    let inspect = guest.get_json(&format!("/containers/{name}/json")).await?;
    let id = inspect["Id"].as_str().unwrap_or(name).to_owned();
    let Err(reason) = ports.publish(&inspect).await else {
        return Ok(());
    };
    // Like dockerd, do not leave the container running when its ports cannot be bound.
    let _ = guest
        .request(Method::POST, &format!("/containers/{id}/stop?t=0"))
        .await;
    ports.unpublish(&id).await;
    let container = inspect["Name"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/');
    Err(GatewayError::PortUnavailable(format!(
        "driver failed programming external connectivity on endpoint {container} ({id}): {reason}"
    )))
}
