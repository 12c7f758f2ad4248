//! `berth.toml`: parsed strictly (unknown keys are errors that name the key and line),
//! merged with command-line flags (flags win), validated, and turned into what each
//! crate needs. No file at the default path means the embedded default: one managed
//! machine named `default`.
//!
//! ```toml
//! hosts = ["unix:///run/berth/docker.sock"]   # like dockerd's -H
//! state_dir = "/var/lib/berth"
//!
//! [[machines]]
//! name = "default"
//! kind = "managed"                 # berth runs dockerd itself
//!
//! [[machines]]
//! name = "other"
//! kind = "external"                # an engine berth does not run
//! endpoint = "unix:///var/run/docker.sock"
//!
//! [[machines]]
//! name = "remote"
//! kind = "external"
//! endpoint = "tcp://10.0.0.5:2376" # mutual TLS, as `docker --tlsverify -H`
//! tlsverify = true
//! tls = "/etc/berth/certs/remote"  # ca.pem, cert.pem, key.pem (DOCKER_CERT_PATH layout)
//!
//! [[machines]]
//! name = "far"
//! kind = "external"
//! endpoint = "ssh://core@10.0.0.6" # one SSH connection, a channel per API connection
//! identity_file = "/etc/berth/ssh/id_ed25519"
//! known_hosts = "/etc/berth/ssh/known_hosts"
//!
//! [[machines]]
//! name = "vm"
//! kind = "vm"                      # dockerd in a QEMU guest with its own kernel
//! cpus = 2
//! memory = "1GiB"
//! disk_size = "16GiB"
//! shares = ["/home/me/src"]        # bind-mountable host directories (9p)
//! # machine_type = "q35"           # default: microvm where it works, q35 otherwise
//! # liveness_timeout = "60s"       # no /_ping answer this long while it runs: restarted
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::Deserialize;

use crate::cmd::UsageError;

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Sockets to listen on, as dockerd's `-H`.
    #[serde(default)]
    pub(crate) hosts: Vec<String>,
    /// Where managed machines keep their data.
    pub(crate) state_dir: Option<PathBuf>,
    /// Group that owns the Unix sockets (name or gid), as dockerd's `--group`.
    pub(crate) group: Option<String>,
    /// Serve TLS on TCP listeners.
    #[serde(default)]
    pub(crate) tls: bool,
    /// Serve TLS and require client certificates signed by `tlscacert`.
    #[serde(default)]
    pub(crate) tlsverify: bool,
    /// CA bundle that client certificates must chain to.
    pub(crate) tlscacert: Option<PathBuf>,
    /// Server certificate (PEM).
    pub(crate) tlscert: Option<PathBuf>,
    /// Server private key (PEM).
    pub(crate) tlskey: Option<PathBuf>,
    /// JSON-lines audit log of every mutating request.
    pub(crate) audit_log: Option<PathBuf>,
    /// Rotate the audit log past this many bytes (default 10 MiB).
    pub(crate) audit_log_max_bytes: Option<u64>,
    /// Allow TCP listeners without TLS (anyone who reaches the port is root on the host).
    #[serde(default)]
    pub(crate) insecure: bool,
    /// Seconds allowed to open a connection to an engine.
    pub(crate) connect_timeout: Option<f64>,
    /// Seconds allowed for an engine's readiness ping.
    pub(crate) verify_timeout: Option<f64>,
    /// Seconds allowed for the response head of quick reads (0 disables).
    pub(crate) head_timeout: Option<f64>,
    /// Seconds in-flight requests may run on after SIGINT/SIGTERM.
    pub(crate) shutdown_timeout: Option<f64>,
    /// Serve Prometheus metrics on this address (`127.0.0.1:9323`, as dockerd's).
    pub(crate) metrics_addr: Option<String>,
    /// The engines behind the socket.
    #[serde(default)]
    pub(crate) machines: Vec<MachineEntry>,
    /// The access policy: a policy file, or an inline `[policy]` table.
    pub(crate) policy: Option<PolicySetting>,
    /// Where creates that name no platform and no owner go when nothing ties them to
    /// a machine: `default` (the default machine) or `spread` (the least loaded).
    #[serde(default)]
    pub(crate) placement: Placement,
    /// Tenants: clients that each see and touch only their own world on the engine.
    #[serde(default)]
    pub(crate) tenants: Vec<TenantEntry>,
    /// What a client that belongs to no tenant is: `admin` (default) or `refuse`.
    pub(crate) untenanted: Option<UntenantedSetting>,
    /// Images every tenant may use (`"*"`: all the engine has).
    #[serde(default)]
    pub(crate) shared_images: Vec<String>,
}

