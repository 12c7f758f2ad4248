//! The structs dockerd decodes request bodies into, reduced to the fields berth reads:
//! decoded in Go's order with Go's merge rules, and encoded back as one object per
//! struct, one key per field, canonical names, every other member as sent.

use super::json::{self, GoStruct, Members, ObjectWriter, Raw, Value};
use super::Namespace;

/// A create body (`ContainerConfigWrapper` of moby 20.10 to 27; `CreateRequest` since
/// 28), also the body of an old-API start (`DecodeHostConfig` reads the same wrapper).
#[derive(Debug, Default)]
pub(crate) struct CreateBody<'a> {
    pub(crate) image: Option<String>,
    pub(crate) user: Option<String>,
    /// `HostConfig`; `None` when absent or `null`.
    pub(crate) host_config: Option<HostConfig<'a>>,
    /// HostConfig fields sent at the top level (the deprecated embedded `*HostConfig`):
    /// dockerd up to 27 reads them when `HostConfig` is absent; 28 ignores them.
    pub(crate) top: HostConfig<'a>,
    pub(crate) networking: Option<Networking<'a>>,
    /// `Labels` (of the embedded `Config`).
    pub(crate) labels: Option<Vec<(String, String)>>,
    pub(crate) rest: Members<'a>,
}

const CREATE_FIELDS: [&str; 5] = ["Image", "User", "HostConfig", "NetworkingConfig", "Labels"];

impl<'a> GoStruct<'a> for CreateBody<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        match json::field_of(key, &CREATE_FIELDS)? {
            Some("Image") => json::string(raw, &mut self.image, "Image")?,
            Some("User") => json::string(raw, &mut self.user, "User")?,
            Some("HostConfig") => json::pointer(raw, &mut self.host_config, "HostConfig")?,
            Some("Labels") => json::string_map(raw, &mut self.labels, "Labels")?,
            Some(_) => json::pointer(raw, &mut self.networking, "NetworkingConfig")?,
            None => return self.top.field_in(key, raw, false),
        }
        Ok(true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

impl<'a> CreateBody<'a> {
    /// The HostConfig dockerd uses: the inner one, else the top-level fields.
    pub(crate) fn effective(&self) -> &HostConfig<'a> {
        self.host_config.as_ref().unwrap_or(&self.top)
    }

    pub(crate) fn effective_mut(&mut self) -> &mut HostConfig<'a> {
        match &mut self.host_config {
            Some(hc) => hc,
            None => &mut self.top,
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.str("Image", self.image.as_ref());
        w.str("User", self.user.as_ref());
        match &self.host_config {
            // With an inner HostConfig, dockerd ignores the top-level fields berth
            // reads: they are dropped, not sent to be read differently.
            Some(hc) => hc.encode(w.key("HostConfig")),
            None => self.top.encode_members(&mut w),
        }
        if let Some(n) = &self.networking {
            n.encode(w.key("NetworkingConfig"));
        }
        w.string_map("Labels", self.labels.as_ref());
        w.rest(&self.rest);
        w.end();
    }
}

/// `NetworkingConfig`: the networks of `EndpointsConfig` and their aliases.
#[derive(Debug, Default)]
pub(crate) struct Networking<'a> {
    /// `map[string]*EndpointSettings`: a `null` value is a nil pointer.
    pub(crate) endpoints: Option<Vec<(String, Option<Endpoint<'a>>)>>,
    pub(crate) rest: Members<'a>,
}

impl<'a> GoStruct<'a> for Networking<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        if json::field_of(key, &["EndpointsConfig"])?.is_none() {
            return Ok(false);
        }
        let field = "NetworkingConfig.EndpointsConfig";
        match json::value(raw)? {
            Value::Object(members) => {
                let map = self.endpoints.get_or_insert_with(Vec::new);
                for (k, v) in members {
                    // Go decodes each map value afresh: a repeated key replaces.
                    let mut endpoint = None;
                    json::pointer(v, &mut endpoint, field)?;
                    match map.iter_mut().find(|(have, _)| *have == k) {
                        Some(entry) => entry.1 = endpoint,
                        None => map.push((k, endpoint)),
                    }
                }
            }
            Value::Null => self.endpoints = None,
            other => return Err(format!("{field} is {}, not an object", other.kind())),
        }
        Ok(true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

impl Networking<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        if let Some(endpoints) = &self.endpoints {
            let mut map = ObjectWriter::new(w.key("EndpointsConfig"));
            for (name, endpoint) in endpoints {
                let out = map.key(name);
                match endpoint {
                    Some(e) => e.encode(out),
                    None => out.extend_from_slice(b"null"),
                }
            }
            map.end();
        }
        w.rest(&self.rest);
        w.end();
    }
}

