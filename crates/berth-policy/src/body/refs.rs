//! What a body names besides itself (other containers, networks, volumes, its image)
//! and what it gives what it creates (a name, labels): for a gateway that
//! scopes the engine's objects per client (tenants), reading and editing the same
//! model the policy judges, in the HostConfig dockerd uses.

use super::model::{CreateBody, Endpoint, Model};
use super::ties::is_predefined_network;
use super::DockerBody;

/// The kind of engine object a body names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Container,
    Network,
    Volume,
    Image,
}

/// The memory and CPU limits of an update body (Go's zero when absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
}

/// One object a body names, as written (`web`, `3f2a`, `backend`, `data`, `busybox`).
/// A network mode that names no network (`host`, `none`, `default`, `bridge`, `""`)
/// is a `Network` reference too: the reader decides what it means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub kind: ObjectKind,
    pub name: String,
    /// The field that names it (`VolumesFrom`, `NetworkMode`, `EndpointsConfig`, …):
    /// dockerd answers a missing object differently per field.
    pub field: &'static str,
}

impl DockerBody<'_> {
    /// Every object this body names (create and old-API start bodies; none otherwise).
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        if let Model::Connect(b) = &self.model {
            if let Some(c) = &b.container {
                out.push(Reference {
                    kind: ObjectKind::Container,
                    name: c.clone(),
                    field: "Container",
                });
            }
        }
        if let Model::Create(b) = &self.model {
            if self.kind == super::BodyKind::ContainerCreate {
                if let Some(image) = &b.image {
                    out.push(Reference {
                        kind: ObjectKind::Image,
                        name: image.clone(),
                        field: "Image",
                    });
                }
            }
            visit(b, &mut |kind, field, name| {
                out.push(Reference {
                    kind,
                    name: name.to_owned(),
                    field,
                });
            });
        }
        out
    }

    /// Calls `f` with every object this body names (not its image) and puts what it
    /// returns in the name's place (`None` keeps it); a `Binds` entry keeps its
    /// `:dst[:opts]`, a `container:` mode its prefix, an `EndpointsConfig` key its value.
    pub fn rewrite_references(&mut self, mut f: impl FnMut(ObjectKind, &str) -> Option<String>) {
        match &mut self.model {
            Model::Create(b) => visit_mut(b, &mut f),
            Model::Connect(b) => {
                if let Some(c) = &mut b.container {
                    if let Some(new) = f(ObjectKind::Container, c) {
                        *c = new;
                    }
                }
            }
            _ => {}
        }
    }

    /// Sets label `key` of what a create body creates (container, volume, network),
    /// replacing any value the client gave it.
    pub fn set_label(&mut self, key: &str, value: &str) {
        let labels = match &mut self.model {
            Model::Create(b) => &mut b.labels,
            Model::Volume(b) => &mut b.labels,
            Model::Network(b) => &mut b.labels,
            _ => return,
        };
        let labels = labels.get_or_insert_with(Vec::new);
        match labels.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_owned(),
            None => labels.push((key.to_owned(), value.to_owned())),
        }
    }

    /// The `Name` of the volume or network a body creates.
    pub fn created_name(&self) -> Option<&str> {
        match &self.model {
            Model::Volume(b) => b.name.as_deref(),
            Model::Network(b) => b.name.as_deref(),
            _ => None,
        }
    }

    /// Sets the `Name` of the volume or network a body creates.
    pub fn set_created_name(&mut self, name: String) {
        match &mut self.model {
            Model::Volume(b) => b.name = Some(name),
            Model::Network(b) => b.name = Some(name),
            _ => {}
        }
    }

    /// Adds `alias` to the names the container answers to on its networks: every
    /// endpoint of a create's `EndpointsConfig` (a create without one gets an endpoint
    /// on its `NetworkMode` when that is a user-defined network; a `null` one stays
    /// `null`: dockerd refuses it), a connect's `EndpointConfig`.
    pub fn add_alias(&mut self, alias: &str) {
        match &mut self.model {
            Model::Create(b) => {
                let mode = b.effective().modes[0].clone();
                let networking = b.networking.get_or_insert_with(Default::default);
                let endpoints = networking.endpoints.get_or_insert_with(Vec::new);
                if endpoints.is_empty() {
                    match mode.filter(|m| !is_predefined_network(m)) {
                        Some(network) => endpoints.push((network, Some(Endpoint::default()))),
                        None => return,
                    }
                }
                for endpoint in endpoints.iter_mut().filter_map(|(_, e)| e.as_mut()) {
                    endpoint.add_alias(alias);
                }
            }
            Model::Connect(b) => b
                .endpoint
                .get_or_insert_with(Endpoint::default)
                .add_alias(alias),
            _ => {}
        }
    }

    /// Sets the `Image` of a container create.
    pub fn set_image(&mut self, image: String) {
        if let (Model::Create(b), super::BodyKind::ContainerCreate) = (&mut self.model, self.kind) {
            b.image = Some(image);
        }
    }

    /// The memory and CPU limits an update body sets, as dockerd reads them (`None`:
    /// not an update body). A limit of 0 or absent leaves the container's as it is.
    pub fn update_limits(&self) -> Option<ResourceLimits> {
        let Model::Update(b) = &self.model else {
            return None;
        };
        let [memory, memory_swap, nano_cpus, cpu_quota, cpu_period] =
            b.resources.limits.map(Option::unwrap_or_default);
        Some(ResourceLimits {
            memory,
            memory_swap,
            nano_cpus,
            cpu_quota,
            cpu_period,
        })
    }

    /// `HostConfig.NetworkMode` as dockerd will read it (absent: `None`).
    pub fn network_mode(&self) -> Option<&str> {
        match &self.model {
            Model::Create(b) => b.effective().modes[0].as_deref(),
            _ => None,
        }
    }

    /// Sets `HostConfig.NetworkMode` in the HostConfig dockerd reads.
    pub fn set_network_mode(&mut self, mode: String) {
        if let Model::Create(b) = &mut self.model {
            b.effective_mut().modes[0] = Some(mode);
        }
    }
}

