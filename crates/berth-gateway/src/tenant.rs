//! Tenants: many clients share one engine, and each sees and touches only its own
//! world. This stage runs for a client that is a tenant ([`TenantSet`] says who is),
//! in place of routing: everything such a client sends goes to the default engine,
//! scoped here.
//!
//! - **Deny by default.** [`plan`] is the table of what a tenant may ask; anything it
//!   does not name is refused (403 naming berth tenant), never passed through unscoped.
//! - **Ownership by construction.** What a tenant creates carries the label
//!   `berth.tenant=<name>` and a name in its namespace (`<name>.<object>` on the
//!   engine, `names.rs`); lists, prunes and events get the label filter (`query.rs`);
//!   an object in a path or a body is looked up as the tenant's and named by its full
//!   ID (`lookup.rs`), or answered exactly as a missing one.
//! - **Bodies** are read through the one body model (`berth_policy::DockerBody`): the
//!   objects a create names are the tenant's, its default network is its own, a host
//!   bind is refused except the Docker socket, which becomes the tenant's socket.

mod archive;
mod containers;
mod events;
mod images;
mod lookup;
mod names;
mod pull;
mod query;
mod set;

use std::collections::HashMap;
use std::sync::Arc;

use berth_policy::{clean_path, BodyKind, DockerBody, HostPathKind, ObjectKind};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;

pub use images::{owned_images, remove_images};
pub(crate) use set::Who;
pub use set::{Quotas, Tenant, TenantClient, TenantSet, Untenanted};

use crate::body::{discard_unread, ClientBody, HeldBody, ResponseBody};
use crate::error::GatewayError;
use crate::guest::Guest;
use crate::normalize::RequestMeta;
use lookup::{enc, id_of, Lookup};
use names::{inward, map_out, outward, Shape};
use query::OWNER_LABEL;

/// Request bodies berth edits for a tenant are read whole up to this size.
const MAX_EDITED_BODY: usize = 16 << 20;
/// Archives berth edits for a tenant (an image archive, a build context) are read
/// whole up to this size.
const MAX_EDITED_ARCHIVE: usize = 1 << 30;

/// What the tenant stage made of a request.
pub(crate) enum Scoped {
    /// Forward this request (scoped); give the client the answer as `AnswerMap` says.
    Forward(Request<Incoming>, AnswerMap),
    /// berth answers itself.
    Answer(Response<ResponseBody>),
}

/// What is done to the engine's answer before the tenant gets it.
#[derive(Debug)]
pub(crate) struct AnswerMap {
    tenant: String,
    kind: AnswerKind,
}

#[derive(Debug)]
enum AnswerKind {
    Pass,
    Names(Shape),
    /// A container list; the IDs it asked for when it is the tenant's whole list
    /// (those it lacks are gone).
    Containers(Option<Arc<containers::IdFilter>>, Arc<TenantSet>),
    Images(Arc<Tenant>, Arc<TenantSet>),
    /// One image's inspect, or its history.
    Image(Arc<Tenant>, Arc<TenantSet>),
    History(Arc<Tenant>, Arc<TenantSet>),
    /// An image remove: names mapped back, what is gone forgotten.
    Deleted(Arc<TenantSet>),
    /// A build, load, import or commit: what it made is the tenant's (the answer
    /// streamed line by line, names mapped back). `true`: a quiet build, whose only
    /// `stream` is the ID it made.
    Made(Arc<TenantSet>, bool),
    /// A container was created: its limits are held to the tenant's quotas.
    Created(Arc<Tenant>, Arc<Guest>, Arc<TenantSet>),
    /// The event stream: names mapped line by line as events arrive, the tenant's
    /// image events merged in.
    Events(Option<Box<events::ImageEvents>>),
    /// An image archive (`docker save`): its names mapped back.
    Saved(Arc<Tenant>),
    /// A pull: the image made the tenant's when it ends.
    Pulled(Box<pull::Pulling>),
}

/// `filters=…` (URL-encoded) selecting what tenant `name` owns: for the daemon's own
/// listings (`berth tenant ls | rm`).
pub fn owned_filter(name: &str) -> String {
    query::scoped_filters(None, name, None).unwrap_or_default()
}

/// The 403 for what a tenant may not do.
pub(crate) fn refused(tenant: &Tenant, what: &str) -> GatewayError {
    GatewayError::Denied {
        rule: format!("tenant:{}", tenant.name()),
        message: format!("berth tenant {:?}: {what}", tenant.name()),
    }
}

/// The 403 for a client that belongs to no tenant when those are refused.
pub(crate) fn untenanted() -> GatewayError {
    GatewayError::Denied {
        rule: "tenant".into(),
        message:
            "berth tenant: this client belongs to no tenant, and untenanted clients are refused"
                .into(),
    }
}

/// What a tenant's request is, from its method and (decoded, unversioned) path.
#[derive(Debug, PartialEq, Eq)]
enum Plan<'p> {
    /// Asks nothing of the engine's objects.
    Pass,
    List(Shape),
    ImageList,
    /// `POST /{containers,networks,volumes}/prune`.
    Prune,
    Events,
    Info,
    SystemDf,
    ContainerCreate,
    NetworkCreate,
    VolumeCreate,
    /// An operation on a container: its reference and the rest of the path.
    Container(&'p str, &'p str),
    Exec(&'p str, &'p str),
    /// An operation on a network: its reference and the rest (`""`, `/connect`, …).
    Network(&'p str, &'p str),
    Volume(&'p str),
    /// An image: its reference and the operation (`/json`, `/history`, `/tag`, `""`
    /// for remove).
    Image(&'p str, &'p str),
    ImagePrune,
    ImageLoad,
    /// `GET /images/get?names=…` (`docker save` of several images).
    ImageSave,
    /// `POST /images/create`: a pull (`fromImage`) or an import.
    ImageCreate,
    Build,
    Commit,
    Refused,
}

/// Container operations a tenant may ask for its own containers.
const CONTAINER_OPS: &[(&str, &[Method])] = &[
    ("/json", &[Method::GET]),
    ("/start", &[Method::POST]),
    ("/stop", &[Method::POST]),
    ("/restart", &[Method::POST]),
    ("/kill", &[Method::POST]),
    ("/pause", &[Method::POST]),
    ("/unpause", &[Method::POST]),
    ("/wait", &[Method::POST]),
    ("/attach", &[Method::POST]),
    ("/attach/ws", &[Method::GET]),
    ("/logs", &[Method::GET]),
    ("/stats", &[Method::GET]),
    ("/top", &[Method::GET]),
    ("/changes", &[Method::GET]),
    ("/export", &[Method::GET]),
    ("/archive", &[Method::GET, Method::HEAD, Method::PUT]),
    ("/resize", &[Method::POST]),
    ("/exec", &[Method::POST]),
    ("/rename", &[Method::POST]),
    ("/update", &[Method::POST]),
    ("", &[Method::DELETE]),
];

