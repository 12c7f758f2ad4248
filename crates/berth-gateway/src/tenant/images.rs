//! A tenant's images. An image takes no label once it is made, so what a tenant owns is
//! said two ways: the names it gives images live in a repository namespace of its own
//! on the engine (`berth.tenant/<tenant>/<repository>`, mapped in and out like its other
//! names), and an image it made without a name (an untagged build, load, import or
//! commit) is its by ID, kept in berth's state ([`TenantSet`]). Shared images
//! (`shared_images`) are seen by their shared names only.

use std::collections::HashSet;

use http::{Method, Response};
use http_body_util::{Either, Full};
use serde_json::Value;

use super::lookup::{enc, Lookup};
use super::set::{Tenant, TenantSet};
use crate::body::ResponseBody;
use crate::error::GatewayError;
use crate::guest::Guest;

/// The registry-like first component of every tenant repository: a name no registry
/// answers to, so nothing of a tenant's is ever pulled or pushed by it.
const NAMESPACE: &str = "berth.tenant";

fn prefix(tenant: &str) -> String {
    format!("{NAMESPACE}/{tenant}/")
}

/// The engine name of the tenant's image reference `reference` (`app`, `app:1`,
/// `docker.io/library/app`, `ghcr.io/x/y@sha256:…`, `127.0.0.1:5000/x`):
/// `berth.tenant/<tenant>/<familiar path>[:tag][@digest]`, a registry's port written
/// `host__port` (a path component cannot hold ':'). `None` for what cannot be named in
/// the namespace (empty; an uppercase registry; a first component already spelled
/// `…__<digits>`, which would read back as a port).
pub(crate) fn inward(tenant: &str, reference: &str) -> Option<String> {
    // The name ends at a digest, or at the last ':' after the last '/' (a tag).
    let name_end = reference.find('@').unwrap_or(reference.len());
    let name_end = match reference[..name_end].rfind(':') {
        Some(colon) if !reference[colon..name_end].contains('/') => colon,
        _ => name_end,
    };
    let (name, rest) = reference.split_at(name_end);
    let first = name.split('/').next().unwrap_or_default();
    if name.contains('/') && escaped_port(first).is_some() {
        return None;
    }
    let path = match name.split_once('/') {
        Some((first, tail))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            match first.split_once(':') {
                _ if matches!(first, "docker.io" | "index.docker.io") => tail.to_owned(),
                Some((host, port))
                    if !port.is_empty()
                        && port.bytes().all(|b| b.is_ascii_digit())
                        && host == host.to_ascii_lowercase() =>
                {
                    format!("{host}__{port}/{tail}")
                }
                Some(_) => return None,
                None => name.to_owned(),
            }
        }
        _ => name.to_owned(),
    };
    let path = path.strip_prefix("library/").unwrap_or(&path);
    (!path.is_empty()).then(|| format!("{}{path}{rest}", prefix(tenant)))
}

/// `host__port` (a registry's port as the namespace writes it): where the `__` is.
fn escaped_port(component: &str) -> Option<usize> {
    let at = component.rfind("__")?;
    let port = &component[at + 2..];
    (at > 0 && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(at)
}

/// A path in the tenant's namespace (what follows its prefix) as the tenant names it:
/// a first component `host__port` is `host:port`.
fn unescape(path: &str) -> std::borrow::Cow<'_, str> {
    let first_end = path.find('/').unwrap_or(path.len());
    match escaped_port(&path[..first_end]) {
        // Only a registry (a first component followed by more path) has a port.
        Some(at) if first_end < path.len() => format!("{}:{}", &path[..at], &path[at + 2..]).into(),
        _ => path.into(),
    }
}

/// The tenant's name for an engine reference in its namespace (`None`: not its).
pub(crate) fn outward<'a>(tenant: &str, engine: &'a str) -> Option<std::borrow::Cow<'a, str>> {
    let own = engine
        .strip_prefix(NAMESPACE)?
        .strip_prefix('/')?
        .strip_prefix(tenant)?
        .strip_prefix('/')?;
    Some(unescape(own))
}

/// Whether an engine name (normalized as in `RepoTags`) is in some tenant's repository
/// (any case: such a name is never shared, even one dockerd would not resolve).
pub(crate) fn in_namespace(engine: &str) -> bool {
    engine
        .get(..NAMESPACE.len() + 1)
        .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{NAMESPACE}/")))
}

