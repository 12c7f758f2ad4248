//! Who is a tenant: the tenants berth knows now (changed at run time by `berth tenant
//! add|rm`), the clients that belong to each, and what a client that belongs to none is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::containers::ContainerIds;
use crate::conn::PeerIdentity;

/// One tenant: a name and the clients that are it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    name: String,
    clients: Vec<TenantClient>,
    socket: Option<PathBuf>,
    quotas: Quotas,
}

/// What a tenant may use (`None`: no limit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Containers, whatever their state.
    pub max_containers: Option<u64>,
    /// Running containers.
    pub max_running: Option<u64>,
    /// Memory limit of a container that asks for none (bytes).
    pub default_memory: Option<i64>,
    /// The largest memory limit a container may have (bytes); a container that asks
    /// for none gets it when there is no default.
    pub max_memory: Option<i64>,
    /// CPUs of a container that asks for none (in billionths, as `NanoCpus`).
    pub default_nano_cpus: Option<i64>,
    /// The most CPUs a container may have (billionths).
    pub max_nano_cpus: Option<i64>,
}

/// A client that belongs to a tenant (`uid:1001`, `gid:1001`, `tls:CN=ci`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantClient {
    Uid(u32),
    Gid(u32),
    /// A TLS client whose certificate subject is this, or has it as one part (`CN=ci`).
    TlsSubject(String),
}

impl TenantClient {
    /// Parses `uid:N`, `gid:N` or `tls:SUBJECT` (the policy's spelling).
    pub fn parse(s: &str) -> Result<Self, String> {
        let number = |n: &str| {
            n.parse::<u32>()
                .map_err(|_| format!("client {s:?}: not a number"))
        };
        if let Some(n) = s.strip_prefix("uid:") {
            Ok(Self::Uid(number(n)?))
        } else if let Some(n) = s.strip_prefix("gid:") {
            Ok(Self::Gid(number(n)?))
        } else if let Some(subject) = s.strip_prefix("tls:").filter(|p| !p.is_empty()) {
            Ok(Self::TlsSubject(subject.to_owned()))
        } else {
            Err(format!(
                "client {s:?}: expected \"uid:N\", \"gid:N\" or \"tls:SUBJECT\""
            ))
        }
    }

    fn matches(&self, peer: &PeerIdentity) -> bool {
        match (self, peer) {
            (Self::Uid(want), PeerIdentity::Unix { uid, .. }) => want == uid,
            (Self::Gid(want), PeerIdentity::Unix { gid, .. }) => want == gid,
            (
                Self::TlsSubject(want),
                PeerIdentity::Tls {
                    subject: Some(s), ..
                },
            ) => s == want || s.split(',').any(|part| part.trim() == want),
            _ => false,
        }
    }
}

impl std::fmt::Display for TenantClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uid(n) => write!(f, "uid:{n}"),
            Self::Gid(n) => write!(f, "gid:{n}"),
            Self::TlsSubject(s) => write!(f, "tls:{s}"),
        }
    }
}

impl Tenant {
    /// A tenant named `name` (lower-case letters, digits, `-` and `_`, starting with a
    /// letter or digit: it prefixes the engine names of its objects, up to a `.`).
    pub fn new(
        name: &str,
        clients: Vec<TenantClient>,
        socket: Option<PathBuf>,
    ) -> Result<Self, String> {
        let valid = name.len() <= 32
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && repository_component(name);
        if !valid {
            return Err(format!(
                "tenant name {name:?}: use up to 32 lower-case letters, digits, '-' or '_', starting and ending with a letter or digit (it is a component of image names)"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            clients,
            socket,
            quotas: Quotas::default(),
        })
    }

    /// The tenant with these quotas.
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn clients(&self) -> &[TenantClient] {
        &self.clients
    }

    /// The tenant's own socket, if it has one (every client of it is the tenant).
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }
}

/// What a client that belongs to no tenant is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Untenanted {
    /// Sees and manages everything, tenants included (berth without tenants).
    #[default]
    Admin,
    /// Refused (403).
    Refused,
}

/// Who a client is, for the tenant stage.
#[derive(Clone, Debug)]
pub(crate) enum Who {
    Admin,
    Tenant(Arc<Tenant>),
    Refused,
}

/// The tenants berth knows now, and the settings every tenant shares.
#[derive(Debug)]
pub struct TenantSet {
    tenants: RwLock<Vec<Arc<Tenant>>>,
    untenanted: Untenanted,
    /// Images every tenant may use (`*`: all), as references (`busybox` is
    /// `busybox:latest`).
    shared_images: Vec<String>,
    /// Host paths that are the Docker API (the engine's socket, berth's): a tenant's
    /// container that bind-mounts one gets the tenant's own socket instead.
    docker_sockets: Vec<PathBuf>,
    /// Images each tenant made without a name (by full ID), and the file they are kept
    /// in (berth's state: they outlive a restart).
    images: Mutex<BTreeMap<String, BTreeSet<String>>>,
    images_file: Option<PathBuf>,
    /// Tenants whose default network is known to exist (a create needs no look-up);
    /// forgotten when one of their networks is removed or a create misses one.
    default_networks: Mutex<BTreeSet<String>>,
    /// Each tenant's containers by ID (what its lists ask dockerd for).
    containers: ContainerIds,
    /// One tenants' pull of a repository at a time (`pull.rs`).
    pulls: super::pull::Pulls,
}

