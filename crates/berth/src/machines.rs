//! The machines behind the socket, as the daemon holds them: each has a `Guest` for the
//! request path and, when berth runs its engine, an `EngineSupervisor`.

mod idle;

pub(crate) use idle::parse_idle_stop;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_engine::{EngineSupervisor, MachineConfig, MachineState, VmConfig};
use berth_gateway::guest::HealthState;
use berth_gateway::{
    EngineLifecycle, Guest, GuestOptions, GuestTimeouts, PathTranslator, PortPublisher,
    ServiceError,
};
use berth_guest::ssh::{SshSettings, SshTunnel};
use berth_guest::tls::TlsClient;
use berth_guest::{GuestConnector, GuestEndpoint};
use berth_host::{GuestNet, PortForwarder, PortSync};
use serde::Serialize;

use crate::cmd::UsageError;
use crate::config::{MachineEntry, MachineKind};

/// How often machines berth does not run are pinged.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// One machine.
#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) name: String,
    pub(crate) guest: Arc<Guest>,
    /// Set when berth runs this machine's dockerd.
    pub(crate) supervisor: Option<Arc<EngineSupervisor>>,
    /// A managed machine's own directory (data, logs, socket).
    pub(crate) state_dir: Option<std::path::PathBuf>,
    /// A managed machine's published ports, brought from its network namespace to the host.
    pub(crate) ports: Option<PortForwarder>,
    /// A managed machine's `idle_stop`: its engine stops after this long idle.
    pub(crate) idle_stop: Option<Duration>,
}

/// All machines; the default one first.
#[derive(Debug)]
pub(crate) struct MachineSet {
    pub(crate) machines: Vec<Machine>,
}

impl MachineSet {
    /// Builds machines from configuration entries (the default one is put first).
    pub(crate) fn build(
        entries: &[MachineEntry],
        state_dir: &std::path::Path,
        timeouts: GuestTimeouts,
    ) -> Result<Self> {
        let mut entries = entries.to_vec();
        if let Some(i) = entries.iter().position(|m| m.default) {
            entries.swap(0, i);
        }
        let mut machines = Vec::new();
        for entry in &entries {
            machines.push(build_machine(entry, state_dir, timeouts)?);
        }
        Ok(Self { machines })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }

    pub(crate) fn guests(&self) -> Vec<Arc<Guest>> {
        self.machines.iter().map(|m| Arc::clone(&m.guest)).collect()
    }

    /// Starts, in the background, the managed machines that were running when berth
    /// last stopped, so containers with restart policies come back as on a plain host.
    pub(crate) fn resume(&self) {
        for machine in &self.machines {
            if let Some(sup) = &machine.supervisor {
                if sup.was_running_at_last_shutdown() {
                    let sup = Arc::clone(sup);
                    let name = machine.name.clone();
                    tokio::spawn(async move {
                        tracing::info!(machine = %name, "resuming machine that was running at last shutdown");
                        if let Err(e) = sup.ensure_running().await {
                            tracing::warn!(machine = %name, error = %e, "resuming failed");
                        }
                    });
                }
            }
        }
    }

    /// Keeps every machine's forwards in step with its engine's events until `stop`.
    pub(crate) fn sync_ports(&self, stop: &tokio::sync::watch::Receiver<bool>) {
        for machine in &self.machines {
            if let Some(ports) = &machine.ports {
                let mut stop = stop.clone();
                tokio::spawn(PortSync::run(
                    ports.clone(),
                    machine.guest.connector().clone(),
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                ));
            }
        }
    }

    /// Stops managed engines that stay idle for their `idle_stop`, until `stop`.
    pub(crate) fn stop_idle(&self, stop: &tokio::sync::watch::Receiver<bool>) {
        for machine in &self.machines {
            let (Some(after), Some(supervisor)) = (machine.idle_stop, &machine.supervisor) else {
                continue;
            };
            let mut stop = stop.clone();
            let watcher = idle::IdleStop {
                machine: machine.name.clone(),
                after,
                supervisor: Arc::clone(supervisor),
                guest: Arc::clone(&machine.guest),
            };
            tokio::spawn(watcher.run(async move {
                let _ = stop.wait_for(|s| *s).await;
            }));
        }
    }