fn plan<'p>(method: &Method, path: &'p str) -> Plan<'p> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    match path {
        "/_ping" if get || method == Method::HEAD => return Plan::Pass,
        "/version" if get => return Plan::Pass,
        "/info" if get => return Plan::Info,
        "/system/df" if get => return Plan::SystemDf,
        "/events" if get => return Plan::Events,
        "/containers/json" if get => return Plan::List(Shape::ContainerList),
        "/networks" | "/networks/" if get => return Plan::List(Shape::NetworkList),
        "/volumes" | "/volumes/" if get => return Plan::List(Shape::VolumeList),
        "/images/json" if get => return Plan::ImageList,
        "/containers/create" if post => return Plan::ContainerCreate,
        "/networks/create" if post => return Plan::NetworkCreate,
        "/volumes/create" if post => return Plan::VolumeCreate,
        "/containers/prune" | "/networks/prune" | "/volumes/prune" if post => return Plan::Prune,
        "/images/prune" if post => return Plan::ImagePrune,
        "/images/load" if post => return Plan::ImageLoad,
        "/images/get" if get => return Plan::ImageSave,
        "/images/create" if post => return Plan::ImageCreate,
        "/build" if post => return Plan::Build,
        "/commit" if post => return Plan::Commit,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/containers/") {
        for (op, methods) in CONTAINER_OPS {
            if !methods.contains(method) {
                continue;
            }
            if let Some(name) = rest.strip_suffix(op) {
                // A name never holds '/' (a link alias does: refused).
                if !name.is_empty() && !name.contains('/') {
                    return Plan::Container(name, op);
                }
            }
        }
        return Plan::Refused;
    }
    if let Some(rest) = path.strip_prefix("/exec/") {
        if let Some((id, op)) = rest.split_once('/') {
            let allowed = matches!(
                (op, method),
                ("start" | "resize", &Method::POST) | ("json", &Method::GET)
            );
            if allowed && !id.is_empty() {
                return Plan::Exec(id, &rest[id.len()..]);
            }
        }
        return Plan::Refused;
    }
    if let Some(rest) = path.strip_prefix("/networks/") {
        let (name, op) = rest
            .split_once('/')
            .map_or((rest, ""), |(n, _)| (n, &rest[n.len()..]));
        let allowed = matches!(
            (op, method),
            ("", &Method::GET | &Method::DELETE) | ("/connect" | "/disconnect", &Method::POST)
        );
        if allowed && !name.is_empty() {
            return Plan::Network(name, op);
        }
        return Plan::Refused;
    }
    if let Some(name) = path.strip_prefix("/volumes/") {
        if (get || method == Method::DELETE) && !name.is_empty() && !name.contains('/') {
            return Plan::Volume(name);
        }
        return Plan::Refused;
    }
    if let Some(rest) = path.strip_prefix("/images/") {
        if method == Method::DELETE && !rest.is_empty() {
            return Plan::Image(rest, "");
        }
        for (op, allowed) in [
            ("/json", get),
            ("/history", get),
            ("/tag", post),
            ("/get", get),
        ] {
            if let Some(name) = rest.strip_suffix(op).filter(|n| !n.is_empty()) {
                if allowed {
                    return Plan::Image(name, op);
                }
            }
        }
    }
    Plan::Refused
}

/// Scopes one request of `tenant` to its world on `guest`.
pub(crate) async fn scope(
    set: &Arc<TenantSet>,
    tenant: &Arc<Tenant>,
    guest: &Arc<Guest>,
    mut req: Request<Incoming>,
    meta: &RequestMeta,
) -> Result<Scoped, GatewayError> {
    let result = Box::pin(scope_inner(set, tenant, guest, &mut req, meta)).await;
    match result {
        Ok((uri, map)) => {
            if let Some(uri) = uri {
                *req.uri_mut() = uri;
            }
            Ok(Scoped::Forward(req, map))
        }
        Err(Early::Answer(res)) => {
            discard_unread(req.body_mut()).await;
            Ok(Scoped::Answer(*res))
        }
        Err(Early::Error(e)) => {
            discard_unread(req.body_mut()).await;
            Err(e)
        }
    }
}

/// How the stage ends before forwarding.
enum Early {
    Answer(Box<Response<ResponseBody>>),
    Error(GatewayError),
}

impl From<GatewayError> for Early {
    fn from(e: GatewayError) -> Self {
        Self::Error(e)
    }
}

/// The scoped request target (`None`: unchanged) and what to do with the answer.
type Outcome = Result<(Option<Uri>, AnswerMap), Early>;