/// The container a `container:<ref>` mode names.
fn container_mode(mode: &str) -> Option<&str> {
    mode.strip_prefix("container:")
}

fn visit(b: &CreateBody<'_>, f: &mut impl FnMut(ObjectKind, &'static str, &str)) {
    use super::Namespace;
    let hc = b.effective();
    for (ns, mode) in Namespace::ALL.iter().zip(&hc.modes) {
        let Some(mode) = mode else { continue };
        match container_mode(mode) {
            Some(c) => f(ObjectKind::Container, ns.field(), c),
            None if *ns == Namespace::Network => f(ObjectKind::Network, ns.field(), mode),
            None => {}
        }
    }
    if let Some(endpoints) = b.networking.as_ref().and_then(|n| n.endpoints.as_ref()) {
        for (name, _) in endpoints {
            f(ObjectKind::Network, "EndpointsConfig", name);
        }
    }
    for spec in hc.volumes_from.iter().flatten() {
        f(
            ObjectKind::Container,
            "VolumesFrom",
            spec.split(':').next().unwrap_or_default(),
        );
    }
    for spec in hc.links.iter().flatten() {
        f(
            ObjectKind::Container,
            "Links",
            spec.split(':').next().unwrap_or_default(),
        );
    }
    for spec in hc.binds.iter().flatten() {
        if let Some(volume) = bind_volume(spec) {
            f(ObjectKind::Volume, "Binds", volume);
        }
    }
    for m in hc.mounts.iter().flatten() {
        if let (true, Some(src)) = (m.is("volume"), m.source.as_deref()) {
            if !src.is_empty() {
                f(ObjectKind::Volume, "Mounts", src);
            }
        }
    }
}

fn visit_mut(b: &mut CreateBody<'_>, f: &mut impl FnMut(ObjectKind, &str) -> Option<String>) {
    if let Some(endpoints) = b.networking.as_mut().and_then(|n| n.endpoints.as_mut()) {
        for (name, _) in endpoints.iter_mut() {
            if let Some(new) = f(ObjectKind::Network, name) {
                *name = new;
            }
        }
    }
    let hc = b.effective_mut();
    for (i, slot) in hc.modes.iter_mut().enumerate() {
        let Some(mode) = slot else { continue };
        let new = match container_mode(mode) {
            Some(c) => f(ObjectKind::Container, c).map(|c| format!("container:{c}")),
            None if i == 0 => f(ObjectKind::Network, mode),
            None => None,
        };
        if let Some(new) = new {
            *slot = Some(new);
        }
    }
    for spec in hc
        .volumes_from
        .iter_mut()
        .flatten()
        .chain(hc.links.iter_mut().flatten())
    {
        let head = spec.split(':').next().unwrap_or_default();
        if let Some(new) = f(ObjectKind::Container, head) {
            *spec = format!("{new}{}", &spec[head.len()..]);
        }
    }
    for spec in hc.binds.iter_mut().flatten() {
        if let Some(volume) = bind_volume(spec) {
            if let Some(new) = f(ObjectKind::Volume, volume) {
                *spec = format!("{new}{}", &spec[volume.len()..]);
            }
        }
    }
    for m in hc.mounts.iter_mut().flatten() {
        if !m.is("volume") {
            continue;
        }
        if let Some(src) = m.source.as_mut().filter(|s| !s.is_empty()) {
            if let Some(new) = f(ObjectKind::Volume, src) {
                *src = new;
            }
        }
    }
}

