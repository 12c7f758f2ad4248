//! Route: which engine serves a request.
//!
//! One engine: always that one, with no further look at the request. Several engines
//! (gateway notes 10, issue "several engines"): creation goes to the machine serving the
//! requested platform (the default one when none is named), a request naming a
//! container, exec instance, image, volume or network goes to the engine that owns it
//! ([`WorkloadRegistry`] for containers and execs, an inspect on every engine for the
//! rest), a BuildKit `/build` follows its session, and views that every engine
//! contributes to are answered by `fanout.rs`. An identifier found on several
//! engines is a 409, never a guess.

mod placement;
mod platform;
mod target;

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

pub use crate::workloads::{Found, WorkloadRegistry};
pub use placement::PlacementPolicy;
pub(crate) use placement::{hold_body, placed_by_body};
pub use platform::{InvalidPlatform, Platform};
pub use target::{target, MergedView, Target};

use crate::classify::{Classified, Endpoint};
use crate::error::GatewayError;
use crate::guest::Guest;
use crate::workloads::{self, Bookkeeping};

/// Chooses the guest engine for each request.
#[derive(Debug)]
pub struct EngineRouter {
    guests: Vec<Arc<Guest>>,
    /// What each engine declares it serves (same order as `guests`).
    platforms: Vec<Vec<Platform>>,
    /// Only when there are several engines.
    registry: Option<WorkloadRegistry>,
    /// Where untied creates go.
    placement: PlacementPolicy,
}

/// Where one request goes.
#[derive(Debug)]
pub(crate) enum Routed<'a> {
    /// To one engine, with bookkeeping to do on its answer.
    Engine {
        index: usize,
        guest: &'a Arc<Guest>,
        after: Option<Bookkeeping>,
    },
    /// To every engine, answers merged.
    Merged(MergedView),
}

impl EngineRouter {
    /// A router over `guests`; the first one is the default. No platforms declared.
    ///
    /// # Panics
    /// If `guests` is empty: a gateway without an engine is a configuration error
    /// caught before this point.
    pub fn new(guests: Vec<Arc<Guest>>) -> Self {
        let platforms = vec![Vec::new(); guests.len()];
        Self::with_platforms(guests, platforms)
    }

    /// A router over `guests` (the first is the default), each serving `platforms[i]`.
    ///
    /// # Panics
    /// If `guests` is empty or the lists differ in length.
    pub fn with_platforms(guests: Vec<Arc<Guest>>, platforms: Vec<Vec<Platform>>) -> Self {
        assert!(!guests.is_empty(), "EngineRouter needs at least one guest");
        assert_eq!(guests.len(), platforms.len());
        let registry = (guests.len() > 1).then(|| WorkloadRegistry::new(guests.len()));
        Self {
            guests,
            platforms,
            registry,
            placement: PlacementPolicy::Default,
        }
    }

    /// Places creates that nothing ties to a machine by `policy`.
    pub fn with_placement(mut self, policy: PlacementPolicy) -> Self {
        self.placement = policy;
        self
    }

    /// The engine for requests that name no owner or platform.
    pub fn default_guest(&self) -> &Arc<Guest> {
        &self.guests[0]
    }

    /// All engines, default first.
    pub fn guests(&self) -> &[Arc<Guest>] {
        &self.guests
    }

    /// The registry, when there are several engines.
    pub fn registry(&self) -> Option<&WorkloadRegistry> {
        self.registry.as_ref()
    }

