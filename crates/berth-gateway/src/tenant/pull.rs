//! A tenant's pull (`POST /images/create?fromImage=`): the image comes from the
//! registry into the tenant's repository, and no name of the engine's is made or moved.
//!
//! dockerd stores a pulled image under the name pulled, for everyone, and a pull by
//! tag moves that tag. So berth asks dockerd what the tag names in the registry now
//! (`GET /distribution/{ref}/json`: the manifest's digest), has it pull by that digest
//! (dockerd then records `name@digest` only), tags the image in the tenant's
//! repository and removes `name@digest` unless the engine had it before. One pull of
//! a repository at a time: another tenant's pull of the same reference must not find,
//! or lose, the digest reference half-way. A pull cut short (the client gone) is
//! finished the same way in the background, so nothing is left under a name nobody
//! owns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use serde_json::Value;

use super::images;
use super::lookup::{enc, Lookup};
use super::set::TenantSet;
use crate::body::{ClientBody, ResponseBody};
use crate::error::GatewayError;
use crate::guest::Guest;

/// Tenants' pulls: a lock per repository being pulled (by its familiar name), and the
/// recent pulls by digest, whose `pull` events are the tenant's (`events.rs`).
#[derive(Debug, Default)]
pub(crate) struct Pulls {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    recent: Mutex<Vec<Recent>>,
}

/// One tenant's pull of `repository@digest`, from `start` to `end` (Unix ns; the
/// repository's lock held: the pulls of one reference never overlap).
#[derive(Debug)]
struct Recent {
    pinned: String,
    tenant: String,
    shown: String,
    start: u128,
    end: Option<u128>,
}

/// How long a pull is remembered for its events (a stream may ask for past ones).
const REMEMBERED: u128 = 600 * 1_000_000_000;

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

impl Pulls {
    async fn lock(&self, repository: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(locks.entry(repository.to_owned()).or_default())
        };
        lock.lock_owned().await
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Vec<Recent>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tenant `tenant` begins to pull `pinned`, which it calls `shown`.
    pub(crate) fn record(&self, pinned: &str, tenant: &str, shown: &str) {
        let now = now_ns();
        let mut recent = self.recent();
        recent.retain(|r| r.end.is_none_or(|end| now - end < REMEMBERED));
        recent.push(Recent {
            pinned: pinned.into(),
            tenant: tenant.into(),
            shown: shown.into(),
            start: now,
            end: None,
        });
    }

    /// Tenant `tenant`'s pull of `pinned` has ended.
    fn ended(&self, pinned: &str, tenant: &str) {
        let now = now_ns();
        let mut recent = self.recent();
        let open = recent
            .iter_mut()
            .rev()
            .find(|r| r.pinned == pinned && r.tenant == tenant && r.end.is_none());
        if let Some(r) = open {
            r.end = Some(now);
        }
    }

    /// The tenant's name for `pinned` when its pull was under way at `time` (Unix ns,
    /// as dockerd stamps its events; the engine's clock is taken to be the host's).
    pub(crate) fn pulled_as(&self, tenant: &str, pinned: &str, time: u128) -> Option<String> {
        self.recent()
            .iter()
            .find(|r| r.pinned == pinned && r.start <= time && r.end.is_none_or(|end| time <= end))
            .filter(|r| r.tenant == tenant)
            .map(|r| r.shown.clone())
    }
}

/// The client's header dockerd reads for a registry (its credentials).
const AUTH_HEADER: &str = "x-registry-auth";

/// What berth does with a tenant's pull.
pub(crate) enum Prepared {
    /// berth answers itself (a shared image, or the registry's refusal).
    Answer(Response<ResponseBody>),
    /// Forward the pull with this query; finish it with [`Pulling::answer`].
    Pull(String, Pulling),
}

/// `fromImage` and `tag` as dockerd reads them: the repository and the tag pulled.
/// A digest or every tag of a repository (`docker pull -a`) is refused: there is no
/// tenant name to give an image pulled by digest (dockerd's tag API makes tags only).
fn asked(from_image: &str, tag: &str) -> Result<(String, String), &'static str> {
    // dockerd's special case: `pull -a` may send a trailing ':'.
    let from = from_image.trim_end_matches(':');
    if from.contains('@') || tag.contains(':') {
        return Err("pulling by digest is not available to tenants (pull by tag)");
    }
    let name_end = match from.rfind(':') {
        Some(colon) if !from[colon..].contains('/') => colon,
        _ => from.len(),
    };
    let (name, own_tag) = (&from[..name_end], from.get(name_end + 1..).unwrap_or(""));
    let tag = if tag.is_empty() { own_tag } else { tag };
    if tag.is_empty() {
        return Err("pulling every tag of a repository is not available to tenants");
    }
    Ok((name.to_owned(), tag.to_owned()))
}

/// How dockerd writes a repository in `RepoTags` / `RepoDigests`.
fn familiar(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("index.docker.io/library/"))
        .or_else(|| name.strip_prefix("docker.io/"))
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(name)
}