async fn scope_inner(
    set: &Arc<TenantSet>,
    tenant: &Arc<Tenant>,
    guest: &Arc<Guest>,
    req: &mut Request<Incoming>,
    meta: &RequestMeta,
) -> Outcome {
    let raw_path = meta.path(req.uri());
    // dockerd routes on the decoded path (Go's `URL.Path`).
    let path = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| GatewayError::BadRequest("invalid path encoding".into()))?
        .into_owned();
    let prefix = req.uri().path()[..req.uri().path().len() - raw_path.len()].to_owned();
    let query = req.uri().query().map(str::to_owned);
    let query = query.as_deref();
    let name = tenant.name();
    let lookup = Lookup { guest, tenant, set };
    let uri = |path: &str, query: Option<&str>| -> Result<Uri, Early> {
        let text = match query {
            Some(q) if !q.is_empty() => format!("{prefix}{path}?{q}"),
            _ => format!("{prefix}{path}"),
        };
        text.parse().map_err(|_| {
            Early::Error(GatewayError::BadRequest(format!(
                "bad request target {text}"
            )))
        })
    };
    let answer = |kind| AnswerMap {
        tenant: name.to_owned(),
        kind,
    };
    let method = req.method().clone();
    let forward = |u: Option<Uri>, kind| Ok((u, answer(kind)));
    match plan(&method, &path) {
        Plan::Refused => Err(refused(
            tenant,
            &format!("{method} {path} is not available to tenants"),
        )
        .into()),
        Plan::Pass => forward(None, AnswerKind::Pass),
        Plan::List(Shape::ContainerList) => {
            let q = query::scoped_filters(query, name, None)?;
            let (q, whole) = by_known_ids(&lookup, query, q).await?;
            forward(
                Some(uri(&path, Some(&q))?),
                AnswerKind::Containers(whole, Arc::clone(set)),
            )
        }
        Plan::List(shape) => {
            let names = |n: &str| inward(name, n);
            let map: Option<&dyn Fn(&str) -> String> =
                (shape != Shape::ContainerList).then_some(&names);
            let q = query::scoped_filters(query, name, map)?;
            forward(Some(uri(&path, Some(&q))?), AnswerKind::Names(shape))
        }
        Plan::Prune => {
            if path == "/networks/prune" {
                set.set_default_network_known(name, false);
            }
            let q = query::scoped_filters(query, name, None)?;
            forward(Some(uri(&path, Some(&q))?), AnswerKind::Pass)
        }
        Plan::Events => {
            // An `image` filter finds the tenant's images by their engine names too.
            let own = query::also_in_repository(query, "image", &|r| images::inward(name, r))?;
            let query = own.as_deref().or(query);
            let q = query::scoped_filters(query, name, None)?;
            let images = match query::image_events(query)? {
                Some(iq) => events::open(&lookup, set, uri(&path, Some(&iq))?)
                    .await?
                    .map(Box::new),
                None => None,
            };
            forward(Some(uri(&path, Some(&q))?), AnswerKind::Events(images))
        }
        Plan::ImageList => {
            let q = query::also_in_repository(query, "reference", &|r| images::inward(name, r))?;
            forward(
                q.map(|q| uri(&path, Some(&q))).transpose()?,
                AnswerKind::Images(Arc::clone(tenant), Arc::clone(set)),
            )
        }
        Plan::Info => Err(Early::Answer(Box::new(info(&lookup).await?))),
        Plan::SystemDf => Err(Early::Answer(Box::new(system_df(&lookup).await?))),
        Plan::Container(reference, op) => {
            let found = lookup.container(reference).await?;
            let id = found["Id"].as_str().unwrap_or_default().to_owned();
            let starts = matches!(op, "/start" | "/restart" | "/unpause");
            if let (true, Some(max)) = (starts, tenant.quotas().max_running) {
                if found.pointer("/State/Running") != Some(&Value::Bool(true)) {
                    let running = owned_list(&lookup, "/containers/json", "").await?;
                    let running = running.as_array().map_or(0, Vec::len) as u64;
                    if running >= max {
                        return Err(refused(
                            tenant,
                            &format!("quota max_running = {max} reached ({running} running)"),
                        )
                        .into());
                    }
                }
            }
            if op == "/update" {
                let body = read_body(req).await?;
                let model = parse(BodyKind::ContainerUpdate, &body)?;
                within_quotas(tenant, &model.update_limits().unwrap_or_default())?;
                hold(req, body.to_vec());
            }
            let q = if op == "/rename" {
                let new = query::get(query, "name").unwrap_or_default();
                Some(query::set(
                    query,
                    "name",
                    &inward(name, new.trim_start_matches('/')),
                ))
            } else {
                query.map(str::to_owned)
            };
            let shape = (op == "/json").then_some(Shape::Container);
            let u = uri(&format!("/containers/{id}{op}"), q.as_deref())?;
            forward(Some(u), shape.map_or(AnswerKind::Pass, AnswerKind::Names))
        }
        Plan::Exec(id, op) => {
            let id = lookup.exec(id).await?;
            forward(
                Some(uri(&format!("/exec/{id}{op}"), query)?),
                AnswerKind::Pass,
            )
        }
        Plan::Network(reference, op) => {
            let (id, _) = lookup.network(reference).await?;
            if method == Method::DELETE {
                set.set_default_network_known(name, false);
            }
            if !op.is_empty() {
                let body = read_body(req).await?;
                let mut model = parse(BodyKind::NetworkConnect, &body)?;
                let mut resolved = HashMap::new();
                let mut local = None;
                for r in model.references() {
                    let found = lookup.container(&r.name).await?;
                    let engine = found["Name"].as_str().unwrap_or_default();
                    local = Some(outward(name, engine.trim_start_matches('/')).to_owned());
                    resolved.insert(r.name, id_of(guest, &found)?);
                }
                model.rewrite_references(|_, n| resolved.get(n).cloned());
                if op == "/connect" {
                    // Peers reach it by the tenant's name, not the engine's.
                    if let Some(local) = local {
                        model.add_alias(&local);
                    }
                }
                hold(req, model.encode());
            }
            let shape = (op.is_empty() && method == Method::GET).then_some(Shape::Network);
            forward(
                Some(uri(&format!("/networks/{id}{op}"), query)?),
                shape.map_or(AnswerKind::Pass, AnswerKind::Names),
            )
        }
        Plan::Volume(reference) => {
            let engine = lookup.volume(reference, false).await?;
            let shape = (method == Method::GET).then_some(Shape::Volume);
            forward(
                Some(uri(&format!("/volumes/{}", enc(&engine)), query)?),
                shape.map_or(AnswerKind::Pass, AnswerKind::Names),
            )
        }
        Plan::Image(reference, op) => {
            let found = images::find(guest, tenant, set, reference).await?;
            let id = found.inspect["Id"].as_str().unwrap_or(reference).to_owned();
            let (target, q, kind) = match op {
                "/tag" => (
                    format!("/images/{}/tag", enc(&id)),
                    scoped_repo(tenant, set, query)?,
                    AnswerKind::Pass,
                ),
                "" => match found.how {
                    images::How::Own => (
                        format!("/images/{}", enc(&found.engine)),
                        query.map(str::to_owned),
                        AnswerKind::Deleted(Arc::clone(set)),
                    ),
                    images::How::Id => {
                        let answer = images::remove_by_id(&lookup, &found.inspect, query).await?;
                        return Err(Early::Answer(Box::new(answer)));
                    }
                    images::How::Shared => {
                        return Err(refused(
                            tenant,
                            &format!("image {reference} is shared: not a tenant's to remove"),
                        )
                        .into())
                    }
                },
                "/history" => (
                    format!("/images/{}/history", enc(&id)),
                    query.map(str::to_owned),
                    AnswerKind::History(Arc::clone(tenant), Arc::clone(set)),
                ),
                // By the reference found: dockerd names the archive's image by it.
                "/get" => (
                    format!("/images/{}/get", enc(&found.engine)),
                    query.map(str::to_owned),
                    AnswerKind::Saved(Arc::clone(tenant)),
                ),
                _ => (
                    format!("/images/{}{op}", enc(&id)),
                    query.map(str::to_owned),
                    AnswerKind::Image(Arc::clone(tenant), Arc::clone(set)),
                ),
            };
            forward(Some(uri(&target, q.as_deref())?), kind)
        }
        Plan::ImageSave => {
            let mut engine = Vec::new();
            for reference in query::get_all(query, "names") {
                engine.push(images::find(guest, tenant, set, &reference).await?.engine);
            }
            let q = query::set_all(query, "names", &engine);
            forward(
                Some(uri(&path, Some(&q))?),
                AnswerKind::Saved(Arc::clone(tenant)),
            )
        }
        Plan::ImagePrune => Err(Early::Answer(Box::new(
            images::prune(&lookup, query).await?,
        ))),
        Plan::ImageLoad => {
            let body = read_archive(req).await?;
            // A shared image's name is not the tenant's to give.
            let map = |r: &str| {
                (!set.is_named_shared(r))
                    .then(|| images::inward(name, r))
                    .flatten()
            };
            let names = ["manifest.json", "repositories", "index.json"];
            let edited =
                archive::edit_tar(&body, &names, |n, c| archive::rename_in_archive(n, c, &map))
                    .map_err(|e| GatewayError::BadRequest(format!("berth tenant {name:?}: {e}")))?;
            hold(req, edited);
            forward(None, AnswerKind::Made(Arc::clone(set), false))
        }
        Plan::ImageCreate => {
            if let Some(from) = query::get(query, "fromImage").filter(|f| !f.is_empty()) {
                let headers = req.headers().clone();
                return match pull::prepare(&lookup, set, &headers, &from, query).await? {
                    pull::Prepared::Answer(res) => Err(Early::Answer(Box::new(res))),
                    pull::Prepared::Pull(q, pulling) => forward(
                        Some(uri(&path, Some(&q))?),
                        AnswerKind::Pulled(Box::new(pulling)),
                    ),
                };
            }
            let q = scoped_repo(tenant, set, query)?;
            forward(
                Some(uri(&path, q.as_deref())?),
                AnswerKind::Made(Arc::clone(set), false),
            )
        }
        Plan::Commit => {
            let container = query::get(query, "container").unwrap_or_default();
            let id = lookup.container_id(&container).await?;
            let q = query::set(query, "container", &id);
            let q = scoped_repo(tenant, set, Some(&q))?.unwrap_or_default();
            forward(
                Some(uri(&path, Some(&q))?),
                AnswerKind::Made(Arc::clone(set), false),
            )
        }
        Plan::Build => {
            let q = scope_build(&lookup, req, query).await?;
            let quiet = query::bool_value(query, "q");
            forward(
                Some(uri(&path, Some(&q))?),
                AnswerKind::Made(Arc::clone(set), quiet),
            )
        }
        Plan::NetworkCreate | Plan::VolumeCreate => {
            let kind = if matches!(plan(&method, &path), Plan::NetworkCreate) {
                BodyKind::NetworkCreate
            } else {
                BodyKind::VolumeCreate
            };
            let body = read_body(req).await?;
            let mut model = parse(kind, &body)?;
            let given = model.created_name().unwrap_or_default().to_owned();
            if kind == BodyKind::VolumeCreate {
                model.rewrite_host_paths(|_, _| {
                    Err(refused(
                        tenant,
                        "volumes over host paths are not available to tenants",
                    ))
                })?;
            }
            let local = if given.is_empty() {
                generated_name()
            } else {
                given
            };
            if kind == BodyKind::NetworkCreate
                && matches!(local.as_str(), "bridge" | "host" | "none" | "default")
            {
                // The tenant's `bridge` is berth's to make.
                return Err(GatewayError::Denied {
                    rule: format!("tenant:{name}"),
                    message: format!("{local} is a pre-defined network and cannot be created"),
                }
                .into());
            }
            model.set_created_name(inward(name, &local));
            model.set_label(OWNER_LABEL, name);
            hold(req, model.encode());
            let shape = (kind == BodyKind::VolumeCreate).then_some(Shape::Volume);
            forward(None, shape.map_or(AnswerKind::Pass, AnswerKind::Names))
        }
        Plan::ContainerCreate => {
            if let Some(max) = tenant.quotas().max_containers {
                let all = owned_list(&lookup, "/containers/json", "&all=1").await?;
                let have = all.as_array().map_or(0, Vec::len) as u64;
                if have >= max {
                    return Err(refused(
                        tenant,
                        &format!("quota max_containers = {max} reached ({have} containers)"),
                    )
                    .into());
                }
            }
            let local = query::get(query, "name").unwrap_or_default();
            let local = local.trim_start_matches('/');
            let local = if local.is_empty() {
                generated_name()
            } else {
                local.to_owned()
            };
            let body = read_body(req).await?;
            let mut model = parse(BodyKind::ContainerCreate, &body)?;
            scope_create(&lookup, &mut model).await?;
            // Peers on its networks reach it by the tenant's name (the engine's
            // is `<tenant>.<name>`).
            model.add_alias(&local);
            hold(req, model.encode());
            let q = query::set(query, "name", &inward(name, &local));
            forward(
                Some(uri(&path, Some(&q))?),
                AnswerKind::Created(Arc::clone(tenant), Arc::clone(guest), Arc::clone(set)),
            )
        }
    }
}