/// `EndpointSettings` (of a create's `EndpointsConfig` or a connect's
/// `EndpointConfig`): its `Aliases`, the names it answers to on its network.
#[derive(Debug, Default)]
pub(crate) struct Endpoint<'a> {
    pub(crate) aliases: Option<Vec<String>>,
    pub(crate) rest: Members<'a>,
}

impl<'a> GoStruct<'a> for Endpoint<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        if json::field_of(key, &["Aliases"])?.is_none() {
            return Ok(false);
        }
        json::strings(raw, &mut self.aliases, "Aliases")?;
        Ok(true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

impl Endpoint<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.strings("Aliases", self.aliases.as_ref());
        w.rest(&self.rest);
        w.end();
    }

    /// Adds `alias` (once).
    pub(crate) fn add_alias(&mut self, alias: &str) {
        let aliases = self.aliases.get_or_insert_with(Vec::new);
        if !aliases.iter().any(|a| a == alias) {
            aliases.push(alias.to_owned());
        }
    }
}

/// `HostConfig` (with its embedded `Resources`), the fields the limits and rewrites read.
#[derive(Debug, Default)]
pub(crate) struct HostConfig<'a> {
    pub(crate) privileged: Option<bool>,
    pub(crate) cap_add: Option<Vec<String>>,
    pub(crate) capabilities: Option<Vec<String>>,
    pub(crate) binds: Option<Vec<String>>,
    pub(crate) mounts: Option<Vec<Mount<'a>>>,
    pub(crate) security_opt: Option<Vec<String>>,
    pub(crate) sysctls: Option<Vec<(String, String)>>,
    pub(crate) masked_paths: Option<Vec<String>>,
    pub(crate) readonly_paths: Option<Vec<String>>,
    /// In the order of [`Namespace::ALL`].
    pub(crate) modes: [Option<String>; 6],
    pub(crate) devices: Option<Vec<Device<'a>>>,
    pub(crate) device_requests: Option<Vec<Raw<'a>>>,
    pub(crate) device_cgroup_rules: Option<Vec<String>>,
    /// `VolumesFrom` (`container[:ro|rw]`) and `Links` (`container:alias`): other
    /// containers a create names.
    pub(crate) volumes_from: Option<Vec<String>>,
    pub(crate) links: Option<Vec<String>>,
    /// Memory and CPU limits, in the order of [`LIMIT_FIELDS`] (read in update bodies:
    /// what a tenant's quotas judge before dockerd applies them).
    pub(crate) limits: [Option<i64>; 5],
    pub(crate) rest: Members<'a>,
}

/// The `Resources` limits an update body is read for.
pub(crate) const LIMIT_FIELDS: [&str; 5] =
    ["Memory", "MemorySwap", "NanoCpus", "CpuQuota", "CpuPeriod"];

/// The `Resources` fields berth reads (the only HostConfig part of an update body).
const RESOURCE_FIELDS: [&str; 8] = [
    "Devices",
    "DeviceRequests",
    "DeviceCgroupRules",
    "Memory",
    "MemorySwap",
    "NanoCpus",
    "CpuQuota",
    "CpuPeriod",
];

const HOST_FIELDS: [&str; 20] = [
    "Devices",
    "DeviceRequests",
    "DeviceCgroupRules",
    "VolumesFrom",
    "Links",
    "Privileged",
    "CapAdd",
    "Capabilities",
    "Binds",
    "Mounts",
    "SecurityOpt",
    "Sysctls",
    "MaskedPaths",
    "ReadonlyPaths",
    "NetworkMode",
    "PidMode",
    "IpcMode",
    "UTSMode",
    "UsernsMode",
    "CgroupnsMode",
];

impl<'a> GoStruct<'a> for HostConfig<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        self.field_in(key, raw, false)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

