//! `berth serve`: build the engines and the gateway, bind the sockets, run until
//! SIGINT/SIGTERM, drain.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_gateway::audit::{AuditConfig, AuditLog};
use berth_gateway::route::{PlacementPolicy, Platform};
use berth_gateway::{
    BoundSocket, Config, EngineRouter, Gateway, GatewayMetrics, GuestTimeouts, Listener,
    TcpEndpoint, TenantSet, TlsSettings, Untenanted,
};
use berth_guest::GuestEndpoint;
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};

use super::UsageError;
use crate::cli::ServeArgs;
use crate::config::{self, FileConfig, HostAddr, MachineEntry, MachineKind};
use crate::control::{self, ControlState};
use crate::machines::MachineSet;
use crate::service::Handover;
use crate::tenants::{self, TenantControl};

pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let settings = Settings::resolve(args)?;
    if settings.check_only {
        println!("configuration is valid");
        return Ok(());
    }
    // Before the runtime starts threads: this edits the environment.
    let handover = Handover::take()?;
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings, handover))
}

/// Flags merged over the configuration file, validated.
#[derive(Debug)]
struct Settings {
    state_dir: PathBuf,
    hosts: Vec<HostAddr>,
    /// Group of the Unix sockets.
    group: Option<u32>,
    /// TLS for TCP listeners; `None` means plain TCP (allowed only with `insecure`).
    tls: Option<TlsSettings>,
    audit: Option<AuditConfig>,
    /// Plain TCP listeners are allowed.
    insecure: bool,
    /// Where Prometheus metrics are served.
    metrics_addr: Option<String>,
    /// Plain pass-through exchanges are framed by berth (else hyper's).
    framed_pass_through: bool,
    machines: Vec<MachineEntry>,
    timeouts: GuestTimeouts,
    drain_timeout: Duration,
    check_only: bool,
    policy: super::policy::PolicyPlan,
    /// Where creates that nothing ties to a machine go.
    placement: PlacementPolicy,
    tenants: Vec<config::TenantEntry>,
    untenanted: Untenanted,
    shared_images: Vec<String>,
}

impl Settings {
    fn resolve(args: ServeArgs) -> Result<Self> {
        let file = FileConfig::load(args.config.as_deref())?;
        let policy = super::policy::PolicyPlan::resolve(
            args.policy.as_deref(),
            args.policy_record.clone(),
            file.policy.as_ref(),
            &args
                .config
                .clone()
                .unwrap_or_else(config::default_config_path),
        )?;
        let secs = |flag: &str, cli: Option<f64>, file: Option<f64>, default: f64| {
            let v = cli.or(file).unwrap_or(default);
            Duration::try_from_secs_f64(v)
                .map_err(|_| UsageError(format!("{flag}: {v} is not a number of seconds")))
        };
        let head = secs(
            "--head-timeout",
            args.head_timeout,
            file.head_timeout,
            120.0,
        )?;
        let timeouts = GuestTimeouts {
            connect: secs(
                "--connect-timeout",
                args.connect_timeout,
                file.connect_timeout,
                5.0,
            )?,
            verify: secs(
                "--verify-timeout",
                args.verify_timeout,
                file.verify_timeout,
                10.0,
            )?,
            head: if head.is_zero() { Duration::MAX } else { head },
        };
        let drain_timeout = secs(
            "--shutdown-timeout",
            args.shutdown_timeout,
            file.shutdown_timeout,
            10.0,
        )?;
        let machines = match &args.engine {
            // `--engine URL` is shorthand for one external machine.
            Some(url) => {
                url.parse::<GuestEndpoint>()
                    .map_err(|e| UsageError(format!("--engine: {e}")))?;
                vec![MachineEntry {
                    name: "default".into(),
                    kind: MachineKind::External,
                    endpoint: Some(url.clone()),
                    dockerd: None,
                    dockerd_args: Vec::new(),
                    default: true,
                    platforms: Vec::new(),
                    path_mappings: Vec::new(),
                    idle_stop: None,
                    ..MachineEntry::default()
                }]
            }
            None if file.machines.is_empty() => vec![MachineEntry {
                name: "default".into(),
                kind: MachineKind::Managed,
                endpoint: None,
                dockerd: None,
                dockerd_args: Vec::new(),
                default: true,
                platforms: Vec::new(),
                path_mappings: Vec::new(),
                idle_stop: None,
                ..MachineEntry::default()
            }],
            None => file.machines.clone(),
        };
        let hosts = if !args.hosts.is_empty() {
            args.hosts
        } else if !file.hosts.is_empty() {
            file.hosts
        } else {
            vec![format!("unix://{}", config::default_socket().display())]
        };
        let hosts = hosts
            .iter()
            .map(|h| config::parse_host(h))
            .collect::<Result<Vec<_>>>()?;
        let group = match args.group.or(file.group) {
            Some(g) => Some(resolve_group(&g)?),
            None => None,
        };
        let tlsverify = args.tlsverify || file.tlsverify;
        let tls_on = tlsverify || args.tls || file.tls;
        let tls = if tls_on {
            let need = |flag: &str, v: Option<PathBuf>| {
                v.ok_or_else(|| UsageError(format!("{flag} is required with --tls/--tlsverify")))
            };
            Some(TlsSettings {
                cert: need("--tlscert", args.tlscert.or(file.tlscert))?,
                key: need("--tlskey", args.tlskey.or(file.tlskey))?,
                client_ca: if tlsverify {
                    Some(need("--tlscacert", args.tlscacert.or(file.tlscacert))?)
                } else {
                    None
                },
            })
        } else {
            None
        };
        let insecure = args.insecure || file.insecure;
        if tls.is_none() && !insecure && hosts.iter().any(|h| matches!(h, HostAddr::Tcp(_))) {
            return Err(UsageError(
                "a tcp:// listener needs --tlsverify (or --tls) with certificates, or an explicit --insecure / insecure = true".into(),
            )
            .into());
        }
        let state_dir = args
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(config::default_state_dir);
        let audit = args.audit_log.or(file.audit_log).map(|path| AuditConfig {
            path,
            max_bytes: file.audit_log_max_bytes.unwrap_or(10 << 20),
        });
        Ok(Self {
            state_dir,
            hosts,
            group,
            tls,
            audit,
            insecure,
            metrics_addr: args.metrics_addr.or(file.metrics_addr),
            framed_pass_through: !args.hyper_pass_through,
            machines,
            timeouts,
            drain_timeout,
            check_only: args.check_config,
            policy,
            placement: match file.placement {
                config::Placement::Default => PlacementPolicy::Default,
                config::Placement::Spread => PlacementPolicy::Spread,
            },
            tenants: file.tenants.clone(),
            untenanted: match file.untenanted {
                Some(config::UntenantedSetting::Refuse) => Untenanted::Refused,
                _ => Untenanted::Admin,
            },
            shared_images: file.shared_images.clone(),
        })
    }
}