/// A create body made the tenant's: every object it names is looked up as the
/// tenant's, its network is the tenant's, its host binds are refused but the Docker
/// socket's (which becomes the tenant's own socket), and it carries the owner label.
async fn scope_create(lookup: &Lookup<'_>, model: &mut DockerBody<'_>) -> Result<(), GatewayError> {
    let tenant = lookup.tenant;
    let mut resolved: HashMap<(u8, String), String> = HashMap::new();
    let key = |kind: ObjectKind, name: &str| {
        let k = match kind {
            ObjectKind::Container => 0,
            ObjectKind::Network => 1,
            ObjectKind::Volume => 2,
            ObjectKind::Image => 3,
        };
        (k, name.to_owned())
    };
    for r in model.references() {
        let k = key(r.kind, &r.name);
        if resolved.contains_key(&k) {
            continue;
        }
        let found = match r.kind {
            ObjectKind::Image => match images::create_image(tenant, lookup.set, &r.name) {
                Some(engine) => Ok(Some(engine)),
                None => images::find(lookup.guest, tenant, lookup.set, &r.name)
                    .await
                    .map(|found| Some(found.engine)),
            },
            ObjectKind::Container => lookup.container_id(&r.name).await.map(Some),
            ObjectKind::Network => lookup.network_to_join(&r.name).await.map(Some),
            ObjectKind::Volume => lookup.volume(&r.name, true).await.map(Some),
        };
        match found.map_err(|e| as_dockerd_answers(e, &r))? {
            Some(found) => resolved.insert(k, found),
            None => continue,
        };
    }
    if let Some(image) = model
        .references()
        .iter()
        .find(|r| r.kind == ObjectKind::Image)
        .and_then(|r| resolved.get(&key(ObjectKind::Image, &r.name)))
    {
        model.set_image(image.clone());
    }
    model.rewrite_references(|kind, name| resolved.get(&key(kind, name)).cloned());
    if model.network_mode().is_none() {
        model.set_network_mode(lookup.default_network().await?);
    }
    let sockets = lookup.set.docker_sockets();
    let own = tenant.socket().map(|p| p.to_string_lossy().into_owned());
    model.rewrite_host_paths(|kind, source| {
        let bind = matches!(kind, HostPathKind::Bind | HostPathKind::BindMount);
        let cleaned = clean_path(source);
        let is_socket = bind && sockets.iter().any(|s| s.as_os_str() == cleaned.as_ref());
        match (&own, is_socket) {
            (Some(own), true) => Ok(Some(own.clone())),
            (None, true) => Err(refused(
                tenant,
                "the Docker socket is given to a tenant's containers only when the tenant has a socket of its own",
            )),
            _ => Err(refused(
                tenant,
                &format!("host path {source:?}: binds of host paths are not available to tenants"),
            )),
        }
    })?;
    model.set_label(OWNER_LABEL, tenant.name());
    Ok(())
}