    /// Decides where a request goes. `path` is the unversioned path of `uri`, which
    /// classify read into `classified`. `held` is the request's body when an earlier
    /// stage read it whole (a create placed by its body: [`placed_by_body`]).
    pub(crate) async fn route(
        &self,
        classified: &Classified,
        method: &Method,
        uri: &Uri,
        path: &str,
        headers: &HeaderMap,
        held: Option<&Bytes>,
    ) -> Result<Routed<'_>, GatewayError> {
        let Some(registry) = &self.registry else {
            return Ok(self.engine(0, None));
        };
        // Boxed (docs/conventions.md, "Futures"): single-engine requests skip it.
        Box::pin(self.route_among(registry, classified, method, uri, path, headers, held)).await
    }

    /// [`Self::route`] with more than one engine.
    #[allow(clippy::too_many_arguments)] // route's own, plus the registry
    async fn route_among(
        &self,
        registry: &WorkloadRegistry,
        classified: &Classified,
        method: &Method,
        uri: &Uri,
        path: &str,
        headers: &HeaderMap,
        held: Option<&Bytes>,
    ) -> Result<Routed<'_>, GatewayError> {
        let placed = placed_by_body(self, classified, method, path, uri.query());
        if let (Some(placement::Placed::Standalone), Some(body)) = (placed, held) {
            let index = self
                .place(registry, placement::Placed::Standalone, body)
                .await?;
            return Ok(self.engine(index, None));
        }
        let routed = match target(classified, path, uri.query(), headers) {
            Target::Default => self.engine(0, None),
            Target::Container(raw) => {
                let ident = decode(raw);
                let index = self.container_owner(registry, &ident).await?;
                let after = if method == Method::DELETE {
                    Some(Bookkeeping::ContainerRemoved {
                        ident: ident.into_owned(),
                    })
                } else if classified.endpoint == Endpoint::ExecCreate {
                    Some(Bookkeeping::ExecCreated)
                } else {
                    None
                };
                self.engine(index, after)
            }
            Target::ContainerInQuery(ident) => {
                let index = self.container_owner(registry, &ident).await?;
                self.engine(index, None)
            }
            Target::Exec(raw) => {
                let index = self
                    .owner("exec instance", raw, registry.find_exec(&self.guests, raw))
                    .await?;
                self.engine(index, None)
            }
            Target::Image(raw) => {
                let path = format!("/images/{raw}/json");
                let found = workloads::answered_by(&self.guests, &path).await?;
                let found = match found {
                    // A reference each machine holds its own copy of (`busybox`
                    // imported everywhere): a read is answered by the default machine,
                    // as compose and `docker run` inspect an image before creating;
                    // anything that changes it stays a 409.
                    Found::Several(on) if on.contains(&0) && is_read(method) => Found::One(0),
                    found => found,
                };
                self.engine(
                    self.owner("image", &decode(raw), async { Ok(found) })
                        .await?,
                    None,
                )
            }
            Target::Volume(raw) => {
                let path = format!("/volumes/{raw}");
                let found = workloads::answered_by(&self.guests, &path);
                self.engine(self.owner("volume", &decode(raw), found).await?, None)
            }
            Target::Network("bridge" | "host" | "none") => {
                // Every engine has these; the merged `network ls` shows the default's.
                self.engine(0, None)
            }
            Target::Network(raw) => {
                let path = format!("/networks/{raw}");
                let found = workloads::answered_by(&self.guests, &path);
                self.engine(self.owner("network", &decode(raw), found).await?, None)
            }
            Target::Create {
                platform,
                container_name,
            } => {
                let index = match (placed, held) {
                    (Some(placed), Some(body)) => self.place(registry, placed, body).await?,
                    _ => self.serving(platform.as_deref())?,
                };
                let after = if classified.endpoint == Endpoint::ContainerCreate {
                    if let Some(name) = &container_name {
                        self.check_name_free(registry, name).await?;
                    }
                    Some(Bookkeeping::ContainerCreated {
                        name: container_name.map(Cow::into_owned),
                    })
                } else {
                    None
                };
                self.engine(index, after)
            }
            Target::OpenSession(uuid) => {
                if let Some(uuid) = uuid {
                    registry.session_opened(uuid, 0);
                }
                self.engine(0, None)
            }
            Target::Session(uuid) => self.engine(registry.session(&uuid).unwrap_or(0), None),
            Target::Merged(view) => Routed::Merged(view),
        };
        Ok(routed)
    }

    fn engine(&self, index: usize, after: Option<Bookkeeping>) -> Routed<'_> {
        Routed::Engine {
            index,
            guest: &self.guests[index],
            after,
        }
    }

    async fn container_owner(
        &self,
        registry: &WorkloadRegistry,
        ident: &str,
    ) -> Result<usize, GatewayError> {
        let found = registry.find_container(&self.guests, ident);
        self.owner("container", ident, found).await
    }

    /// The owner of `ident`; the default engine when none has it (its own 404 is the
    /// right answer); a conflict when several have it.
    async fn owner(
        &self,
        what: &str,
        ident: &str,
        found: impl std::future::Future<Output = Result<Found, GatewayError>>,
    ) -> Result<usize, GatewayError> {
        match found.await? {
            Found::One(index) => Ok(index),
            Found::Nowhere => Ok(0),
            Found::Several(engines) => {
                let names: Vec<&str> = engines.iter().map(|&i| self.guests[i].name()).collect();
                Err(GatewayError::Conflict(format!(
                    "berth: {what} {ident:?} matches on several machines ({}): name it by full ID on one machine",
                    names.join(", ")
                )))
            }
        }
    }

    /// The engine serving `platform`: the default when none is named, or when no
    /// machine declares platforms (one engine decides for itself, like dockerd).
    fn serving(&self, platform: Option<&str>) -> Result<usize, GatewayError> {
        let Some(requested) = platform else {
            return Ok(0);
        };
        if self.platforms.iter().all(Vec::is_empty) {
            return Ok(0);
        }
        let requested = Platform::parse(requested)
            .map_err(|e| GatewayError::BadRequest(format!("berth: {e}")))?;
        // The default first, so that an open request (`linux`) stays on it if it can.
        if let Some(index) = self
            .platforms
            .iter()
            .position(|served| served.iter().any(|p| p.serves(&requested)))
        {
            return Ok(index);
        }
        let served: Vec<String> = self
            .guests
            .iter()
            .zip(&self.platforms)
            .filter(|(_, p)| !p.is_empty())
            .map(|(g, p)| {
                let list: Vec<String> = p.iter().map(Platform::to_string).collect();
                format!("{} serves {}", g.name(), list.join(", "))
            })
            .collect();
        Err(GatewayError::BadRequest(format!(
            "berth: no machine serves platform {requested} ({})",
            served.join("; ")
        )))
    }

    /// dockerd's own conflict answer when `name` is taken on any engine.
    async fn check_name_free(
        &self,
        registry: &WorkloadRegistry,
        name: &str,
    ) -> Result<(), GatewayError> {
        match registry.container_named(&self.guests, name).await? {
            Some((_, id)) => Err(GatewayError::Conflict(format!(
                "Conflict. The container name \"/{}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.",
                name.trim_start_matches('/')
            ))),
            None => Ok(()),
        }
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Percent-decodes a path segment (lossy: such names are never valid anyway).
fn decode(raw: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(raw).decode_utf8_lossy()
}