impl<'a> HostConfig<'a> {
    /// Decodes one member; `resources_only` for an update body (`UpdateConfig`).
    pub(crate) fn field_in(
        &mut self,
        key: &str,
        raw: Raw<'a>,
        resources_only: bool,
    ) -> Result<bool, String> {
        let fields: &[&'static str] = if resources_only {
            &RESOURCE_FIELDS
        } else {
            &HOST_FIELDS
        };
        let Some(name) = json::field_of(key, fields)? else {
            return Ok(false);
        };
        match name {
            "Devices" => json::struct_slice(raw, &mut self.devices, name)?,
            "DeviceRequests" => json::raw_struct_slice(raw, &mut self.device_requests, name)?,
            "DeviceCgroupRules" => json::strings(raw, &mut self.device_cgroup_rules, name)?,
            "Privileged" => json::boolean(raw, &mut self.privileged, name)?,
            "CapAdd" => json::str_slice(raw, &mut self.cap_add, name)?,
            "Capabilities" => json::strings(raw, &mut self.capabilities, name)?,
            "Binds" => json::strings(raw, &mut self.binds, name)?,
            "Mounts" => json::struct_slice(raw, &mut self.mounts, name)?,
            "SecurityOpt" => json::strings(raw, &mut self.security_opt, name)?,
            "Sysctls" => json::string_map(raw, &mut self.sysctls, name)?,
            "MaskedPaths" => json::strings(raw, &mut self.masked_paths, name)?,
            "ReadonlyPaths" => json::strings(raw, &mut self.readonly_paths, name)?,
            "VolumesFrom" => json::strings(raw, &mut self.volumes_from, name)?,
            "Links" => json::strings(raw, &mut self.links, name)?,
            limit if LIMIT_FIELDS.contains(&limit) => {
                let i = LIMIT_FIELDS
                    .iter()
                    .position(|f| *f == limit)
                    .unwrap_or_default();
                json::int64(raw, &mut self.limits[i], limit)?;
            }
            mode => {
                let i = Namespace::ALL
                    .iter()
                    .position(|ns| ns.field() == mode)
                    .unwrap_or_default();
                json::string(raw, &mut self.modes[i], mode)?;
            }
        }
        Ok(true)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        self.encode_members(&mut w);
        w.rest(&self.rest);
        w.end();
    }

    /// The fields berth reads, as members of `w` (not `rest`).
    pub(crate) fn encode_members(&self, w: &mut ObjectWriter<'_>) {
        w.bool("Privileged", self.privileged);
        w.strings("CapAdd", self.cap_add.as_ref());
        w.strings("Capabilities", self.capabilities.as_ref());
        w.strings("Binds", self.binds.as_ref());
        if let Some(mounts) = &self.mounts {
            json::put_array(w.key("Mounts"), mounts, |out, m| m.encode(out));
        }
        w.strings("SecurityOpt", self.security_opt.as_ref());
        w.string_map("Sysctls", self.sysctls.as_ref());
        w.strings("MaskedPaths", self.masked_paths.as_ref());
        w.strings("ReadonlyPaths", self.readonly_paths.as_ref());
        for (ns, mode) in Namespace::ALL.iter().zip(&self.modes) {
            w.str(ns.field(), mode.as_ref());
        }
        if let Some(devices) = &self.devices {
            json::put_array(w.key("Devices"), devices, |out, d| d.encode(out));
        }
        for (field, v) in LIMIT_FIELDS.iter().zip(self.limits) {
            w.int(field, v);
        }
        if let Some(requests) = &self.device_requests {
            json::put_array(w.key("DeviceRequests"), requests, |out, r| {
                out.extend_from_slice(r.get().as_bytes());
            });
        }
        w.strings("DeviceCgroupRules", self.device_cgroup_rules.as_ref());
        w.strings("VolumesFrom", self.volumes_from.as_ref());
        w.strings("Links", self.links.as_ref());
    }
}

/// `mount.Mount`.
#[derive(Debug, Default)]
pub(crate) struct Mount<'a> {
    pub(crate) kind: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) volume_options: Option<VolumeOptions<'a>>,
    pub(crate) rest: Members<'a>,
}