/// `placement = "default" | "spread"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Placement {
    /// Untied creates go to the default machine (berth's behaviour before placement).
    #[default]
    Default,
    /// Untied creates go to the machine with the fewest running containers.
    Spread,
}

/// `untenanted = "admin" | "refuse"`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UntenantedSetting {
    Admin,
    Refuse,
}

/// One `[[tenants]]` table (also a tenant added at run time, as berth keeps it).
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantEntry {
    pub(crate) name: String,
    /// `uid:N`, `gid:N`, `tls:SUBJECT`.
    #[serde(default)]
    pub(crate) clients: Vec<String>,
    /// A socket of the tenant's own: every client of it is the tenant.
    pub(crate) socket: Option<PathBuf>,
    /// Containers the tenant may have, whatever their state.
    pub(crate) max_containers: Option<u64>,
    /// Containers the tenant may have running.
    pub(crate) max_running: Option<u64>,
    /// Memory limit of a container that asks for none (`"512m"`, or bytes).
    pub(crate) default_memory: Option<MemorySize>,
    /// The largest memory limit a container may have.
    pub(crate) max_memory: Option<MemorySize>,
    /// CPUs of a container that asks for none (`1.5`).
    pub(crate) default_cpus: Option<f64>,
    /// The most CPUs a container may have.
    pub(crate) max_cpus: Option<f64>,
}

/// A memory size as docker writes it (`512m`, `2g`, binary units) or a number of bytes.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub(crate) enum MemorySize {
    Bytes(i64),
    Text(String),
}

impl MemorySize {
    pub(crate) fn bytes(&self) -> std::result::Result<i64, String> {
        let text = match self {
            Self::Bytes(n) if *n > 0 => return Ok(*n),
            Self::Bytes(n) => return Err(format!("{n} is not a memory size")),
            Self::Text(t) => t.trim().to_ascii_lowercase(),
        };
        let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &text[digits.len()..];
        let scale: i64 = match unit {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            _ => return Err(format!("{text:?}: unknown unit (b, k, m, g)")),
        };
        match digits.trim().parse::<f64>() {
            Ok(n) if n > 0.0 => Ok((n * scale as f64) as i64),
            _ => Err(format!("{text:?} is not a memory size")),
        }
    }
}