/// Text from the engine (build and load progress, errors) in the tenant's names.
pub(crate) fn outward_text(tenant: &str, text: &str) -> String {
    let prefix = prefix(tenant);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&prefix) {
        out.push_str(&rest[..at]);
        rest = &rest[at + prefix.len()..];
        // The path runs to the first character no image reference holds.
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "._-/:@".contains(c)))
            .unwrap_or(rest.len());
        out.push_str(&unescape(&rest[..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn is_id(reference: &str) -> bool {
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

/// The image's tags the tenant sees: its own (in its names) and the shared ones.
fn seen_tags(tenant: &Tenant, set: &TenantSet, tags: &Value) -> Vec<String> {
    strings(tags)
        // A nameless image's placeholder (dockerd 20.10's lists) shares nothing.
        .filter(|t| !is_placeholder(t))
        .filter_map(|t| match outward(tenant.name(), t) {
            Some(own) => Some(own.into_owned()),
            None => set.is_shared_name(t).then(|| t.to_owned()),
        })
        .collect()
}

/// `<none>:<none>` / `<none>@<none>`: what dockerd lists for a nameless image.
fn is_placeholder(name: &str) -> bool {
    matches!(name, "<none>:<none>" | "<none>@<none>")
}

/// Whether the tenant sees this image (an inspect or a list entry) at all.
pub(crate) fn sees(tenant: &Tenant, set: &TenantSet, image: &Value) -> bool {
    let id = image["Id"].as_str().unwrap_or_default();
    !seen_tags(tenant, set, &image["RepoTags"]).is_empty()
        || set.owns_image(tenant.name(), id)
        || owner_label(image) == Some(tenant.name())
}

fn owner_label(image: &Value) -> Option<&str> {
    let labels = image
        .pointer("/Config/Labels")
        .filter(|l| l.is_object())
        .or_else(|| image.get("Labels"))?;
    labels.get(super::query::OWNER_LABEL)?.as_str()
}

/// An image (an inspect or a list entry) as the tenant sees it: only its own names (in
/// its spelling) and the shared ones; `false` when it does not see the image.
pub(crate) fn view(tenant: &Tenant, set: &TenantSet, image: &mut Value) -> bool {
    if !sees(tenant, set, image) {
        return false;
    }
    let mut tags = seen_tags(tenant, set, &image["RepoTags"]);
    // A digest is seen with its repository: the tenant's, or a shared tag's.
    let repos: HashSet<&str> = tags
        .iter()
        .map(|t| {
            &t[..t
                .rfind(':')
                .filter(|c| !t[*c..].contains('/'))
                .unwrap_or(t.len())]
        })
        .collect();
    let mut digests: Vec<String> = strings(&image["RepoDigests"])
        .filter_map(|d| match outward(tenant.name(), d) {
            Some(own) => Some(own.into_owned()),
            None => {
                let repo = d.split('@').next().unwrap_or_default();
                repos.contains(repo).then(|| d.to_owned())
            }
        })
        .collect();
    for (names, seen) in [("RepoTags", &mut tags), ("RepoDigests", &mut digests)] {
        if let Some(p) = strings(&image[names]).find(|n| is_placeholder(n)) {
            seen.push(p.to_owned());
        }
    }
    if image.get("RepoTags").is_some_and(|t| !t.is_null()) {
        image["RepoTags"] = tags.into();
    }
    if image.get("RepoDigests").is_some_and(|d| !d.is_null()) {
        image["RepoDigests"] = digests.into();
    }
    true
}

/// A history answer with each layer's tags as the tenant sees them.
pub(crate) fn view_history(tenant: &Tenant, set: &TenantSet, history: &mut Value) {
    for layer in history.as_array_mut().into_iter().flatten() {
        if let Some(tags) = layer.get("Tags").filter(|t| t.is_array()) {
            layer["Tags"] = seen_tags(tenant, set, tags).into();
        }
    }
}

/// An image the tenant may use, as found: its inspect and the reference the engine is
/// to be given (its engine name, a shared name, or its full ID).
pub(crate) struct Found {
    pub(crate) inspect: Value,
    pub(crate) engine: String,
    pub(crate) how: How,
}

/// How an image was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// By one of the tenant's names.
    Own,
    /// By a shared name.
    Shared,
    /// By ID or ID prefix.
    Id,
}

/// The engine reference of a create's image when berth can tell it without asking the
/// engine: a name in `shared_images` as it is, another name in the tenant's repository
/// (dockerd answers a missing one itself). `None`: an ID-like reference, or every image
/// shared by `"*"` (look it up with [`find`]).
pub(crate) fn create_image(tenant: &Tenant, set: &TenantSet, reference: &str) -> Option<String> {
    // A digest may name any image by its ID (newer dockerd): found and checked.
    if reference.contains('@') {
        return None;
    }
    if set.is_named_shared(reference) {
        return Some(reference.to_owned());
    }
    let hex = reference.bytes().all(|b| b.is_ascii_hexdigit());
    if set.shares_all() || hex || reference.starts_with("sha256:") {
        return None;
    }
    inward(tenant.name(), reference)
}

/// Finds the image `reference` as the tenant names it, in dockerd's order: a name (the
/// tenant's own first, then a shared one), then an ID or ID prefix the tenant sees.
/// Whatever dockerd resolved a reference to, the image must be one the tenant sees (a
/// shared name may be an ID prefix to dockerd, a digest an image ID). Anything else is
/// dockerd's "No such image".
pub(crate) async fn find(
    guest: &Guest,
    tenant: &Tenant,
    set: &TenantSet,
    reference: &str,
) -> Result<Found, GatewayError> {
    let missing = || GatewayError::NotFound(format!("No such image: {reference}"));
    let inspect = |r: String| async move {
        let (status, body) = guest
            .request(Method::GET, &format!("/images/{}/json", enc(&r)))
            .await?;
        if status != http::StatusCode::OK {
            return Ok::<_, GatewayError>(None);
        }
        serde_json::from_slice::<Value>(&body)
            .map(|v| Some((v, r)))
            .map_err(|e| guest.bad_answer(format!("an image inspect: {e}")))
    };
    if reference.is_empty() || reference.starts_with('/') {
        return Err(missing());
    }
    // A name: the tenant's own, then a shared one.
    if !reference.starts_with("sha256:") {
        if let Some(engine) = inward(tenant.name(), reference) {
            if let Some((inspect, engine)) =
                inspect(engine).await?.filter(|(i, _)| sees(tenant, set, i))
            {
                return Ok(Found {
                    inspect,
                    engine,
                    how: How::Own,
                });
            }
        }
        if set.is_shared_name(reference) {
            if let Some((inspect, engine)) = inspect(reference.to_owned())
                .await?
                .filter(|(i, _)| sees(tenant, set, i))
            {
                return Ok(Found {
                    inspect,
                    engine,
                    how: How::Shared,
                });
            }
        }
    }
    // An ID or ID prefix of an image the tenant sees, named by its full ID from here.
    if !is_id(reference) {
        return Err(missing());
    }
    match inspect(reference.to_owned()).await? {
        Some((inspect, _)) if sees(tenant, set, &inspect) => {
            let id = inspect["Id"].as_str().unwrap_or(reference).to_owned();
            Ok(Found {
                inspect,
                engine: id,
                how: How::Id,
            })
        }
        _ => Err(missing()),
    }
}

/// The tenant's names of an image (engine names in its namespace).
pub(crate) fn own_tags<'v>(tenant: &str, image: &'v Value) -> Vec<&'v str> {
    strings(&image["RepoTags"])
        .filter(|t| outward(tenant, t).is_some())
        .collect()
}

/// The IDs made in an answer of a build, load, import or commit: where dockerd says
/// what it made (`aux.ID`, an import's final `status`, a load's `Loaded image ID:`, a
/// commit's `Id`, the only `stream` of a quiet build), never anything else an answer
/// mentions (a base image, a build step's output).
pub(crate) fn made_ids(line: &Value, quiet_build: bool) -> Vec<String> {
    let mut out = Vec::new();
    let full = |s: &str| {
        s.strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    for key in ["/aux/ID", "/Id", "/status"] {
        if let Some(id) = line
            .pointer(key)
            .and_then(Value::as_str)
            .filter(|s| full(s))
        {
            out.push(id.to_owned());
        }
    }
    if let Some(stream) = line["stream"].as_str() {
        if quiet_build && full(stream.trim_end()) {
            out.push(stream.trim_end().to_owned());
        }
        for l in stream.lines() {
            if let Some(id) = l.strip_prefix("Loaded image ID: ").map(str::trim) {
                if full(id) {
                    out.push(id.to_owned());
                }
            }
        }
    }
    out
}

/// One of a tenant's images on the engine.
#[derive(Debug)]
pub struct OwnedImage {
    pub id: String,
    /// The tenant's names of it (engine names).
    pub tags: Vec<String>,
    /// No name at all on the engine (nobody's, not only not the tenant's).
    pub nameless: bool,
    pub size: i64,
}

/// Every image of tenant `name` on the engine.
pub async fn owned_images(
    guest: &Guest,
    set: &TenantSet,
    name: &str,
) -> Result<Vec<OwnedImage>, GatewayError> {
    let all = guest.get_json("/images/json").await?;
    Ok(all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let id = i["Id"].as_str()?;
            let tags: Vec<String> = own_tags(name, i).into_iter().map(str::to_owned).collect();
            (!tags.is_empty() || set.owns_image(name, id)).then(|| OwnedImage {
                id: id.to_owned(),
                tags,
                nameless: strings(&i["RepoTags"]).all(is_placeholder),
                size: i["Size"].as_i64().unwrap_or(0),
            })
        })
        .collect())
}