    /// Pings every machine berth does not run, every [`HEALTH_INTERVAL`], until `stop`:
    /// `berth status` shows the result, and merged views leave out machines found down.
    pub(crate) fn check_health(&self, stop: &tokio::sync::watch::Receiver<bool>) {
        for machine in self.machines.iter().filter(|m| m.supervisor.is_none()) {
            let guest = Arc::clone(&machine.guest);
            let mut stop = stop.clone();
            let checks = async move {
                let mut tick = tokio::time::interval(HEALTH_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    guest.check_health().await;
                }
            };
            tokio::spawn(async move {
                tokio::select! {
                    () = checks => {}
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => {}
                }
            });
        }
    }

    /// Every active forward, for `berth status`.
    pub(crate) fn forwards(&self) -> Vec<serde_json::Value> {
        self.machines
            .iter()
            .filter_map(|m| Some((m, m.ports.as_ref()?)))
            .flat_map(|(m, ports)| {
                ports.list().into_iter().map(|f| {
                    let mut v = serde_json::to_value(&f).unwrap_or_default();
                    v["machine"] = serde_json::Value::String(m.name.clone());
                    // Where a client connects, as `docker port` prints it.
                    v["host"] = serde_json::Value::String(
                        std::net::SocketAddr::new(f.host_ip, f.host_port).to_string(),
                    );
                    v
                })
            })
            .collect()
    }

    /// Stops every managed machine cleanly (data is kept) and closes SSH connections.
    pub(crate) async fn shutdown(&self) {
        for machine in &self.machines {
            if let Some(tunnel) = machine.guest.connector().ssh_tunnel() {
                tunnel.stop();
            }
            if let Some(sup) = &machine.supervisor {
                if let Err(e) = sup.shutdown().await {
                    tracing::warn!(machine = %machine.name, error = %e, "stopping machine failed");
                }
            }
        }
    }
}

