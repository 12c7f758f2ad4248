//! A tenant's event stream. Its containers' (and its networks' and volumes') events are
//! the engine's stream filtered by the owner label; images carry no such label, and
//! dockerd ANDs filters of different keys, so the tenant's image events come from a
//! second stream of the engine's image events, filtered here: an event is the tenant's
//! when it names an image in the tenant's repository, a pull berth made for it, or an
//! image ID it owns (its names' images when the stream began, those it made without a
//! name, and those its events named since). The two are merged as they arrive, names
//! in the tenant's spelling.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::Response;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::images;
use super::lookup::Lookup;
use super::names::outward;
use super::set::TenantSet;
use crate::body::{ClientBody, ResponseBody};
use crate::error::GatewayError;

/// The engine's image events for one tenant's stream.
pub(crate) struct ImageEvents {
    body: Incoming,
    set: Arc<TenantSet>,
    known: Known,
}

impl std::fmt::Debug for ImageEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImageEvents({} known)", self.known.at_start.len())
    }
}

/// Image IDs that are the tenant's, for events that give only an ID.
#[derive(Default)]
struct Known {
    /// The images of its names when the stream began (Unix ns): for later events only,
    /// so that a replay (`since`) does not show what was done to an image before it
    /// was the tenant's.
    at_start: HashSet<String>,
    started: u128,
    /// IDs its own events named in this stream.
    learned: HashSet<String>,
}

impl Known {
    fn owns(&self, set: &TenantSet, tenant: &str, id: &str, time: u128) -> bool {
        self.learned.contains(id)
            || set.owns_image(tenant, id)
            || (time >= self.started && self.at_start.contains(id))
    }
}

/// Opens the engine's image event stream for a tenant's `GET /events` (`uri`: its
/// query with `type=image`), the tenant's image IDs known so far. `None` when dockerd
/// refuses it (the tenant's own stream then gets the same answer).
pub(crate) async fn open(
    lookup: &Lookup<'_>,
    set: &Arc<TenantSet>,
    uri: http::Uri,
) -> Result<Option<ImageEvents>, GatewayError> {
    let guest = lookup.guest;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let at_start = images::owned_images(guest, set, lookup.tenant.name())
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    let known = Known {
        at_start,
        started,
        learned: HashSet::new(),
    };
    let req = http::Request::builder()
        .method(http::Method::GET)
        .uri(crate::guest::guest_uri_from(&uri))
        .body(http_body_util::Either::Right(http_body_util::Full::new(
            Bytes::new(),
        )))
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let res = guest
        .client()
        .request(req)
        .await
        .map_err(|e| GatewayError::GuestUnreachable {
            engine: guest.name().to_owned(),
            reason: format!("opening the image event stream: {e}"),
        })?;
    if res.status() != http::StatusCode::OK {
        return Ok(None);
    }
    Ok(Some(ImageEvents {
        body: res.into_body(),
        set: Arc::clone(set),
        known,
    }))
}

/// A body's lines as they arrive (a last line without a newline included).
fn lines<B>(body: B) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    futures_util::stream::unfold(Some((body, BytesMut::new())), |state| async move {
        let (mut body, mut buf) = state?;
        loop {
            if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(end + 1).freeze();
                return Some((Ok(line), Some((body, buf))));
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Some((Err(std::io::Error::other(e.to_string())), None)),
                None if buf.is_empty() => return None,
                None => return Some((Ok(buf.split().freeze()), None)),
            }
        }
    })
}

/// The tenant's event stream: the engine's (label-filtered) answer with names mapped,
/// merged with its image events when there are any to ask for.
pub(crate) fn answer(
    tenant: String,
    res: Response<ResponseBody>,
    images: Option<ImageEvents>,
) -> Response<ClientBody> {
    let (mut parts, body) = res.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let own = tenant.clone();
    let labelled = lines(body).map(move |l| l.map(|l| map_event(&own, &l)));
    let body = match images {
        None => http_body_util::StreamBody::new(labelled.map(|l| l.map(http_body::Frame::data)))
            .boxed_unsync(),
        Some(ImageEvents {
            body,
            set,
            mut known,
        }) => {
            let image_lines = lines(body).filter_map(move |l| {
                let out = match l {
                    Ok(l) => image_event(&tenant, &set, &mut known, &l).map(Ok),
                    Err(e) => Some(Err(e)),
                };
                std::future::ready(out)
            });
            let merged = futures_util::stream::select(labelled, image_lines);
            http_body_util::StreamBody::new(merged.map(|l| l.map(http_body::Frame::data)))
                .boxed_unsync()
        }
    };
    Response::from_parts(parts, http_body_util::Either::Right(body))
}

