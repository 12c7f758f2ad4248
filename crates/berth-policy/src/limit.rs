//! `Limit`: a named body rule (`[[limit]]`), compiled, and how it judges the facts of
//! a body or a query string.

use std::borrow::Cow;

use crate::body::{BodyFacts, Namespace};
use crate::client::ClientSet;
use crate::endpoint::Operation;
use crate::hostpath::{self, PathResolver, Verdict};
use crate::image;
use crate::pattern::Glob;
use crate::request::RequestFacts;

/// One `[[limit]]`: every constraint that is `Some` (or `true`) refuses what it names.
#[derive(Clone, Debug, Default)]
pub(crate) struct Limit {
    pub(crate) name: String,
    pub(crate) clients: ClientSet,
    /// `privileged = false`
    pub(crate) deny_privileged: bool,
    /// `cap_add = [...]`: normalized capabilities that may be added.
    pub(crate) cap_add: Option<Vec<String>>,
    /// `devices = false`
    pub(crate) deny_devices: bool,
    /// `host_* = false`, as [`Namespace::bit`]s.
    pub(crate) deny_host: u8,
    /// `bind_roots = [...]`: clean absolute paths.
    pub(crate) bind_roots: Option<Vec<String>>,
    /// `unconfined = false`
    pub(crate) deny_unconfined: bool,
    /// `sysctls = [...]`
    pub(crate) sysctls: Option<Vec<Glob>>,
    /// `images = [...]`
    pub(crate) images: Option<Vec<Glob>>,
    /// `users = [...]`
    pub(crate) users: Option<Vec<String>>,
}

impl Limit {
    /// Whether this limit has anything to say about `op`.
    pub(crate) fn judges(&self, op: Operation) -> bool {
        match op {
            Operation::ContainerCreate => true,
            Operation::ContainerStart => {
                self.deny_privileged
                    || self.cap_add.is_some()
                    || self.deny_devices
                    || self.deny_host != 0
                    || self.bind_roots.is_some()
                    || self.deny_unconfined
                    || self.sysctls.is_some()
            }
            Operation::ContainerUpdate => self.deny_devices,
            Operation::ExecCreate => self.deny_privileged || self.users.is_some(),
            Operation::VolumeCreate => self.bind_roots.is_some(),
            Operation::ImageCreate => self.images.is_some(),
            Operation::Build => self.deny_host & Namespace::Network.bit() != 0,
        }
    }

    /// Whether the limit constrains anything at all.
    pub(crate) fn is_empty(&self) -> bool {
        !self.deny_privileged
            && self.cap_add.is_none()
            && !self.deny_devices
            && self.deny_host == 0
            && self.bind_roots.is_none()
            && !self.deny_unconfined
            && self.sysctls.is_none()
            && self.images.is_none()
            && self.users.is_none()
    }

    /// The first thing in `facts` this limit refuses, as a noun phrase.
    pub(crate) fn judge(
        &self,
        op: Operation,
        facts: &BodyFacts,
        resolver: &dyn PathResolver,
    ) -> Option<String> {
        if self.deny_privileged && facts.privileged {
            return Some(match op {
                Operation::ExecCreate => "privileged exec sessions".to_owned(),
                _ => "privileged containers".to_owned(),
            });
        }
        if let Some(allowed) = &self.cap_add {
            if let Some(cap) = facts.caps.iter().find(|c| !allowed.contains(c)) {
                return Some(format!("adding capability {cap}"));
            }
        }
        if self.deny_devices {
            if let Some(d) = facts.devices.first() {
                return Some(d.clone());
            }
        }
        if let Some(ns) = facts
            .host_modes
            .iter()
            .find(|ns| self.deny_host & ns.bit() != 0)
        {
            return Some(ns.describe().to_owned());
        }
        if let Some(roots) = &self.bind_roots {
            for source in &facts.bind_sources {
                if let Verdict::Outside(how) = hostpath::judge(source, roots, resolver) {
                    return Some(format!("bind mounts outside the allowed roots ({how})"));
                }
            }
        }
        if self.deny_unconfined {
            if let Some(u) = facts.unconfined.first() {
                return Some(u.clone());
            }
        }
        if let Some(allowed) = &self.sysctls {
            if let Some(s) = facts
                .sysctls
                .iter()
                .find(|s| !allowed.iter().any(|g| g.matches(s)))
            {
                return Some(format!("sysctl {s}"));
            }
        }
        if let Some(allowed) = &self.images {
            for reference in &facts.images {
                if let Some(what) = judge_image(allowed, reference) {
                    return Some(what);
                }
            }
        }
        if let Some(allowed) = &self.users {
            if let Some(u) = facts
                .users
                .iter()
                .find(|u| !allowed.iter().any(|a| user_allowed(a, u)))
            {
                return Some(if u.is_empty() {
                    "running as the image's default user".to_owned()
                } else {
                    format!("running as user {u:?}")
                });
            }
        }
        None
    }