/// A missing object named in a create body, answered as dockerd answers it for that
/// field (probed against dockerd: 400 for `VolumesFrom`, `PidMode`, `IpcMode` and
/// `Links`; 404 for the image, with `:latest` when no tag was given). dockerd takes a
/// `NetworkMode` or network it does not know at create and fails at start; berth
/// refuses another tenant's at create, with the 404 the start would give.
fn as_dockerd_answers(e: GatewayError, r: &berth_policy::Reference) -> GatewayError {
    let GatewayError::NotFound(message) = e else {
        return e;
    };
    match r.field {
        "VolumesFrom" | "PidMode" | "IpcMode" => GatewayError::BadRequest(message),
        "Links" => {
            GatewayError::BadRequest(format!("could not get container for {}: {message}", r.name))
        }
        "Image" => {
            let last = r.name.rsplit('/').next().unwrap_or_default();
            if r.name.contains('@') || last.contains(':') {
                GatewayError::NotFound(message)
            } else {
                GatewayError::NotFound(format!("No such image: {}:latest", r.name))
            }
        }
        _ => GatewayError::NotFound(message),
    }
}

fn parse(kind: BodyKind, body: &[u8]) -> Result<DockerBody<'_>, GatewayError> {
    DockerBody::parse(kind, body)
        .map_err(|e| GatewayError::BadRequest(format!("berth: unreadable request body: {e}")))
}

/// The request body, whole: held by an earlier stage, or read now.
async fn read_body(req: &mut Request<Incoming>) -> Result<Bytes, GatewayError> {
    if let Some(HeldBody(held)) = req.extensions_mut().remove::<HeldBody>() {
        return Ok(held);
    }
    Limited::new(req.body_mut(), MAX_EDITED_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| GatewayError::BadRequest(format!("reading request body: {e}")))
}

fn hold(req: &mut Request<Incoming>, body: Vec<u8>) {
    req.extensions_mut().insert(HeldBody(Bytes::from(body)));
}

/// An archive body (image archive, build context), whole.
async fn read_archive(req: &mut Request<Incoming>) -> Result<Bytes, GatewayError> {
    Limited::new(req.body_mut(), MAX_EDITED_ARCHIVE)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| GatewayError::BadRequest(format!("reading the archive: {e}")))
}

/// The engine name of an image name the tenant gives (a tag, a commit's or import's
/// repository).
fn image_name(tenant: &Tenant, set: &TenantSet, reference: &str) -> Result<String, GatewayError> {
    if set.is_named_shared(reference) {
        return Err(refused(
            tenant,
            &format!("image name {reference} is a shared image's, not a tenant's to give"),
        ));
    }
    images::inward(tenant.name(), reference).ok_or_else(|| {
        GatewayError::BadRequest(format!(
            "berth tenant {:?}: {reference:?} cannot be an image name of a tenant",
            tenant.name()
        ))
    })
}

/// `query` with its `repo` (of a tag, commit or import) in the tenant's repository; the
/// name it gives, with its `tag`, must not be a shared image's.
fn scoped_repo(
    tenant: &Tenant,
    set: &TenantSet,
    query: Option<&str>,
) -> Result<Option<String>, GatewayError> {
    let repo = query::get(query, "repo").unwrap_or_default();
    if repo.is_empty() {
        return Ok(query.map(str::to_owned));
    }
    let tag = query::get(query, "tag").unwrap_or_default();
    if !tag.is_empty() {
        image_name(tenant, set, &format!("{repo}:{tag}"))?;
    } else {
        image_name(tenant, set, &repo)?;
    }
    let engine = images::inward(tenant.name(), &repo).unwrap_or_default();
    Ok(Some(query::set(query, "repo", &engine)))
}