fn build_machine(
    entry: &MachineEntry,
    state_dir: &std::path::Path,
    timeouts: GuestTimeouts,
) -> Result<Machine> {
    let idle_stop = match (&entry.idle_stop, entry.kind) {
        (None, _) => None,
        (Some(_), MachineKind::External) => {
            return Err(UsageError(format!(
                "machine {}: idle_stop applies to managed machines only",
                entry.name
            ))
            .into())
        }
        (Some(text), MachineKind::Managed | MachineKind::Vm) => Some(
            idle::parse_idle_stop(text)
                .map_err(|e| UsageError(format!("machine {}: {e}", entry.name)))?,
        ),
    };
    match entry.kind {
        MachineKind::External => {
            let endpoint: GuestEndpoint = entry
                .endpoint
                .as_deref()
                .unwrap_or_default()
                .parse()
                .map_err(|e| UsageError(format!("machine {}: {e}", entry.name)))?;
            tracing::info!(machine = %entry.name, %endpoint, "external engine");
            let connector = remote_connector(entry, endpoint, timeouts)?;
            let guest = Guest::new(
                entry.name.clone(),
                connector,
                timeouts,
                GuestOptions {
                    paths: path_translator(entry),
                    ..GuestOptions::default()
                },
            );
            Ok(Machine {
                name: entry.name.clone(),
                guest,
                supervisor: None,
                state_dir: None,
                ports: None,
                idle_stop: None,
            })
        }
        MachineKind::Managed | MachineKind::Vm => {
            let config_dir = state_dir.join("machines").join(&entry.name);
            let mut config = MachineConfig::named(&entry.name);
            config.state_dir = config_dir.clone();
            if let Some(dockerd) = &entry.dockerd {
                config.dockerd = dockerd.clone();
            }
            config.dockerd_args = entry.dockerd_args.clone();
            if let Some(text) = &entry.liveness_timeout {
                config.liveness_timeout = crate::config::parse_liveness_timeout(text)
                    .map_err(|e| UsageError(format!("machine {}: {e}", entry.name)))?;
            }
            if entry.kind == MachineKind::Vm {
                config.vm = Some(vm_config(entry, state_dir)?);
                // A guest boots its kernel before dockerd; under TCG on a busy host
                // that takes a while.
                config.start_timeout = VM_START_TIMEOUT;
            }
            let supervisor = Arc::new(
                EngineSupervisor::new(config).with_context(|| format!("machine {}", entry.name))?,
            );
            let (endpoint, guest_net) = match supervisor.vm_api_addr() {
                Some(addr) => (
                    GuestEndpoint::NetnsTcp {
                        netns: supervisor.netns_path(),
                        addr,
                    },
                    GuestNet::Machine {
                        netns: supervisor.netns_path(),
                        engine: addr.ip(),
                    },
                ),
                None => (
                    GuestEndpoint::Unix(supervisor.socket_path()),
                    GuestNet::Namespace(supervisor.netns_path()),
                ),
            };
            let ports = PortForwarder::new(guest_net)
                .with_context(|| format!("machine {}: port forwarder", entry.name))?;
            tracing::info!(machine = %entry.name, %endpoint, "managed engine (starts on first request)");
            let guest = Guest::new(
                entry.name.clone(),
                GuestConnector::new(endpoint, timeouts.connect),
                timeouts,
                GuestOptions {
                    lifecycle: Some(Arc::new(ManagedLifecycle(Arc::clone(&supervisor)))),
                    ports: Some(Arc::new(HostPorts(ports.clone()))),
                    paths: path_translator(entry),
                },
            );
            Ok(Machine {
                name: entry.name.clone(),
                guest,
                supervisor: Some(supervisor),
                state_dir: Some(config_dir),
                ports: Some(ports),
                idle_stop,
            })
        }
    }
}

/// The connector of an external machine: plain, mutual TLS (`tlsverify`), or channels
/// over one SSH connection (`ssh://`, started here).
fn remote_connector(
    entry: &MachineEntry,
    endpoint: GuestEndpoint,
    timeouts: GuestTimeouts,
) -> Result<GuestConnector> {
    let name = &entry.name;
    let usage = |e: String| UsageError(format!("machine {name}: {e}"));
    if let GuestEndpoint::Ssh(destination) = &endpoint {
        let tunnel = SshTunnel::start(SshSettings {
            machine: name.clone(),
            destination: destination.clone(),
            identity_file: entry.identity_file.clone(),
            known_hosts: entry.known_hosts.clone(),
            remote_socket: entry
                .remote_socket
                .clone()
                .unwrap_or_else(|| "/var/run/docker.sock".into()),
            dial_stdio: entry.dial_stdio,
            connect_timeout: timeouts.connect,
        })
        .with_context(|| format!("machine {name}: starting ssh"))?;
        return Ok(GuestConnector::over_ssh(endpoint, tunnel, timeouts.connect));
    }
    match entry.tls_files().map_err(usage)? {
        Some(files) => {
            let host = endpoint
                .tcp_host()
                .ok_or_else(|| usage("TLS needs a tcp:// endpoint".into()))?;
            let tls = TlsClient::load(&files, host).map_err(|e| usage(format!("TLS: {e}")))?;
            Ok(GuestConnector::with_tls(endpoint, tls, timeouts.connect))
        }
        None => Ok(GuestConnector::new(endpoint, timeouts.connect)),
    }
}

/// How long a VM machine may take from QEMU's start to dockerd's `/_ping`.
const VM_START_TIMEOUT: Duration = Duration::from_secs(300);

