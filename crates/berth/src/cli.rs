//! The command line (clap derive). Flags that mean what a dockerd flag means use
//! dockerd's name (`-H/--host`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub(crate) use crate::cmd::format::OutputFormat;

/// berth: a Docker Engine API gateway in front of one or more guest engines.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,

    /// Log lines as text, or as one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (fields flattened; a request's trace id on every line about it).
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the Docker Engine API on a local socket.
    Serve(Box<ServeArgs>),
    /// Operate the machines of the running daemon.
    Machine {
        #[command(subcommand)]
        command: MachineCommand,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Show the daemon: listeners, machines, forwards.
    Status {
        /// `table` (default), `json`, or a template such as `{pid} {version}` (docs/config.md).
        #[arg(long, value_name = "FORMAT")]
        format: Option<OutputFormat>,
        /// The same as `--format json`.
        #[arg(long, hide = true, conflicts_with = "format")]
        json: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Point the docker CLI at berth (a docker context named `berth`).
    Docker {
        #[command(subcommand)]
        command: DockerCommand,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Run berth as a systemd service for this configuration: write berth.service and
    /// berth.socket, enable and start them.
    Install(InstallArgs),
    /// Stop and disable the systemd service and remove its units (machine data is kept).
    Uninstall(UninstallArgs),
    /// Manage the daemon's tenants: clients that each see and touch only their own world.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
        /// Configuration file (TOML) [default: /etc/berth/berth.toml as root].
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        /// The daemon's API socket, when it is not the configuration's first host
        /// (`--socket` names the tenant's own socket here).
        #[arg(short = 'H', long = "host", value_name = "URL", global = true)]
        host: Option<String>,
    },
    /// Check access policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MachineCommand {
    /// List machines and their state.
    Ls {
        /// `table` (default), `json`, or a template such as `{name} {state}` (docs/config.md).
        #[arg(long, value_name = "FORMAT")]
        format: Option<OutputFormat>,
    },
    /// Start a managed machine.
    Start { name: String },
    /// Stop a managed machine (its data is kept).
    Stop { name: String },
    /// Stop and start a managed machine.
    Restart { name: String },
    /// Stop a managed machine and delete its data.
    Rm { name: String },
    /// Print the last lines of a managed machine's dockerd log.
    Logs { name: String },
}

// Parsed once per run: the size of `Add` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum TenantCommand {
    /// Add a tenant to the running daemon (no restart).
    Add {
        /// The tenant's name (lower-case letters, digits, '-', '_').
        name: String,
        /// A socket of the tenant's own: every client of it is the tenant.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Clients with this uid are the tenant (repeatable).
        #[arg(long, value_name = "N")]
        uid: Vec<u32>,
        /// Clients with this gid are the tenant (repeatable).
        #[arg(long, value_name = "N")]
        gid: Vec<u32>,
        /// TLS clients with this certificate subject (or subject part, `CN=ci`) are the tenant.
        #[arg(long = "tls-subject", value_name = "SUBJECT")]
        tls: Vec<String>,
        /// Quotas, as the `[[tenants]]` keys of the same names.
        #[command(flatten)]
        quotas: TenantQuotaArgs,
    },
    /// List tenants with their objects on the engine.
    Ls {
        /// `table` (default), `json`, or a template such as `{name} {containers}`.
        #[arg(long, value_name = "FORMAT")]
        format: Option<OutputFormat>,
    },
    /// Remove every container, network, volume and image of a tenant, then the tenant.
    Rm { name: String },
}

