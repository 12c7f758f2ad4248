//! What a request names, for routing among several engines: an object whose owner
//! decides, a platform, a BuildKit session, or a view that every engine contributes to.
//!
//! Only consulted when a router fronts more than one engine, so the single-engine path
//! never pays for this parse. Names keep the client's percent-encoding here; the
//! registry decodes what it compares.

use std::borrow::Cow;

use http::{HeaderMap, Method};

pub use crate::classify::MergedView;

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

/// Reads what `method path?query` names. `path` is unversioned.
pub fn target<'a>(
    method: &Method,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Target<'a> {
    use MergedView as V;
    // HEAD is left to the default engine: a merged view needs bodies to merge.
    let get = method == Method::GET;
    let post = method == Method::POST;
    match path {
        "/containers/json" if get => return Target::Merged(V::Containers),
        "/images/json" if get => return Target::Merged(V::Images),
        "/volumes" | "/volumes/" if get => return Target::Merged(V::Volumes),
        "/networks" | "/networks/" if get => return Target::Merged(V::Networks),
        "/system/df" if get => return Target::Merged(V::SystemDf),
        "/info" if get => return Target::Merged(V::Info),
        "/events" if get => return Target::Merged(V::Events),
        "/containers/prune" | "/images/prune" | "/volumes/prune" | "/networks/prune"
        | "/build/prune"
            if post =>
        {
            return Target::Merged(V::Prune)
        }
        "/containers/create" if post => {
            return Target::Create {
                platform: query_param(query, "platform"),
                container_name: query_param(query, "name"),
            }
        }
        "/images/create" | "/images/load" if post => {
            return Target::Create {
                platform: query_param(query, "platform"),
                container_name: None,
            }
        }
        "/build" if post => {
            return match query_param(query, "session") {
                Some(session) => Target::Session(session),
                None => Target::Create {
                    platform: query_param(query, "platform"),
                    container_name: None,
                },
            };
        }
        "/session" if post => {
            let uuid = headers
                .get("x-docker-expose-session-uuid")
                .and_then(|v| v.to_str().ok());
            return Target::OpenSession(uuid);
        }
        "/commit" if post => {
            return match query_param(query, "container") {
                Some(c) => Target::ContainerInQuery(c),
                None => Target::Default,
            };
        }
        "/images/get" if get => {
            // `docker save a b`: the first name decides.
            return match query_param(query, "names") {
                Some(Cow::Borrowed(n)) => Target::Image(n),
                _ => Target::Default,
            };
        }
        _ => {}
    }
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
            .map_or(Target::Default, Target::Container);
    }
    if let Some(rest) = path.strip_prefix("/exec/") {
        return match rest.split_once('/') {
            Some((id, _op)) if !id.is_empty() => Target::Exec(id),
            _ => Target::Default,
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
            .map_or(Target::Default, Target::Image);
    }
    if let Some(rest) = path.strip_prefix("/volumes/") {
        return match rest {
            "" | "create" => Target::Default,
            name => Target::Volume(name),
        };
    }
    if let Some(rest) = path.strip_prefix("/networks/") {
        let id = rest.split_once('/').map_or(rest, |(id, _op)| id);
        return match id {
            "" | "create" => Target::Default,
            id => Target::Network(id),
        };
    }
    Target::Default
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

    fn t<'a>(method: Method, path: &'a str, query: Option<&'a str>) -> Target<'a> {
        static EMPTY: std::sync::OnceLock<HeaderMap> = std::sync::OnceLock::new();
        target(&method, path, query, EMPTY.get_or_init(HeaderMap::new))
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