impl TenantSet {
    pub fn new(
        tenants: Vec<Tenant>,
        untenanted: Untenanted,
        shared_images: Vec<String>,
        docker_sockets: Vec<PathBuf>,
    ) -> Self {
        Self {
            tenants: RwLock::new(tenants.into_iter().map(Arc::new).collect()),
            untenanted,
            shared_images: shared_images.iter().map(|r| normalize_image(r)).collect(),
            docker_sockets,
            images: Mutex::new(BTreeMap::new()),
            images_file: None,
            default_networks: Mutex::new(BTreeSet::new()),
            containers: ContainerIds::default(),
            pulls: Default::default(),
        }
    }

    /// The set with the tenants' images by ID kept in `file` (read now if it exists).
    pub fn with_images_file(mut self, file: PathBuf) -> Result<Self, String> {
        match std::fs::read(&file) {
            Ok(text) => {
                let images = serde_json::from_slice(&text)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                self.images = Mutex::new(images);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
        self.images_file = Some(file);
        Ok(self)
    }

    /// Image `id` (full) is tenant `name`'s.
    pub(crate) fn own_image(&self, name: &str, id: &str) {
        let mut images = self.images_lock();
        if images
            .entry(name.to_owned())
            .or_default()
            .insert(id.to_owned())
        {
            self.save_images(&images);
        }
    }

    /// Image `id` is gone from the engine: nobody's any more.
    pub(crate) fn image_gone(&self, id: &str) {
        let mut images = self.images_lock();
        let mut changed = false;
        for ids in images.values_mut() {
            changed |= ids.remove(id);
        }
        if changed {
            self.save_images(&images);
        }
    }

    pub(crate) fn owns_image(&self, name: &str, id: &str) -> bool {
        self.images_lock()
            .get(name)
            .is_some_and(|ids| ids.contains(id))
    }

    /// Whether another tenant than `name` made image `id`.
    pub(crate) fn owned_by_another(&self, name: &str, id: &str) -> bool {
        self.images_lock()
            .iter()
            .any(|(t, ids)| t != name && ids.contains(id))
    }

    /// Forgets what berth knows of tenant `name` (it is removed).
    pub(crate) fn forget(&self, name: &str) {
        self.set_default_network_known(name, false);
        self.containers.forget(name);
        let mut images = self.images_lock();
        if images.remove(name).is_some() {
            self.save_images(&images);
        }
    }

    fn images_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeSet<String>>> {
        self.images.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the images file whole (a new file renamed over the old one).
    fn save_images(&self, images: &BTreeMap<String, BTreeSet<String>>) {
        let Some(file) = &self.images_file else {
            return;
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = file.with_extension("json.new");
            std::fs::write(&tmp, serde_json::to_vec(images)?)?;
            std::fs::rename(&tmp, file)
        };
        if let Err(e) = write() {
            tracing::warn!(file = %file.display(), error = %e, "berth could not keep the tenants' images");
        }
    }

    /// The tenants now.
    pub fn list(&self) -> Vec<Arc<Tenant>> {
        self.read().clone()
    }

    /// The tenant named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Tenant>> {
        self.read().iter().find(|t| t.name == name).cloned()
    }

    /// Adds a tenant; refused if its name, a client or its socket is already taken.
    pub fn add(&self, tenant: Tenant) -> Result<Arc<Tenant>, String> {
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        for t in tenants.iter() {
            if t.name == tenant.name {
                return Err(format!("tenant {:?} exists", tenant.name));
            }
            if let Some(c) = tenant.clients.iter().find(|c| t.clients.contains(c)) {
                return Err(format!("client {c} already belongs to tenant {:?}", t.name));
            }
            if tenant.socket.is_some() && t.socket == tenant.socket {
                return Err(format!("that socket belongs to tenant {:?}", t.name));
            }
        }
        let tenant = Arc::new(tenant);
        tenants.push(Arc::clone(&tenant));
        Ok(tenant)
    }

    /// Forgets tenant `name` (its clients are untenanted from now on; its socket's
    /// clients are refused).
    pub fn remove(&self, name: &str) -> Option<Arc<Tenant>> {
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        let i = tenants.iter().position(|t| t.name == name)?;
        Some(tenants.remove(i))
    }

    pub(crate) fn who(&self, peer: &PeerIdentity) -> Who {
        if let PeerIdentity::TenantSocket { tenant, .. } = peer {
            // A tenant's socket whose tenant is gone serves nobody.
            return self.get(tenant).map_or(Who::Refused, Who::Tenant);
        }
        let found = self
            .read()
            .iter()
            .find(|t| t.clients.iter().any(|c| c.matches(peer)))
            .cloned();
        match (found, self.untenanted) {
            (Some(t), _) => Who::Tenant(t),
            (None, Untenanted::Admin) => Who::Admin,
            (None, Untenanted::Refused) => Who::Refused,
        }
    }

    /// Whether tenants share the image name `tag` (as in an image's `RepoTags`, or as a
    /// client names it): one listed in `shared_images`, or with `"*"` any name outside
    /// the tenants' repositories (`berth.tenant/…`: a tenant's own names are never
    /// shared, whatever `"*"` says).
    pub(crate) fn is_shared_name(&self, tag: &str) -> bool {
        let have = normalize_image(tag);
        self.shared_images.iter().any(|want| {
            if want == "*" {
                !super::images::in_namespace(&have)
            } else {
                have == *want
            }
        })
    }

    /// Whether `reference` is named in `shared_images` (not only by `"*"`): such a
    /// name is the shared image's, never a tenant's own.
    pub(crate) fn is_named_shared(&self, reference: &str) -> bool {
        let have = normalize_image(reference);
        self.shared_images.contains(&have)
    }

    /// Whether `"*"` shares every image of the engine.
    pub(crate) fn shares_all(&self) -> bool {
        self.shared_images.iter().any(|want| want == "*")
    }

    pub(crate) fn default_network_known(&self, tenant: &str) -> bool {
        self.networks_lock().contains(tenant)
    }

    /// Remembers (`true`) or forgets that tenant's default network exists.
    pub(crate) fn set_default_network_known(&self, tenant: &str, known: bool) {
        let mut known_set = self.networks_lock();
        if known {
            known_set.insert(tenant.to_owned());
        } else {
            known_set.remove(tenant);
        }
    }

    fn networks_lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.default_networks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn pulls(&self) -> &super::pull::Pulls {
        &self.pulls
    }

    pub(crate) fn containers(&self) -> &ContainerIds {
        &self.containers
    }

    pub(crate) fn docker_sockets(&self) -> &[PathBuf] {
        &self.docker_sockets
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Tenant>>> {
        self.tenants.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `name` is a path component of an image name (distribution's grammar:
/// letters and digits joined by `_`, `__` or any number of `-`).
fn repository_component(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    let mut separator = String::new();
    for b in bytes {
        if alnum(b) {
            let ok = separator.is_empty()
                || separator == "_"
                || separator == "__"
                || separator.bytes().all(|c| c == b'-');
            if !ok {
                return false;
            }
            separator.clear();
        } else {
            separator.push(char::from(*b));
        }
    }
    true
}

/// `busybox` → `busybox:latest`; `docker.io/library/x` → `x`: how dockerd names a
/// reference in `RepoTags`.
fn normalize_image(reference: &str) -> String {
    let r = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    if r == "*" || r.contains('@') {
        return r.to_owned();
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') {
        r.to_owned()
    } else {
        format!("{r}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(uid: u32, gid: u32) -> PeerIdentity {
        PeerIdentity::Unix { uid, gid, pid: 1 }
    }

    #[test]
    fn clients_sockets_and_the_untenanted() {
        let set = TenantSet::new(
            vec![Tenant::new("ci", vec![TenantClient::Uid(1001)], None).unwrap()],
            Untenanted::Refused,
            vec!["busybox".into()],
            Vec::new(),
        );
        assert!(matches!(set.who(&unix(1001, 5)), Who::Tenant(t) if t.name() == "ci"));
        assert!(matches!(set.who(&unix(0, 0)), Who::Refused));
        let by_socket = PeerIdentity::TenantSocket {
            tenant: "ci".into(),
            uid: 0,
            gid: 0,
            pid: 1,
        };
        assert!(matches!(set.who(&by_socket), Who::Tenant(_)));
        set.add(Tenant::new("b", vec![TenantClient::Gid(7)], None).unwrap())
            .unwrap();
        assert!(set
            .add(Tenant::new("c", vec![TenantClient::Uid(1001)], None).unwrap())
            .is_err());
        assert!(matches!(set.who(&unix(3, 7)), Who::Tenant(t) if t.name() == "b"));
        set.remove("ci");
        assert!(matches!(set.who(&by_socket), Who::Refused));
        assert!(set.is_shared_name("busybox:latest"));
        assert!(set.is_shared_name("docker.io/library/busybox"));
        assert!(!set.is_shared_name("busybox:1"));
        let all = TenantSet::new(Vec::new(), Untenanted::Admin, vec!["*".into()], Vec::new());
        assert!(all.is_shared_name("busybox:1"));
        for theirs in [
            "berth.tenant/ci/app:latest",
            "docker.io/berth.tenant/ci/app",
            "Berth.Tenant/ci/app",
            "berth.tenant/ci/app@sha256:ab",
        ] {
            assert!(!all.is_shared_name(theirs), "{theirs}");
        }
        assert!(Tenant::new("A.b", Vec::new(), None).is_err());
        for bad in ["ci-", "c_-i", "c___i"] {
            assert!(Tenant::new(bad, Vec::new(), None).is_err(), "{bad}");
        }
        assert!(Tenant::new("c--i__x_y", Vec::new(), None).is_ok());
        assert_eq!(
            TenantClient::parse("tls:CN=ci").unwrap(),
            TenantClient::TlsSubject("CN=ci".into())
        );
    }
}
