//! Finding a tenant's object on the engine from what the tenant calls it: its name in
//! the tenant's namespace, its full ID or an ID prefix, in dockerd's order (full ID,
//! name, prefix). An object that is not the tenant's (its owner label says so) is
//! answered exactly as a missing one: dockerd's own 404 wording, nothing else.
//! What is found is named by its full ID from then on, so what berth checked is what
//! the engine acts on (an ID is never reused; a name can change hands).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use super::names::inward;
use super::query::OWNER_LABEL;
use super::set::{Tenant, TenantSet};
use crate::error::GatewayError;
use crate::guest::Guest;

/// The engine and the tenant a lookup is for.
pub(crate) struct Lookup<'a> {
    pub(crate) guest: &'a Arc<Guest>,
    pub(crate) tenant: &'a Tenant,
    pub(crate) set: &'a TenantSet,
}

/// The tenant's default network, in the tenant's own spelling (the engine's `bridge`
/// is not theirs).
pub(crate) const DEFAULT_NETWORK: &str = "bridge";

impl Lookup<'_> {
    fn owned(&self, labels: Option<&Value>) -> bool {
        labels
            .and_then(|l| l.get(OWNER_LABEL))
            .and_then(Value::as_str)
            == Some(self.tenant.name())
    }

    /// Asks the engine for `path`: the JSON on 200, `None` on any other answer
    /// (missing, ambiguous, refused: all are "not the tenant's" from here).
    async fn inspect(&self, path: &str) -> Result<Option<Value>, GatewayError> {
        let (status, body) = self.guest.request(Method::GET, path).await?;
        if status != StatusCode::OK {
            return Ok(None);
        }
        serde_json::from_slice(&body).map(Some).map_err(|e| {
            self.guest
                .bad_answer(format!("invalid JSON for GET {path}: {e}"))
        })
    }

    /// The candidates dockerd would try for `reference`, as engine names.
    fn candidates(&self, reference: &str) -> Vec<String> {
        let hex = !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_hexdigit());
        let name = (!reference.is_empty() && !reference.contains('/'))
            .then(|| inward(self.tenant.name(), reference));
        match (hex && reference.len() == 64, name) {
            (true, Some(name)) => vec![reference.to_owned(), name],
            (false, Some(name)) if hex => vec![name, reference.to_owned()],
            (_, Some(name)) => vec![name],
            (_, None) if hex => vec![reference.to_owned()],
            (_, None) => Vec::new(),
        }
    }

    /// The tenant's container `reference`: its inspect (full ID in `Id`).
    pub(crate) async fn container(&self, reference: &str) -> Result<Value, GatewayError> {
        let reference = reference.trim_start_matches('/');
        for c in self.candidates(reference) {
            if let Some(found) = self
                .inspect(&format!("/containers/{}/json", enc(&c)))
                .await?
            {
                if self.owned(found.pointer("/Config/Labels")) {
                    return Ok(found);
                }
            }
        }
        Err(GatewayError::NotFound(format!(
            "No such container: {reference}"
        )))
    }

    /// The tenant's container `reference`, by full ID.
    pub(crate) async fn container_id(&self, reference: &str) -> Result<String, GatewayError> {
        let found = self.container(reference).await?;
        id_of(self.guest, &found)
    }

    /// The tenant's exec instance `id` (its container is the tenant's).
    pub(crate) async fn exec(&self, id: &str) -> Result<String, GatewayError> {
        let missing = || GatewayError::NotFound(format!("No such exec instance: {id}"));
        if id.is_empty() || id.contains('/') {
            return Err(missing());
        }
        let Some(exec) = self.inspect(&format!("/exec/{}/json", enc(id))).await? else {
            return Err(missing());
        };
        let container = exec["ContainerID"].as_str().unwrap_or_default();
        match self.container(container).await {
            Ok(_) => id_of(self.guest, &exec).or_else(|_| Ok(id.to_owned())),
            Err(_) => Err(missing()),
        }
    }

    /// The tenant's network `reference`: its full ID and its engine name.
    pub(crate) async fn network(&self, reference: &str) -> Result<(String, String), GatewayError> {
        let missing = || GatewayError::NotFound(format!("network {reference} not found"));
        for c in self.candidates(reference) {
            if let Some(found) = self.inspect(&format!("/networks/{}", enc(&c))).await? {
                if self.owned(found.get("Labels")) {
                    let name = found["Name"].as_str().unwrap_or_default().to_owned();
                    return Ok((id_of(self.guest, &found)?, name));
                }
            }
        }
        Err(missing())
    }

    /// The tenant's network `reference` for a container to join, as its engine name
    /// (what inspect shows as the network mode): the tenant's default
    /// network for `default`/`bridge` (made on first use), `none` as it is; the
    /// engine's host network is refused (it is every tenant's).
    pub(crate) async fn network_to_join(&self, reference: &str) -> Result<String, GatewayError> {
        match reference {
            "" | "default" | DEFAULT_NETWORK => self.default_network().await,
            "none" => Ok("none".to_owned()),
            "host" => Err(super::refused(
                self.tenant,
                "the host network is shared by every tenant",
            )),
            other => Ok(self.network(other).await?.1),
        }
    }

    /// The tenant's default network, made if it does not exist yet.
    pub(crate) async fn default_network(&self) -> Result<String, GatewayError> {
        let tenant = self.tenant.name();
        if self.set.default_network_known(tenant) {
            return Ok(inward(tenant, DEFAULT_NETWORK));
        }
        if let Ok((_, name)) = self.network(DEFAULT_NETWORK).await {
            self.set.set_default_network_known(tenant, true);
            return Ok(name);
        }
        let name = inward(self.tenant.name(), DEFAULT_NETWORK);
        let body = serde_json::json!({
            "Name": name,
            "Driver": "bridge",
            "Labels": { OWNER_LABEL: self.tenant.name() },
        });
        let (status, answer) = self
            .guest
            .request_with(
                Method::POST,
                "/networks/create",
                Some(Bytes::from(body.to_string())),
            )
            .await?;
        if !status.is_success() && status != StatusCode::CONFLICT {
            return Err(self.guest.bad_answer(format!(
                "{status} creating network {name}: {}",
                String::from_utf8_lossy(&answer)
            )));
        }
        Ok(self.network(DEFAULT_NETWORK).await?.1)
    }

    /// The tenant's volume `name` (volumes have no IDs), as its engine name.
    /// `create`: a volume that does not exist yet is made, owned (a create that names
    /// one would otherwise make it without the owner label).
    pub(crate) async fn volume(&self, name: &str, create: bool) -> Result<String, GatewayError> {
        let engine = inward(self.tenant.name(), name);
        let missing = || GatewayError::NotFound(format!("get {name}: no such volume"));
        if name.is_empty() || name.contains('/') {
            return Err(missing());
        }
        match self.inspect(&format!("/volumes/{}", enc(&engine))).await? {
            Some(found) if self.owned(found.get("Labels")) => return Ok(engine),
            Some(_) => return Err(missing()),
            None if !create => return Err(missing()),
            None => {}
        }
        let body = serde_json::json!({
            "Name": engine,
            "Labels": { OWNER_LABEL: self.tenant.name() },
        });
        let (status, answer) = self
            .guest
            .request_with(
                Method::POST,
                "/volumes/create",
                Some(Bytes::from(body.to_string())),
            )
            .await?;
        if !status.is_success() {
            return Err(self.guest.bad_answer(format!(
                "{status} creating volume {engine}: {}",
                String::from_utf8_lossy(&answer)
            )));
        }
        Ok(engine)
    }
}

pub(crate) fn id_of(guest: &Guest, found: &Value) -> Result<String, GatewayError> {
    found["Id"]
        .as_str()
        .or_else(|| found["ID"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| guest.bad_answer("an inspect without an Id".into()))
}

/// A name as a path segment.
pub(crate) fn enc(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}
