//! Which engine owns which container and exec instance, when berth fronts several.
//!
//! Each engine's containers are mirrored from the engine itself: on first need berth
//! subscribes to its container events, *then* lists all containers, then applies the
//! events in order (gateway notes 13: no list/subscribe gap). Requests made through
//! berth update the mirror at once too, so a `docker run` never races its own event.
//! When an engine's event stream ends (it stopped or restarted) its mirror is marked
//! stale and rebuilt on the next lookup; while it cannot be rebuilt (a remote machine is
//! down) its last known containers still route to it, so requests for them get a 502
//! naming the machine, and the other engines' look-ups go on. After a berth restart everything is rebuilt this way,
//! lazily. Exec IDs are recorded from exec-create answers, or found by asking.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};

use crate::body::ResponseBody;
use crate::error::GatewayError;
use crate::guest::{guest_uri, Guest};

/// Where an identifier was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// On no engine.
    Nowhere,
    /// On exactly one engine (its index).
    One(usize),
    /// On several engines: routing would be a guess.
    Several(Vec<usize>),
}

impl Found {
    fn from_engines(mut engines: Vec<usize>) -> Self {
        engines.dedup();
        match engines.as_slice() {
            [] => Self::Nowhere,
            [one] => Self::One(*one),
            _ => Self::Several(engines),
        }
    }
}

/// What the registry learns from an engine's answer.
#[derive(Debug)]
pub(crate) enum Bookkeeping {
    /// `POST /containers/create` (201 with the new ID).
    ContainerCreated { name: Option<String> },
    /// `POST /containers/{id}/exec` (201 with the exec ID).
    ExecCreated,
    /// `DELETE /containers/{id}` (204).
    ContainerRemoved { ident: String },
}

/// The containers and exec instances of every engine.
#[derive(Debug)]
pub struct WorkloadRegistry {
    mirrors: Vec<Arc<Mirror>>,
    execs: Mutex<HashMap<String, usize>>,
    sessions: Mutex<HashMap<String, usize>>,
}

/// One engine's containers.
#[derive(Debug, Default)]
struct Mirror {
    state: Mutex<MirrorState>,
    /// Single-flight for building the mirror.
    building: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct MirrorState {
    live: bool,
    /// Bumped whenever the mirror is dropped, so a stale watcher cannot mark it live.
    epoch: u64,
    /// Full ID → names, each with its leading slash.
    containers: HashMap<String, Vec<String>>,
}

impl WorkloadRegistry {
    /// An empty registry for `engines` engines.
    pub fn new(engines: usize) -> Self {
        Self {
            mirrors: (0..engines).map(|_| Arc::default()).collect(),
            execs: Mutex::default(),
            sessions: Mutex::default(),
        }
    }

    /// Finds a container as dockerd resolves one, across all engines: full ID, then
    /// exact name, then unique ID prefix. `ident` is already percent-decoded.
    pub async fn find_container(
        &self,
        guests: &[Arc<Guest>],
        ident: &str,
    ) -> Result<Found, GatewayError> {
        let unavailable = self.sync_all(guests).await?;
        let name = if ident.starts_with('/') {
            ident.to_owned()
        } else {
            format!("/{ident}")
        };
        let mut by_id = Vec::new();
        let mut by_name = Vec::new();
        let mut by_prefix = Vec::new();
        for (i, mirror) in self.mirrors.iter().enumerate() {
            let state = mirror.lock();
            if state.containers.contains_key(ident) {
                by_id.push(i);
            }
            if state.containers.values().any(|names| names.contains(&name)) {
                by_name.push(i);
            }
            if !ident.is_empty() && state.containers.keys().any(|id| id.starts_with(ident)) {
                by_prefix.push(i);
            }
        }
        let found = match (by_id.is_empty(), by_name.is_empty()) {
            (false, _) => Found::from_engines(by_id),
            (true, false) => Found::from_engines(by_name),
            (true, true) => Found::from_engines(by_prefix),
        };
        // Nowhere among the engines that answered: it may be on the one that did not.
        match (found, unavailable) {
            (Found::Nowhere, Some(e)) => Err(e),
            (found, _) => Ok(found),
        }
    }

    /// The container that holds `name` on any engine, as (engine, full ID).
    pub async fn container_named(
        &self,
        guests: &[Arc<Guest>],
        name: &str,
    ) -> Result<Option<(usize, String)>, GatewayError> {
        self.sync_all(guests).await?;
        let name = format!("/{}", name.trim_start_matches('/'));
        for (i, mirror) in self.mirrors.iter().enumerate() {
            let state = mirror.lock();
            if let Some((id, _)) = state.containers.iter().find(|(_, n)| n.contains(&name)) {
                return Ok(Some((i, id.clone())));
            }
        }
        Ok(None)
    }

