//! Classify: method + unversioned path + headers → [`Classified`], once per request.
//!
//! Every later stage matches on the [`Endpoint`] and [`Exchange`] values and never
//! re-parses the path (mini-redis `Command`). Only endpoints that berth treats
//! specially get a variant; everything else is [`Endpoint::Other`] and passes through.
//!
//! The same pass reads what routing among several engines needs ([`Owner`]: the
//! object whose engine decides, [`MergedView`]: a view every engine contributes to),
//! so that route never parses the path again; one engine never looks at them.
//!
//! Object names are greedy (`/containers/web/db/json` is the link alias `web/db`;
//! image names hold `/`, `:` and `@`), so operations are matched by their suffix and
//! the name is whatever lies between (gateway notes 1.8).

use std::ops::Range;

use http::{header, HeaderMap, Method};

#[cfg(test)]
mod tests;

/// The Docker API operation, as far as berth needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET|HEAD /_ping`
    Ping,
    /// `GET /version`
    Version,
    /// `GET /info`
    Info,
    /// `GET /events`
    Events,
    /// `GET /containers/json`
    ContainerList,
    /// `POST /containers/create`
    ContainerCreate,
    /// `GET /containers/{id}/json`
    ContainerInspect,
    /// `POST /containers/{id}/start`
    ContainerStart,
    /// `POST /containers/{id}/restart`
    ContainerRestart,
    /// `POST /containers/{id}/stop`, `/kill`, `/pause`, `/unpause`
    ContainerLifecycle,
    /// `POST /containers/{id}/wait`
    ContainerWait,
    /// `DELETE /containers/{id}`
    ContainerDelete,
    /// `POST /containers/{id}/attach`
    ContainerAttach,
    /// `GET /containers/{id}/attach/ws`
    ContainerAttachWs,
    /// `GET /containers/{id}/logs`
    ContainerLogs,
    /// `GET /containers/{id}/stats`
    ContainerStats,
    /// `GET|HEAD|PUT /containers/{id}/archive`
    ContainerArchive,
    /// `GET /containers/{id}/export`
    ContainerExport,
    /// `POST /containers/{id}/exec`
    ExecCreate,
    /// `POST /exec/{id}/start`
    ExecStart,
    /// `POST /build`
    Build,
    /// `POST /session` (BuildKit, h2c)
    Session,
    /// `POST /grpc` (BuildKit, h2c)
    Grpc,
    /// `POST /images/create` (pull, or import with `fromSrc`)
    ImageCreate,
    /// `POST /images/load`
    ImageLoad,
    /// `GET /images/get` and `GET /images/{name}/get`
    ImageSave,
    /// `POST /commit`
    Commit,
    /// `POST /volumes/create`
    VolumeCreate,
    /// Any other path; passed through untouched.
    Other,
}

/// A view answered from every engine and merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergedView {
    /// `GET /containers/json`
    Containers,
    /// `GET /images/json`
    Images,
    /// `GET /volumes`
    Volumes,
    /// `GET /networks`
    Networks,
    /// `GET /system/df`
    SystemDf,
    /// `GET /info`
    Info,
    /// `GET /events`
    Events,
    /// `POST /{containers,images,volumes,networks,build}/prune`
    Prune,
}

/// How the bytes of this exchange flow; the forwarder is a `match` on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// A request and a response, both streamed frame by frame.
    Ordinary,
    /// Like `Ordinary`, but the request body is large or unbounded (a tar, a context).
    StreamedUpload,
    /// The client asked for `Upgrade`: after a 101 the connection is spliced both ways.
    Upgrade,
    /// attach or exec start without `Upgrade`: dockerd answers 200 and then treats
    /// the connection as a raw bidirectional stream (gateway notes 4.1).
    Hijack,
}

/// The object a request names in its path, whose engine serves it when there are
/// several: a byte range of the unversioned path, still percent-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// No object in the path.
    None,
    /// A container by ID, ID prefix or name.
    Container(Range<usize>),
    /// An exec instance.
    Exec(Range<usize>),
    /// An image by reference or ID.
    Image(Range<usize>),
    /// A volume.
    Volume(Range<usize>),
    /// A network by name, ID or ID prefix.
    Network(Range<usize>),
}