impl<'a> GoStruct<'a> for Mount<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        match json::field_of(key, &["Type", "Source", "VolumeOptions"])? {
            Some("Type") => json::string(raw, &mut self.kind, "Mounts[].Type")?,
            Some("Source") => json::string(raw, &mut self.source, "Mounts[].Source")?,
            Some(_) => json::pointer(raw, &mut self.volume_options, "Mounts[].VolumeOptions")?,
            None => return Ok(false),
        }
        Ok(true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

impl Mount<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.str("Type", self.kind.as_ref());
        w.str("Source", self.source.as_ref());
        if let Some(vo) = &self.volume_options {
            let mut vw = ObjectWriter::new(w.key("VolumeOptions"));
            if let Some(dc) = &vo.driver_config {
                let mut dw = ObjectWriter::new(vw.key("DriverConfig"));
                dw.string_map("Options", dc.options.as_ref());
                dw.rest(&dc.rest);
                dw.end();
            }
            vw.rest(&vo.rest);
            vw.end();
        }
        w.rest(&self.rest);
        w.end();
    }

    /// `Type`, compared as berth judges it (case and spaces ignored: the safe side).
    pub(crate) fn is(&self, kind: &str) -> bool {
        self.kind
            .as_deref()
            .is_some_and(|k| k.trim().eq_ignore_ascii_case(kind))
    }

    /// `VolumeOptions.DriverConfig.Options`.
    pub(crate) fn driver_options(&self) -> Option<&Vec<(String, String)>> {
        self.volume_options
            .as_ref()?
            .driver_config
            .as_ref()?
            .options
            .as_ref()
    }

    pub(crate) fn driver_options_mut(&mut self) -> Option<&mut Vec<(String, String)>> {
        self.volume_options
            .as_mut()?
            .driver_config
            .as_mut()?
            .options
            .as_mut()
    }
}

/// `mount.VolumeOptions`.
#[derive(Debug, Default)]
pub(crate) struct VolumeOptions<'a> {
    pub(crate) driver_config: Option<DriverConfig<'a>>,
    pub(crate) rest: Members<'a>,
}

impl<'a> GoStruct<'a> for VolumeOptions<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        if json::field_of(key, &["DriverConfig"])?.is_none() {
            return Ok(false);
        }
        json::pointer(
            raw,
            &mut self.driver_config,
            "Mounts[].VolumeOptions.DriverConfig",
        )?;
        Ok(true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

/// `mount.Driver`.
#[derive(Debug, Default)]
pub(crate) struct DriverConfig<'a> {
    pub(crate) options: Option<Vec<(String, String)>>,
    pub(crate) rest: Members<'a>,
}

impl<'a> GoStruct<'a> for DriverConfig<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        if json::field_of(key, &["Options"])?.is_none() {
            return Ok(false);
        }
        json::string_map(raw, &mut self.options, "DriverConfig.Options")?;
        Ok(true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

/// `container.DeviceMapping`.
#[derive(Debug, Default)]
pub(crate) struct Device<'a> {
    pub(crate) path_on_host: Option<String>,
    pub(crate) rest: Members<'a>,
}

impl<'a> GoStruct<'a> for Device<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        if json::field_of(key, &["PathOnHost"])?.is_none() {
            return Ok(false);
        }
        json::string(raw, &mut self.path_on_host, "Devices[].PathOnHost")?;
        Ok(true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

impl Device<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.str("PathOnHost", self.path_on_host.as_ref());
        w.rest(&self.rest);
        w.end();
    }
}

/// An update body (`UpdateConfig`: `Resources` and `RestartPolicy`).
#[derive(Debug, Default)]
pub(crate) struct UpdateBody<'a> {
    pub(crate) resources: HostConfig<'a>,
    pub(crate) rest: Members<'a>,
}

impl<'a> GoStruct<'a> for UpdateBody<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        self.resources.field_in(key, raw, true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

impl UpdateBody<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        self.resources.encode_members(&mut w);
        w.rest(&self.rest);
        w.end();
    }
}

/// An exec create body (`ExecConfig`).
#[derive(Debug, Default)]
pub(crate) struct ExecBody<'a> {
    pub(crate) user: Option<String>,
    pub(crate) privileged: Option<bool>,
    pub(crate) rest: Members<'a>,
}

impl<'a> GoStruct<'a> for ExecBody<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        match json::field_of(key, &["User", "Privileged"])? {
            Some("User") => json::string(raw, &mut self.user, "User")?,
            Some(_) => json::boolean(raw, &mut self.privileged, "Privileged")?,
            None => return Ok(false),
        }
        Ok(true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

impl ExecBody<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.str("User", self.user.as_ref());
        w.bool("Privileged", self.privileged);
        w.rest(&self.rest);
        w.end();
    }
}

