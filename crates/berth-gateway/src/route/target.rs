//! What a request names, for routing among several engines: an object whose owner
//! decides, a platform, a BuildKit session, or a view that every engine contributes to.
//!
//! Only consulted when a router fronts more than one engine, so the single-engine path
//! never reads the query for it. The path was read once, by classify; names keep the
//! client's percent-encoding here; the registry decodes what it compares.

use std::borrow::Cow;

use http::HeaderMap;

pub use crate::classify::MergedView;
use crate::classify::{Classified, Endpoint, Owner};

/// What decides the engine for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// Nothing routable: the default engine.
    Default,
    /// A container by ID, ID prefix or name (still percent-encoded).
    Container(&'a str),
    /// A container named in the query (`POST /commit?container=`).
    ContainerInQuery(Cow<'a, str>),
    /// An exec instance.
    Exec(&'a str),
    /// An image by reference or ID (still percent-encoded).
    Image(&'a str),
    /// A volume.
    Volume(&'a str),
    /// A network by name, ID or ID prefix.
    Network(&'a str),
    /// Creation: the engine serving `platform`, or the default when there is none.
    Create {
        /// The `platform` query parameter, if any.
        platform: Option<Cow<'a, str>>,
        /// `POST /containers/create?name=`: checked for uniqueness across engines.
        container_name: Option<Cow<'a, str>>,
    },
    /// `POST /session`: opens a BuildKit session, whose uuid later requests name.
    OpenSession(Option<&'a str>),
    /// `POST /build?session=`: the engine that holds that session.
    Session(Cow<'a, str>),
    /// A merged view.
    Merged(MergedView),
}

/// What decides the engine for a request classified as `classified`: the object and
/// view classify found in `path` (unversioned), and what the query or headers name.
pub fn target<'a>(
    classified: &Classified,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Target<'a> {
    if let Some(view) = classified.view {
        return Target::Merged(view);
    }
    match classified.endpoint {
        Endpoint::ContainerCreate => {
            return Target::Create {
                platform: query_param(query, "platform"),
                container_name: query_param(query, "name"),
            }
        }
        Endpoint::ImageCreate | Endpoint::ImageLoad => {
            return Target::Create {
                platform: query_param(query, "platform"),
                container_name: None,
            }
        }
        Endpoint::Build => {
            return match query_param(query, "session") {
                Some(session) => Target::Session(session),
                None => Target::Create {
                    platform: query_param(query, "platform"),
                    container_name: None,
                },
            };
        }
        Endpoint::Session => {
            let uuid = headers
                .get("x-docker-expose-session-uuid")
                .and_then(|v| v.to_str().ok());
            return Target::OpenSession(uuid);
        }
        Endpoint::Commit => {
            return match query_param(query, "container") {
                Some(c) => Target::ContainerInQuery(c),
                None => Target::Default,
            };
        }
        // `docker save a b`: the first name decides.
        Endpoint::ImageSave if classified.owner == Owner::None => {
            return match query_param(query, "names") {
                Some(Cow::Borrowed(n)) => Target::Image(n),
                _ => Target::Default,
            };
        }
        _ => {}
    }
    let name = |range: &std::ops::Range<usize>| &path[range.clone()];
    match &classified.owner {
        Owner::None => Target::Default,
        Owner::Container(r) => Target::Container(name(r)),
        Owner::Exec(r) => Target::Exec(name(r)),
        Owner::Image(r) => Target::Image(name(r)),
        Owner::Volume(r) => Target::Volume(name(r)),
        Owner::Network(r) => Target::Network(name(r)),
    }
}

/// One query parameter, decoded as Go's `url.ParseQuery` does.
pub(crate) fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<Cow<'a, str>> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn t<'a>(method: Method, path: &'a str, query: Option<&'a str>) -> Target<'a> {
        static EMPTY: std::sync::OnceLock<HeaderMap> = std::sync::OnceLock::new();
        let headers = EMPTY.get_or_init(HeaderMap::new);
        let classified = crate::classify::classify(&method, path, headers);
        target(&classified, path, query, headers)
    }

    #[test]
    fn objects_route_by_owner() {
        assert_eq!(
            t(Method::GET, "/containers/web/json", None),
            Target::Container("web")
        );
        assert_eq!(
            t(Method::GET, "/containers/web/db/json", None),
            Target::Container("web/db")
        );
        assert_eq!(
            t(Method::DELETE, "/containers/web/db", None),
            Target::Container("web/db")
        );
        assert_eq!(
            t(Method::GET, "/containers/abc/attach/ws", None),
            Target::Container("abc")
        );
        assert_eq!(t(Method::POST, "/exec/e1/start", None), Target::Exec("e1"));
        assert_eq!(
            t(
                Method::GET,
                "/images/docker.io/library/busybox:1/json",
                None
            ),
            Target::Image("docker.io/library/busybox:1")
        );
        assert_eq!(
            t(Method::DELETE, "/images/busybox:latest", None),
            Target::Image("busybox:latest")
        );
        assert_eq!(t(Method::DELETE, "/volumes/v1", None), Target::Volume("v1"));
        assert_eq!(
            t(Method::POST, "/networks/n1/connect", None),
            Target::Network("n1")
        );
        assert_eq!(t(Method::POST, "/networks/create", None), Target::Default);
        assert_eq!(t(Method::POST, "/volumes/create", None), Target::Default);
        assert_eq!(
            t(Method::POST, "/commit", Some("container=web&repo=x")),
            Target::ContainerInQuery(Cow::Borrowed("web"))
        );
    }

    #[test]
    fn creation_routes_by_platform() {
        assert_eq!(
            t(
                Method::POST,
                "/containers/create",
                Some("name=a&platform=linux%2Farm64")
            ),
            Target::Create {
                platform: Some(Cow::Owned("linux/arm64".into())),
                container_name: Some(Cow::Borrowed("a"))
            }
        );
        assert_eq!(
            t(
                Method::POST,
                "/images/create",
                Some("fromImage=x&platform=")
            ),
            Target::Create {
                platform: None,
                container_name: None
            }
        );
        assert_eq!(
            t(Method::POST, "/build", Some("session=s1&platform=arm64")),
            Target::Session(Cow::Borrowed("s1"))
        );
    }

    #[test]
    fn views_are_merged() {
        assert_eq!(
            t(Method::GET, "/containers/json", Some("all=1")),
            Target::Merged(MergedView::Containers)
        );
        assert_eq!(
            t(Method::POST, "/build/prune", None),
            Target::Merged(MergedView::Prune)
        );
        assert_eq!(
            t(Method::GET, "/events", None),
            Target::Merged(MergedView::Events)
        );
        assert_eq!(t(Method::GET, "/version", None), Target::Default);
    }
}