    /// Judges what `op` carries in its query string (pulls, builds).
    pub(crate) fn judge_query(&self, op: Operation, req: &RequestFacts<'_>) -> Option<String> {
        if is_form(req.content_type) {
            // dockerd would read form fields from the body over the query string.
            return Some("form-encoded parameters in request bodies".to_owned());
        }
        let query = req.query.unwrap_or("");
        match op {
            Operation::ImageCreate => {
                let allowed = self.images.as_ref()?;
                let tags: Vec<Cow<'_, str>> = query_values(query, "tag").collect();
                for from in query_values(query, "fromImage").filter(|f| !f.is_empty()) {
                    let tags = if tags.is_empty() {
                        &[Cow::Borrowed("")][..]
                    } else {
                        &tags[..]
                    };
                    for tag in tags {
                        let what = match image::pull_reference(&from, tag) {
                            Ok(r) if allowed.iter().any(|g| g.matches(&r)) => continue,
                            Ok(r) => format!("image {r}"),
                            Err(e) => format!("image {from:?} ({e})"),
                        };
                        return Some(what);
                    }
                }
                None
            }
            Operation::Build => query_values(query, "networkmode")
                .any(|m| m.trim().eq_ignore_ascii_case("host"))
                .then(|| "host network mode for builds".to_owned()),
            _ => None,
        }
    }
}

fn judge_image(allowed: &[Glob], reference: &str) -> Option<String> {
    match image::candidates(reference) {
        Ok(candidates) => candidates
            .into_iter()
            .find(|c| !allowed.iter().any(|g| g.matches(c)))
            .map(|c| format!("image {c}")),
        Err(e) => Some(format!("image {reference:?} ({e})")),
    }
}

/// `users` entries: `name` allows that user with any group, `name:group` exactly that.
fn user_allowed(allowed: &str, user: &str) -> bool {
    if allowed.contains(':') {
        allowed == user
    } else {
        user.split(':').next() == Some(allowed)
    }
}

fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// Every value of `key` in a query string, decoded as Go's `url.ParseQuery` does (`+` is
/// a space). Both `&` and `;` separate pairs: older Go split on `;` too, and judging
/// every candidate is the safe side of that difference.
pub(crate) fn query_values<'q>(query: &'q str, key: &'q str) -> impl Iterator<Item = Cow<'q, str>> {
    query.split(['&', ';']).filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_component(k) == key).then(|| decode_component(v))
    })
}

fn decode_component(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let hex = |i: usize| b.get(i).and_then(|&x| (x as char).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 2;
            }
            (x, _, _) => out.push(x),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_decode_and_split_like_go() {
        let q = "fromImage=busy%62ox&tag=1.0;tag=2+0&x=%zz";
        let from: Vec<_> = query_values(q, "fromImage").collect();
        let tags: Vec<_> = query_values(q, "tag").collect();
        let x: Vec<_> = query_values(q, "x").collect();
        assert_eq!(from, ["busybox"]);
        assert_eq!(tags, ["1.0", "2 0"]);
        assert_eq!(x, ["%zz"]);
    }

    #[test]
    fn users_allow_any_group_unless_one_is_named() {
        assert!(user_allowed("1000", "1000"));
        assert!(user_allowed("1000", "1000:1000"));
        assert!(!user_allowed("1000", "0"));
        assert!(!user_allowed("1000:1000", "1000:0"));
        assert!(user_allowed("", ""));
        assert!(!user_allowed("", "root"));
    }
}
