//! Bodies as the engine reads them: the JSON of container create, start (old API
//! versions), update, exec create and volume create, decoded with the rules of Go's `encoding/json` into
//! the few facts the limits judge ([`BodyFacts`]).
//!
//! Go matches keys case-insensitively (with Unicode folds) and decodes duplicates in
//! order into the same value (gateway notes 11.2):
//! - a struct or pointer to struct merges field by field (`null` resets a pointer);
//! - a map adds and replaces entries (`null` resets it);
//! - a string or bool is replaced (`null` leaves it alone);
//! - a slice is replaced, but its old elements are decoded *into*, so a slice of
//!   structs sent twice mixes both. berth refuses that (a second `Mounts`), and refuses
//!   `null` inside arrays, where Go would keep the old element.
//!
//! dockerd 20.10 also reads HostConfig fields at the top level of a create body (the
//! deprecated embedded `*HostConfig` of `ContainerConfigWrapper`), so both places are
//! judged.

mod json;

pub(crate) use json::key_is;
use json::Json;

use crate::endpoint::Operation;

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
    fn field(self) -> &'static str {
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

/// Reads the facts of a JSON body for `op`; the error says what is unreadable.
pub(crate) fn facts(op: Operation, body: &[u8]) -> Result<BodyFacts, String> {
    let empty = body.iter().all(u8::is_ascii_whitespace);
    if empty && op == Operation::ContainerStart {
        return Ok(BodyFacts::default()); // the usual start: nothing to judge
    }
    if empty {
        return Err("the body is empty".to_owned());
    }
    let json = json::parse(body)?;
    let Json::Object(pairs) = &json else {
        return Err(format!("the body is {}, not an object", json.kind()));
    };
    let mut out = BodyFacts::default();
    match op {
        Operation::ContainerCreate => create(pairs, &mut out)?,
        Operation::ContainerStart => {
            // `DecodeHostConfig` reads the same wrapper as create; only its HostConfig
            // (inner or top-level) is used.
            create(pairs, &mut out)?;
            out.images.clear();
            out.users.clear();
        }
        Operation::ContainerUpdate => {
            let mut host = HostFacts::default();
            for (k, v) in pairs {
                host.field(k, v, true)?;
            }
            host.flatten_into(&mut out);
        }
        Operation::ExecCreate => {
            let mut user = String::new();
            for (k, v) in pairs {
                if key_is(k, "User") {
                    string(v, &mut user, "User")?;
                } else if key_is(k, "Privileged") {
                    boolean(v, &mut out.privileged, "Privileged")?;
                }
            }
            out.users.push(user);
        }
        Operation::VolumeCreate => {
            let mut opts = Vec::new();
            for (k, v) in pairs {
                if key_is(k, "DriverOpts") {
                    string_map(v, &mut opts, "DriverOpts")?;
                }
            }
            if let Some(device) = volume_bind_device(&opts) {
                out.bind_sources.push(device.to_owned());
            }
        }
        Operation::ImageCreate | Operation::Build => {}
    }
    Ok(out)
}

fn create(pairs: &[(String, Json)], out: &mut BodyFacts) -> Result<(), String> {
    let mut image = String::new();
    let mut user = String::new();
    let mut inner: Option<HostFacts> = None;
    let mut top = HostFacts::default();
    let mut endpoints: Option<Vec<String>> = None;
    for (k, v) in pairs {
        if key_is(k, "HostConfig") {
            pointer(v, &mut inner, "HostConfig", |pairs, host| {
                pairs
                    .iter()
                    .try_for_each(|(k, v)| host.field(k, v, false).map(drop))
            })?;
        } else if key_is(k, "NetworkingConfig") {
            let mut net: Option<Option<Vec<String>>> = endpoints.take().map(Some);
            pointer(v, &mut net, "NetworkingConfig", |pairs, eps| {
                for (k, v) in pairs {
                    if key_is(k, "EndpointsConfig") {
                        map_keys(v, eps, "NetworkingConfig.EndpointsConfig")?;
                    }
                }
                Ok(())
            })?;
            endpoints = net.flatten();
        } else if key_is(k, "Image") {
            string(v, &mut image, "Image")?;
        } else if key_is(k, "User") {
            string(v, &mut user, "User")?;
        } else {
            top.field(k, v, false)?;
        }
    }
    top.flatten_into(out);
    if let Some(inner) = &inner {
        inner.flatten_into(out);
    }
    if endpoints.iter().flatten().any(|name| name == "host")
        && !out.host_modes.contains(&Namespace::Network)
    {
        out.host_modes.push(Namespace::Network);
    }
    out.images.insert(0, image);
    out.users.push(user);
    Ok(())
}