async fn serve(settings: Settings, mut handover: Handover) -> Result<()> {
    let machines = Arc::new(MachineSet::build(
        &settings.machines,
        &settings.state_dir,
        settings.timeouts,
    )?);

    let mut listeners = Vec::new();
    let mut listener_names = Vec::new();
    // The hosts as bound: `fd://` replaced by the handed-over sockets it named.
    let mut bound_hosts = Vec::new();
    let mut control = None;
    let acceptor = match &settings.tls {
        Some(tls) => Some(tls.acceptor()?),
        None => None,
    };
    for host in &settings.hosts {
        match host {
            HostAddr::Unix(path) => {
                let socket = BoundSocket::bind(path, 0o660, settings.group)?;
                tracing::info!(socket = %socket.path().display(), "berth listening");
                if control.is_none() {
                    // Next to the first API socket, so `berth status --config …` finds it.
                    control = Some(BoundSocket::bind(
                        &control::control_path(path),
                        0o600,
                        None,
                    )?);
                }
                listener_names.push(format!("unix://{}", path.display()));
                listeners.push(Listener::Unix(socket));
                bound_hosts.push(host.clone());
            }
            HostAddr::Tcp(addr) => {
                let endpoint = TcpEndpoint::bind(addr, acceptor.clone()).await?;
                log_tcp_listener(addr, settings.tls.as_ref());
                listener_names.push(format!("tcp://{addr}"));
                listeners.push(Listener::Tcp(endpoint));
                bound_hosts.push(host.clone());
            }
            HostAddr::Fd(selector) => {
                for handed in handover.select(selector)? {
                    let name = format!("fd://{}", handed.number);
                    let listener = Listener::inherited(handed.fd, &name, acceptor.clone())?;
                    let url = listener.url();
                    match &listener {
                        Listener::Unix(socket) => {
                            tracing::info!(socket = %socket.path().display(), fd = %name, "berth listening (handed over)");
                            if control.is_none() {
                                control = Some(BoundSocket::bind(
                                    &control::control_path(socket.path()),
                                    0o600,
                                    None,
                                )?);
                            }
                            bound_hosts.push(HostAddr::Unix(socket.path().to_owned()));
                        }
                        Listener::Tcp(_) => {
                            if settings.tls.is_none() && !settings.insecure {
                                return Err(UsageError(format!(
                                    "{name} ({url}) is a TCP socket: it needs --tlsverify (or --tls) with certificates, or an explicit --insecure / insecure = true"
                                ))
                                .into());
                            }
                            log_tcp_listener(&url, settings.tls.as_ref());
                            bound_hosts
                                .push(HostAddr::Tcp(url.trim_start_matches("tcp://").to_owned()));
                        }
                    }
                    listener_names.push(url);
                    listeners.push(listener);
                }
            }
        }
    }

    let mut registry = prometheus_client::registry::Registry::with_prefix("berth");
    let gateway_metrics = settings.metrics_addr.as_ref().map(|_| {
        let names: Vec<&str> = machines.machines.iter().map(|m| m.name.as_str()).collect();
        GatewayMetrics::register(&mut registry, &names)
    });
    let metrics = match &settings.metrics_addr {
        Some(addr) => {
            registry.register_collector(Box::new(crate::metrics::MachineCollector(Arc::clone(
                &machines,
            ))));
            let (bound, task) = crate::metrics::serve(addr, registry).await?;
            tracing::info!(addr = %bound, "serving Prometheus metrics on /metrics");
            Some((bound, task))
        }
        None => None,
    };
    let (sync_stop, sync_stop_rx) = tokio::sync::watch::channel(false);
    machines.sync_ports(&sync_stop_rx);
    machines.stop_idle(&sync_stop_rx);
    machines.check_health(&sync_stop_rx);
    machines.resume();

    let audit = match &settings.audit {
        Some(a) => Some(
            AuditLog::start(a.clone())
                .with_context(|| format!("opening the audit log {}", a.path.display()))?,
        ),
        None => None,
    };
    let (policy, policy_reload) = super::policy::activate(
        &settings.policy,
        &settings.state_dir,
        &bound_hosts,
        &machines.guests(),
        &mut listeners,
    )?;
    let api_sockets: Vec<PathBuf> = settings
        .hosts
        .iter()
        .filter_map(|h| match h {
            HostAddr::Unix(p) => Some(p.clone()),
            HostAddr::Tcp(_) | HostAddr::Fd(_) => None,
        })
        .collect();
    let container_socket = settings.state_dir.join("sockets/containers.sock");
    let tenant_set = Arc::new(
        TenantSet::new(
            settings
                .tenants
                .iter()
                .map(config::TenantEntry::tenant)
                .collect::<Result<Vec<_>, _>>()
                .map_err(UsageError)?,
            settings.untenanted,
            settings.shared_images.clone(),
            tenants::docker_sockets(&api_sockets, &[container_socket]),
        )
        .with_images_file(settings.state_dir.join("tenants/images.json"))
        .map_err(|e| anyhow::anyhow!(e))?,
    );
    let config = Config {
        drain_timeout: settings.drain_timeout,
        audit,
        policy,
        metrics: gateway_metrics,
        framed_pass_through: settings.framed_pass_through,
        tenants: Some(Arc::clone(&tenant_set)),
        ..Config::default()
    };
    let platforms = machines
        .machines
        .iter()
        .map(|m| declared_platforms(&settings.machines, &m.name))
        .collect();
    let router = EngineRouter::with_platforms(machines.guests(), platforms)
        .with_placement(settings.placement);
    let gateway = Gateway::new(config, router);
    let tenant_control = Arc::new(TenantControl::new(
        tenant_set,
        gateway.listener_spawner(),
        Arc::clone(gateway.router().default_guest()),
        settings.group,
        settings.state_dir.join("tenants/added.json"),
    ));
    tenant_control.restore()?;
    tenant_control.serve_sockets()?;
    let control_task = control.map(|socket| {
        tokio::spawn(control::serve(
            socket,
            Arc::new(ControlState {
                machines: Arc::clone(&machines),
                listeners: listener_names.clone(),
                metrics_addr: metrics.as_ref().map(|(addr, _)| addr.to_string()),
                tenants: Arc::clone(&tenant_control),
            }),
        ))
    });
    let notifier = &handover.notifier;
    notifier.send(&[
        NotifyState::Ready,
        NotifyState::Status(&format!(
            "serving the Docker API on {}; machines: {}",
            listener_names.join(", "),
            machine_names(&machines)
        )),
    ]);
    let shutdown = shutdown_signal()?;
    gateway
        .run(listeners, async {
            shutdown.await;
            notifier.send(&[
                NotifyState::Stopping,
                NotifyState::Status("draining requests, then stopping managed machines"),
            ]);
        })
        .await;
    if let Some(reload) = &policy_reload {
        reload.write_recording();
    }
    if let Some(task) = control_task {
        task.abort();
    }
    if let Some((_, task)) = metrics {
        task.abort();
    }
    let _ = sync_stop.send(true);
    tracing::info!("stopping managed machines");
    machines.shutdown().await;
    Ok(())
}

