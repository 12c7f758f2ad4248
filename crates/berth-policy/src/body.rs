//! Bodies as the engine reads them: the JSON of container create, start (old API
//! versions), update, exec create and volume create, decoded with the rules of Go's
//! `encoding/json` into one model ([`DockerBody`]). The limits judge the facts read
//! from it ([`BodyFacts`]); the gateway's rewrites (the Docker socket, path mappings)
//! edit it; what is forwarded is the model encoded again, so dockerd reads exactly what
//! berth judged.
//!
//! Go matches keys case-insensitively (with Unicode folds) and decodes duplicates in
//! order into the same value (gateway notes 11.2):
//! - a struct or pointer to struct merges field by field (`null` resets a pointer);
//! - a map adds and replaces entries (`null` resets it);
//! - a string or bool is replaced (`null` leaves it alone);
//! - a slice is replaced, but its old elements are decoded *into*, so a slice of
//!   structs sent twice mixes both. berth refuses that (a second `Mounts`), and refuses
//!   `null` inside arrays of strings, where Go would keep the old element.
//!
//! dockerd 20.10 to 27 also reads HostConfig fields at the top level of a create body
//! (the deprecated embedded `*HostConfig` of `ContainerConfigWrapper`) when `HostConfig`
//! is absent; 28 ignores them. The model reads them as 20.10 does.
//!
//! Encoding writes one object per struct berth reads, one key per field under its
//! canonical name, and every member berth does not read exactly as it was sent.

mod json;
mod model;
mod ties;

pub use ties::{project_of, Ties, COMPOSE_PROJECT_LABEL};
mod refs;

pub use refs::{ObjectKind, Reference, ResourceLimits};

use model::{CreateBody, HostConfig, Model};

use crate::endpoint::{self, Operation};
use crate::error::PolicyError;

/// A host namespace a container can share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Namespace {
    Network,
    Pid,
    Ipc,
    Uts,
    Userns,
    Cgroupns,
}

impl Namespace {
    pub(crate) const ALL: [Namespace; 6] = [
        Self::Network,
        Self::Pid,
        Self::Ipc,
        Self::Uts,
        Self::Userns,
        Self::Cgroupns,
    ];

    /// The HostConfig field that selects it.
    pub(crate) fn field(self) -> &'static str {
        match self {
            Self::Network => "NetworkMode",
            Self::Pid => "PidMode",
            Self::Ipc => "IpcMode",
            Self::Uts => "UTSMode",
            Self::Userns => "UsernsMode",
            Self::Cgroupns => "CgroupnsMode",
        }
    }

    /// The policy key that refuses it.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Network => "host_network",
            Self::Pid => "host_pid",
            Self::Ipc => "host_ipc",
            Self::Uts => "host_uts",
            Self::Userns => "host_userns",
            Self::Cgroupns => "host_cgroupns",
        }
    }

    /// For messages: `host network mode`.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Network => "host network mode",
            Self::Pid => "host PID mode",
            Self::Ipc => "host IPC mode",
            Self::Uts => "host UTS mode",
            Self::Userns => "host user namespace mode",
            Self::Cgroupns => "host cgroup namespace mode",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// What a body asks for, normalized; every list is what the limits judge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BodyFacts {
    /// `HostConfig.Privileged`, or exec `Privileged`.
    pub(crate) privileged: bool,
    /// Capabilities added (`CAP_SYS_ADMIN`, or `ALL`), from `CapAdd` and from
    /// `Capabilities` entries beyond Docker's default set.
    pub(crate) caps: Vec<String>,
    /// Devices, device requests and device cgroup rules, described.
    pub(crate) devices: Vec<String>,
    /// Host namespaces shared.
    pub(crate) host_modes: Vec<Namespace>,
    /// Host paths mounted: absolute `Binds` sources, `Mounts` of type bind, local
    /// volumes with `o=bind` and a `device`.
    pub(crate) bind_sources: Vec<String>,
    /// Confinement given up, described (`security option seccomp=unconfined`).
    pub(crate) unconfined: Vec<String>,
    /// Sysctl names set.
    pub(crate) sysctls: Vec<String>,
    /// Image references used (`Image`, `Mounts` of type image, pulls).
    pub(crate) images: Vec<String>,
    /// Users asked for (`""` is the image's or container's default).
    pub(crate) users: Vec<String>,
}

/// The kinds of request body berth models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyKind {
    /// `POST /containers/create`.
    ContainerCreate,
    /// `POST /containers/{id}/start` (a HostConfig body below API 1.24).
    ContainerStart,
    /// `POST /containers/{id}/update`.
    ContainerUpdate,
    /// `POST /containers/{id}/exec`.
    ExecCreate,
    /// `POST /volumes/create`.
    VolumeCreate,
    /// `POST /networks/create` (read for its name and labels only; no limit judges it).
    NetworkCreate,
    /// `POST /networks/{id}/connect` and `/disconnect` (read for the container only).
    NetworkConnect,
}