    /// Records a container created through berth (its create answer).
    pub fn container_created(&self, engine: usize, id: &str, name: Option<&str>) {
        let names = name
            .map(|n| vec![format!("/{}", n.trim_start_matches('/'))])
            .unwrap_or_default();
        let mut state = self.mirrors[engine].lock();
        let entry = state.containers.entry(id.to_owned()).or_default();
        if entry.is_empty() {
            *entry = names;
        }
    }

    /// Forgets a container removed through berth (`ident` as the client named it), so
    /// its name is free at once and not only when the engine's event arrives.
    pub fn container_removed(&self, engine: usize, ident: &str) {
        let name = format!("/{}", ident.trim_start_matches('/'));
        let mut state = self.mirrors[engine].lock();
        let id = state
            .containers
            .iter()
            .find(|(id, names)| id.as_str() == ident || names.contains(&name))
            .map(|(id, _)| id.clone());
        if let Some(id) = id {
            state.containers.remove(&id);
        }
    }

    /// Records an exec instance created through berth.
    pub fn exec_created(&self, engine: usize, id: &str) {
        let mut execs = self.execs.lock().unwrap_or_else(|e| e.into_inner());
        // Exec IDs only live as long as their engine keeps them; keep the map bounded.
        if execs.len() > 100_000 {
            execs.clear();
        }
        execs.insert(id.to_owned(), engine);
    }

    /// The engine of an exec instance: recorded, or found by asking every engine.
    pub async fn find_exec(
        &self,
        guests: &[Arc<Guest>],
        raw_id: &str,
    ) -> Result<Found, GatewayError> {
        if let Some(&engine) = self
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(raw_id)
        {
            return Ok(Found::One(engine));
        }
        let found = answered_by(guests, &format!("/exec/{raw_id}/json")).await?;
        if let Found::One(engine) = found {
            self.exec_created(engine, raw_id);
        }
        Ok(found)
    }

    /// Remembers on which engine a BuildKit session was opened.
    pub fn session_opened(&self, uuid: &str, engine: usize) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() > 10_000 {
            sessions.clear();
        }
        sessions.insert(uuid.to_owned(), engine);
    }

    /// The engine holding a BuildKit session, if berth saw it opened.
    pub fn session(&self, uuid: &str) -> Option<usize> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(uuid)
            .copied()
    }

    /// Builds the mirror of every engine that has none (concurrently). An engine that
    /// cannot be reached keeps its last known containers; the first such error is
    /// returned for look-ups that find nothing elsewhere.
    async fn sync_all(&self, guests: &[Arc<Guest>]) -> Result<Option<GatewayError>, GatewayError> {
        let syncs = guests
            .iter()
            .zip(&self.mirrors)
            .map(|(guest, mirror)| Mirror::ensure_live(mirror, guest));
        let mut unavailable = None;
        for result in futures_util::future::join_all(syncs).await {
            match result {
                Ok(()) => {}
                Err(e) if e.is_engine_unavailable() => {
                    unavailable.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(unavailable)
    }
}

impl Mirror {
    fn lock(&self) -> std::sync::MutexGuard<'_, MirrorState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to the engine's container events, lists its containers, and leaves a
    /// task applying the events until the stream ends.
    async fn ensure_live(self: &Arc<Self>, guest: &Arc<Guest>) -> Result<(), GatewayError> {
        if self.lock().live {
            return Ok(());
        }
        let _building = self.building.lock().await;
        if self.lock().live {
            return Ok(());
        }
        guest.ready_unless_down().await?;
        let req = Request::get(guest_uri(
            "/events?filters=%7B%22type%22%3A%7B%22container%22%3Atrue%7D%7D",
        ))
        .body(Either::Right(Full::default()))
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
        let events = guest
            .client()
            .request(req)
            .await
            .map_err(|e| guest.upstream_error(&e))?;
        if !events.status().is_success() {
            return Err(guest.bad_answer(format!("{} to GET /events", events.status())));
        }
        let list = guest.get_json("/containers/json?all=1").await?;
        let epoch = {
            let mut state = self.lock();
            state.containers.clear();
            for c in list.as_array().into_iter().flatten() {
                let Some(id) = c["Id"].as_str() else { continue };
                let names = c["Names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect();
                state.containers.insert(id.to_owned(), names);
            }
            state.live = true;
            state.epoch
        };
        let mirror = Arc::clone(self);
        let engine = guest.name().to_owned();
        tokio::spawn(async move {
            mirror.follow(events.into_body(), epoch).await;
            tracing::debug!(engine, "container event stream ended; mirror dropped");
        });
        Ok(())
    }

    /// Applies container events until the stream ends, then drops the mirror.
    async fn follow(&self, mut body: hyper::body::Incoming, epoch: u64) {
        let mut buf = BytesMut::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line = buf.split_to(end + 1);
                if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&line) {
                    self.apply(&event, epoch);
                }
            }
            if buf.len() > 1 << 20 {
                break;
            }
        }
        // Stale, not forgotten: rebuilt on the next look-up, or kept while the engine
        // cannot be reached so that its containers still route to it.
        let mut state = self.lock();
        if state.epoch == epoch {
            state.live = false;
            state.epoch += 1;
        }
    }

    fn apply(&self, event: &serde_json::Value, epoch: u64) {
        let (Some(id), Some(action)) = (
            event["Actor"]["ID"].as_str().or(event["id"].as_str()),
            event["Action"].as_str().or(event["status"].as_str()),
        ) else {
            return;
        };
        let name = event["Actor"]["Attributes"]["name"]
            .as_str()
            .map(|n| format!("/{n}"));
        let mut state = self.lock();
        if state.epoch != epoch {
            return;
        }
        match action {
            "create" => {
                let entry = state.containers.entry(id.to_owned()).or_default();
                if let Some(name) = name {
                    if !entry.contains(&name) {
                        entry.push(name);
                    }
                }
            }
            "rename" => {
                let old = event["Actor"]["Attributes"]["oldName"].as_str();
                let entry = state.containers.entry(id.to_owned()).or_default();
                entry.retain(|n| Some(n.as_str()) != old);
                if let Some(name) = name {
                    if !entry.contains(&name) {
                        entry.insert(0, name);
                    }
                }
            }
            "destroy" => {
                state.containers.remove(id);
            }
            _ => {}
        }
    }
}