/// `berth tenant add` quota flags (docs/config.md, `[[tenants]]`).
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct TenantQuotaArgs {
    /// Containers the tenant may have, whatever their state.
    #[arg(long, value_name = "N")]
    pub(crate) max_containers: Option<u64>,
    /// Containers the tenant may have running.
    #[arg(long, value_name = "N")]
    pub(crate) max_running: Option<u64>,
    /// Memory limit of a container that asks for none (`512m`).
    #[arg(long, value_name = "SIZE")]
    pub(crate) default_memory: Option<String>,
    /// The largest memory limit a container may have.
    #[arg(long, value_name = "SIZE")]
    pub(crate) max_memory: Option<String>,
    /// CPUs of a container that asks for none.
    #[arg(long, value_name = "CPUS")]
    pub(crate) default_cpus: Option<f64>,
    /// The most CPUs a container may have.
    #[arg(long, value_name = "CPUS")]
    pub(crate) max_cpus: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Parse a policy file and report the first mistake (exit 64), or that it is valid.
    Check {
        /// The policy file (TOML).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DockerCommand {
    /// Create the `berth` docker context and make it current.
    Enable,
    /// Restore the docker context that was current before `enable`.
    Disable,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Socket to listen on, as dockerd's -H (unix:///path); repeatable.
    #[arg(short = 'H', long = "host", value_name = "URL")]
    pub(crate) hosts: Vec<String>,

    /// The guest engine to forward to (unix:///path/docker.sock or tcp://host:port).
    #[arg(long, value_name = "URL")]
    pub(crate) engine: Option<String>,

    /// Group that owns the Unix sockets (name or gid), as dockerd's --group.
    #[arg(short = 'G', long, value_name = "GROUP")]
    pub(crate) group: Option<String>,

    /// Serve TLS on TCP listeners (implied by --tlsverify).
    #[arg(long)]
    pub(crate) tls: bool,

    /// Serve TLS and require client certificates signed by --tlscacert.
    #[arg(long)]
    pub(crate) tlsverify: bool,

    /// Trust client certificates signed by this CA (PEM).
    #[arg(long, value_name = "FILE")]
    pub(crate) tlscacert: Option<PathBuf>,

    /// Server certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub(crate) tlscert: Option<PathBuf>,

    /// Server private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub(crate) tlskey: Option<PathBuf>,

    /// Enforce this access policy (TOML; reloaded on SIGHUP); overrides `policy` in the file.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,

    /// Record mode: write the smallest policy that allows what clients did to FILE (on
    /// SIGHUP and at shutdown).
    #[arg(long, value_name = "FILE")]
    pub(crate) policy_record: Option<PathBuf>,

    /// Record every mutating request as a JSON line in this file (rotated at 10 MiB).
    #[arg(long, value_name = "FILE")]
    pub(crate) audit_log: Option<PathBuf>,

    /// Allow a TCP listener without TLS (anyone who reaches it is root on this host).
    #[arg(long)]
    pub(crate) insecure: bool,

    /// Where managed machines keep their data [default: /var/lib/berth as root].
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,

    /// Seconds allowed to open a connection to an engine [default: 5].
    #[arg(long, value_name = "SECS")]
    pub(crate) connect_timeout: Option<f64>,

    /// Seconds allowed for an engine's readiness ping (GET /_ping) [default: 10].
    #[arg(long, value_name = "SECS")]
    pub(crate) verify_timeout: Option<f64>,

    /// Seconds allowed for the response head of quick reads; 0 disables [default: 120].
    #[arg(long, value_name = "SECS")]
    pub(crate) head_timeout: Option<f64>,

    /// Seconds in-flight requests may run on after SIGINT/SIGTERM [default: 10].
    #[arg(long, value_name = "SECS")]
    pub(crate) shutdown_timeout: Option<f64>,

    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9323, as dockerd's).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_addr: Option<String>,

    /// Pass every exchange through hyper instead of berth's own HTTP/1 framing (hidden:
    /// for A/B measurements, docs/benchmarks.md).
    #[arg(long, hide = true)]
    pub(crate) hyper_pass_through: bool,

    /// Parse and validate the configuration, then exit.
    #[arg(long)]
    pub(crate) check_config: bool,

    /// Configuration file (TOML) [default: /etc/berth/berth.toml as root].
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// `berth install` / `berth uninstall`.
#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// Configuration file the service runs with [default: /etc/berth/berth.toml as root].
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Where the unit files go [default: /etc/systemd/system].
    #[arg(long, value_name = "DIR")]
    pub(crate) unit_dir: Option<PathBuf>,

    /// Print the units instead of installing them.
    #[arg(long)]
    pub(crate) print: bool,
}

/// `berth uninstall`.
#[derive(Debug, Args)]
pub(crate) struct UninstallArgs {
    /// Where the unit files are [default: /etc/systemd/system].
    #[arg(long, value_name = "DIR")]
    pub(crate) unit_dir: Option<PathBuf>,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// Configuration file (TOML) [default: /etc/berth/berth.toml as root].
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) config: Option<PathBuf>,

    /// The daemon's API socket, when it is not the configuration's first host.
    #[arg(long = "socket", value_name = "URL", global = true)]
    pub(crate) socket: Option<String>,
}