impl BodyKind {
    /// The body kind of a request, from its method and path (as the policy classifies
    /// them: with or without `/vX.Y`, percent-encoded, unclean).
    pub fn of(method: &str, path: &str) -> Option<Self> {
        Some(match endpoint::classify(method, path).operation? {
            Operation::ContainerCreate => Self::ContainerCreate,
            Operation::ContainerStart => Self::ContainerStart,
            Operation::ContainerUpdate => Self::ContainerUpdate,
            Operation::ExecCreate => Self::ExecCreate,
            Operation::VolumeCreate => Self::VolumeCreate,
            Operation::ImageCreate | Operation::Build => return None,
        })
    }

    fn operation(self) -> Option<Operation> {
        Some(match self {
            Self::ContainerCreate => Operation::ContainerCreate,
            Self::ContainerStart => Operation::ContainerStart,
            Self::ContainerUpdate => Operation::ContainerUpdate,
            Self::ExecCreate => Operation::ExecCreate,
            Self::VolumeCreate => Operation::VolumeCreate,
            Self::NetworkCreate | Self::NetworkConnect => return None,
        })
    }
}

/// Where a host path sits in a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostPathKind {
    /// The source of a `HostConfig.Binds` entry (`/src:/dst[:opts]`, absolute only).
    Bind,
    /// The `Source` of a `HostConfig.Mounts[]` entry of type `bind`.
    BindMount,
    /// The `device` of a local-driver volume that bind-mounts it (`o=bind`), in a
    /// `Mounts[]` entry of type `volume` or a volume create's `DriverOpts`.
    VolumeDevice,
}

/// A Docker request body as dockerd reads it: the one model berth judges, rewrites and
/// forwards ([`DockerBody::encode`]). It borrows the bytes it was parsed from.
#[derive(Debug)]
pub struct DockerBody<'a> {
    kind: BodyKind,
    len: usize,
    model: Model<'a>,
}

impl<'a> DockerBody<'a> {
    /// Decodes `body` as dockerd decodes a `kind` body. Errors: not JSON, not an object,
    /// a field berth reads with the wrong type (dockerd refuses those too), or a body
    /// that engines may read in more than one way (a slice of structs sent twice, `null`
    /// in an array of strings, a key that only some Go versions fold).
    pub fn parse(kind: BodyKind, body: &'a [u8]) -> Result<Self, PolicyError> {
        Self::decode(kind, body).map_err(|message| PolicyError::Body { message })
    }

    fn decode(kind: BodyKind, body: &'a [u8]) -> Result<Self, String> {
        let len = body.len();
        if body.iter().all(u8::is_ascii_whitespace) {
            if kind == BodyKind::ContainerStart {
                // the usual start: nothing to judge
                return Ok(Self {
                    kind,
                    len,
                    model: Model::Empty,
                });
            }
            return Err("the body is empty".to_owned());
        }
        let raw = json::document(body)?;
        let model = match kind {
            BodyKind::ContainerCreate | BodyKind::ContainerStart => {
                Model::Create(Box::new(Model::decode(raw)?))
            }
            BodyKind::ContainerUpdate => Model::Update(Box::new(Model::decode(raw)?)),
            BodyKind::ExecCreate => Model::Exec(Model::decode(raw)?),
            BodyKind::VolumeCreate => Model::Volume(Model::decode(raw)?),
            BodyKind::NetworkCreate => Model::Network(Model::decode(raw)?),
            BodyKind::NetworkConnect => Model::Connect(Model::decode(raw)?),
        };
        Ok(Self { kind, len, model })
    }

    /// What kind of body this is.
    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// The size of the body as it was sent.
    pub fn sent_len(&self) -> usize {
        self.len
    }