impl Bookkeeping {
    /// Records what the answer of engine `index` (`guest`) tells, and hands the answer
    /// on.
    pub(crate) async fn record(
        self,
        registry: &WorkloadRegistry,
        index: usize,
        guest: &Guest,
        res: Response<ResponseBody>,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        match self {
            Self::ContainerRemoved { ident } => {
                if res.status().is_success() {
                    registry.container_removed(index, &ident);
                }
                Ok(res)
            }
            Self::ContainerCreated { .. } | Self::ExecCreated
                if res.status() != StatusCode::CREATED =>
            {
                Ok(res)
            }
            Self::ContainerCreated { name } => {
                let (res, id) = read_id(guest, res).await?;
                if let Some(id) = id {
                    registry.container_created(index, &id, name.as_deref());
                }
                Ok(res)
            }
            Self::ExecCreated => {
                let (res, id) = read_id(guest, res).await?;
                if let Some(id) = id {
                    registry.exec_created(index, &id);
                }
                Ok(res)
            }
        }
    }
}

/// Reads a small `{"Id": ...}` answer whole; the client gets the same bytes.
async fn read_id(
    guest: &Guest,
    res: Response<ResponseBody>,
) -> Result<(Response<ResponseBody>, Option<String>), GatewayError> {
    let (parts, body) = res.into_parts();
    let bytes = Limited::new(body, 1 << 20)
        .collect()
        .await
        .map_err(|e| guest.bad_answer(format!("reading its answer: {e}")))?
        .to_bytes();
    let id = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["Id"].as_str().map(str::to_owned));
    Ok((
        Response::from_parts(parts, Either::Right(Full::new(bytes))),
        id,
    ))
}

/// Which engines answer 2xx to `GET path` (an inspect): the owners of what it names.
/// Found nowhere while an engine could not be asked: that engine's error.
pub(crate) async fn answered_by(guests: &[Arc<Guest>], path: &str) -> Result<Found, GatewayError> {
    let (answers, unavailable) = inspect_everywhere(guests, path).await?;
    let owners: Vec<usize> = answers
        .into_iter()
        .enumerate()
        .filter_map(|(i, answer)| answer.map(|_| i))
        .collect();
    match (owners.is_empty(), unavailable) {
        (true, Some(e)) => Err(e),
        _ => Ok(Found::from_engines(owners)),
    }
}

/// `GET path` on every engine at once: each one's body when it answered 2xx (`None`
/// also for an engine that could not be asked), and the first such engine's error.
pub(crate) async fn inspect_everywhere(
    guests: &[Arc<Guest>],
    path: &str,
) -> Result<(Vec<Option<bytes::Bytes>>, Option<GatewayError>), GatewayError> {
    let asks = guests.iter().map(|guest| async move {
        guest.ready_unless_down().await?;
        let (status, body) = guest.request(http::Method::GET, path).await?;
        Ok::<_, GatewayError>(status.is_success().then_some(body))
    });
    let mut answers = Vec::with_capacity(guests.len());
    let mut unavailable = None;
    for answer in futures_util::future::join_all(asks).await {
        match answer {
            Ok(body) => answers.push(body),
            Err(e) if e.is_engine_unavailable() => {
                answers.push(None);
                unavailable.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((answers, unavailable))
}