/// Says how a TCP listener is protected (loudly when it is not).
fn log_tcp_listener(addr: &str, tls: Option<&TlsSettings>) {
    match tls {
        Some(tls) if tls.client_ca.is_some() => {
            tracing::info!(%addr, "berth listening (TLS, client certificates verified)");
        }
        Some(_) => tracing::warn!(
            %addr,
            "berth listening with TLS but without --tlsverify: any client that reaches this port is root on this host"
        ),
        None => tracing::warn!(
            %addr,
            "berth listening on plain TCP (insecure): anyone who reaches this port is root on this host"
        ),
    }
}

/// The platforms machine `name` declares (validated with the configuration).
fn declared_platforms(entries: &[MachineEntry], name: &str) -> Vec<Platform> {
    entries
        .iter()
        .filter(|e| e.name == name)
        .flat_map(|e| &e.platforms)
        .filter_map(|p| Platform::parse(p).ok())
        .collect()
}

/// A group name or number, as dockerd's `--group`.
fn resolve_group(group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(UsageError(format!("--group {group}: no such group")).into()),
    }
}

/// Hijacked sessions hold two sockets each: raise the soft open-files limit to the hard one.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// The machines' names, for the service status line.
fn machine_names(machines: &MachineSet) -> String {
    machines
        .machines
        .iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