/// The HostConfig fields the limits judge, one instance per Go struct value.
#[derive(Debug, Default)]
struct HostFacts {
    privileged: bool,
    cap_add: Vec<String>,
    capabilities: Vec<String>,
    devices: Vec<String>,
    device_requests: usize,
    device_cgroup_rules: Vec<String>,
    modes: [String; 6],
    binds: Vec<String>,
    mounts: Vec<MountFacts>,
    mounts_seen: bool,
    security_opt: Vec<String>,
    sysctls: Vec<(String, String)>,
    masked_paths: bool,
    readonly_paths: bool,
}

#[derive(Debug, Default)]
struct MountFacts {
    kind: String,
    source: String,
    /// `VolumeOptions.DriverConfig.Options`.
    driver_options: Option<Vec<(String, String)>>,
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

impl HostFacts {
    /// Decodes one key of a HostConfig object (or of the top level of a create body, or
    /// of an update body when `resources_only`); unknown keys are ignored, as Go does.
    fn field(&mut self, key: &str, v: &Json, resources_only: bool) -> Result<bool, String> {
        if key_is(key, "Devices") {
            struct_array(v, &mut self.devices, "Devices", |pairs, path| {
                for (k, v) in pairs {
                    if key_is(k, "PathOnHost") {
                        string(v, path, "Devices[].PathOnHost")?;
                    }
                }
                Ok(())
            })?;
        } else if key_is(key, "DeviceRequests") {
            let mut n = Vec::new();
            struct_array(v, &mut n, "DeviceRequests", |_, ()| Ok(()))?;
            self.device_requests = n.len();
        } else if key_is(key, "DeviceCgroupRules") {
            string_list(v, &mut self.device_cgroup_rules, "DeviceCgroupRules")?;
        } else if resources_only {
            return Ok(false);
        } else if key_is(key, "Privileged") {
            boolean(v, &mut self.privileged, "Privileged")?;
        } else if key_is(key, "CapAdd") {
            str_slice(v, &mut self.cap_add, "CapAdd")?;
        } else if key_is(key, "Capabilities") {
            string_list(v, &mut self.capabilities, "Capabilities")?;
        } else if key_is(key, "Binds") {
            string_list(v, &mut self.binds, "Binds")?;
        } else if key_is(key, "Mounts") {
            if self.mounts_seen {
                return Err("Mounts is sent twice".to_owned());
            }
            self.mounts_seen = true;
            struct_array(v, &mut self.mounts, "Mounts", mount)?;
        } else if key_is(key, "SecurityOpt") {
            string_list(v, &mut self.security_opt, "SecurityOpt")?;
        } else if key_is(key, "Sysctls") {
            string_map(v, &mut self.sysctls, "Sysctls")?;
        } else if key_is(key, "MaskedPaths") {
            self.masked_paths = !matches!(v, Json::Null);
            string_list(v, &mut Vec::new(), "MaskedPaths")?;
        } else if key_is(key, "ReadonlyPaths") {
            self.readonly_paths = !matches!(v, Json::Null);
            string_list(v, &mut Vec::new(), "ReadonlyPaths")?;
        } else if let Some(i) = Namespace::ALL.iter().position(|ns| key_is(key, ns.field())) {
            string(v, &mut self.modes[i], Namespace::ALL[i].field())?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    fn flatten_into(&self, out: &mut BodyFacts) {
        out.privileged |= self.privileged;
        out.caps
            .extend(self.cap_add.iter().map(|c| normalize_cap(c)));
        out.caps.extend(
            self.capabilities
                .iter()
                .map(|c| normalize_cap(c))
                .filter(|c| !DEFAULT_CAPS.contains(&c.as_str())),
        );
        out.devices
            .extend(self.devices.iter().map(|d| format!("device {d}")));
        if self.device_requests > 0 {
            out.devices.push("device requests (--gpus)".to_owned());
        }
        out.devices.extend(
            self.device_cgroup_rules
                .iter()
                .map(|r| format!("device cgroup rule {r:?}")),
        );
        for (ns, mode) in Namespace::ALL.iter().zip(&self.modes) {
            if mode.trim().eq_ignore_ascii_case("host") && !out.host_modes.contains(ns) {
                out.host_modes.push(*ns);
            }
        }
        out.bind_sources.extend(
            self.binds
                .iter()
                .filter_map(|b| bind_source(b))
                .map(str::to_owned),
        );
        for m in &self.mounts {
            let kind = m.kind.trim();
            if kind.eq_ignore_ascii_case("bind") {
                out.bind_sources.push(m.source.clone());
            } else if kind.eq_ignore_ascii_case("volume") {
                if let Some(dev) = m.driver_options.as_deref().and_then(volume_bind_device) {
                    out.bind_sources.push(dev.to_owned());
                }
            } else if kind.eq_ignore_ascii_case("image") {
                out.images.push(m.source.clone());
            }
        }
        out.unconfined
            .extend(self.security_opt.iter().filter_map(|s| unconfined(s)));
        if self.masked_paths {
            out.unconfined
                .push("MaskedPaths (unmasked /proc paths)".to_owned());
        }
        if self.readonly_paths {
            out.unconfined
                .push("ReadonlyPaths (writable /proc paths)".to_owned());
        }
        out.sysctls
            .extend(self.sysctls.iter().map(|(k, _)| normalize_sysctl(k)));
    }
}

fn mount(pairs: &[(String, Json)], m: &mut MountFacts) -> Result<(), String> {
    for (k, v) in pairs {
        if key_is(k, "Type") {
            string(v, &mut m.kind, "Mounts[].Type")?;
        } else if key_is(k, "Source") {
            string(v, &mut m.source, "Mounts[].Source")?;
        } else if key_is(k, "VolumeOptions") {
            // Only `DriverConfig.Options` is kept; a `null` on any pointer on the way
            // resets it, as Go resets the pointer.
            let mut vo = m.driver_options.take().map(Some);
            pointer(v, &mut vo, "Mounts[].VolumeOptions", |pairs, opts| {
                for (k, v) in pairs {
                    if key_is(k, "DriverConfig") {
                        let mut dc = opts.take().map(Some);
                        pointer(
                            v,
                            &mut dc,
                            "Mounts[].VolumeOptions.DriverConfig",
                            |pairs, o| {
                                for (k, v) in pairs {
                                    if key_is(k, "Options") {
                                        let mut map = o.take().unwrap_or_default();
                                        let was_null = matches!(v, Json::Null);
                                        string_map(v, &mut map, "DriverConfig.Options")?;
                                        *o = (!was_null).then_some(map);
                                    }
                                }
                                Ok(())
                            },
                        )?;
                        *opts = dc.flatten();
                    }
                }
                Ok(())
            })?;
            m.driver_options = vo.flatten();
        }
    }
    Ok(())
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

// === Go decoding, one function per Go type ===

fn wrong(field: &str, want: &str, got: &Json) -> String {
    format!("{field} must be {want}, not {}", got.kind())
}

/// `bool`: replaced; `null` leaves it.
fn boolean(v: &Json, slot: &mut bool, field: &str) -> Result<(), String> {
    match v {
        Json::Bool(b) => *slot = *b,
        Json::Null => {}
        other => return Err(wrong(field, "a boolean", other)),
    }
    Ok(())
}

/// `string`: replaced; `null` leaves it.
fn string(v: &Json, slot: &mut String, field: &str) -> Result<(), String> {
    match v {
        Json::String(s) => slot.clone_from(s),
        Json::Null => {}
        other => return Err(wrong(field, "a string", other)),
    }
    Ok(())
}

/// `[]string`: replaced; `null` empties it; `null` elements refused (Go keeps the old
/// element there).
fn string_list(v: &Json, slot: &mut Vec<String>, field: &str) -> Result<(), String> {
    match v {
        Json::Array(items) => {
            slot.clear();
            for item in items {
                match item {
                    Json::String(s) => slot.push(s.clone()),
                    other => return Err(wrong(&format!("{field}[]"), "a string", other)),
                }
            }
        }
        Json::Null => slot.clear(),
        other => return Err(wrong(field, "an array of strings", other)),
    }
    Ok(())
}

/// `strslice.StrSlice` (CapAdd): a string or an array of strings, decoded afresh.
fn str_slice(v: &Json, slot: &mut Vec<String>, field: &str) -> Result<(), String> {
    match v {
        Json::String(s) => *slot = vec![s.clone()],
        Json::Array(items) => {
            let mut fresh = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Json::String(s) => fresh.push(s.clone()),
                    Json::Null => fresh.push(String::new()),
                    other => return Err(wrong(&format!("{field}[]"), "a string", other)),
                }
            }
            *slot = fresh;
        }
        Json::Null => slot.clear(),
        other => return Err(wrong(field, "a string or an array of strings", other)),
    }
    Ok(())
}

/// `map[string]string`: entries added or replaced (keys exact); `null` empties it; a
/// `null` value is the empty string.
fn string_map(v: &Json, slot: &mut Vec<(String, String)>, field: &str) -> Result<(), String> {
    match v {
        Json::Object(pairs) => {
            for (k, v) in pairs {
                let value = match v {
                    Json::String(s) => s.clone(),
                    Json::Null => String::new(),
                    other => return Err(wrong(&format!("{field}.{k}"), "a string", other)),
                };
                match slot.iter_mut().find(|(have, _)| have == k) {
                    Some(entry) => entry.1 = value,
                    None => slot.push((k.clone(), value)),
                }
            }
        }
        Json::Null => slot.clear(),
        other => return Err(wrong(field, "an object", other)),
    }
    Ok(())
}

/// A map whose keys alone matter (`EndpointsConfig`).
fn map_keys(v: &Json, slot: &mut Option<Vec<String>>, field: &str) -> Result<(), String> {
    match v {
        Json::Object(pairs) => {
            let keys = slot.get_or_insert_with(Vec::new);
            for (k, _) in pairs {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        Json::Null => *slot = None,
        other => return Err(wrong(field, "an object", other)),
    }
    Ok(())
}

/// `*T` for a struct `T`: merged into the existing value; `null` resets it.
fn pointer<T: Default>(
    v: &Json,
    slot: &mut Option<T>,
    field: &str,
    decode: impl FnOnce(&[(String, Json)], &mut T) -> Result<(), String>,
) -> Result<(), String> {
    match v {
        Json::Object(pairs) => decode(pairs, slot.get_or_insert_with(T::default)),
        Json::Null => {
            *slot = None;
            Ok(())
        }
        other => Err(wrong(field, "an object", other)),
    }
}

/// `[]T` for a struct `T`, decoded into a fresh slice (callers refuse a second one).
fn struct_array<T: Default>(
    v: &Json,
    slot: &mut Vec<T>,
    field: &str,
    mut decode: impl FnMut(&[(String, Json)], &mut T) -> Result<(), String>,
) -> Result<(), String> {
    match v {
        Json::Array(items) => {
            slot.clear();
            for item in items {
                match item {
                    Json::Object(pairs) => {
                        let mut t = T::default();
                        decode(pairs, &mut t)?;
                        slot.push(t);
                    }
                    other => return Err(wrong(&format!("{field}[]"), "an object", other)),
                }
            }
        }
        Json::Null => slot.clear(),
        other => return Err(wrong(field, "an array of objects", other)),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