    /// The body to forward: one key per field berth reads, under its canonical name,
    /// every other member exactly as sent. An empty start body stays empty.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len + 16);
        self.model.encode(&mut out);
        out
    }

    /// Calls `f` with every host path the engine will mount (in the HostConfig dockerd
    /// uses) and puts what it returns in its place (`None` keeps it). A `Binds` entry
    /// keeps its `:dst[:opts]`.
    pub fn rewrite_host_paths<E>(
        &mut self,
        mut f: impl FnMut(HostPathKind, &str) -> Result<Option<String>, E>,
    ) -> Result<(), E> {
        match &mut self.model {
            Model::Create(b) => {
                let hc = b.effective_mut();
                for spec in hc.binds.iter_mut().flatten() {
                    if let Some(src) = bind_source(spec) {
                        if let Some(new) = f(HostPathKind::Bind, src)? {
                            *spec = format!("{new}{}", &spec[src.len()..]);
                        }
                    }
                }
                for m in hc.mounts.iter_mut().flatten() {
                    if m.is("bind") {
                        if let Some(src) = &mut m.source {
                            if let Some(new) = f(HostPathKind::BindMount, src)? {
                                *src = new;
                            }
                        }
                    } else if m.is("volume") {
                        if let Some(opts) = m.driver_options_mut() {
                            rewrite_volume_device(opts, &mut f)?;
                        }
                    }
                }
            }
            Model::Volume(v) => {
                if let Some(opts) = &mut v.driver_opts {
                    rewrite_volume_device(opts, &mut f)?;
                }
            }
            Model::Empty
            | Model::Update(_)
            | Model::Exec(_)
            | Model::Network(_)
            | Model::Connect(_) => {}
        }
        Ok(())
    }

    /// The facts the limits judge.
    pub(crate) fn facts(&self) -> BodyFacts {
        let mut out = BodyFacts::default();
        match &self.model {
            Model::Empty => {}
            Model::Create(b) => {
                create_facts(b, &mut out);
                if self.kind == BodyKind::ContainerStart {
                    // Only its HostConfig is used.
                    out.images.clear();
                    out.users.clear();
                }
            }
            Model::Update(b) => host_facts(&b.resources, &mut out),
            Model::Exec(b) => {
                out.privileged = b.privileged.unwrap_or(false);
                out.users.push(b.user.clone().unwrap_or_default());
            }
            Model::Volume(b) => {
                if let Some(device) = b.driver_opts.as_deref().and_then(volume_bind_device) {
                    out.bind_sources.push(device.to_owned());
                }
            }
            Model::Network(_) | Model::Connect(_) => {}
        }
        out
    }

    /// The facts for a request the policy classified as `op`.
    pub(crate) fn facts_for(&self, op: Operation) -> Result<BodyFacts, String> {
        if self.kind.operation() != Some(op) {
            return Err(format!("a {:?} body read as {op:?}", self.kind));
        }
        Ok(self.facts())
    }
}

fn rewrite_volume_device<E>(
    opts: &mut [(String, String)],
    f: &mut impl FnMut(HostPathKind, &str) -> Result<Option<String>, E>,
) -> Result<(), E> {
    if volume_bind_device(opts).is_none() {
        return Ok(());
    }
    if let Some((_, device)) = opts.iter_mut().find(|(k, _)| k == "device") {
        if let Some(new) = f(HostPathKind::VolumeDevice, device)? {
            *device = new;
        }
    }
    Ok(())
}

/// Reads the facts of a JSON body for `op`; the error says what is unreadable.
pub(crate) fn facts(op: Operation, body: &[u8]) -> Result<BodyFacts, String> {
    let kind = match op {
        Operation::ContainerCreate => BodyKind::ContainerCreate,
        Operation::ContainerStart => BodyKind::ContainerStart,
        Operation::ContainerUpdate => BodyKind::ContainerUpdate,
        Operation::ExecCreate => BodyKind::ExecCreate,
        Operation::VolumeCreate => BodyKind::VolumeCreate,
        Operation::ImageCreate | Operation::Build => return Ok(BodyFacts::default()),
    };
    Ok(DockerBody::decode(kind, body)?.facts())
}

fn create_facts(b: &CreateBody<'_>, out: &mut BodyFacts) {
    host_facts(b.effective(), out);
    let host_endpoint = b
        .networking
        .as_ref()
        .and_then(|n| n.endpoints.as_ref())
        .is_some_and(|eps| eps.iter().any(|(name, _)| name == "host"));
    if host_endpoint && !out.host_modes.contains(&Namespace::Network) {
        out.host_modes.push(Namespace::Network);
    }
    out.images.insert(0, b.image.clone().unwrap_or_default());
    out.users.push(b.user.clone().unwrap_or_default());
}

