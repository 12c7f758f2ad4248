//! The daemon's tenants at run time: their own sockets (bound, served, closed), and
//! what `berth tenant ls | rm` needs from the engine (usage; removing everything a
//! tenant owns).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use berth_gateway::{BoundSocket, Guest, Listener, ListenerSpawner, Tenant, TenantSet};
use http::Method;
use serde::Serialize;
use serde_json::Value;

use crate::config::TenantEntry;

/// The tenants, their sockets, and the engine they live on.
#[derive(Debug)]
pub(crate) struct TenantControl {
    pub(crate) set: Arc<TenantSet>,
    spawner: ListenerSpawner,
    guest: Arc<Guest>,
    group: Option<u32>,
    sockets: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Tenants added at run time, and the state file they are kept in (they outlive a
    /// restart; `berth tenant rm` forgets them).
    added: Mutex<Vec<TenantEntry>>,
    added_file: PathBuf,
}

/// One line of `berth tenant ls`.
#[derive(Debug, Serialize)]
pub(crate) struct TenantReport {
    name: String,
    clients: String,
    socket: String,
    containers: usize,
    running: usize,
    networks: usize,
    volumes: usize,
    images: usize,
}

impl TenantControl {
    pub(crate) fn new(
        set: Arc<TenantSet>,
        spawner: ListenerSpawner,
        guest: Arc<Guest>,
        group: Option<u32>,
        added_file: PathBuf,
    ) -> Self {
        Self {
            set,
            spawner,
            guest,
            group,
            sockets: Mutex::new(HashMap::new()),
            added: Mutex::new(Vec::new()),
            added_file,
        }
    }