impl TenantEntry {
    /// The gateway's tenant.
    pub(crate) fn tenant(&self) -> std::result::Result<berth_gateway::Tenant, String> {
        let clients = self
            .clients
            .iter()
            .map(|c| berth_gateway::TenantClient::parse(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if clients.is_empty() && self.socket.is_none() {
            return Err(format!(
                "tenant {:?} has neither clients nor a socket",
                self.name
            ));
        }
        if self.socket.as_ref().is_some_and(|s| !s.is_absolute()) {
            return Err("socket: must be an absolute path".into());
        }
        let memory = |m: &Option<MemorySize>, key: &str| {
            m.as_ref()
                .map(MemorySize::bytes)
                .transpose()
                .map_err(|e| format!("{key}: {e}"))
        };
        let cpus = |c: Option<f64>, key: &str| match c {
            Some(c) if c.is_finite() && c > 0.0 => Ok(Some((c * 1e9) as i64)),
            Some(c) => Err(format!("{key}: {c} is not a number of CPUs")),
            None => Ok(None),
        };
        let quotas = berth_gateway::Quotas {
            max_containers: self.max_containers,
            max_running: self.max_running,
            default_memory: memory(&self.default_memory, "default_memory")?,
            max_memory: memory(&self.max_memory, "max_memory")?,
            default_nano_cpus: cpus(self.default_cpus, "default_cpus")?,
            max_nano_cpus: cpus(self.max_cpus, "max_cpus")?,
        };
        Ok(
            berth_gateway::Tenant::new(&self.name, clients, self.socket.clone())?
                .with_quotas(quotas),
        )
    }
}

/// `policy = "file.toml"` (relative to this file) or `[policy]` (docs/config.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PolicySetting {
    /// A policy file.
    Path(PathBuf),
    /// The policy itself (validated by `berth_policy` when berth starts).
    Inline(toml::Table),
}

/// One `[[machines]]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MachineEntry {
    /// `[a-z0-9-]{1,20}`.
    pub(crate) name: String,
    /// Who runs the engine.
    pub(crate) kind: MachineKind,
    /// `external`: where the engine listens (`unix:///path` or `tcp://host:port`).
    pub(crate) endpoint: Option<String>,
    /// `managed`: the dockerd binary.
    pub(crate) dockerd: Option<PathBuf>,
    /// `managed`: extra dockerd arguments.
    #[serde(default)]
    pub(crate) dockerd_args: Vec<String>,
    /// The machine for requests that name no platform (the first one if none says so).
    #[serde(default)]
    pub(crate) default: bool,
    /// The platforms this machine serves (`linux/arm64`, ...): creation requests naming
    /// one of them go to it (several machines behind one socket).
    #[serde(default)]
    pub(crate) platforms: Vec<String>,
    /// Host prefix → engine prefix, for engines that see host files under other paths;
    /// with any mapping set, bind sources outside every mapping are refused.
    #[serde(default)]
    pub(crate) path_mappings: Vec<PathMapping>,
    /// `managed`: stop the engine after this long (`90s`, `10m`, `1h`) with no running
    /// container and no open attach/exec/upload; the next request starts it again.
    pub(crate) idle_stop: Option<String>,
    /// `managed`/`vm`: a running engine that leaves `GET /_ping` unanswered this long
    /// (`60s`, `2m`; `off`) while its process runs is wedged: killed and restarted.
    pub(crate) liveness_timeout: Option<String>,
    /// `tcp://` with TLS: verify the engine's certificate (the docker client's
    /// `--tlsverify`; berth never speaks TLS to an engine without verifying it).
    #[serde(default)]
    pub(crate) tlsverify: bool,
    /// `tcp://` with TLS: the CA the engine's certificate must chain to.
    pub(crate) tlscacert: Option<PathBuf>,
    /// `tcp://` with TLS: berth's client certificate.
    pub(crate) tlscert: Option<PathBuf>,
    /// `tcp://` with TLS: its private key.
    pub(crate) tlskey: Option<PathBuf>,
    /// `tcp://` with TLS: a directory holding `ca.pem`, `cert.pem`, `key.pem` (the layout
    /// of `DOCKER_CERT_PATH` and `~/.docker/machine/certs`); the keys above override it.
    pub(crate) tls: Option<PathBuf>,
    /// `ssh://`: the private key to log in with (ssh's defaults otherwise).
    pub(crate) identity_file: Option<PathBuf>,
    /// `ssh://`: the host keys accepted (ssh's `~/.ssh/known_hosts` otherwise); an
    /// unknown or changed host key is refused, never learned.
    pub(crate) known_hosts: Option<PathBuf>,
    /// `ssh://`: the engine's socket on the remote host (default `/var/run/docker.sock`).
    pub(crate) remote_socket: Option<PathBuf>,
    /// `ssh://`: open each API connection as `docker system dial-stdio` on the remote
    /// host instead of forwarding its socket (when the socket cannot be forwarded).
    #[serde(default)]
    pub(crate) dial_stdio: bool,
    /// `vm`: virtual CPUs (default 2).
    pub(crate) cpus: Option<u32>,
    /// `vm`: guest memory, a size like `"1GiB"` or `"512MiB"` (default 1 GiB).
    pub(crate) memory: Option<String>,
    /// `vm`: size of the disk image holding Docker's data (sparse; default 16 GiB).
    pub(crate) disk_size: Option<String>,
    /// `vm`: host directories shared into the guest at the same paths: the only bind
    /// mount sources its containers may use.
    #[serde(default)]
    pub(crate) shares: Vec<PathBuf>,
    /// `vm`: QEMU's machine type, `"microvm"` or `"q35"` (default: microvm where this
    /// QEMU has it and it starts, q35 otherwise).
    pub(crate) machine_type: Option<String>,
}