/// One event line with the tenant's names (unchanged if it is not an event).
pub(crate) fn map_event(tenant: &str, line: &[u8]) -> Bytes {
    let Ok(mut event) = serde_json::from_slice::<Value>(line) else {
        return Bytes::copy_from_slice(line);
    };
    for key in ["/Actor/Attributes/name", "/Actor/Attributes/container"] {
        if let Some(Value::String(n)) = event.pointer_mut(key) {
            *n = outward(tenant, n).to_owned();
        }
    }
    Bytes::from(format!("{event}\n"))
}

/// An image event as the tenant sees it, or `None` when it is not the tenant's.
fn image_event(tenant: &str, set: &TenantSet, known: &mut Known, line: &[u8]) -> Option<Bytes> {
    let mut event = serde_json::from_slice::<Value>(line).ok()?;
    let id = event.pointer("/Actor/ID")?.as_str()?.to_owned();
    let name = event
        .pointer("/Actor/Attributes/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let is_id = id.starts_with("sha256:");
    // An event that names an image by a name (a tag, a load, a pull) is the tenant's
    // when the name is; one that gives only the ID (untag, delete, import) when the ID is.
    let named = name.as_deref().filter(|n| !n.starts_with("sha256:"));
    let time = event["timeNano"].as_u64().map_or(0, u128::from);
    if event["Action"] == "pull" {
        // dockerd names a pull by the reference pulled (the ID) and its repository.
        let shown = set.pulls().pulled_as(tenant, &id, time)?;
        event["Actor"]["ID"] = shown.as_str().into();
        if event.get("id").is_some() {
            event["id"] = shown.as_str().into();
        }
        return Some(Bytes::from(format!("{event}\n")));
    }
    match named {
        Some(name) => {
            let own = images::outward(tenant, name)?.into_owned();
            event["Actor"]["Attributes"]["name"] = own.into();
        }
        None if is_id && known.owns(set, tenant, &id, time) => {}
        None => return None,
    }
    if is_id {
        known.learned.insert(id);
    }
    Some(Bytes::from(format!("{event}\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_events_are_the_tenants_own() {
        let set = TenantSet::new(
            Vec::new(),
            Default::default(),
            vec!["busybox".into()],
            Vec::new(),
        );
        let mut known = Known::default();
        let ev = |action: &str, id: &str, name: &str| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            serde_json::json!({"Type": "image", "Action": action, "status": action, "id": id,
                "Actor": {"ID": id, "Attributes": {"name": name}}, "timeNano": now})
            .to_string()
        };
        let id = format!("sha256:{}", "a".repeat(64));
        let mut see = |line: String| {
            image_event("ci", &set, &mut known, line.as_bytes())
                .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        };
        // Another tenant's name, the admin's, an ID nobody gave the tenant: hidden.
        assert!(see(ev("tag", &id, "berth.tenant/cd/app:latest")).is_none());
        assert!(see(ev("tag", &id, "busybox:latest")).is_none());
        assert!(see(ev("untag", &id, &id)).is_none());
        // Its own name: shown in its spelling, and the ID is the tenant's from then on.
        let tag = see(ev("tag", &id, "berth.tenant/ci/app:latest")).unwrap();
        assert_eq!(tag["Actor"]["Attributes"]["name"], "app:latest");
        assert_eq!(tag["Actor"]["ID"], id.as_str());
        let untag = see(ev("untag", &id, &id)).unwrap();
        assert_eq!(untag["Action"], "untag");
        // A pull berth made for it: named as the tenant asked.
        let pinned = format!("127.0.0.1:5000/x@sha256:{}", "b".repeat(64));
        let repo = "127.0.0.1:5000/x";
        assert!(see(ev("pull", &pinned, repo)).is_none());
        set.pulls().record(&pinned, "ci", "127.0.0.1:5000/x:1");
        let pull = see(ev("pull", &pinned, repo)).unwrap();
        assert_eq!(pull["Actor"]["ID"], "127.0.0.1:5000/x:1");
        assert_eq!(pull["Actor"]["Attributes"]["name"], repo);
        assert_eq!(pull["id"], "127.0.0.1:5000/x:1");
        let mut other = Known::default();
        let line = ev("pull", &pinned, repo);
        assert!(image_event("cd", &set, &mut other, line.as_bytes()).is_none());
        // What was done to an image before the stream began, and before the tenant
        // named it in the stream, is not shown by its ID alone.
        let mut later = Known {
            at_start: [id.clone()].into(),
            started: u128::MAX,
            learned: HashSet::new(),
        };
        let line = ev("untag", &id, &id);
        assert!(image_event("ci", &set, &mut later, line.as_bytes()).is_none());
    }
}
