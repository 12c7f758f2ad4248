//! Placement: which engine a create that names no platform goes to, among several.
//!
//! A container create goes to the machine that has what it needs: the networks it
//! joins, the volumes it mounts, the containers it takes volumes or a namespace from,
//! the other containers of its compose project, and its image when only one machine has
//! it ([`berth_policy::Ties`], read from the body model). When nothing ties it, the
//! [`PlacementPolicy`] decides: `Default` keeps it on the default machine (berth's
//! behaviour before placement), `Spread` sends it to the machine with the fewest
//! running containers (then the most memory), among those not known to be down. A
//! network or volume created on its own goes where its compose project lives, or to the
//! default machine. Ties to two machines at once are a 409 that says which.

use std::sync::Arc;

use berth_policy::{BodyKind, DockerBody, Ties, COMPOSE_PROJECT_LABEL};
use bytes::Bytes;
use http::{Method, Request};
use hyper::body::Incoming;

use super::EngineRouter;
use crate::body::HeldBody;
use crate::classify::{Classified, Endpoint};
use crate::error::GatewayError;
use crate::guest::Guest;
use crate::workloads::{self, Found, WorkloadRegistry};

/// Where creates go when nothing ties them to a machine (`placement` in berth.toml).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlacementPolicy {
    /// The default machine.
    #[default]
    Default,
    /// The least loaded machine that is up.
    Spread,
}

/// What kind of create is placed by its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placed {
    Container,
    /// `POST /networks/create`, `POST /volumes/create`.
    Standalone,
}