/// The named volume of a `Binds` entry (`data:/dst[:opts]`); `None` for a host path or
/// an anonymous volume (`/dst`).
fn bind_volume(spec: &str) -> Option<&str> {
    let (src, _) = spec.split_once(':')?;
    (!src.is_empty() && !src.starts_with('/')).then_some(src)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BodyKind;

    #[test]
    fn every_named_object_is_seen_and_rewritten() {
        let body = br#"{"Image":"busybox","Labels":{"a":"1"},"HostConfig":{"NetworkMode":"backend","PidMode":"container:web","VolumesFrom":["data1:ro"],"Links":["db:d"],"Binds":["data:/d:ro","/srv:/s","/anon"],"Mounts":[{"Type":"volume","Source":"cache","Target":"/c"}]},"NetworkingConfig":{"EndpointsConfig":{"backend":{"Aliases":["x"]}}}}"#;
        let mut model = DockerBody::parse(BodyKind::ContainerCreate, body).unwrap();
        let seen: Vec<(ObjectKind, String)> = model
            .references()
            .into_iter()
            .map(|r| (r.kind, r.name))
            .collect();
        let fields: Vec<&str> = model.references().iter().map(|r| r.field).collect();
        assert_eq!(
            fields,
            [
                "Image",
                "NetworkMode",
                "PidMode",
                "EndpointsConfig",
                "VolumesFrom",
                "Links",
                "Binds",
                "Mounts"
            ]
        );
        use ObjectKind::*;
        assert_eq!(
            seen,
            [
                (Image, "busybox".into()),
                (Network, "backend".into()),
                (Container, "web".into()),
                (Network, "backend".into()),
                (Container, "data1".into()),
                (Container, "db".into()),
                (Volume, "data".into()),
                (Volume, "cache".into()),
            ]
        );
        model.rewrite_references(|_, name| Some(format!("t.{name}")));
        model.set_label("berth.tenant", "t");
        let out = String::from_utf8(model.encode()).unwrap();
        assert_eq!(
            out,
            r#"{"Image":"busybox","HostConfig":{"Binds":["t.data:/d:ro","/srv:/s","/anon"],"Mounts":[{"Type":"volume","Source":"t.cache","Target":"/c"}],"NetworkMode":"t.backend","PidMode":"container:t.web","VolumesFrom":["t.data1:ro"],"Links":["t.db:d"]},"NetworkingConfig":{"EndpointsConfig":{"t.backend":{"Aliases":["x"]}}},"Labels":{"a":"1","berth.tenant":"t"}}"#
        );
    }

    #[test]
    fn aliases_go_to_every_endpoint_the_container_gets() {
        let alias = |kind, body: &[u8]| {
            let mut model = DockerBody::parse(kind, body).unwrap();
            model.add_alias("web");
            String::from_utf8(model.encode()).unwrap()
        };
        assert_eq!(
            alias(
                BodyKind::ContainerCreate,
                br#"{"HostConfig":{"NetworkMode":"t.b"}}"#
            ),
            r#"{"HostConfig":{"NetworkMode":"t.b"},"NetworkingConfig":{"EndpointsConfig":{"t.b":{"Aliases":["web"]}}}}"#
        );
        // Go decodes a map value afresh: the second `a` replaces the first.
        assert_eq!(
            alias(
                BodyKind::ContainerCreate,
                br#"{"NetworkingConfig":{"EndpointsConfig":{"a":{"aliases":["x"],"IPAMConfig":null},"b":null,"a":{"Links":[]}}}}"#
            ),
            r#"{"NetworkingConfig":{"EndpointsConfig":{"a":{"Aliases":["web"],"Links":[]},"b":null}}}"#
        );
        for mode in ["host", "none", "bridge", "container:x"] {
            let body = format!(r#"{{"HostConfig":{{"NetworkMode":"{mode}"}}}}"#);
            assert!(!alias(BodyKind::ContainerCreate, body.as_bytes()).contains("web"));
        }
        assert_eq!(
            alias(
                BodyKind::NetworkConnect,
                br#"{"Container":"c","EndpointConfig":{"Aliases":["web","x"]}}"#
            ),
            r#"{"Container":"c","EndpointConfig":{"Aliases":["web","x"]}}"#
        );
        assert_eq!(
            alias(BodyKind::NetworkConnect, br#"{"container":"c"}"#),
            r#"{"Container":"c","EndpointConfig":{"Aliases":["web"]}}"#
        );
    }

    #[test]
    fn labels_sent_twice_merge_and_berth_has_the_last_word() {
        let body = br#"{"Labels":{"berth.tenant":"other"},"labels":{"x":"y"}}"#;
        let mut model = DockerBody::parse(BodyKind::ContainerCreate, body).unwrap();
        model.set_label("berth.tenant", "t");
        assert_eq!(
            String::from_utf8(model.encode()).unwrap(),
            r#"{"Labels":{"berth.tenant":"t","x":"y"}}"#
        );
        let mut net = DockerBody::parse(
            BodyKind::NetworkCreate,
            br#"{"name":"b","Driver":"bridge"}"#,
        )
        .unwrap();
        assert_eq!(net.created_name(), Some("b"));
        net.set_created_name("t.b".into());
        net.set_label("berth.tenant", "t");
        assert_eq!(
            String::from_utf8(net.encode()).unwrap(),
            r#"{"Name":"t.b","Labels":{"berth.tenant":"t"},"Driver":"bridge"}"#
        );
    }
}
