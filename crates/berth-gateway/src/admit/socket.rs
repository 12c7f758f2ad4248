//! The Docker socket inside containers: a create that bind-mounts the engine's socket
//! (or berth's own) would hand the container an unpoliced API. Such a bind source is
//! replaced by berth's container socket, where the container is an `internal` client
//! under the same policy.
//!
//! The rewrite edits the one body model ([`berth_policy::DockerBody`]): every spelling
//! dockerd reads (folded keys, merged duplicates, top-level fields) is seen, and what is
//! forwarded is the model encoded again. Sources are compared after lexical cleaning
//! and, when they exist, after symlinks are resolved (`/var/run` → `/run`): this touches
//! the filesystem, so it runs off the runtime threads (`admit.rs`).

use std::convert::Infallible;
use std::path::Path;

use berth_policy::{clean_path, DockerBody, HostPathKind};

use super::ContainerSocket;

/// Replaces every Docker-socket bind source in `body` by `socket.served`.
pub(crate) fn rewrite_socket_binds(body: &mut DockerBody<'_>, socket: &ContainerSocket) {
    let served = socket.served.to_string_lossy();
    let rewritten = body.rewrite_host_paths(|kind, source| {
        let bind = matches!(kind, HostPathKind::Bind | HostPathKind::BindMount);
        Ok::<_, Infallible>(
            (bind && is_docker_socket(source, socket)).then(|| served.clone().into_owned()),
        )
    });
    match rewritten {
        Ok(()) => {}
        Err(never) => match never {},
    }
}

/// Whether a bind source is one of the sockets a container must not get.
fn is_docker_socket(source: &str, socket: &ContainerSocket) -> bool {
    if !source.starts_with('/') {
        return false; // a volume name
    }
    let cleaned = clean_path(source);
    let cleaned = Path::new(cleaned.as_ref());
    if socket.replaced.iter().any(|r| r == cleaned) {
        return true;
    }
    std::fs::canonicalize(cleaned).is_ok_and(|real| socket.replaced.contains(&real))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use berth_policy::BodyKind;

    use super::*;

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

    fn rewrite(body: &str) -> String {
        let mut model = DockerBody::parse(BodyKind::ContainerCreate, body.as_bytes()).unwrap();
        rewrite_socket_binds(&mut model, &socket());
        String::from_utf8(model.encode()).unwrap()
    }

    #[test]
    fn docker_socket_binds_get_the_container_socket_in_every_spelling() {
        let s = "/run/berth/containers.sock";
        let rows = [
            (
                r#"{"Image":"busybox","HostConfig":{"Binds":["/var/run/docker.sock:/var/run/docker.sock","/srv/a:/a:ro","/var/run/../run//docker.sock:/s:ro","vol:/v","/run/docker.sock"],"Mounts":[{"type":"BIND","Source":"/tmp/./berth.sock","Target":"/b"},{"Type":"volume","Source":"/run/docker.sock","Target":"/c"}]}}"#,
                format!(
                    r#"{{"Image":"busybox","HostConfig":{{"Binds":["{s}:/var/run/docker.sock","/srv/a:/a:ro","{s}:/s:ro","vol:/v","/run/docker.sock"],"Mounts":[{{"Type":"BIND","Source":"{s}","Target":"/b"}},{{"Type":"volume","Source":"/run/docker.sock","Target":"/c"}}]}}}}"#
                ),
            ),
            // Two HostConfig objects merge; the bind in the first one survives in dockerd.
            (
                r#"{"HostConfig":{"Binds":["/var/run/docker.sock:/s"]},"HostConfig":{"Memory":0}}"#,
                format!(r#"{{"HostConfig":{{"Binds":["{s}:/s"],"Memory":0}}}}"#),
            ),
            // U+017F folds to s; top-level Binds are read without HostConfig.
            (
                r#"{"Ho\u017ftConfig":{"Binds":["/run/docker.sock:/s"]}}"#,
                format!(r#"{{"HostConfig":{{"Binds":["{s}:/s"]}}}}"#),
            ),
            (
                r#"{"binds":["/run/docker.sock:/top"]}"#,
                format!(r#"{{"Binds":["{s}:/top"]}}"#),
            ),
        ];
        for (body, want) in rows {
            assert_eq!(rewrite(body), want, "{body}");
        }
    }
}