/// A build (the classic builder's: the context comes in the body) made the tenant's:
/// its tags and cache sources in its repository, its Dockerfile's images the ones it
/// may use, its build containers on its network and removed. The scoped query.
async fn scope_build(
    lookup: &Lookup<'_>,
    req: &mut Request<Incoming>,
    query: Option<&str>,
) -> Result<String, GatewayError> {
    let tenant = lookup.tenant;
    let name = tenant.name();
    if query::get(query, "version").as_deref() == Some("2") {
        return Err(refused(
            tenant,
            "BuildKit builds are not available to tenants (use the classic builder: DOCKER_BUILDKIT=0)",
        ));
    }
    if query::get(query, "remote").is_some_and(|r| !r.is_empty()) {
        return Err(refused(
            tenant,
            "builds of a remote context are not available to tenants",
        ));
    }
    let tags = query::get_all(query, "t")
        .iter()
        .map(|t| image_name(tenant, lookup.set, t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut q = query::set_all(query, "t", &tags);
    // The build cache is the tenant's: dockerd's classic builder takes cache only from
    // the `cachefrom` images when there are any (an unknown one is skipped), so they are
    // the ones it asked for (found as its own or shared), all of its own names, and a
    // name of its repository that exists nowhere (no image of its own: no cache at all,
    // rather than every image of the engine).
    let mut sources = Vec::new();
    if let Some(cache) = query::get(Some(&q), "cachefrom").filter(|c| !c.is_empty()) {
        let refs: Vec<String> = serde_json::from_str(&cache)
            .map_err(|e| GatewayError::BadRequest(format!("invalid cachefrom: {e}")))?;
        for r in refs {
            sources.push(
                images::find(lookup.guest, tenant, lookup.set, &r)
                    .await?
                    .engine,
            );
        }
    }
    for image in images::owned_images(lookup.guest, lookup.set, name).await? {
        sources.extend(image.tags);
    }
    sources.extend(images::inward(name, "berth-no-cache"));
    q = query::set(Some(&q), "cachefrom", &Value::from(sources).to_string());
    let network = query::get(Some(&q), "networkmode").unwrap_or_default();
    let network = match network.as_str() {
        "" | "default" | "bridge" => lookup.default_network().await?,
        "none" => network,
        other if other.starts_with("container:") => {
            return Err(refused(
                tenant,
                "a build in another container's network is not available to tenants",
            ))
        }
        other => lookup.network_to_join(other).await?,
    };
    q = query::set(Some(&q), "networkmode", &network);
    // Build containers are removed, failed or not: nothing is left unowned.
    q = query::set(Some(&q), "rm", "1");
    q = query::set(Some(&q), "forcerm", "1");
    let dockerfile = query::get(Some(&q), "dockerfile").unwrap_or_default();
    let names: Vec<String> = if dockerfile.is_empty() {
        // dockerd falls back to `dockerfile` when `Dockerfile` is missing.
        vec!["Dockerfile".into(), "dockerfile".into()]
    } else {
        vec![archive::clean(&dockerfile)]
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let body = read_archive(req).await?;
    let bad = |e: String| GatewayError::BadRequest(format!("berth tenant {name:?}: {e}"));
    // What the Dockerfile names, found as the tenant's (async), then written in.
    let mut named = Vec::new();
    archive::edit_tar(&body, &names, |_, text| {
        let text = String::from_utf8_lossy(text);
        archive::rewrite_dockerfile(&text, &mut |image| {
            named.push(image.to_owned());
            Ok(None)
        })?;
        Ok(Vec::new())
    })
    .map_err(bad)?;
    let mut resolved = HashMap::new();
    for image in named {
        let engine = match images::find(lookup.guest, tenant, lookup.set, &image).await {
            Ok(found) => {
                // A base's ONBUILD triggers run in this build: one naming an image
                // would read it unscoped.
                let triggers = found.inspect.pointer("/Config/OnBuild").cloned();
                if triggers.is_some_and(|t| t.to_string().to_ascii_lowercase().contains("from")) {
                    return Err(refused(
                        tenant,
                        &format!("image {image} has ONBUILD triggers that name images"),
                    ));
                }
                found.engine
            }
            // Not the tenant's: named in its repository, where the builder finds
            // nothing (and pulls nothing: no registry answers to that name).
            Err(_) => image_name(tenant, lookup.set, &image)?,
        };
        resolved.insert(image, engine);
    }
    let edited = archive::edit_tar(&body, &names, |_, text| {
        let text = String::from_utf8_lossy(text);
        let out =
            archive::rewrite_dockerfile(&text, &mut |image| Ok(resolved.get(image).cloned()))?;
        Ok(out.into_bytes())
    })
    .map_err(bad)?;
    hold(req, edited);
    Ok(q)
}

/// A name for an object the tenant did not name (it must be in the namespace).
fn generated_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("c{:012x}", h.finish() & 0xffff_ffff_ffff)
}

impl AnswerMap {
    /// The engine's answer as the tenant gets it.
    pub(crate) async fn finish(
        self,
        res: Response<ResponseBody>,
    ) -> Result<Response<ClientBody>, GatewayError> {
        match self.kind {
            AnswerKind::Pulled(pulling) => Ok(pulling.answer(res)),
            kind => {
                let map = AnswerMap {
                    tenant: self.tenant,
                    kind,
                };
                map.finish_whole(res).await
            }
        }
    }

    /// [`AnswerMap::finish`] of every answer but a pull's.
    async fn finish_whole(
        self,
        res: Response<ResponseBody>,
    ) -> Result<Response<ClientBody>, GatewayError> {
        if let (AnswerKind::Created(tenant, _, set), StatusCode::NOT_FOUND) =
            (&self.kind, res.status())
        {
            set.set_default_network_known(tenant.name(), false);
            return missed(tenant, res).await;
        }
        if matches!(self.kind, AnswerKind::Pass)
            || res.status() != StatusCode::OK && res.status() != StatusCode::CREATED
        {
            return Ok(res.map(Either::Left));
        }
        if let AnswerKind::Events(images) = self.kind {
            return Ok(events::answer(self.tenant, res, images.map(|i| *i)));
        }
        if let AnswerKind::Made(set, quiet) = self.kind {
            let tenant = self.tenant;
            return Ok(map_lines(res, move |line| {
                made_line(&tenant, &set, quiet, line)
            }));
        }
        let (parts, body) = res.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| GatewayError::GuestUnreachable {
                engine: "default".into(),
                reason: format!("reading an answer: {e}"),
            })?
            .to_bytes();
        if let AnswerKind::Created(tenant, guest, set) = &self.kind {
            // Nothing of it is mapped: passed as the engine wrote it.
            #[derive(serde::Deserialize)]
            struct Created<'a> {
                #[serde(rename = "Id", borrow)]
                id: std::borrow::Cow<'a, str>,
            }
            if let Ok(created) = serde_json::from_slice::<Created<'_>>(&bytes) {
                set.containers().add(tenant.name(), &created.id);
                hold_to_quotas(tenant, guest, &created.id).await?;
                return Ok(whole_answer(parts, bytes));
            }
        }
        if let AnswerKind::Saved(tenant) = &self.kind {
            // The tenant's names of its images; dockerd names only the references asked
            // (found as the tenant's or shared), so no other tenant's name can be in it.
            let map = |r: &str| match images::outward(tenant.name(), r) {
                Some(own) => Some(own.into_owned()),
                None => (!images::in_namespace(r)).then(|| r.to_owned()),
            };
            let names = ["manifest.json", "repositories", "index.json"];
            let out = archive::edit_tar(&bytes, &names, |n, c| {
                archive::rename_in_archive(n, c, &map)
            })
            .map_err(|e| GatewayError::Internal(format!("an image archive: {e}")))?;
            return Ok(whole_answer(parts, Bytes::from(out)));
        }
        if let AnswerKind::Containers(whole, set) = &self.kind {
            // The one answer that grows with the engine: mapped field by field.
            let mut ids = Vec::new();
            if let Some(out) = names::map_container_list(&self.tenant, &bytes, &mut ids) {
                if let Some(asked) = whole {
                    let present = ids.iter().map(String::as_str).collect();
                    set.containers()
                        .keep_found(&self.tenant, &asked.ids, &present);
                }
                return Ok(whole_answer(parts, Bytes::from(out)));
            }
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
            return Ok(Response::from_parts(
                parts,
                Either::Left(Either::Right(Full::new(bytes))),
            ));
        };
        match &self.kind {
            AnswerKind::Pass
            | AnswerKind::Events(_)
            | AnswerKind::Made(..)
            | AnswerKind::Pulled(_)
            | AnswerKind::Saved(..) => {}
            AnswerKind::Created(tenant, guest, set) => {
                let id = value["Id"].as_str().unwrap_or_default();
                set.containers().add(tenant.name(), id);
                hold_to_quotas(tenant, guest, id).await?;
            }
            AnswerKind::Names(shape) => map_out(&self.tenant, *shape, &mut value),
            AnswerKind::Containers(whole, set) => {
                if let Some(asked) = whole {
                    let present = value.as_array().into_iter().flatten();
                    let present = present.filter_map(|c| c["Id"].as_str()).collect();
                    set.containers()
                        .keep_found(&self.tenant, &asked.ids, &present);
                }
                map_out(&self.tenant, Shape::ContainerList, &mut value);
            }
            AnswerKind::Images(tenant, set) => {
                if let Value::Array(list) = &mut value {
                    list.retain_mut(|i| images::view(tenant, set, i));
                }
            }
            AnswerKind::Image(tenant, set) => {
                images::view(tenant, set, &mut value);
            }
            AnswerKind::History(tenant, set) => images::view_history(tenant, set, &mut value),
            AnswerKind::Deleted(set) => images::map_deleted(&self.tenant, set, &mut value),
        }
        // dockerd's encoder ends every document with a newline.
        Ok(whole_answer(parts, Bytes::from(format!("{value}\n"))))
    }
}

