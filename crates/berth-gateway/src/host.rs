//! Host-side behaviour: what berth does around a pass-through exchange because the
//! engine lives behind a boundary. Everything not listed here is plain pass-through.
//!
//! - `POST /containers/{id}/start` and `/restart`: once the engine answers 204, the
//!   container's published ports are bound on the host *before* the client gets its
//!   answer, so a client connecting right after `docker start` returns never finds the
//!   port closed. If a host port is taken, the container is stopped again and the client
//!   gets dockerd's own 500 "port is already allocated" shape.
//! - `POST /containers/create` on an engine with path mappings: bind sources are
//!   translated (`host/paths.rs`, `host/create.rs`); an unmapped host path is a 400.

mod create;
pub(crate) mod paths;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode, Uri};

use crate::classify::{Classified, Endpoint};
use crate::error::GatewayError;
use crate::forward::ResponseBody;
use crate::guest::Guest;
use crate::normalize::normalize;

/// Host-side work planned for one request, decided before it is forwarded (the
/// request is moved into the exchange).
#[derive(Debug)]
pub(crate) enum HostWork {
    /// Bind the container's published ports once it started.
    PublishPorts { container: String },
    /// Translate bind-mount sources in the create body.
    TranslateBinds,
}

/// What host-side work `classified` needs on `guest`; `None` for plain pass-through
/// (the common case: nothing is allocated).
pub(crate) fn plan(guest: &Guest, classified: &Classified, uri: &Uri) -> Option<HostWork> {
    match classified.endpoint {
        Endpoint::ContainerStart | Endpoint::ContainerRestart if guest.ports().is_some() => {
            let range = classified.name.clone()?;
            let path = normalize(uri).path(uri);
            Some(HostWork::PublishPorts {
                container: path.get(range)?.to_owned(),
            })
        }
        Endpoint::ContainerCreate if guest.paths().is_some() => Some(HostWork::TranslateBinds),
        _ => None,
    }
}

impl HostWork {
    /// Whether the request body must be rewritten before it is forwarded.
    pub(crate) fn rewrites_body(&self) -> bool {
        matches!(self, Self::TranslateBinds)
    }

    /// Rewrites a whole request body (only when `rewrites_body`).
    pub(crate) fn rewrite_body(
        &self,
        guest: &Guest,
        body: &[u8],
    ) -> Result<Option<Bytes>, GatewayError> {
        let (Self::TranslateBinds, Some(paths)) = (self, guest.paths()) else {
            return Ok(None);
        };
        if body.is_empty() {
            // dockerd answers an empty create body itself.
            return Ok(None);
        }
        let mut value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| GatewayError::BadRequest(format!("invalid JSON in request body: {e}")))?;
        create::translate_binds(&mut value, paths).map_err(|e| match e {
            create::CreateRewriteError::Invalid(m) => GatewayError::BadRequest(m),
            create::CreateRewriteError::Unmapped(p) => GatewayError::BadRequest(format!(
                "berth: bind mount source {p:?} is not shared with engine {:?}: no path mapping covers it",
                guest.name()
            )),
        })?;
        serde_json::to_vec(&value)
            .map(|v| Some(Bytes::from(v)))
            .map_err(|e| GatewayError::Internal(e.to_string()))
    }

    /// Runs after the guest answered `res`.
    pub(crate) async fn after_response(
        self,
        guest: &Arc<Guest>,
        res: Response<ResponseBody>,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        match self {
            Self::PublishPorts { container } if res.status() == StatusCode::NO_CONTENT => {
                if let Some(ports) = guest.ports() {
                    publish_ports(guest, ports.as_ref(), &container).await?;
                }
                Ok(res)
            }
            Self::PublishPorts { .. } | Self::TranslateBinds => Ok(res),
        }
    }
}

async fn publish_ports(
    guest: &Guest,
    ports: &dyn crate::guest::PortPublisher,
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