/// Removes every image of tenant `name` from the engine (its names; an image then
/// nameless and made by it); how many went. An image another tenant or the admin
/// still names stays (only the tenant's names go): a build that changes nothing makes
/// its base's ID "made", and dockerd removes by ID an image of one repository.
pub async fn remove_images(
    guest: &Guest,
    set: &TenantSet,
    name: &str,
) -> Result<usize, GatewayError> {
    let mut count = 0;
    for image in owned_images(guest, set, name).await? {
        for tag in &image.tags {
            guest
                .request(Method::DELETE, &format!("/images/{}", enc(tag)))
                .await?;
        }
        // Named only by the tenant: removing its last name removed it.
        if image.nameless
            && set.owns_image(name, &image.id)
            && !set.owned_by_another(name, &image.id)
        {
            guest
                .request(Method::DELETE, &format!("/images/{}", image.id))
                .await?;
        }
        count += 1;
    }
    set.forget(name);
    Ok(count)
}

/// An image remove's answer (`[{"Untagged": …}, {"Deleted": …}]`) in the tenant's
/// names; what was deleted is nobody's any more.
pub(crate) fn map_deleted(tenant: &str, set: &TenantSet, answer: &mut Value) {
    for item in answer.as_array_mut().into_iter().flatten() {
        if let Some(Value::String(t)) = item.get_mut("Untagged") {
            *t = outward_text(tenant, t);
        }
        if let Some(id) = item["Deleted"].as_str() {
            set.image_gone(id);
        }
    }
}

