//! What a create ties to objects that already exist on some engine (networks, volumes,
//! other containers, its compose project, its image): the gateway places a create among
//! several engines by these. Read from the same model dockerd's reading is judged on.

use super::json::{self, Members};
use super::model::{CreateBody, Model};
use super::{DockerBody, Namespace};
use crate::error::PolicyError;

/// The label docker compose puts on everything of one project.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";

/// What a create needs from the engine it lands on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ties {
    /// `Image`.
    pub image: Option<String>,
    /// User networks joined: `NetworkMode` (not `default`, `bridge`, `host`, `none`,
    /// `container:…`) and the names of `NetworkingConfig.EndpointsConfig`.
    pub networks: Vec<String>,
    /// Named volumes mounted: `Binds` sources that are not paths, `Mounts` of type
    /// `volume` with a `Source`.
    pub volumes: Vec<String>,
    /// Containers used: `VolumesFrom` (without `:ro`/`:rw`), and `container:NAME` as a
    /// network, PID or IPC mode.
    pub containers: Vec<String>,
    /// The `com.docker.compose.project` label.
    pub project: Option<String>,
}

impl DockerBody<'_> {
    /// The ties of a container create (empty for other bodies).
    pub fn ties(&self) -> Ties {
        match &self.model {
            Model::Create(b) => create_ties(b),
            _ => Ties::default(),
        }
    }
}

/// The compose project named by the `Labels` of a network or volume create body (Go's
/// key folding and duplicate rules, as for the bodies berth models).
pub fn project_of(body: &[u8]) -> Result<Option<String>, PolicyError> {
    let read = || -> Result<Option<String>, String> {
        let members: Members<'_> = match json::value(json::document(body)?)? {
            json::Value::Object(members) => members,
            other => return Err(format!("the body is {}, not an object", other.kind())),
        };
        project_label(&members)
    };
    read().map_err(|message| PolicyError::Body { message })
}

/// `Labels` among `members`, decoded in order; the project label's value.
fn project_label(members: &Members<'_>) -> Result<Option<String>, String> {
    let mut labels = None;
    for (key, raw) in members {
        if json::key_is(key, "Labels") {
            json::string_map(raw, &mut labels, "Labels")?;
        }
    }
    Ok(labels
        .unwrap_or_default()
        .into_iter()
        .find(|(k, v)| k == COMPOSE_PROJECT_LABEL && !v.is_empty())
        .map(|(_, v)| v))
}

fn create_ties(b: &CreateBody<'_>) -> Ties {
    let host = b.effective();
    let mut ties = Ties {
        image: b.image.clone().filter(|i| !i.is_empty()),
        project: b
            .labels
            .iter()
            .flatten()
            .find(|(k, v)| k == COMPOSE_PROJECT_LABEL && !v.is_empty())
            .map(|(_, v)| v.clone()),
        ..Ties::default()
    };
    let network_mode = host.modes[Namespace::Network as usize].as_deref();
    for (ns, mode) in Namespace::ALL.iter().zip(&host.modes) {
        if let Some(container) = mode.as_deref().and_then(|m| m.strip_prefix("container:")) {
            push(&mut ties.containers, container);
        } else if *ns == Namespace::Network {
            if let Some(net) = network_mode.filter(|m| !is_predefined_network(m)) {
                push(&mut ties.networks, net);
            }
        }
    }
    let endpoints = b.networking.as_ref().and_then(|n| n.endpoints.as_ref());
    for (name, _) in endpoints.into_iter().flatten() {
        if !is_predefined_network(name) {
            push(&mut ties.networks, name);
        }
    }
    for bind in host.binds.iter().flatten() {
        let source = bind.split(':').next().unwrap_or_default();
        if !source.is_empty() && !source.starts_with('/') {
            push(&mut ties.volumes, source);
        }
    }
    for mount in host.mounts.iter().flatten() {
        let is_volume = mount.kind.as_deref().is_some_and(|k| k == "volume");
        if let (true, Some(source)) = (is_volume, mount.source.as_deref()) {
            if !source.is_empty() {
                push(&mut ties.volumes, source);
            }
        }
    }
    for from in host.volumes_from.iter().flatten() {
        let name = match from.rsplit_once(':') {
            Some((name, "ro" | "rw")) => name,
            _ => from.as_str(),
        };
        push(&mut ties.containers, name);
    }
    ties
}

pub(super) fn is_predefined_network(name: &str) -> bool {
    matches!(name, "" | "default" | "bridge" | "host" | "none") || name.starts_with("container:")
}

fn push(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|i| i == item) {
        list.push(item.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BodyKind;

    fn ties(body: &str) -> Ties {
        DockerBody::parse(BodyKind::ContainerCreate, body.as_bytes())
            .unwrap()
            .ties()
    }

    #[test]
    fn a_create_ties_to_its_networks_volumes_containers_and_project() {
        let t = ties(
            r#"{"Image":"app:1","Labels":{"com.docker.compose.project":"shop"},
                "HostConfig":{"NetworkMode":"shop_default","Binds":["data:/data","/host:/h:ro"],
                  "Mounts":[{"Type":"volume","Source":"cache","Target":"/c"},{"Type":"bind","Source":"/x","Target":"/x"}],
                  "VolumesFrom":["seed:ro","other"],"PidMode":"container:side"},
                "NetworkingConfig":{"EndpointsConfig":{"shop_default":{},"backend":{}}}}"#,
        );
        assert_eq!(t.image.as_deref(), Some("app:1"));
        assert_eq!(t.project.as_deref(), Some("shop"));
        assert_eq!(t.networks, ["shop_default", "backend"]);
        assert_eq!(t.volumes, ["data", "cache"]);
        assert_eq!(t.containers, ["side", "seed", "other"]);
    }

    #[test]
    fn keys_are_read_as_go_reads_them() {
        // Folded keys, the last Labels member wins per entry, top-level HostConfig
        // fields as dockerd <= 27 reads them, container:NAME as a network.
        let t = ties(
            r#"{"image":"a","LABELS":{"com.docker.compose.project":"x"},"Labels":{"com.docker.compose.project":"y"},
                "NetworkMode":"container:db","volumesfrom":["v"]}"#,
        );
        assert_eq!(t.project.as_deref(), Some("y"));
        assert_eq!(t.containers, ["db", "v"]);
        assert!(t.networks.is_empty());
        let t = ties(r#"{"Image":"a","HostConfig":{"NetworkMode":"bridge"}}"#);
        assert_eq!(
            t,
            Ties {
                image: Some("a".into()),
                ..Ties::default()
            }
        );
    }

    #[test]
    fn a_network_or_volume_create_names_its_project_by_label() {
        let body = br#"{"Name":"shop_default","Labels":{"com.docker.compose.project":"shop"}}"#;
        assert_eq!(project_of(body).unwrap().as_deref(), Some("shop"));
        assert_eq!(project_of(br#"{"Name":"n"}"#).unwrap(), None);
        assert!(project_of(b"[1]").is_err());
    }
}