/// Capabilities a container has without asking (moby `oci/caps/defaults.go`).
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn host_facts(hc: &HostConfig<'_>, out: &mut BodyFacts) {
    out.privileged |= hc.privileged.unwrap_or(false);
    out.caps
        .extend(hc.cap_add.iter().flatten().map(|c| normalize_cap(c)));
    out.caps.extend(
        hc.capabilities
            .iter()
            .flatten()
            .map(|c| normalize_cap(c))
            .filter(|c| !DEFAULT_CAPS.contains(&c.as_str())),
    );
    out.devices.extend(
        hc.devices
            .iter()
            .flatten()
            .map(|d| format!("device {}", d.path_on_host.as_deref().unwrap_or_default())),
    );
    if hc.device_requests.as_ref().is_some_and(|r| !r.is_empty()) {
        out.devices.push("device requests (--gpus)".to_owned());
    }
    out.devices.extend(
        hc.device_cgroup_rules
            .iter()
            .flatten()
            .map(|r| format!("device cgroup rule {r:?}")),
    );
    for (ns, mode) in Namespace::ALL.iter().zip(&hc.modes) {
        let host = mode
            .as_deref()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("host"));
        if host && !out.host_modes.contains(ns) {
            out.host_modes.push(*ns);
        }
    }
    out.bind_sources.extend(
        hc.binds
            .iter()
            .flatten()
            .filter_map(|b| bind_source(b))
            .map(str::to_owned),
    );
    for m in hc.mounts.iter().flatten() {
        if m.is("bind") {
            out.bind_sources.push(m.source.clone().unwrap_or_default());
        } else if m.is("volume") {
            if let Some(dev) = m.driver_options().and_then(|o| volume_bind_device(o)) {
                out.bind_sources.push(dev.to_owned());
            }
        } else if m.is("image") {
            out.images.push(m.source.clone().unwrap_or_default());
        }
    }
    out.unconfined.extend(
        hc.security_opt
            .iter()
            .flatten()
            .filter_map(|s| unconfined(s)),
    );
    if hc.masked_paths.is_some() {
        out.unconfined
            .push("MaskedPaths (unmasked /proc paths)".to_owned());
    }
    if hc.readonly_paths.is_some() {
        out.unconfined
            .push("ReadonlyPaths (writable /proc paths)".to_owned());
    }
    out.sysctls.extend(
        hc.sysctls
            .iter()
            .flatten()
            .map(|(k, _)| normalize_sysctl(k)),
    );
}

/// `src:dst[:opts]` → `src` when it is a host path (absolute); a relative source is a
/// volume name and a lone path an anonymous volume (moby `ParseMountRaw`).
fn bind_source(spec: &str) -> Option<&str> {
    let mut parts = spec.splitn(4, ':');
    let src = parts.next()?;
    parts.next()?;
    src.starts_with('/').then_some(src)
}

/// The `device` of a local-driver volume that bind-mounts it (`o=bind` or `type=none`).
fn volume_bind_device(opts: &[(String, String)]) -> Option<&str> {
    let get = |key: &str| opts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let binds = get("o").is_some_and(|o| {
        o.split(',')
            .any(|x| matches!(x.trim().to_ascii_lowercase().as_str(), "bind" | "rbind"))
    }) || get("type").is_some_and(|t| t.trim().eq_ignore_ascii_case("none"));
    if binds {
        get("device")
    } else {
        None
    }
}

/// moby `NormalizeLegacyCapabilities`: upper case (Go's Unicode `ToUpper`: `ſ` → `S`),
/// `CAP_` prefix unless `ALL`.
pub(crate) fn normalize_cap(cap: &str) -> String {
    let upper = cap.to_uppercase();
    if upper == "ALL" || upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// Sysctl names with `/` are read with `.`.
pub(crate) fn normalize_sysctl(name: &str) -> String {
    name.replace('/', ".")
}

/// Whether a `SecurityOpt` entry gives up confinement, and how (moby `parseSecurityOpt`:
/// `key=value`, or the deprecated `key:value`). Only `seccomp=builtin` is a seccomp value
/// that keeps the default profile; a custom profile is judged as giving it up.
fn unconfined(opt: &str) -> Option<String> {
    let lower = opt.trim().to_ascii_lowercase();
    if lower == "disable" {
        return Some("security option label=disable".to_owned());
    }
    let (key, value) = lower.split_once('=').or_else(|| lower.split_once(':'))?;
    let (key, value) = (key.trim(), value.trim());
    let what = match key {
        "seccomp" if value == "builtin" => return None,
        "seccomp" if value == "unconfined" => "security option seccomp=unconfined".to_owned(),
        "seccomp" => "custom seccomp profiles".to_owned(),
        "apparmor" if value == "unconfined" => "security option apparmor=unconfined".to_owned(),
        "label"
            if value == "disable"
                || (value.starts_with("type:")
                    && (value.contains("spc_t") || value.contains("unconfined_t"))) =>
        {
            format!("security option label={value}")
        }
        "systempaths" if value == "unconfined" => {
            "security option systempaths=unconfined".to_owned()
        }
        "writable-cgroups" if matches!(value, "1" | "t" | "true") => {
            "security option writable-cgroups=true".to_owned()
        }
        _ => return None,
    };
    Some(what)
}

#[cfg(test)]
mod tests;