impl MachineEntry {
    /// The TLS files of a `tcp://` machine with `tlsverify` (validated with the file).
    pub(crate) fn tls_files(
        &self,
    ) -> std::result::Result<Option<berth_guest::tls::TlsFiles>, String> {
        let any = self.tls.is_some()
            || self.tlscacert.is_some()
            || self.tlscert.is_some()
            || self.tlskey.is_some();
        if !self.tlsverify {
            return if any {
                Err("tlsverify: TLS settings without tlsverify = true (berth always verifies a remote engine's certificate)".into())
            } else {
                Ok(None)
            };
        }
        let from_dir = self.tls.as_deref().map(berth_guest::tls::TlsFiles::in_dir);
        let pick = |key: &str, explicit: &Option<PathBuf>, in_dir: Option<PathBuf>| {
            explicit.clone().or(in_dir).ok_or_else(|| {
                format!("{key}: tlsverify needs tlscacert, tlscert and tlskey (or a tls directory)")
            })
        };
        Ok(Some(berth_guest::tls::TlsFiles {
            ca: pick(
                "tlscacert",
                &self.tlscacert,
                from_dir.as_ref().map(|d| d.ca.clone()),
            )?,
            cert: pick(
                "tlscert",
                &self.tlscert,
                from_dir.as_ref().map(|d| d.cert.clone()),
            )?,
            key: pick("tlskey", &self.tlskey, from_dir.map(|d| d.key))?,
        }))
    }
}

/// One `path_mappings` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PathMapping {
    /// An absolute host path prefix.
    pub(crate) host: PathBuf,
    /// Where the engine sees it.
    pub(crate) guest: PathBuf,
}

/// Who runs a machine's engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MachineKind {
    /// berth starts and supervises dockerd.
    #[default]
    Managed,
    /// berth starts and supervises a QEMU virtual machine that runs dockerd.
    Vm,
    /// Someone else runs it; berth only connects.
    External,
}

