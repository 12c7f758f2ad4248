//! The Docker socket inside containers: a create that bind-mounts the engine's socket
//! (or berth's own) would hand the container an unpoliced API. Such a bind source is
//! replaced by berth's container socket, where the container is an `internal` client
//! under the same policy.
//!
//! Every key that matches case-insensitively is rewritten (dockerd merges duplicates:
//! gateway notes 11.2); sources are compared after `.`/`..`/`//` cleaning and, when
//! they exist, after symlinks are resolved (`/var/run` → `/run`).

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use serde_json::Value;

use super::ContainerSocket;
use crate::error::GatewayError;

/// `body` with every Docker-socket bind source replaced by `socket.served`; the same
/// bytes when there is none (or the body is not a JSON object: dockerd answers that).
pub(crate) fn rewrite_socket_binds(
    body: &Bytes,
    socket: &ContainerSocket,
) -> Result<Bytes, GatewayError> {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return Ok(body.clone());
    };
    if !rewrite_value(&mut value, socket) {
        return Ok(body.clone());
    }
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("re-encoding a create body: {e}")))
}

/// Rewrites in place; whether anything changed.
fn rewrite_value(body: &mut Value, socket: &ContainerSocket) -> bool {
    let Some(root) = body.as_object_mut() else {
        return false;
    };
    let served = socket.served.to_string_lossy().into_owned();
    // dockerd 20.10 also reads HostConfig fields at the top level of a create body.
    let mut changed = rewrite_host_config(root, socket, &served);
    for (key, host_config) in root.iter_mut() {
        if let (true, Some(host_config)) = (
            key.eq_ignore_ascii_case("HostConfig"),
            host_config.as_object_mut(),
        ) {
            changed |= rewrite_host_config(host_config, socket, &served);
        }
    }
    changed
}

fn rewrite_host_config(
    host_config: &mut serde_json::Map<String, Value>,
    socket: &ContainerSocket,
    served: &str,
) -> bool {
    let mut changed = false;
    for (key, value) in host_config.iter_mut() {
        if key.eq_ignore_ascii_case("Binds") {
            for bind in value.as_array_mut().into_iter().flatten() {
                let Some(spec) = bind.as_str() else { continue };
                let (src, rest) = match spec.split_once(':') {
                    Some((s, r)) => (s, Some(r)),
                    None => (spec, None),
                };
                if is_docker_socket(src, socket) {
                    *bind = Value::String(match rest {
                        Some(rest) => format!("{served}:{rest}"),
                        None => served.to_owned(),
                    });
                    changed = true;
                }
            }
        } else if key.eq_ignore_ascii_case("Mounts") {
            for mount in value.as_array_mut().into_iter().flatten() {
                let Some(mount) = mount.as_object_mut() else {
                    continue;
                };
                let is_bind = mount.iter().any(|(k, t)| {
                    k.eq_ignore_ascii_case("Type")
                        && t.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bind"))
                });
                if !is_bind {
                    continue;
                }
                for (k, source) in mount.iter_mut() {
                    if k.eq_ignore_ascii_case("Source")
                        && source.as_str().is_some_and(|s| is_docker_socket(s, socket))
                    {
                        *source = Value::String(served.to_owned());
                        changed = true;
                    }
                }
            }
        }
    }
    changed
}

/// Whether a bind source is one of the sockets a container must not get.
fn is_docker_socket(source: &str, socket: &ContainerSocket) -> bool {
    if !source.starts_with('/') {
        return false; // a volume name
    }
    let cleaned = clean(source);
    if socket.replaced.contains(&cleaned) {
        return true;
    }
    std::fs::canonicalize(&cleaned).is_ok_and(|real| socket.replaced.contains(&real))
}

/// `.`, `..` and repeated slashes removed, lexically (as dockerd cleans bind sources).
fn clean(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn socket() -> ContainerSocket {
        ContainerSocket {
            served: PathBuf::from("/run/berth/containers.sock"),
            replaced: vec![
                PathBuf::from("/var/run/docker.sock"),
                PathBuf::from("/run/docker.sock"),
                PathBuf::from("/tmp/berth.sock"),
            ],
        }
    }

    fn rewrite(body: Value) -> Value {
        let bytes = Bytes::from(body.to_string());
        serde_json::from_slice(&rewrite_socket_binds(&bytes, &socket()).unwrap()).unwrap()
    }

    #[test]
    fn docker_socket_binds_get_the_container_socket_in_every_spelling() {
        let out = rewrite(json!({
            "Image": "busybox",
            "HostConfig": {
                "Binds": ["/var/run/docker.sock:/var/run/docker.sock", "/srv/a:/a:ro",
                          "/var/run/../run//docker.sock:/s:ro", "vol:/v"],
                "Mounts": [{"type": "BIND", "Source": "/tmp/./berth.sock", "Target": "/b"},
                           {"Type": "volume", "Source": "/run/docker.sock", "Target": "/c"}]
            },
            "hostconfig": {"binds": ["/run/docker.sock:/d"]},
            "Binds": ["/run/docker.sock:/top"]
        }));
        let served = "/run/berth/containers.sock";
        assert_eq!(
            out["HostConfig"]["Binds"],
            json!([
                format!("{served}:/var/run/docker.sock"),
                "/srv/a:/a:ro",
                format!("{served}:/s:ro"),
                "vol:/v"
            ])
        );
        assert_eq!(out["HostConfig"]["Mounts"][0]["Source"], served);
        assert_eq!(out["HostConfig"]["Mounts"][1]["Source"], "/run/docker.sock");
        assert_eq!(out["hostconfig"]["binds"], json!([format!("{served}:/d")]));
        assert_eq!(out["Binds"], json!([format!("{served}:/top")]));
        assert_eq!(out["Image"], "busybox");
    }

    #[test]
    fn other_bodies_pass_byte_for_byte() {
        for body in [
            &b""[..],
            b"not json",
            b"[1]",
            b"{\"HostConfig\":{\"Binds\":[\"/srv:/srv\"]},  \"x\":1}",
        ] {
            let bytes = Bytes::copy_from_slice(body);
            assert_eq!(rewrite_socket_binds(&bytes, &socket()).unwrap(), bytes);
        }
    }
}