/// The classification of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The operation.
    pub endpoint: Endpoint,
    /// The transport shape.
    pub exchange: Exchange,
    /// Byte range of the object name (container, exec, image) in the unversioned path,
    /// still percent-encoded as the client sent it, for endpoints with host behaviour.
    pub name: Option<Range<usize>>,
    /// The object whose engine serves the request (several engines).
    pub owner: Owner,
    /// Set when every engine contributes to the answer (several engines).
    pub view: Option<MergedView>,
}

impl Classified {
    /// Whether a bounded wait for the response head is safe for this request.
    ///
    /// dockerd answers many requests only when the work is done (stop, wait, pull,
    /// build, commit: notes 1.4), and streams may stay silent for hours, so only quick
    /// reads get a head deadline.
    pub fn head_deadline_applies(&self, method: &Method) -> bool {
        (method == Method::GET || method == Method::HEAD)
            && self.exchange == Exchange::Ordinary
            && !matches!(
                self.endpoint,
                Endpoint::Events
                    | Endpoint::ContainerLogs
                    | Endpoint::ContainerStats
                    | Endpoint::ContainerArchive
                    | Endpoint::ContainerExport
                    | Endpoint::ContainerAttachWs
                    | Endpoint::ImageSave
            )
    }
}

/// Classifies a request from its method, unversioned path and headers (`Upgrade`,
/// `Content-Length`, `Transfer-Encoding`: the framed path hands stages only the
/// headers `serve/framed.rs` names in `STAGE_HEADERS`).
pub fn classify(method: &Method, path: &str, headers: &HeaderMap) -> Classified {
    let (endpoint, name) = endpoint_of(method, path);
    let exchange = if headers.contains_key(header::UPGRADE) {
        Exchange::Upgrade
    } else if matches!(endpoint, Endpoint::ContainerAttach | Endpoint::ExecStart) {
        Exchange::Hijack
    } else if is_upload(endpoint, method, headers) {
        Exchange::StreamedUpload
    } else {
        Exchange::Ordinary
    };
    Classified {
        endpoint,
        exchange,
        name,
        owner: owner_of(method, path),
        view: view_of(method, path),
    }
}

/// The view every engine contributes to, if `method path` asks for one. HEAD is left
/// to the default engine: a merged view needs bodies to merge.
fn view_of(method: &Method, path: &str) -> Option<MergedView> {
    use MergedView as V;
    if method == Method::GET {
        match path {
            "/containers/json" => Some(V::Containers),
            "/images/json" => Some(V::Images),
            "/volumes" | "/volumes/" => Some(V::Volumes),
            "/networks" | "/networks/" => Some(V::Networks),
            "/system/df" => Some(V::SystemDf),
            "/info" => Some(V::Info),
            "/events" => Some(V::Events),
            _ => None,
        }
    } else if method == Method::POST {
        match path {
            "/containers/prune" | "/images/prune" | "/volumes/prune" | "/networks/prune"
            | "/build/prune" => Some(V::Prune),
            _ => None,
        }
    } else {
        None
    }
}

/// The object named in the path whose owner serves the request.
fn owner_of(method: &Method, path: &str) -> Owner {
    let within = |prefix: &str, name: &str| {
        let start = prefix.len();
        start..start + name.len()
    };
    if let Some(rest) = path.strip_prefix("/containers/") {
        let name = if method == Method::DELETE {
            // `DELETE /containers/web/db` removes the link alias `web/db`.
            Some(rest)
        } else if let Some(name) = rest.strip_suffix("/attach/ws") {
            Some(name)
        } else {
            rest.rsplit_once('/').map(|(name, _op)| name)
        };
        return name
            .filter(|n| !n.is_empty())
            .map_or(Owner::None, |n| Owner::Container(within("/containers/", n)));
    }
    if let Some(rest) = path.strip_prefix("/exec/") {
        return match rest.split_once('/') {
            Some((id, _op)) if !id.is_empty() => Owner::Exec(within("/exec/", id)),
            _ => Owner::None,
        };
    }
    if let Some(rest) = path.strip_prefix("/images/") {
        let name = if method == Method::DELETE {
            Some(rest)
        } else {
            rest.rsplit_once('/').map(|(name, _op)| name)
        };
        return name
            .filter(|n| !n.is_empty())
            .map_or(Owner::None, |n| Owner::Image(within("/images/", n)));
    }
    if let Some(rest) = path.strip_prefix("/volumes/") {
        return match rest {
            "" | "create" => Owner::None,
            name => Owner::Volume(within("/volumes/", name)),
        };
    }
    if let Some(rest) = path.strip_prefix("/networks/") {
        let id = rest.split_once('/').map_or(rest, |(id, _op)| id);
        return match id {
            "" | "create" => Owner::None,
            id => Owner::Network(within("/networks/", id)),
        };
    }
    Owner::None
}