/// `DELETE /images/{id}` of an image the tenant found by ID: its own names of it go,
/// then the image if it is now nameless and the tenant made it (no other tenant did).
/// Another tenant's or a shared name of the same image is never touched. berth's answer,
/// or the engine's refusal as it gave it.
pub(crate) async fn remove_by_id(
    lookup: &Lookup<'_>,
    image: &Value,
    query: Option<&str>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let (guest, tenant, set) = (lookup.guest, lookup.tenant, lookup.set);
    let id = image["Id"].as_str().unwrap_or_default();
    let name = tenant.name();
    let made = set.owns_image(name, id) && !set.owned_by_another(name, id);
    let tags = own_tags(name, image);
    if tags.is_empty() && !made {
        return Err(super::refused(
            tenant,
            &format!("image {id} is shared: not a tenant's to remove"),
        ));
    }
    let q = query.map(|q| format!("?{q}")).unwrap_or_default();
    let mut answer = Vec::new();
    let remove = |path: String| async move {
        let (status, body) = guest.request(Method::DELETE, &path).await?;
        if !status.is_success() {
            return Ok::<_, GatewayError>(Err(engine_answer(status, body)));
        }
        Ok(Ok(
            serde_json::from_slice::<Vec<Value>>(&body).unwrap_or_default()
        ))
    };
    for tag in tags {
        match remove(format!("/images/{}{q}", enc(tag))).await? {
            Ok(items) => answer.extend(items),
            Err(res) => return Ok(res),
        }
    }
    if made {
        let (status, now) = guest
            .request(Method::GET, &format!("/images/{id}/json"))
            .await?;
        let nameless = status.is_success()
            && serde_json::from_slice::<Value>(&now)
                .is_ok_and(|v| strings(&v["RepoTags"]).next().is_none());
        if nameless {
            match remove(format!("/images/{id}{q}")).await? {
                Ok(items) => answer.extend(items),
                Err(res) => return Ok(res),
            }
        }
    }
    let mut answer = Value::from(answer);
    map_deleted(name, set, &mut answer);
    Ok(super::json_answer(&answer))
}