/// A volume create body (`volume.CreateOptions`).
#[derive(Debug, Default)]
pub(crate) struct VolumeBody<'a> {
    pub(crate) name: Option<String>,
    pub(crate) driver_opts: Option<Vec<(String, String)>>,
    pub(crate) labels: Option<Vec<(String, String)>>,
    pub(crate) rest: Members<'a>,
}

impl<'a> GoStruct<'a> for VolumeBody<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        match json::field_of(key, &["Name", "DriverOpts", "Labels"])? {
            Some("Name") => json::string(raw, &mut self.name, "Name")?,
            Some("DriverOpts") => json::string_map(raw, &mut self.driver_opts, "DriverOpts")?,
            Some(_) => json::string_map(raw, &mut self.labels, "Labels")?,
            None => return Ok(false),
        }
        Ok(true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

impl VolumeBody<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.string_map("DriverOpts", self.driver_opts.as_ref());
        w.str("Name", self.name.as_ref());
        w.string_map("Labels", self.labels.as_ref());
        w.rest(&self.rest);
        w.end();
    }
}

/// A network create body (`network.CreateRequest`): its name and labels.
#[derive(Debug, Default)]
pub(crate) struct NetworkBody<'a> {
    pub(crate) name: Option<String>,
    pub(crate) labels: Option<Vec<(String, String)>>,
    pub(crate) rest: Members<'a>,
}

impl<'a> GoStruct<'a> for NetworkBody<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        match json::field_of(key, &["Name", "Labels"])? {
            Some("Name") => json::string(raw, &mut self.name, "Name")?,
            Some(_) => json::string_map(raw, &mut self.labels, "Labels")?,
            None => return Ok(false),
        }
        Ok(true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

impl NetworkBody<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.str("Name", self.name.as_ref());
        w.string_map("Labels", self.labels.as_ref());
        w.rest(&self.rest);
        w.end();
    }
}

/// A network connect or disconnect body: the container it names.
#[derive(Debug, Default)]
pub(crate) struct ConnectBody<'a> {
    pub(crate) container: Option<String>,
    /// `EndpointConfig` (`*EndpointSettings`: a second one merges into the first).
    pub(crate) endpoint: Option<Endpoint<'a>>,
    pub(crate) rest: Members<'a>,
}

impl<'a> GoStruct<'a> for ConnectBody<'a> {
    fn field(&mut self, key: &str, raw: Raw<'a>) -> Result<bool, String> {
        match json::field_of(key, &["Container", "EndpointConfig"])? {
            Some("Container") => json::string(raw, &mut self.container, "Container")?,
            Some(_) => json::pointer(raw, &mut self.endpoint, "EndpointConfig")?,
            None => return Ok(false),
        }
        Ok(true)
    }

    fn rest(&mut self) -> &mut Members<'a> {
        &mut self.rest
    }
}

impl ConnectBody<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.str("Container", self.container.as_ref());
        if let Some(e) = &self.endpoint {
            e.encode(w.key("EndpointConfig"));
        }
        w.rest(&self.rest);
        w.end();
    }
}

/// A body decoded for one kind of request.
#[derive(Debug)]
pub(crate) enum Model<'a> {
    /// An old-API start without a body (the usual start).
    Empty,
    Create(Box<CreateBody<'a>>),
    Update(Box<UpdateBody<'a>>),
    Exec(ExecBody<'a>),
    Volume(VolumeBody<'a>),
    Network(NetworkBody<'a>),
    Connect(ConnectBody<'a>),
}

impl<'a> Model<'a> {
    /// Decodes a whole document into `T`.
    pub(crate) fn decode<T: GoStruct<'a>>(raw: Raw<'a>) -> Result<T, String> {
        match json::value(raw)? {
            Value::Object(members) => {
                let mut t = T::default();
                json::members_into(&mut t, members)?;
                Ok(t)
            }
            other => Err(format!("the body is {}, not an object", other.kind())),
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Empty => {}
            Self::Create(b) => b.encode(out),
            Self::Update(b) => b.encode(out),
            Self::Exec(b) => b.encode(out),
            Self::Volume(b) => b.encode(out),
            Self::Network(b) => b.encode(out),
            Self::Connect(b) => b.encode(out),
        }
    }
}