/// Scopes a tenant's pull of `from_image` (`query`: the rest of its request).
pub(crate) async fn prepare(
    lookup: &Lookup<'_>,
    set: &Arc<TenantSet>,
    headers: &http::HeaderMap,
    from_image: &str,
    query: Option<&str>,
) -> Result<Prepared, GatewayError> {
    let (guest, tenant) = (lookup.guest, lookup.tenant);
    let tag = super::query::get(query, "tag").unwrap_or_default();
    let (name, tag) = asked(from_image, &tag).map_err(|why| super::refused(tenant, why))?;
    let repo = familiar(&name).to_owned();
    let full = format!("{repo}:{tag}");
    if set.is_shared_name(&full) {
        let (status, body) = guest
            .request(Method::GET, &format!("/images/{}/json", enc(&full)))
            .await?;
        let seen = status == StatusCode::OK
            && serde_json::from_slice::<Value>(&body).is_ok_and(|i| images::sees(tenant, set, &i));
        if seen {
            // Everyone's image: the admin decides when it changes.
            let line = serde_json::json!({
                "status": format!("{full} is a shared image: not pulled for a tenant (berth)")
            });
            return Ok(Prepared::Answer(super::json_answer(&line)));
        }
        if set.is_named_shared(&full) {
            return Err(super::refused(
                tenant,
                &format!("image {full} is shared: pulled by the admin, not by a tenant"),
            ));
        }
    }
    let (Some(engine_repo), Some(_)) = (
        images::inward(tenant.name(), &repo),
        images::inward(tenant.name(), &full),
    ) else {
        return Err(GatewayError::BadRequest(format!(
            "berth tenant {:?}: {full:?} cannot be an image name of a tenant",
            tenant.name()
        )));
    };
    let guard = set.pulls().lock(&repo).await;
    let mut auth = http::HeaderMap::new();
    for value in headers.get_all(AUTH_HEADER) {
        auth.append(AUTH_HEADER, value.clone());
    }
    let (status, body) = guest
        .request_headed(
            Method::GET,
            &format!("/distribution/{}/json", enc(&format!("{name}:{tag}"))),
            None,
            auth,
        )
        .await?;
    if status != StatusCode::OK {
        let mut res = Response::new(Either::Right(Full::new(body)));
        *res.status_mut() = status;
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(Prepared::Answer(res));
    }
    let digest = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/Descriptor/digest")?.as_str().map(str::to_owned))
        .filter(|d| d.starts_with("sha256:") && !d.contains('/'))
        .ok_or_else(|| guest.bad_answer("a distribution answer without a digest".into()))?;
    let pinned = format!("{repo}@{digest}");
    let (status, body) = guest
        .request(Method::GET, &format!("/images/{}/json", enc(&pinned)))
        .await?;
    // dockerd may resolve a digest as an image ID: only the recorded reference counts.
    let had_reference = status == StatusCode::OK
        && serde_json::from_slice::<Value>(&body).is_ok_and(|i| {
            i["RepoDigests"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d == pinned.as_str()))
        });
    set.pulls().record(&pinned, tenant.name(), &full);
    let q = super::query::set(query, "fromImage", &name);
    let q = super::query::set(Some(&q), "tag", &digest);
    Ok(Prepared::Pull(
        q,
        Pulling(Some(Finish {
            guest: Arc::clone(guest),
            set: Arc::clone(set),
            tenant: tenant.name().to_owned(),
            pinned,
            shown: full,
            digest,
            engine_repo,
            tag,
            had_reference,
            _guard: guard,
        })),
    ))
}

/// A pull on its way: finished (the image made the tenant's, the digest reference
/// removed) when the answer ends, or in the background when it is dropped before.
pub(crate) struct Pulling(Option<Finish>);

impl std::fmt::Debug for Pulling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(finish) => write!(f, "Pulling({})", finish.pinned),
            None => write!(f, "Pulling(done)"),
        }
    }
}