impl FileConfig {
    /// Reads the configuration: `explicit` must exist; the default path may be absent.
    pub(crate) fn load(explicit: Option<&Path>) -> Result<Self> {
        let (path, required) = match explicit {
            Some(p) => (p.to_owned(), true),
            None => (default_config_path(), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(e) => {
                return Err(UsageError(format!("reading {}: {e}", path.display())).into());
            }
        };
        Self::parse(&text, &path)
    }

    /// Parses and validates a configuration text; `path` only names it in errors.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| {
            // toml's message already names the key, line and column.
            UsageError(format!("invalid configuration {}: {e}", path.display()))
        })?;
        config
            .validate()
            .map_err(|e| UsageError(format!("invalid configuration {}: {e}", path.display())))?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.machines.iter().enumerate() {
            let at = format!("machines[{i}]");
            if !valid_machine_name(&m.name) {
                return Err(format!(
                    "{at}.name: {:?} must be 1 to 20 of a-z, 0-9 and -",
                    m.name
                ));
            }
            if !names.insert(m.name.as_str()) {
                return Err(format!("{at}.name: machine {:?} is defined twice", m.name));
            }
            match m.kind {
                MachineKind::External => {
                    let Some(endpoint) = &m.endpoint else {
                        return Err(format!(
                            "{at}.endpoint: an external machine needs an endpoint"
                        ));
                    };
                    let endpoint = endpoint
                        .parse::<berth_guest::GuestEndpoint>()
                        .map_err(|e| format!("{at}.endpoint: {e}"))?;
                    validate_transport(m, &endpoint).map_err(|e| format!("{at}.{e}"))?;
                    if m.dockerd.is_some() || !m.dockerd_args.is_empty() {
                        return Err(format!(
                            "{at}: dockerd settings only apply to managed machines"
                        ));
                    }
                }
                MachineKind::Managed | MachineKind::Vm => {
                    if m.endpoint.is_some() {
                        return Err(format!(
                            "{at}.endpoint: a managed machine's endpoint is chosen by berth"
                        ));
                    }
                }
            }
            validate_vm(m).map_err(|e| format!("{at}{e}"))?;
        }
        for (i, m) in self.machines.iter().enumerate() {
            for (j, p) in m.path_mappings.iter().enumerate() {
                if !p.host.is_absolute() || !p.guest.is_absolute() {
                    return Err(format!(
                        "machines[{i}].path_mappings[{j}]: host and guest must be absolute paths"
                    ));
                }
            }
        }
        for (i, m) in self.machines.iter().enumerate() {
            for (j, p) in m.platforms.iter().enumerate() {
                if let Err(e) = berth_gateway::route::Platform::parse(p) {
                    return Err(format!("machines[{i}].platforms[{j}]: {e}"));
                }
            }
        }
        for (i, m) in self.machines.iter().enumerate() {
            if let Some(text) = &m.idle_stop {
                if m.kind == MachineKind::External {
                    return Err(format!(
                        "machines[{i}].idle_stop: applies to managed machines only"
                    ));
                }
                crate::machines::parse_idle_stop(text).map_err(|e| format!("machines[{i}].{e}"))?;
            }
            if let Some(text) = &m.liveness_timeout {
                if m.kind == MachineKind::External {
                    return Err(format!(
                        "machines[{i}].liveness_timeout: applies to managed machines only"
                    ));
                }
                parse_liveness_timeout(text).map_err(|e| format!("machines[{i}].{e}"))?;
            }
        }
        let set = berth_gateway::TenantSet::new(
            Vec::new(),
            berth_gateway::Untenanted::Admin,
            Vec::new(),
            Vec::new(),
        );
        for (i, t) in self.tenants.iter().enumerate() {
            let tenant = t.tenant().map_err(|e| format!("tenants[{i}]: {e}"))?;
            set.add(tenant).map_err(|e| format!("tenants[{i}]: {e}"))?;
        }
        if self.machines.iter().filter(|m| m.default).count() > 1 {
            return Err("machines: more than one machine says default = true".into());
        }
        for (key, v) in [
            ("connect_timeout", self.connect_timeout),
            ("verify_timeout", self.verify_timeout),
            ("head_timeout", self.head_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ] {
            if v.is_some_and(|s| !(s.is_finite() && s >= 0.0)) {
                return Err(format!("{key}: must be a number of seconds"));
            }
        }
        Ok(())
    }
}

/// TLS keys belong to `tcp://` machines, SSH keys to `ssh://` ones.
fn validate_transport(
    m: &MachineEntry,
    endpoint: &berth_guest::GuestEndpoint,
) -> std::result::Result<(), String> {
    use berth_guest::GuestEndpoint as E;
    let tls_keys = m.tlsverify
        || m.tls.is_some()
        || m.tlscacert.is_some()
        || m.tlscert.is_some()
        || m.tlskey.is_some();
    let ssh_keys = m.identity_file.is_some()
        || m.known_hosts.is_some()
        || m.remote_socket.is_some()
        || m.dial_stdio;
    if tls_keys && !matches!(endpoint, E::Tcp(_)) {
        return Err("tlsverify: TLS settings apply to tcp:// endpoints only".into());
    }
    if ssh_keys && !matches!(endpoint, E::Ssh(_)) {
        return Err(
            "identity_file: identity_file, known_hosts, remote_socket and dial_stdio apply to ssh:// endpoints only"
                .into(),
        );
    }
    if let Some(socket) = &m.remote_socket {
        if !socket.is_absolute() {
            return Err("remote_socket: must be an absolute path".into());
        }
    }
    m.tls_files().map(|_| ())
}

