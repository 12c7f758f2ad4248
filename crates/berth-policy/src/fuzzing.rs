//! Entry points of the cargo-fuzz targets in `fuzz/`. They live here so that the unit
//! tests compile and run them too (`fuzz/` is outside the workspace). Each must never
//! panic, whatever the input.

use std::io;
use std::sync::{Arc, OnceLock};

use crate::{
    endpoint, AccessPolicy, BodyKind, ClientIdentity, DockerBody, PathResolver, RequestFacts,
};

/// A resolver that touches no filesystem: fuzzing must not stat random paths.
#[derive(Debug)]
struct Lexical;

impl PathResolver for Lexical {
    fn resolve(&self, path: &str) -> io::Result<String> {
        Ok(path.to_owned())
    }
}

fn strict() -> &'static AccessPolicy {
    static POLICY: OnceLock<AccessPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        AccessPolicy::from_toml(include_str!("../examples/policy-strict.toml"))
            .expect("the strict example parses")
            .with_resolver(Arc::new(Lexical))
    })
}

/// Target `create_body`: any bytes as the body of every body-judged endpoint, judged,
/// and decoded into the body model: what it encodes must decode again to the same facts
/// and the same bytes (what berth forwards reads as what it judged).
pub fn create_body(data: &[u8]) {
    for kind in [
        BodyKind::ContainerCreate,
        BodyKind::ContainerStart,
        BodyKind::ContainerUpdate,
        BodyKind::ExecCreate,
        BodyKind::VolumeCreate,
    ] {
        let Ok(mut model) = DockerBody::parse(kind, data) else {
            continue;
        };
        let _ = model.rewrite_host_paths(|_, p| Ok::<_, ()>(Some(format!("/g{p}"))));
        let sent = model.encode();
        let again = DockerBody::parse(kind, &sent).expect("an encoded body decodes");
        assert_eq!(again.facts(), model.facts(), "facts of {sent:?}");
        assert_eq!(again.encode(), sent, "encoding is stable");
    }
    let client = ClientIdentity::Unix {
        uid: 1000,
        gid: 1000,
        pid: None,
    };
    for path in [
        "/v1.41/containers/create",
        "/containers/web/exec",
        "/containers/web/update",
        "/volumes/create",
    ] {
        let req = RequestFacts::new("POST", path, &client);
        let _ = strict().check_body(&req, data);
    }
}

/// Target `request_path`: `METHOD PATH[?QUERY]` through version splitting, cleaning,
/// classification and the endpoint rules.
pub fn request_path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (method, target) = text.split_once(' ').unwrap_or(("GET", &text));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let (_, rest) = endpoint::split_version(path);
    assert!(path.ends_with(rest));
    let classified = endpoint::classify(method, path);
    assert!(classified.path.starts_with('/'));
    let client = ClientIdentity::Internal;
    let mut req = RequestFacts::new(method, path, &client);
    req.query = query;
    let _ = strict().check_request(&req);
}

/// Target `policy_toml`: any text as a policy file.
pub fn policy_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = AccessPolicy::from_toml(text) {
            let client = ClientIdentity::Anonymous;
            let req = RequestFacts::new("POST", "/containers/create", &client);
            let _ = policy.check_request(&req);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_entry_points_survive_hostile_inputs() {
        let bodies: &[&[u8]] = &[
            b"",
            b"{",
            b"null",
            b"[]",
            br#"{"HostConfig":{"Privileged":true}}"#,
            br#"{"hostconfig":null,"HostConfig":{"Mounts":[{"Type":"bind"}]}}"#,
            br#"{"HostConfig":{"Mounts":[]},"HostConfig":{"Mounts":[]}}"#,
            b"\xff\xfe",
            &[b'['; 300],
        ];
        for b in bodies {
            create_body(b);
            request_path(b);
            policy_toml(b);
        }
        for line in [
            "POST /v1.41/containers/create?x=1",
            "GET /v..../../%2e%2e/%zz",
            "GET ",
            "POST /images/create?fromImage=%ff&tag=;;&",
            "DELETE //",
            "GET /v1.41",
        ] {
            request_path(line.as_bytes());
        }
        for policy in [
            "default = 1",
            "[[rule]]\nname = \"x\"\naction = \"allow\"\npaths = [\"/**\\\\\"]",
            "[[limit]]\nname = \"a\"\nimages = [\"\"]",
            "max_body_bytes = -1",
        ] {
            policy_toml(policy.as_bytes());
        }
    }
}