struct Finish {
    guest: Arc<Guest>,
    set: Arc<TenantSet>,
    tenant: String,
    /// `repository@digest`: what dockerd pulls.
    pinned: String,
    /// `repository:tag`: what the tenant asked for.
    shown: String,
    digest: String,
    /// The tenant's repository of it on the engine, and the tag.
    engine_repo: String,
    tag: String,
    /// The engine had `pinned` before the pull (someone else's: it stays).
    had_reference: bool,
    /// The repository's pull lock, held to the end.
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Finish {
    /// The pulled image tagged in the tenant's repository, the digest reference gone
    /// unless it was there before. `Err`: the message for the client.
    async fn run(self) -> Result<(), String> {
        let guest = &self.guest;
        let inspect = |r: String| async move {
            let (status, body) = guest
                .request(Method::GET, &format!("/images/{}/json", enc(&r)))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(if status == StatusCode::OK {
                serde_json::from_slice::<Value>(&body).ok()
            } else {
                None
            })
        };
        let Some(pulled) = inspect(self.pinned.clone()).await? else {
            // Nothing pulled (dockerd said why in the stream).
            self.set.pulls().ended(&self.pinned, &self.tenant);
            return Ok(());
        };
        let id = pulled["Id"].as_str().unwrap_or_default().to_owned();
        let engine_tag = format!("{}:{}", self.engine_repo, self.tag);
        // The image the tag named before becomes nameless: still the tenant's to prune.
        if let Some(old) = inspect(engine_tag).await? {
            if let Some(old) = old["Id"].as_str().filter(|o| *o != id) {
                self.set.own_image(&self.tenant, old);
            }
        }
        let (status, body) = guest
            .request(
                Method::POST,
                &format!(
                    "/images/{}/tag?repo={}&tag={}",
                    enc(&self.pinned),
                    enc(&self.engine_repo),
                    enc(&self.tag)
                ),
            )
            .await
            .map_err(|e| e.to_string())?;
        let tagged = status.is_success();
        if !self.had_reference {
            // Untags `pinned`; removes the image too when the tag did not take.
            let _ = guest
                .request(Method::DELETE, &format!("/images/{}", enc(&self.pinned)))
                .await;
        }
        self.set.pulls().ended(&self.pinned, &self.tenant);
        if !tagged {
            return Err(format!(
                "berth tenant {:?}: the pulled image could not be named {}: {}",
                self.tenant,
                self.shown,
                String::from_utf8_lossy(&body).trim()
            ));
        }
        Ok(())
    }

    /// A progress line in the tenant's words: the digest pulled is the tag it asked for.
    fn line(&self, line: &[u8]) -> Bytes {
        let Ok(mut v) = serde_json::from_slice::<Value>(line) else {
            return Bytes::copy_from_slice(line);
        };
        // dockerd names a digest pull's first line by the reference or the digest.
        if v["id"] == self.digest.as_str() || v["id"] == self.pinned.as_str() {
            v["id"] = self.tag.as_str().into();
        }
        if let Some(Value::String(s)) = v.get_mut("status") {
            *s = s.replace(&self.pinned, &self.shown);
        }
        Bytes::from(format!("{v}\n"))
    }
}

impl Drop for Pulling {
    fn drop(&mut self) {
        if let Some(finish) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = finish.run().await {
                        tracing::warn!("finishing a tenant's pull: {e}");
                    }
                });
            }
        }
    }
}

impl Pulling {
    /// dockerd's answer to the pull as the tenant gets it: progress in its words, and
    /// the image made its own before the answer ends (an error line if that fails).
    pub(crate) fn answer(mut self, res: Response<ResponseBody>) -> Response<ClientBody> {
        use http_body::Frame;
        let (mut parts, body) = res.into_parts();
        if parts.status != StatusCode::OK {
            // Dropped: finished in the background (nothing pulled, as a rule).
            return Response::from_parts(parts, Either::Left(body));
        }
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let finish = self.0.take();
        let state = Some((body, BytesMut::new(), finish));
        let lines = futures_util::stream::unfold(state, |state| async move {
            let (mut body, mut buf, finish) = state?;
            loop {
                if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line = buf.split_to(end + 1);
                    let out = finish
                        .as_ref()
                        .map_or_else(|| line.clone().freeze(), |f| f.line(&line));
                    return Some((Ok(Frame::data(out)), Some((body, buf, finish))));
                }
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            buf.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => {
                        // The rest is finished in the background.
                        drop(Pulling(finish));
                        return Some((Err(std::io::Error::other(e)), None));
                    }
                    None if !buf.is_empty() => buf.extend_from_slice(b"\n"),
                    None => {
                        let message = finish?.run().await.err()?;
                        let line = serde_json::json!({
                            "errorDetail": {"message": message},
                            "error": message,
                        });
                        return Some((Ok(Frame::data(Bytes::from(format!("{line}\n")))), None));
                    }
                }
            }
        });
        let body = http_body_util::StreamBody::new(lines).boxed_unsync();
        Response::from_parts(parts, Either::Right(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_is_a_repository_and_a_tag() {
        let ok = |f: &str, t: &str| asked(f, t).map_err(|_| ());
        assert_eq!(ok("busybox", "1"), Ok(("busybox".into(), "1".into())));
        assert_eq!(
            ok("127.0.0.1:5000/t/bb", "latest"),
            Ok(("127.0.0.1:5000/t/bb".into(), "latest".into()))
        );
        assert_eq!(
            ok("127.0.0.1:5000/t/bb:2", ""),
            Ok(("127.0.0.1:5000/t/bb".into(), "2".into()))
        );
        // The tag parameter wins over a tag in the name, as in dockerd.
        assert_eq!(ok("bb:2", "3"), Ok(("bb".into(), "3".into())));
        assert!(asked("127.0.0.1:5000/t/bb", "").is_err());
        assert!(asked("bb:", "").is_err());
        assert!(asked("bb", "sha256:00").is_err());
        assert!(asked("bb@sha256:00", "").is_err());
        assert_eq!(familiar("docker.io/library/busybox"), "busybox");
        assert_eq!(familiar("docker.io/me/x"), "me/x");
        assert_eq!(familiar("127.0.0.1:5000/x"), "127.0.0.1:5000/x");
    }
}