/// An answer berth rewrote, sent whole.
fn whole_answer(mut parts: http::response::Parts, out: Bytes) -> Response<ClientBody> {
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, out.len().into());
    Response::from_parts(parts, Either::Left(Either::Right(Full::new(out))))
}

/// A streamed answer (events, build/load/import progress) with `map` applied to each
/// line, as the engine sends them (a last line without a newline included).
fn map_lines(
    res: Response<ResponseBody>,
    map: impl Fn(&[u8]) -> Bytes + Send + 'static,
) -> Response<ClientBody> {
    use http_body::Frame;
    let (mut parts, body) = res.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let state = Some((body, bytes::BytesMut::new(), map));
    let lines = futures_util::stream::unfold(state, |state| async move {
        let (mut body, mut buf, map) = state?;
        loop {
            if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let out = map(&buf.split_to(end + 1));
                return Some((Ok(Frame::data(out)), Some((body, buf, map))));
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Some((Err(std::io::Error::other(e)), None)),
                None if buf.is_empty() => return None,
                None => return Some((Ok(Frame::data(map(&buf.split()))), None)),
            }
        }
    });
    let body = http_body_util::StreamBody::new(lines).boxed_unsync();
    Response::from_parts(parts, Either::Right(body))
}

/// What a build, load, import or commit says, in the tenant's names; every image it
/// made becomes the tenant's.
fn made_line(tenant: &str, set: &TenantSet, quiet: bool, line: &[u8]) -> Bytes {
    if let Ok(v) = serde_json::from_slice::<Value>(line) {
        for id in images::made_ids(&v, quiet) {
            set.own_image(tenant, &id);
        }
    }
    Bytes::from(images::outward_text(tenant, &String::from_utf8_lossy(line)))
}

/// A create dockerd answered 404 (an image or a network it did not find): the message
/// in the tenant's names, and the tenant's default network looked up again next time.
async fn missed(
    tenant: &Tenant,
    res: Response<ResponseBody>,
) -> Result<Response<ClientBody>, GatewayError> {
    let (mut parts, body) = res.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| GatewayError::GuestUnreachable {
            engine: "default".into(),
            reason: format!("reading an answer: {e}"),
        })?
        .to_bytes();
    let text = images::outward_text(tenant.name(), &String::from_utf8_lossy(&bytes));
    let out = Bytes::from(text);
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, out.len().into());
    Ok(Response::from_parts(
        parts,
        Either::Left(Either::Right(Full::new(out))),
    ))
}

/// An update's limits judged by the tenant's quotas as at create, on what dockerd reads
/// from the body (the body model: Go's field folding, the last of repeated keys). A
/// limit of 0 leaves the container's as it is; CPU quota and period are refused under
/// `max_cpus` (their product is the CPU limit, and `-1` lifts it).
fn within_quotas(
    tenant: &Tenant,
    asked: &berth_policy::ResourceLimits,
) -> Result<(), GatewayError> {
    let q = tenant.quotas();
    if let Some(max) = q.max_memory.filter(|max| asked.memory > *max) {
        return Err(refused(
            tenant,
            &format!("quota max_memory = {max} bytes (asked {})", asked.memory),
        ));
    }
    if let Some(max) = q.max_nano_cpus {
        if asked.nano_cpus > max {
            return Err(refused(
                tenant,
                &format!(
                    "quota max_cpus = {} (asked {})",
                    max as f64 / 1e9,
                    asked.nano_cpus as f64 / 1e9
                ),
            ));
        }
        if asked.cpu_quota != 0 || asked.cpu_period != 0 {
            return Err(refused(
                tenant,
                &format!(
                    "quota max_cpus = {}: CPU quota and period cannot be set (set CPUs)",
                    max as f64 / 1e9
                ),
            ));
        }
    }
    Ok(())
}