    /// Adds again the tenants added at run time before a restart (one that no longer
    /// fits, e.g. its name is now in the configuration, is skipped with a warning).
    pub(crate) fn restore(&self) -> Result<()> {
        let entries: Vec<TenantEntry> = match std::fs::read(&self.added_file) {
            Ok(text) => serde_json::from_slice(&text)
                .with_context(|| format!("reading {}", self.added_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).context(format!("reading {}", self.added_file.display())),
        };
        let mut added = self.added_lock();
        for entry in entries {
            match entry.tenant().and_then(|t| self.set.add(t)) {
                Ok(_) => added.push(entry),
                Err(e) => {
                    tracing::warn!(tenant = %entry.name, error = %e, "berth did not restore a tenant added at run time")
                }
            }
        }
        Ok(())
    }

    fn save_added(&self, added: &[TenantEntry]) -> Result<()> {
        if let Some(dir) = self.added_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.added_file.with_extension("json.new");
        std::fs::write(&tmp, serde_json::to_vec_pretty(added)?)?;
        std::fs::rename(&tmp, &self.added_file)
            .with_context(|| format!("writing {}", self.added_file.display()))
    }

    fn added_lock(&self) -> std::sync::MutexGuard<'_, Vec<TenantEntry>> {
        self.added.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds and serves the socket of every tenant that has one.
    pub(crate) fn serve_sockets(&self) -> Result<()> {
        for t in self.set.list() {
            self.serve_socket(&t)?;
        }
        Ok(())
    }

    fn serve_socket(&self, tenant: &Tenant) -> Result<()> {
        let Some(path) = tenant.socket() else {
            return Ok(());
        };
        let socket = BoundSocket::bind(path, 0o660, self.group)?.for_tenant(tenant.name());
        tracing::info!(tenant = tenant.name(), socket = %path.display(), "berth listening for a tenant");
        let task = self
            .spawner
            .serve(Listener::Unix(socket))
            .ok_or_else(|| anyhow!("berth is shutting down"))?;
        self.lock().insert(tenant.name().to_owned(), task);
        Ok(())
    }

    /// `berth tenant add`: a tenant from a `[[tenants]]`-shaped JSON body.
    pub(crate) fn add(&self, body: &[u8]) -> Result<String> {
        let entry: TenantEntry = serde_json::from_slice(body).context("reading the tenant")?;
        let tenant = entry.tenant().map_err(|e| anyhow!(e))?;
        let tenant = self.set.add(tenant).map_err(|e| anyhow!(e))?;
        if let Err(e) = self.serve_socket(&tenant) {
            self.set.remove(tenant.name());
            return Err(e);
        }
        let mut added = self.added_lock();
        added.push(entry);
        if let Err(e) = self.save_added(&added) {
            added.pop();
            self.set.remove(tenant.name());
            if let Some(task) = self.lock().remove(tenant.name()) {
                task.abort();
            }
            return Err(e);
        }
        Ok(tenant.name().to_owned())
    }

    /// `berth tenant rm`: the tenant stops being one (its socket closes), then every
    /// container, network, volume and image it owns is removed from the engine.
    pub(crate) async fn remove(&self, name: &str) -> Result<String> {
        if self.set.remove(name).is_none() {
            bail!("no tenant named {name:?}");
        }
        if let Some(task) = self.lock().remove(name) {
            task.abort();
        }
        {
            let mut added = self.added_lock();
            if let Some(i) = added.iter().position(|e| e.name == name) {
                added.remove(i);
                self.save_added(&added)?;
            }
        }
        let filter = berth_gateway::tenant::owned_filter(name);
        let mut removed = Vec::new();
        for (kind, list, id_key, delete) in [
            (
                "containers",
                "/containers/json?all=1&",
                "Id",
                "/containers/{}?force=1&v=1",
            ),
            ("networks", "/networks?", "Id", "/networks/{}"),
            ("volumes", "/volumes?", "Name", "/volumes/{}?force=1"),
        ] {
            let listed = self.guest.get_json(&format!("{list}{filter}")).await?;
            let items = match kind {
                "volumes" => listed["Volumes"].clone(),
                _ => listed,
            };
            let mut count = 0;
            for item in items.as_array().into_iter().flatten() {
                let Some(id) = item[id_key].as_str() else {
                    continue;
                };
                let path = delete.replace("{}", id);
                let (status, body) = self.guest.request(Method::DELETE, &path).await?;
                if !status.is_success() && status != http::StatusCode::NOT_FOUND {
                    bail!(
                        "removing {kind} {id} of tenant {name}: {status} {}",
                        String::from_utf8_lossy(&body).trim()
                    );
                }
                count += 1;
            }
            removed.push(format!("{count} {kind}"));
        }
        let images = berth_gateway::tenant::remove_images(&self.guest, &self.set, name).await?;
        removed.push(format!("{images} images"));
        Ok(format!("tenant {name} removed ({})", removed.join(", ")))
    }

    /// `berth tenant ls`: each tenant with what it owns on the engine.
    pub(crate) async fn report(&self) -> Result<Vec<TenantReport>> {
        let mut out = Vec::new();
        for t in self.set.list() {
            let filter = berth_gateway::tenant::owned_filter(t.name());
            let containers = self
                .guest
                .get_json(&format!("/containers/json?all=1&{filter}"))
                .await?;
            let containers = containers.as_array().cloned().unwrap_or_default();
            let count = |v: Value| v.as_array().map_or(0, Vec::len);
            out.push(TenantReport {
                name: t.name().to_owned(),
                clients: t
                    .clients()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                socket: t
                    .socket()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                running: containers
                    .iter()
                    .filter(|c| c["State"] == "running")
                    .count(),
                containers: containers.len(),
                networks: count(self.guest.get_json(&format!("/networks?{filter}")).await?),
                volumes: count(
                    self.guest.get_json(&format!("/volumes?{filter}")).await?["Volumes"].take(),
                ),
                images: berth_gateway::tenant::owned_images(&self.guest, &self.set, t.name())
                    .await?
                    .len(),
            });
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::task::JoinHandle<()>>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Host paths that are the Docker API: a tenant's container that bind-mounts one gets
/// the tenant's own socket instead.
pub(crate) fn docker_sockets(api: &[PathBuf], engines: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["/var/run/docker.sock", "/run/docker.sock"]
        .iter()
        .map(PathBuf::from)
        .chain(api.iter().cloned())
        .chain(engines.iter().cloned())
        .collect();
    out.dedup();
    out
}