/// Bodies above this size are treated as uploads even on JSON routes.
const LARGE_BODY: u64 = 1 << 20;

fn is_upload(endpoint: Endpoint, method: &Method, headers: &HeaderMap) -> bool {
    if matches!(endpoint, Endpoint::Build | Endpoint::ImageLoad)
        || (endpoint == Endpoint::ContainerArchive && method == Method::PUT)
    {
        return true;
    }
    if endpoint == Endpoint::ImageCreate {
        // Import (`fromSrc=-`) carries a rootfs tar; a pull has no body.
        return headers.contains_key(header::TRANSFER_ENCODING)
            || content_length(headers).is_some_and(|n| n > 0);
    }
    headers.contains_key(header::TRANSFER_ENCODING)
        || content_length(headers).is_some_and(|n| n > LARGE_BODY)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn endpoint_of(method: &Method, path: &str) -> (Endpoint, Option<Range<usize>>) {
    use Endpoint as E;
    let get = method == Method::GET;
    let post = method == Method::POST;
    match path {
        "/_ping" if get || method == Method::HEAD => return (E::Ping, None),
        "/version" if get => return (E::Version, None),
        "/info" if get => return (E::Info, None),
        "/events" if get => return (E::Events, None),
        "/containers/json" if get => return (E::ContainerList, None),
        "/containers/create" if post => return (E::ContainerCreate, None),
        "/build" if post => return (E::Build, None),
        "/session" if post => return (E::Session, None),
        "/grpc" if post => return (E::Grpc, None),
        "/images/create" if post => return (E::ImageCreate, None),
        "/images/load" if post => return (E::ImageLoad, None),
        "/images/get" if get => return (E::ImageSave, None),
        "/commit" if post => return (E::Commit, None),
        "/volumes/create" if post => return (E::VolumeCreate, None),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/containers/") {
        let base = "/containers/".len();
        if method == Method::DELETE && !rest.is_empty() {
            return (E::ContainerDelete, Some(base..path.len()));
        }
        if let Some(name) = rest.strip_suffix("/attach/ws") {
            if get && !name.is_empty() {
                return (E::ContainerAttachWs, Some(base..base + name.len()));
            }
            return (E::Other, None);
        }
        if let Some((name, op)) = rest.rsplit_once('/') {
            if name.is_empty() {
                return (E::Other, None);
            }
            let endpoint = match (op, method) {
                ("json", &Method::GET) => E::ContainerInspect,
                ("start", &Method::POST) => E::ContainerStart,
                ("restart", &Method::POST) => E::ContainerRestart,
                ("stop" | "kill" | "pause" | "unpause", &Method::POST) => E::ContainerLifecycle,
                ("wait", &Method::POST) => E::ContainerWait,
                ("attach", &Method::POST) => E::ContainerAttach,
                ("logs", &Method::GET) => E::ContainerLogs,
                ("stats", &Method::GET) => E::ContainerStats,
                ("archive", &Method::GET | &Method::HEAD | &Method::PUT) => E::ContainerArchive,
                ("export", &Method::GET) => E::ContainerExport,
                ("exec", &Method::POST) => E::ExecCreate,
                _ => E::Other,
            };
            if endpoint != E::Other {
                return (endpoint, Some(base..base + name.len()));
            }
        }
        return (E::Other, None);
    }
    if let Some(rest) = path.strip_prefix("/exec/") {
        if let Some(id) = rest.strip_suffix("/start") {
            if post && !id.is_empty() && !id.contains('/') {
                return (E::ExecStart, Some(6..6 + id.len()));
            }
        }
        return (E::Other, None);
    }
    if let Some(rest) = path.strip_prefix("/images/") {
        if let Some(name) = rest.strip_suffix("/get") {
            if get && !name.is_empty() {
                return (E::ImageSave, Some(8..8 + name.len()));
            }
        }
    }
    (E::Other, None)
}