fn engine_answer(status: http::StatusCode, body: bytes::Bytes) -> Response<ResponseBody> {
    let mut res = Response::new(Either::Right(Full::new(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

/// `POST /images/prune` of the tenant's images: those no container uses, nameless
/// ones made by it (`dangling`, the default) or all of them (`dangling=false`: its
/// names go). dockerd's answer shape.
pub(crate) async fn prune(
    lookup: &Lookup<'_>,
    query: Option<&str>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let (guest, tenant, set) = (lookup.guest, lookup.tenant, lookup.set);
    let name = tenant.name();
    let filters: Value = match super::query::get(query, "filters").filter(|f| !f.is_empty()) {
        None => Value::Null,
        Some(text) => serde_json::from_str(&text)
            .map_err(|_| GatewayError::BadRequest(format!("invalid filter: {text}")))?,
    };
    let mut dangling_only = true;
    for (key, values) in filters.as_object().into_iter().flatten() {
        let values: Vec<&str> = match values {
            Value::Object(m) => m.keys().map(String::as_str).collect(),
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        match key.as_str() {
            "dangling" => dangling_only = !values.iter().any(|v| matches!(*v, "false" | "0")),
            other => {
                return Err(super::refused(
                    tenant,
                    &format!("image prune filter {other:?} is not available to tenants"),
                ))
            }
        }
    }
    let used: HashSet<String> = guest
        .get_json("/containers/json?all=1")
        .await?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["ImageID"].as_str().map(str::to_owned))
        .collect();
    let mut deleted = Vec::new();
    let mut reclaimed = 0;
    for image in owned_images(guest, set, name).await? {
        if used.contains(&image.id) || (dangling_only && !image.tags.is_empty()) {
            continue;
        }
        let mut paths: Vec<String> = image
            .tags
            .iter()
            .map(|t| format!("/images/{}", enc(t)))
            .collect();
        if image.nameless
            && set.owns_image(name, &image.id)
            && !set.owned_by_another(name, &image.id)
        {
            paths.push(format!("/images/{}", image.id));
        }
        for path in paths {
            let (status, body) = guest.request(Method::DELETE, &path).await?;
            if status.is_success() {
                let items: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
                if items.iter().any(|i| i["Deleted"] == image.id.as_str()) {
                    reclaimed += image.size;
                }
                deleted.extend(items);
            }
        }
    }
    let mut list = Value::from(deleted);
    map_deleted(name, set, &mut list);
    let list = if list.as_array().is_some_and(Vec::is_empty) {
        Value::Null
    } else {
        list
    };
    Ok(super::json_answer(
        &serde_json::json!({ "ImagesDeleted": list, "SpaceReclaimed": reclaimed }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_map_into_the_tenants_repository_and_back() {
        for (given, engine) in [
            ("app", "berth.tenant/ci/app"),
            ("app:1", "berth.tenant/ci/app:1"),
            ("library/app", "berth.tenant/ci/app"),
            ("docker.io/library/app:2", "berth.tenant/ci/app:2"),
            ("docker.io/me/app", "berth.tenant/ci/me/app"),
            (
                "ghcr.io/x/y@sha256:ab",
                "berth.tenant/ci/ghcr.io/x/y@sha256:ab",
            ),
            ("localhost/x:3", "berth.tenant/ci/localhost/x:3"),
        ] {
            assert_eq!(inward("ci", given).as_deref(), Some(engine), "{given}");
        }
        assert_eq!(
            inward("ci", "localhost:5000/x").as_deref(),
            Some("berth.tenant/ci/localhost__5000/x")
        );
        assert_eq!(
            inward("ci", "127.0.0.1:5000/t/bb:1").as_deref(),
            Some("berth.tenant/ci/127.0.0.1__5000/t/bb:1")
        );
        assert_eq!(
            outward("ci", "berth.tenant/ci/127.0.0.1__5000/t/bb:1").as_deref(),
            Some("127.0.0.1:5000/t/bb:1")
        );
        assert_eq!(
            outward_text("ci", "{\"x\":\"berth.tenant/ci/localhost__5000/x:1\"}"),
            "{\"x\":\"localhost:5000/x:1\"}"
        );
        // The escaped spelling is not a name of its own (it would read back as a port).
        assert_eq!(inward("ci", "127.0.0.1__5000/x"), None);
        assert_eq!(inward("ci", "localhost__5000/x"), None);
        assert_eq!(inward("ci", "Reg.io:5000/x"), None);
        assert_eq!(
            inward("ci", "app__1").as_deref(),
            Some("berth.tenant/ci/app__1")
        );
        assert_eq!(inward("ci", ""), None);
        assert_eq!(
            outward("ci", "berth.tenant/ci/app:1").as_deref(),
            Some("app:1")
        );
        assert_eq!(outward("ci", "berth.tenant/cix/app:1"), None);
        assert_eq!(outward("ci", "app:1"), None);
        assert_eq!(
            outward_text("ci", "Successfully tagged berth.tenant/ci/app:latest\n"),
            "Successfully tagged app:latest\n"
        );
    }

    #[test]
    fn a_tenant_sees_its_names_and_the_shared_ones() {
        let set = TenantSet::new(
            Vec::new(),
            Default::default(),
            vec!["busybox".into()],
            Vec::new(),
        );
        let ci = Tenant::new("ci", Vec::new(), None).unwrap();
        let mut image = serde_json::json!({"Id": "sha256:1", "RepoTags": ["busybox:latest", "berth.tenant/ci/app:latest", "berth.tenant/cd/app:latest", "other:1"],
            "RepoDigests": ["busybox@sha256:9", "other@sha256:8", "berth.tenant/ci/app@sha256:7"]});
        assert!(view(&ci, &set, &mut image));
        assert_eq!(
            image["RepoTags"],
            serde_json::json!(["busybox:latest", "app:latest"])
        );
        assert_eq!(
            image["RepoDigests"],
            serde_json::json!(["busybox@sha256:9", "app@sha256:7"])
        );
        let mut theirs =
            serde_json::json!({"Id": "sha256:2", "RepoTags": ["berth.tenant/cd/app:latest"]});
        assert!(!view(&ci, &set, &mut theirs));
        let mut dangling = serde_json::json!({"Id": "sha256:3", "RepoTags": []});
        assert!(!sees(&ci, &set, &dangling));
        set.own_image("ci", "sha256:3");
        assert!(view(&ci, &set, &mut dangling));
        let made = serde_json::json!({"stream": "Loaded image ID: sha256:0000000000000000000000000000000000000000000000000000000000000001\n"});
        assert_eq!(made_ids(&made, false).len(), 1);
        let base = serde_json::json!({"stream": "Step 1/2 : FROM sha256:0000000000000000000000000000000000000000000000000000000000000001\n"});
        assert!(made_ids(&base, false).is_empty());
        // `*` shares the names outside the tenants' repositories, never another
        // tenant's name, nor a nameless image through dockerd's placeholder.
        let all = TenantSet::new(Vec::new(), Default::default(), vec!["*".into()], Vec::new());
        let mut mixed = serde_json::json!({"Id": "sha256:4", "RepoTags": ["berth.tenant/cd/app:latest", "other:1"],
            "RepoDigests": ["berth.tenant/cd/app@sha256:6", "other@sha256:5"]});
        assert!(view(&ci, &all, &mut mixed));
        assert_eq!(mixed["RepoTags"], serde_json::json!(["other:1"]));
        assert_eq!(mixed["RepoDigests"], serde_json::json!(["other@sha256:5"]));
        let theirs =
            serde_json::json!({"Id": "sha256:2", "RepoTags": ["berth.tenant/cd/app:latest"]});
        assert!(!sees(&ci, &all, &theirs));
        let mut listed = serde_json::json!({"Id": "sha256:5", "RepoTags": ["<none>:<none>"], "RepoDigests": ["<none>@<none>"]});
        assert!(!sees(&ci, &all, &listed));
        all.own_image("ci", "sha256:5");
        assert!(view(&ci, &all, &mut listed));
        assert_eq!(listed["RepoTags"], serde_json::json!(["<none>:<none>"]));
        assert_eq!(create_image(&ci, &set, "busybox@sha256:ab"), None);
        let quiet = serde_json::json!({"stream": "sha256:0000000000000000000000000000000000000000000000000000000000000001\n"});
        assert!(made_ids(&quiet, false).is_empty());
        assert_eq!(made_ids(&quiet, true).len(), 1);
    }
}