/// A `kind = "vm"` entry's VM: sizes parsed, the guest image under the state dir.
fn vm_config(entry: &MachineEntry, state_dir: &std::path::Path) -> Result<VmConfig> {
    let mut vm = VmConfig::new(state_dir.join("vm-image"));
    let size = |key: &str, text: &Option<String>| -> Result<Option<u64>> {
        text.as_deref()
            .map(crate::config::parse_size_mib)
            .transpose()
            .map_err(|e| UsageError(format!("machine {}: {key}: {e}", entry.name)).into())
    };
    if let Some(cpus) = entry.cpus {
        vm.cpus = cpus;
    }
    if let Some(mib) = size("memory", &entry.memory)? {
        vm.memory_mib = mib;
    }
    if let Some(mib) = size("disk_size", &entry.disk_size)? {
        vm.disk_size_mib = mib;
    }
    vm.shares = entry.shares.clone();
    vm.machine_type = entry
        .machine_type
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| UsageError(format!("machine {}: machine_type: {e}", entry.name)))?;
    Ok(vm)
}

/// The gateway's view of a machine's port forwarder (the start hook).
#[derive(Debug)]
struct HostPorts(PortForwarder);

impl PortPublisher for HostPorts {
    fn publish<'a>(
        &'a self,
        inspect: &'a serde_json::Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ServiceError>> + Send + 'a>>
    {
        Box::pin(async move { Ok(self.0.apply_inspect(inspect).await?) })
    }

    fn unpublish<'a>(
        &'a self,
        container_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self.0.remove(container_id))
    }
}

/// The gateway's view of a managed engine.
#[derive(Debug)]
struct ManagedLifecycle(Arc<EngineSupervisor>);

impl EngineLifecycle for ManagedLifecycle {
    fn ensure_running(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, ServiceError>> + Send + '_>>
    {
        Box::pin(async move { Ok(self.0.ensure_running().await?.get() * 2) })
    }

    /// Even while a dockerd runs, odd once it stopped: a stopped machine (`berth machine
    /// stop`, idle stop) must be verified, and so started, again by the next request,
    /// and connections pooled to the old dockerd are dropped.
    fn is_running(&self) -> bool {
        self.0.running_generation().is_some()
    }

    fn generation(&self) -> u64 {
        match self.0.running_generation() {
            Some(g) => g.get() * 2,
            None => self.0.generation().get() * 2 + 1,
        }
    }
}

/// What `berth status` and `berth machine ls` show for one machine.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) struct MachineReport {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) endpoint: String,
    pub(crate) state: String,
    pub(crate) pid: Option<u32>,
    pub(crate) uptime_secs: Option<u64>,
    pub(crate) engine_version: Option<String>,
    pub(crate) running_containers: Option<u64>,
    /// Remote machines: seconds since the state (`up`/`down`) began.
    #[serde(default)]
    pub(crate) state_secs: Option<u64>,
    /// Remote machines that are down: why.
    #[serde(default)]
    pub(crate) last_error: Option<String>,
    /// Managed machines: the last failure since the machine was started (a failed
    /// start, an exit nobody asked for, a wedged engine killed), and how long ago.
    #[serde(default)]
    pub(crate) last_failure: Option<String>,
    #[serde(default)]
    pub(crate) last_failure_secs: Option<u64>,
    /// A VM machine's virtual CPUs.
    #[serde(default)]
    pub(crate) vcpus: Option<u32>,
    /// A VM machine's memory in MiB.
    #[serde(default)]
    pub(crate) memory_mib: Option<u64>,
    /// A VM machine's accelerator (`kvm`, `tcg`) since its last start.
    #[serde(default)]
    pub(crate) accelerator: Option<String>,
    /// Why that accelerator (e.g. KVM hung at boot and berth fell back to TCG).
    #[serde(default)]
    pub(crate) accelerator_note: Option<String>,
    /// A VM machine's QEMU machine type (`microvm`, `q35`) since its last start.
    #[serde(default)]
    pub(crate) machine_type: Option<String>,
    /// Why that machine type (e.g. microvm did not start and berth fell back to q35).
    #[serde(default)]
    pub(crate) machine_type_note: Option<String>,
}