/// Holds a container just created to the tenant's memory and CPU quotas, on what dockerd
/// read (its inspect), not on what berth thinks the body said: a limit it lacks is set
/// (the default, else the maximum); one above the maximum removes the container and
/// refuses the create.
async fn hold_to_quotas(tenant: &Tenant, guest: &Guest, id: &str) -> Result<(), GatewayError> {
    let q = tenant.quotas();
    if q.default_memory.is_none()
        && q.max_memory.is_none()
        && q.default_nano_cpus.is_none()
        && q.max_nano_cpus.is_none()
    {
        return Ok(());
    }
    let inspect = guest.get_json(&format!("/containers/{id}/json")).await?;
    let read = |key: &str| {
        inspect
            .pointer(&format!("/HostConfig/{key}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let (memory, cpus) = (read("Memory"), read("NanoCpus"));
    let over = match (q.max_memory, q.max_nano_cpus) {
        (Some(max), _) if memory > max => {
            Some(format!("quota max_memory = {max} bytes (asked {memory})"))
        }
        (_, Some(max)) if cpus > max => Some(format!(
            "quota max_cpus = {} (asked {})",
            max as f64 / 1e9,
            cpus as f64 / 1e9
        )),
        // CPU quota and period set CPUs another way (`-1`: no limit), as in an update.
        (_, Some(max)) if read("CpuQuota") != 0 || read("CpuPeriod") != 0 => Some(format!(
            "quota max_cpus = {}: CPU quota and period cannot be set (set CPUs)",
            max as f64 / 1e9
        )),
        _ => None,
    };
    if let Some(over) = over {
        let _ = guest
            .request(Method::DELETE, &format!("/containers/{id}?force=1&v=1"))
            .await;
        return Err(refused(tenant, &over));
    }
    let mut update = serde_json::Map::new();
    if let (0, Some(m)) = (memory, q.default_memory.or(q.max_memory)) {
        update.insert("Memory".into(), m.into());
        // Without a swap limit dockerd allows twice the memory, as for `docker run -m`.
        update.insert("MemorySwap".into(), (m * 2).into());
    }
    if let (0, Some(c)) = (cpus, q.default_nano_cpus.or(q.max_nano_cpus)) {
        if read("CpuQuota") == 0 && read("CpuPeriod") == 0 {
            update.insert("NanoCpus".into(), c.into());
        }
    }
    if update.is_empty() {
        return Ok(());
    }
    let (status, body) = guest
        .request_with(
            Method::POST,
            &format!("/containers/{id}/update"),
            Some(Bytes::from(Value::Object(update).to_string())),
        )
        .await?;
    if !status.is_success() {
        let _ = guest
            .request(Method::DELETE, &format!("/containers/{id}?force=1&v=1"))
            .await;
        return Err(refused(
            tenant,
            &format!(
                "the tenant's default limits could not be set: {}",
                String::from_utf8_lossy(&body).trim()
            ),
        ));
    }
    Ok(())
}

/// A container list's scoped query (`scoped`) also asking by the tenant's container IDs
/// (`containers.rs`: dockerd then looks up only those), and the IDs asked when the
/// answer is the tenant's whole list. Filters by ID, name, `since` or `before` ask by
/// label alone (the set is not meant to answer those).
async fn by_known_ids(
    lookup: &Lookup<'_>,
    query: Option<&str>,
    scoped: String,
) -> Result<(String, Option<Arc<containers::IdFilter>>), GatewayError> {
    let keys = query::filter_keys(query)?;
    if keys
        .iter()
        .any(|k| matches!(k.as_str(), "id" | "name" | "since" | "before"))
    {
        return Ok((scoped, None));
    }
    let (set, name) = (lookup.set, lookup.tenant.name());
    let mut asking = set.containers().known(name);
    if asking == containers::Asking::Unseeded {
        let asked = std::time::Instant::now();
        let all = owned_list(lookup, "/containers/json", "&all=1").await?;
        let found = all.as_array().into_iter().flatten();
        let found = found.filter_map(|c| c["Id"].as_str().map(str::to_owned));
        set.containers().seed(name, asked, found);
        asking = set.containers().known(name);
    }
    let containers::Asking::Ids(asked) = asking else {
        return Ok((scoped, None));
    };
    let q = query::with_ids(&scoped, &asked.value);
    let all = query::bool_value(query, "all");
    // dockerd's `limit` (a number above 0 cuts the list).
    let limited = query::get(query, "limit")
        .and_then(|l| l.parse::<i64>().ok())
        .is_some_and(|l| l > 0);
    let whole = all && keys.is_empty() && !limited;
    Ok((q, whole.then_some(asked)))
}

/// `GET path` of the tenant's objects (label-filtered).
async fn owned_list(lookup: &Lookup<'_>, path: &str, extra: &str) -> Result<Value, GatewayError> {
    let q = query::scoped_filters(None, lookup.tenant.name(), None)?;
    lookup.guest.get_json(&format!("{path}?{q}{extra}")).await
}

/// `GET /info` with the tenant's counts.
async fn info(lookup: &Lookup<'_>) -> Result<Response<ResponseBody>, GatewayError> {
    let mut info = lookup.guest.get_json("/info").await?;
    let containers = owned_list(lookup, "/containers/json", "&all=1").await?;
    let states: Vec<&str> = containers
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["State"].as_str().unwrap_or_default())
        .collect();
    let count = |s: &str| states.iter().filter(|x| **x == s).count();
    let images = lookup.guest.get_json("/images/json").await?;
    let visible = images
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| images::sees(lookup.tenant, lookup.set, i))
        .count();
    info["Containers"] = states.len().into();
    info["ContainersRunning"] = count("running").into();
    info["ContainersPaused"] = count("paused").into();
    info["ContainersStopped"] = (states.len() - count("running") - count("paused")).into();
    info["Images"] = visible.into();
    Ok(json_answer(&info))
}

/// `GET /system/df` of the tenant's objects.
async fn system_df(lookup: &Lookup<'_>) -> Result<Response<ResponseBody>, GatewayError> {
    let mut df = lookup.guest.get_json("/system/df").await?;
    let tenant = lookup.tenant.name();
    let owned = |v: &Value, labels: &str| {
        v.pointer(labels)
            .and_then(|l| l.get(OWNER_LABEL))
            .and_then(Value::as_str)
            == Some(tenant)
    };
    let containers = owned_list(lookup, "/containers/json", "&all=1&size=1").await?;
    df["Containers"] = {
        let mut c = containers;
        map_out(tenant, Shape::ContainerList, &mut c);
        c
    };
    if let Some(list) = df.get_mut("Volumes").and_then(Value::as_array_mut) {
        list.retain(|v| owned(v, "/Labels"));
        for v in list.iter_mut() {
            if let Some(Value::String(n)) = v.get_mut("Name") {
                *n = outward(tenant, n).to_owned();
            }
        }
    }
    if let Some(list) = df.get_mut("Images").and_then(Value::as_array_mut) {
        list.retain_mut(|i| images::view(lookup.tenant, lookup.set, i));
    }
    df["BuildCache"] = Value::Array(Vec::new());
    Ok(json_answer(&df))
}

fn json_answer(value: &Value) -> Response<ResponseBody> {
    let body = Bytes::from(value.to_string());
    let mut res = Response::new(Either::Right(Full::new(body)));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_refuses_what_it_does_not_name() {
        let p = |m: Method, path: &str| format!("{:?}", plan(&m, path));
        assert_eq!(
            p(Method::GET, "/containers/web/json"),
            "Container(\"web\", \"/json\")"
        );
        assert_eq!(
            p(Method::GET, "/containers/web/attach/ws"),
            "Container(\"web\", \"/attach/ws\")"
        );
        assert_eq!(
            p(Method::DELETE, "/containers/web"),
            "Container(\"web\", \"\")"
        );
        assert_eq!(p(Method::DELETE, "/containers/web/db"), "Refused");
        assert_eq!(
            p(Method::POST, "/containers/web/update"),
            "Container(\"web\", \"/update\")"
        );
        assert_eq!(
            p(Method::POST, "/exec/abc/start"),
            "Exec(\"abc\", \"/start\")"
        );
        assert_eq!(
            p(Method::POST, "/networks/b/connect"),
            "Network(\"b\", \"/connect\")"
        );
        assert_eq!(
            p(Method::GET, "/images/busybox:latest/json"),
            "Image(\"busybox:latest\", \"/json\")"
        );
        assert_eq!(
            p(Method::DELETE, "/images/me/app:1"),
            "Image(\"me/app:1\", \"\")"
        );
        assert_eq!(
            p(Method::POST, "/images/app/tag"),
            "Image(\"app\", \"/tag\")"
        );
        assert_eq!(p(Method::POST, "/build"), "Build");
        assert_eq!(p(Method::POST, "/images/load"), "ImageLoad");
        for (m, path) in [
            (Method::POST, "/build/prune"),
            (Method::POST, "/build/cancel"),
            (Method::POST, "/images/app/push"),
            (Method::GET, "/images/search"),
            (Method::POST, "/grpc"),
            (Method::GET, "/swarm"),
            (Method::GET, "/plugins"),
            (Method::POST, "/session"),
            (Method::PUT, "/volumes/x"),
            (Method::GET, "/containers/json/x"),
            (Method::POST, "/exec/abc/other"),
            (Method::GET, "/distribution/x/json"),
        ] {
            assert_eq!(p(m.clone(), path), "Refused", "{m} {path}");
        }
    }
}