/// The `vm` keys: only on vm machines, and valid there. Errors start with the key
/// (`.memory: …`, or `: …` for the table).
fn validate_vm(m: &MachineEntry) -> std::result::Result<(), String> {
    if m.kind != MachineKind::Vm {
        if m.cpus.is_some()
            || m.memory.is_some()
            || m.disk_size.is_some()
            || !m.shares.is_empty()
            || m.machine_type.is_some()
        {
            return Err(
                ": cpus, memory, disk_size, shares and machine_type apply to vm machines only"
                    .into(),
            );
        }
        return Ok(());
    }
    if m.dockerd.is_some() || !m.dockerd_args.is_empty() {
        return Err(
            ": dockerd settings do not apply to a vm machine (its dockerd is the guest's)".into(),
        );
    }
    if !m.path_mappings.is_empty() {
        return Err(".path_mappings: a vm machine sees its shares at the host's paths".into());
    }
    if m.cpus == Some(0) {
        return Err(".cpus: must be at least 1".into());
    }
    for (key, v) in [("memory", &m.memory), ("disk_size", &m.disk_size)] {
        if let Some(text) = v {
            parse_size_mib(text).map_err(|e| format!(".{key}: {e}"))?;
        }
    }
    if let Some(text) = &m.machine_type {
        text.parse::<berth_engine::MachineType>()
            .map_err(|e| format!(".machine_type: {e}"))?;
    }
    for (j, share) in m.shares.iter().enumerate() {
        let text = share.to_string_lossy();
        if !share.is_absolute() || text.contains([' ', ',', '\t', '\n']) {
            return Err(format!(
                ".shares[{j}]: {text:?} must be an absolute path without spaces or commas"
            ));
        }
    }
    Ok(())
}

/// `liveness_timeout`: a duration like `idle_stop`'s, or `off` (`None`).
pub(crate) fn parse_liveness_timeout(text: &str) -> std::result::Result<Option<Duration>, String> {
    match text.trim() {
        "off" => Ok(None),
        text => parse_duration("liveness_timeout", text).map(Some),
    }
}

/// A `key`'s duration: one number, one unit (`ms`, `s`, `m`, `h`), at least one second.
pub(crate) fn parse_duration(key: &str, text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{key}: {text:?} is not a duration like \"10m\""))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{key}: {text:?} needs a unit: ms, s, m or h (\"10m\")"
            ))
        }
    };
    if duration < Duration::from_secs(1) {
        return Err(format!("{key}: {text:?} is shorter than one second"));
    }
    Ok(duration)
}

/// A size like `"1GiB"`, `"512MiB"`, `"2G"` (binary units) in MiB, at least 1 MiB.
pub(crate) fn parse_size_mib(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a size like \"1GiB\" or \"512MiB\""))?;
    let mib = match unit.trim() {
        "MiB" | "M" | "MB" => Some(n),
        "GiB" | "G" | "GB" => n.checked_mul(1024),
        "TiB" | "T" | "TB" => n.checked_mul(1024 * 1024),
        _ => {
            return Err(format!(
                "{text:?}: expected a size like \"1GiB\" or \"512MiB\""
            ))
        }
    };
    match mib {
        Some(m) if m > 0 => Ok(m),
        _ => Err(format!("{text:?}: out of range")),
    }
}

fn valid_machine_name(name: &str) -> bool {
    (1..=20).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// `/etc/berth/berth.toml` as root, `$XDG_CONFIG_HOME/berth/berth.toml` otherwise.
pub(crate) fn default_config_path() -> PathBuf {
    if is_root() {
        return PathBuf::from("/etc/berth/berth.toml");
    }
    std::env::var_os("XDG_CONFIG_HOME")
        .map_or_else(|| home().join(".config"), PathBuf::from)
        .join("berth/berth.toml")
}

/// `/var/lib/berth` as root, `$XDG_STATE_HOME/berth` otherwise.
pub(crate) fn default_state_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/berth");
    }
    std::env::var_os("XDG_STATE_HOME")
        .map_or_else(|| home().join(".local/state"), PathBuf::from)
        .join("berth")
}

/// `/run/berth/docker.sock` as root, `$XDG_RUNTIME_DIR/berth/docker.sock` otherwise.
pub(crate) fn default_socket() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/berth/docker.sock");
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("berth-{}", nix::unistd::getuid())))
        .join("berth/docker.sock")
}

/// The path of a `unix://` host, or a usage error.
pub(crate) fn unix_host_path(host: &str) -> Result<PathBuf> {
    host.strip_prefix("unix://")
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .ok_or_else(|| UsageError(format!("-H {host}: expected unix:///absolute/path")).into())
}