/// Whether the create `classified` as it is (unversioned `path`) is placed by its body,
/// which must then be read before routing. Never with one engine, nor with a platform.
pub(crate) fn placed_by_body(
    router: &EngineRouter,
    classified: &Classified,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Option<Placed> {
    router.registry.as_ref()?;
    if classified.endpoint == Endpoint::ContainerCreate {
        let platform = super::target::query_param(query, "platform");
        return platform
            .is_none_or(|p| p.is_empty())
            .then_some(Placed::Container);
    }
    let standalone = method == Method::POST
        && matches!(
            path.trim_end_matches('/'),
            "/networks/create" | "/volumes/create"
        );
    standalone.then_some(Placed::Standalone)
}

/// Create bodies berth reads whole are held up to this size; dockerd itself reads
/// them without a limit, but no real one comes near it.
const MAX_HELD_BODY: usize = 16 << 20;

/// Reads the request's body whole into a [`HeldBody`] (unless an earlier stage did),
/// for routing to place it; it is what goes upstream.
pub(crate) async fn hold_body(req: Request<Incoming>) -> Result<Request<Incoming>, GatewayError> {
    use http_body_util::{BodyExt, Limited};
    if req.extensions().get::<HeldBody>().is_some() {
        return Ok(req);
    }
    let (mut parts, mut client_body) = req.into_parts();
    let body = Limited::new(&mut client_body, MAX_HELD_BODY)
        .collect()
        .await
        .map_err(|e| GatewayError::BadRequest(format!("reading request body: {e}")))?
        .to_bytes();
    parts.extensions.insert(HeldBody(body));
    Ok(Request::from_parts(parts, client_body))
}

/// One reason a create must land on some machines: what it names, and where that is.
struct Tie {
    what: String,
    on: Vec<usize>,
}

impl EngineRouter {
    /// The engine for a create `body` of kind `placed`.
    pub(crate) async fn place(
        &self,
        registry: &WorkloadRegistry,
        placed: Placed,
        body: &Bytes,
    ) -> Result<usize, GatewayError> {
        match placed {
            Placed::Container => {
                let parsed = DockerBody::parse(BodyKind::ContainerCreate, body)
                    // dockerd's own answer to a body it cannot read is the right one.
                    .map(|b| b.ties())
                    .unwrap_or_default();
                let ties = self.ties(registry, &parsed).await?;
                self.choose(&ties, self.placement).await
            }
            Placed::Standalone => {
                let project = berth_policy::project_of(body).ok().flatten();
                let Some(project) = project else {
                    return Ok(0);
                };
                let on = self.project_machines(&project, true).await;
                let ties = vec![Tie {
                    what: format!("compose project {project:?}"),
                    on,
                }]
                .into_iter()
                .filter(|t| !t.on.is_empty())
                .collect::<Vec<_>>();
                self.choose(&ties, PlacementPolicy::Default).await
            }
        }
    }

    /// Where each thing a create names is.
    async fn ties(
        &self,
        registry: &WorkloadRegistry,
        needs: &Ties,
    ) -> Result<Vec<Tie>, GatewayError> {
        let mut ties = Vec::new();
        for container in &needs.containers {
            match registry.find_container(&self.guests, container).await? {
                Found::One(i) => ties.push(Tie {
                    what: format!("container {container:?}"),
                    on: vec![i],
                }),
                Found::Several(on) => ties.push(Tie {
                    what: format!("container {container:?}"),
                    on,
                }),
                // dockerd's own "No such container" will say it.
                Found::Nowhere => {}
            }
        }
        for (kind, names) in [("network", &needs.networks), ("volume", &needs.volumes)] {
            for name in names {
                let path = match kind {
                    "network" => format!("/networks/{}", encode_segment(name)),
                    _ => format!("/volumes/{}", encode_segment(name)),
                };
                let on = owners(&self.guests, &path).await;
                if !on.is_empty() {
                    ties.push(Tie {
                        what: format!("{kind} {name:?}"),
                        on,
                    });
                }
            }
        }
        if let Some(project) = &needs.project {
            let on = self.project_machines(project, false).await;
            if !on.is_empty() {
                ties.push(Tie {
                    what: format!("compose project {project:?}"),
                    on,
                });
            }
        }
        if ties.is_empty() {
            // The image ties only when one machine has it (a pull would go to the
            // default machine and the retried create follow it there).
            if let Some(image) = &needs.image {
                let path = format!("/images/{}/json", encode_ref(image));
                // With `default`, an untied create the default machine can serve stays
                // there whether or not others have the image too: one local question.
                if self.placement == PlacementPolicy::Default && has(&self.guests[0], &path).await {
                    return Ok(ties);
                }
                let on = owners(&self.guests, &path).await;
                if on.len() == 1 {
                    ties.push(Tie {
                        what: format!("image {image:?}"),
                        on,
                    });
                }
            }
        }
        Ok(ties)
    }

    /// The machines holding containers (and, for a standalone create, networks or
    /// volumes) labelled with `project`.
    async fn project_machines(&self, project: &str, with_objects: bool) -> Vec<usize> {
        let filter = serde_json::json!({ "label": [format!("{COMPOSE_PROJECT_LABEL}={project}")] });
        let filter = encode_query(&filter.to_string());
        let mut paths = vec![format!("/containers/json?all=1&filters={filter}")];
        if with_objects {
            paths.push(format!("/networks?filters={filter}"));
            paths.push(format!("/volumes?filters={filter}"));
        }
        let asks = self.guests.iter().enumerate().map(|(i, guest)| {
            let paths = &paths;
            async move {
                for path in paths {
                    if let Ok(list) = list_json(guest, path).await {
                        let found = match &list {
                            serde_json::Value::Array(items) => !items.is_empty(),
                            // `GET /volumes` answers {"Volumes": [...]}.
                            v => v["Volumes"].as_array().is_some_and(|a| !a.is_empty()),
                        };
                        if found {
                            return Some(i);
                        }
                    }
                }
                None
            }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The engine that satisfies every tie; the policy's choice among those left.
    async fn choose(&self, ties: &[Tie], policy: PlacementPolicy) -> Result<usize, GatewayError> {
        let mut candidates: Vec<usize> = (0..self.guests.len()).collect();
        for tie in ties {
            candidates.retain(|i| tie.on.contains(i));
        }
        if candidates.is_empty() {
            let why: Vec<String> = ties
                .iter()
                .map(|t| {
                    let on: Vec<&str> = t.on.iter().map(|&i| self.guests[i].name()).collect();
                    format!("{} is on {}", t.what, on.join(" and "))
                })
                .collect();
            return Err(GatewayError::Conflict(format!(
                "berth: cannot place the container on one machine: {}",
                why.join("; ")
            )));
        }
        if candidates.len() == 1 {
            return Ok(candidates[0]);
        }
        match policy {
            PlacementPolicy::Default if candidates.contains(&0) => Ok(0),
            PlacementPolicy::Default => Ok(candidates[0]),
            PlacementPolicy::Spread => Ok(self.least_loaded(&candidates).await),
        }
    }

    /// Fewest running containers, then most memory (`/info`), then the first; machines
    /// known to be down or not answering are passed over.
    async fn least_loaded(&self, candidates: &[usize]) -> usize {
        let asks = candidates.iter().map(|&i| {
            let guest = &self.guests[i];
            async move {
                if guest.health().is_down() {
                    return None;
                }
                let info = list_json(guest, "/info").await.ok()?;
                let running = info["ContainersRunning"].as_u64().unwrap_or(0);
                let memory = info["MemTotal"].as_u64().unwrap_or(0);
                Some((running, std::cmp::Reverse(memory), i))
            }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .min()
            .map_or(candidates[0], |(_, _, i)| i)
    }
}

/// `GET path` on one engine, JSON (without starting the wait of a down machine).
async fn list_json(guest: &Arc<Guest>, path: &str) -> Result<serde_json::Value, GatewayError> {
    guest.ready_unless_down().await?;
    guest.get_json(path).await
}

/// Whether `guest` answers 2xx to `GET path`.
async fn has(guest: &Arc<Guest>, path: &str) -> bool {
    guest.ready_unless_down().await.is_ok()
        && guest
            .request(Method::GET, path)
            .await
            .is_ok_and(|(status, _)| status.is_success())
}

/// The engines that answer 2xx to `GET path`; engines that cannot be asked are not.
async fn owners(guests: &[Arc<Guest>], path: &str) -> Vec<usize> {
    match workloads::answered_by(guests, path).await {
        Ok(Found::One(i)) => vec![i],
        Ok(Found::Several(on)) => on,
        Ok(Found::Nowhere) | Err(_) => Vec::new(),
    }
}

/// A name as one path segment.
fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// An image reference in `/images/{ref}/json`: dockerd reads the rest of the path, so
/// its `/`, `:` and `@` stay.
fn encode_ref(s: &str) -> String {
    const UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'?')
        .add(b'#')
        .add(b'%')
        .add(b'"');
    percent_encoding::utf8_percent_encode(s, UNSAFE).to_string()
}

fn encode_query(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