impl Machine {
    /// A report; asks the engine for its version and container count only if it runs.
    pub(crate) async fn report(&self) -> MachineReport {
        let (kind, state, pid, uptime_secs, last_failure) = match &self.supervisor {
            Some(sup) => {
                let status = sup.status();
                (
                    if sup.vm_facts().is_some() {
                        "vm"
                    } else {
                        "managed"
                    },
                    status.state.to_string(),
                    status.pid,
                    status.uptime.map(|d| d.as_secs()),
                    status.last_failure,
                )
            }
            None => ("external", "external".to_owned(), None, None, None),
        };
        let (state, state_secs, last_error) = match self.guest.health().state() {
            _ if self.supervisor.is_some() => (state, None, None),
            HealthState::Unknown => ("unknown".to_owned(), None, None),
            HealthState::Up { since } => ("up".to_owned(), Some(secs_since(since)), None),
            HealthState::Down { since, error } => {
                ("down".to_owned(), Some(secs_since(since)), Some(error))
            }
        };
        let running = match &self.supervisor {
            Some(s) => matches!(s.status().state, MachineState::Running),
            None => last_error.is_none(),
        };
        let (engine_version, running_containers) = if running {
            engine_facts(&self.guest).await.unwrap_or((None, None))
        } else {
            (None, None)
        };
        let vm = self.supervisor.as_ref().and_then(|s| s.vm_facts());
        MachineReport {
            vcpus: vm.as_ref().map(|v| v.cpus),
            memory_mib: vm.as_ref().map(|v| v.memory_mib),
            accelerator: vm
                .as_ref()
                .and_then(|v| v.accelerator)
                .map(|a| a.to_string()),
            accelerator_note: vm.as_ref().and_then(|v| v.accelerator_note.clone()),
            machine_type: vm
                .as_ref()
                .and_then(|v| v.machine_type)
                .map(|m| m.to_string()),
            machine_type_note: vm.and_then(|v| v.machine_type_note),
            name: self.name.clone(),
            kind: kind.to_owned(),
            endpoint: self.guest.connector().endpoint().to_string(),
            state,
            pid,
            uptime_secs,
            engine_version,
            running_containers,
            state_secs,
            last_error,
            last_failure_secs: last_failure.as_ref().map(|(_, ago)| ago.as_secs()),
            last_failure: last_failure.map(|(error, _)| error),
        }
    }
}

fn secs_since(t: std::time::SystemTime) -> u64 {
    t.elapsed().map_or(0, |d| d.as_secs())
}

/// `ServerVersion` and `ContainersRunning` from the engine's `/info`, without starting it.
async fn engine_facts(guest: &Guest) -> Option<(Option<String>, Option<u64>)> {
    use http_body_util::BodyExt;
    let stream = guest.connector().connect().await.ok()?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get("/info")
        .header(http::header::HOST, "berth")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .ok()?;
    let res = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .ok()?
        .ok()?;
    let body = res.into_body().collect().await.ok()?.to_bytes();
    let info: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some((
        info["ServerVersion"].as_str().map(str::to_owned),
        info["ContainersRunning"].as_u64(),
    ))
}

/// The machine's bind-mount path mappings, if it has any. A VM machine sees its shares
/// at the host's own paths and nothing else of the host.
fn path_translator(entry: &MachineEntry) -> Option<PathTranslator> {
    if entry.kind == MachineKind::Vm {
        return Some(PathTranslator::new(
            entry.shares.iter().map(|p| (p.clone(), p.clone())),
        ));
    }
    (!entry.path_mappings.is_empty()).then(|| {
        PathTranslator::new(
            entry
                .path_mappings
                .iter()
                .map(|p| (p.host.clone(), p.guest.clone())),
        )
    })
}