/// A listener address from `-H`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostAddr {
    Unix(PathBuf),
    Tcp(String),
    /// Sockets handed over by the service manager (`fd://`, `fd://N`, `fd://NAME`).
    Fd(String),
}

/// Parses `unix:///path`, `tcp://host:port` or `fd://[N|NAME]`.
pub(crate) fn parse_host(host: &str) -> Result<HostAddr> {
    if let Some(selector) = host.strip_prefix("fd://") {
        return Ok(HostAddr::Fd(selector.to_owned()));
    }
    if let Some(addr) = host.strip_prefix("tcp://") {
        let addr = addr.trim_end_matches('/');
        if addr
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            return Ok(HostAddr::Tcp(addr.to_owned()));
        }
        return Err(UsageError(format!("-H {host}: expected tcp://host:port")).into());
    }
    unix_host_path(host).map(HostAddr::Unix).map_err(|_| {
        UsageError(format!(
            "-H {host}: expected unix:///absolute/path, tcp://host:port or fd://"
        ))
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<FileConfig, String> {
        FileConfig::parse(text, Path::new("berth.toml")).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn the_documented_example_parses() {
        let c = parse(
            r#"
hosts = ["unix:///run/berth/docker.sock"]
state_dir = "/var/lib/berth"

[[machines]]
name = "default"
kind = "managed"
dockerd = "/usr/sbin/dockerd"
dockerd_args = ["--storage-driver", "overlay2"]

[[machines]]
name = "other"
kind = "external"
endpoint = "unix:///var/run/docker.sock"
"#,
        )
        .unwrap();
        assert_eq!(c.machines.len(), 2);
        assert_eq!(c.machines[1].kind, MachineKind::External);
    }

    #[test]
    fn vm_machines_take_cpus_memory_disk_size_and_shares() {
        let c = parse(
            "[[machines]]\nname = \"vm\"\nkind = \"vm\"\ncpus = 4\nmemory = \"512MiB\"\n\
             disk_size = \"2GiB\"\nshares = [\"/srv/src\"]\n",
        )
        .unwrap();
        assert_eq!(c.machines[0].kind, MachineKind::Vm);
        assert_eq!(c.machines[0].cpus, Some(4));
        assert_eq!(parse_size_mib("512MiB"), Ok(512));
        assert_eq!(parse_size_mib("1GiB"), Ok(1024));
        assert_eq!(parse_size_mib("2G"), Ok(2048));
        assert!(parse_size_mib("1.5GiB").is_err());
        assert!(parse_size_mib("0MiB").is_err());
        assert!(parse_size_mib("12 parsecs").is_err());
        let e =
            parse("[[machines]]\nname = \"v\"\nkind = \"vm\"\nmemory = \"lots\"\n").unwrap_err();
        assert!(e.contains("machines[0].memory"), "{e}");
        let e =
            parse("[[machines]]\nname = \"v\"\nkind = \"vm\"\nshares = [\"rel\"]\n").unwrap_err();
        assert!(e.contains("machines[0].shares[0]"), "{e}");
        let e = parse("[[machines]]\nname = \"m\"\nkind = \"managed\"\ncpus = 2\n").unwrap_err();
        assert!(e.contains("vm machines only"), "{e}");
    }

    #[test]
    fn vm_machines_take_microvm_or_q35_as_machine_type() {
        let c =
            parse("[[machines]]\nname = \"v\"\nkind = \"vm\"\nmachine_type = \"q35\"\n").unwrap();
        assert_eq!(c.machines[0].machine_type.as_deref(), Some("q35"));
        let e = parse("[[machines]]\nname = \"v\"\nkind = \"vm\"\nmachine_type = \"pc\"\n")
            .unwrap_err();
        assert!(e.contains("machines[0].machine_type"), "{e}");
        assert!(e.contains("\"microvm\" or \"q35\""), "{e}");
        let e = parse("[[machines]]\nname = \"m\"\nkind = \"managed\"\nmachine_type = \"q35\"\n")
            .unwrap_err();
        assert!(e.contains("vm machines only"), "{e}");
    }

    #[test]
    fn liveness_timeout_is_a_duration_or_off_for_managed_machines() {
        assert_eq!(
            parse_liveness_timeout("2m"),
            Ok(Some(Duration::from_secs(120)))
        );
        assert_eq!(parse_liveness_timeout(" off "), Ok(None));
        for bad in ["60", "0s", "soon"] {
            let e = parse_liveness_timeout(bad).unwrap_err();
            assert!(e.starts_with("liveness_timeout: "), "{e}");
        }
        let c = parse("[[machines]]\nname = \"v\"\nkind = \"vm\"\nliveness_timeout = \"90s\"\n")
            .unwrap();
        assert_eq!(c.machines[0].liveness_timeout.as_deref(), Some("90s"));
        let e = parse("[[machines]]\nname = \"m\"\nkind = \"managed\"\nliveness_timeout = \"9\"\n")
            .unwrap_err();
        assert!(e.contains("machines[0].liveness_timeout"), "{e}");
        let e = parse("[[machines]]\nname = \"x\"\nkind = \"external\"\nendpoint = \"unix:///x.sock\"\nliveness_timeout = \"9s\"\n")
            .unwrap_err();
        assert!(e.contains("managed machines only"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = parse(
            "hosts = []\n\n[[machines]]\nname = \"a\"\nkind = \"managed\"\ndockerd_argz = []\n",
        )
        .unwrap_err();
        assert!(e.contains("dockerd_argz"), "{e}");
        assert!(e.contains("line 6"), "{e}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let e = parse("[[machines]]\nname = \"x\"\nkind = \"external\"\n").unwrap_err();
        assert!(e.contains("machines[0].endpoint"), "{e}");
        let e = parse("[[machines]]\nname = \"Bad Name\"\nkind = \"managed\"\n").unwrap_err();
        assert!(e.contains("machines[0].name"), "{e}");
        let e = parse("[[machines]]\nname = \"x\"\nkind = \"vmm\"\n").unwrap_err();
        assert!(e.contains("kind"), "{e}");
        let e = parse("connect_timeout = -1\n").unwrap_err();
        assert!(e.contains("connect_timeout"), "{e}");
    }

    #[test]
    fn remote_machines_take_the_docker_clients_tls_names_and_ssh_keys() {
        let c = parse(
            r#"
placement = "spread"

[[machines]]
name = "tls"
kind = "external"
endpoint = "tcp://10.0.0.5:2376"
tlsverify = true
tls = "/certs"
tlskey = "/elsewhere/key.pem"

[[machines]]
name = "far"
kind = "external"
endpoint = "ssh://core@10.0.0.6:2222"
identity_file = "/k/id"
known_hosts = "/k/known_hosts"
"#,
        )
        .unwrap();
        assert_eq!(c.placement, Placement::Spread);
        let files = c.machines[0].tls_files().unwrap().unwrap();
        assert_eq!(files.ca, Path::new("/certs/ca.pem"));
        assert_eq!(files.cert, Path::new("/certs/cert.pem"));
        assert_eq!(files.key, Path::new("/elsewhere/key.pem"));
        assert_eq!(c.machines[1].tls_files().unwrap(), None);

        let tcp = "[[machines]]\nname = \"x\"\nkind = \"external\"\nendpoint = \"tcp://h:2376\"\n";
        let e = parse(&format!("{tcp}tlscacert = \"/ca.pem\"\n")).unwrap_err();
        assert!(
            e.contains("machines[0].tlsverify") && e.contains("always verifies"),
            "{e}"
        );
        let e = parse(&format!("{tcp}tlsverify = true\ntlscacert = \"/ca.pem\"\n")).unwrap_err();
        assert!(e.contains("machines[0].tlscert"), "{e}");
        let e = parse(&format!("{tcp}known_hosts = \"/k\"\n")).unwrap_err();
        assert!(e.contains("ssh:// endpoints only"), "{e}");
        let e = parse(
            "[[machines]]\nname = \"x\"\nkind = \"external\"\nendpoint = \"ssh://h\"\ntlsverify = true\n",
        )
        .unwrap_err();
        assert!(e.contains("tcp:// endpoints only"), "{e}");
        let e = parse("placement = \"random\"\n").unwrap_err();
        assert!(e.contains("placement"), "{e}");
    }
}
