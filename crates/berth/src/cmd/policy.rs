//! The access policy in the binary: where it comes from (`--policy FILE`, or `policy`
//! in berth.toml: a path or an inline `[policy]` table), SIGHUP reloads (a bad file
//! keeps the policy in force), record mode (`--policy-record FILE`), the container
//! socket, and `berth policy check FILE`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use berth_gateway::{BoundSocket, Guest, Listener, PolicyGate};
use berth_guest::GuestEndpoint;
use berth_policy::{AccessPolicy, PolicyRecorder};
use tokio::signal::unix::{signal, SignalKind};

use super::UsageError;
use crate::cli::PolicyCommand;
use crate::config::{HostAddr, PolicySetting};

/// `berth policy …`.
pub(crate) fn run(command: &PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Check { file } => {
            // A berth.toml with a [policy] table is checked as its policy.
            let inline = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
                .is_some_and(|t| t.get("policy").is_some_and(toml::Value::is_table));
            if inline {
                PolicySource::Inline(file.clone()).load()?;
            } else {
                PolicySource::File(file.clone()).load()?;
            }
            println!("policy {} is valid", file.display());
            Ok(())
        }
    }
}

/// Where the policy text is read from, at start and on every SIGHUP.
#[derive(Clone, Debug)]
pub(crate) enum PolicySource {
    /// A policy file.
    File(PathBuf),
    /// The `[policy]` table of this configuration file.
    Inline(PathBuf),
}

impl PolicySource {
    /// Reads and parses the policy; errors name the file (and line) and are usage
    /// errors.
    pub(crate) fn load(&self) -> Result<AccessPolicy> {
        let invalid =
            |path: &Path, e: &dyn std::fmt::Display| UsageError(format!("{}: {e}", path.display()));
        match self {
            Self::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| UsageError(format!("reading {}: {e}", path.display())))?;
                AccessPolicy::from_toml(&text).map_err(|e| invalid(path, &e).into())
            }
            Self::Inline(config) => {
                let text = std::fs::read_to_string(config)
                    .map_err(|e| UsageError(format!("reading {}: {e}", config.display())))?;
                let table: toml::Table = toml::from_str(&text).map_err(|e| invalid(config, &e))?;
                let Some(toml::Value::Table(policy)) = table.get("policy") else {
                    return Err(invalid(config, &"no [policy] table").into());
                };
                inline_policy(policy, config)
            }
        }
    }
}

/// An inline `[policy]` table of `config`, parsed as a policy file. Errors name keys;
/// their line numbers are those of the table re-serialized.
fn inline_policy(policy: &toml::Table, config: &Path) -> Result<AccessPolicy> {
    let invalid = |e: &dyn std::fmt::Display| UsageError(format!("{}: {e}", config.display()));
    let text = toml::to_string(policy).map_err(|e| invalid(&e))?;
    AccessPolicy::from_toml(&text).map_err(|e| invalid(&format!("[policy]: {e}")).into())
}

/// What `berth serve` was asked to do with policies.
#[derive(Debug)]
pub(crate) struct PolicyPlan {
    /// The policy to enforce (validated once already), if any.
    source: Option<PolicySource>,
    /// Record mode: write the policy that allows what clients did to this file.
    record: Option<PathBuf>,
}

impl PolicyPlan {
    /// Flags win over the file; a relative `policy = "…"` is relative to the
    /// configuration file. The policy is loaded once here so that a bad one stops
    /// `berth serve` (and `--check-config`) with a usage error.
    pub(crate) fn resolve(
        flag: Option<&Path>,
        record: Option<PathBuf>,
        file: Option<&PolicySetting>,
        config_path: &Path,
    ) -> Result<Self> {
        let source = match (flag, file) {
            (Some(path), _) => Some(PolicySource::File(path.to_owned())),
            (None, Some(PolicySetting::Path(path))) => Some(PolicySource::File(
                config_path.parent().unwrap_or(Path::new("/")).join(path),
            )),
            (None, Some(PolicySetting::Inline(_))) => {
                Some(PolicySource::Inline(config_path.to_owned()))
            }
            (None, None) => None,
        };
        match (&source, file) {
            (Some(PolicySource::Inline(_)), Some(PolicySetting::Inline(table))) => {
                inline_policy(table, config_path)?;
            }
            (Some(source), _) => {
                source.load()?;
            }
            (None, _) => {}
        }
        Ok(Self { source, record })
    }

    /// Whether the gateway enforces or records anything.
    pub(crate) fn is_active(&self) -> bool {
        self.source.is_some() || self.record.is_some()
    }

    /// The gate for the gateway, and the socket containers get instead of the Docker
    /// socket (served by berth as an `internal` client). `docker_sockets` are the sockets
    /// a create must not bind: berth's listeners and the engines'.
    pub(crate) fn start(
        &self,
        state_dir: &Path,
        docker_sockets: Vec<PathBuf>,
    ) -> Result<Option<ActivePolicy>> {
        if !self.is_active() {
            return Ok(None);
        }
        let policy = match &self.source {
            Some(source) => source.load()?,
            None => AccessPolicy::allow_all(),
        };
        // The directory keeps host users out (they would be `internal`); a container
        // gets the socket file itself bind-mounted, so it needs no way through it.
        let dir = state_dir.join("sockets");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
        let path = dir.join("containers.sock");
        let socket = BoundSocket::bind(&path, 0o666, None)?.for_containers();
        let recorder = self
            .record
            .as_ref()
            .map(|_| Arc::new(PolicyRecorder::new()));
        let mut gate = PolicyGate::new(policy).with_container_socket(path, docker_sockets);
        if let Some(r) = &recorder {
            gate = gate.with_recorder(Arc::clone(r));
        }
        Ok(Some(ActivePolicy {
            gate: Arc::new(gate),
            socket,
            source: self.source.clone(),
            record: self.record.clone().zip(recorder),
        }))
    }
}

/// Starts what `plan` asks for: the gate for the gateway's `Config`, the container
/// socket pushed onto `listeners`, the SIGHUP task; the handle writes the recording at
/// shutdown. Binds of berth's own sockets (`hosts`) and the engines' are rewritten.
pub(crate) fn activate(
    plan: &PolicyPlan,
    state_dir: &Path,
    hosts: &[HostAddr],
    guests: &[Arc<Guest>],
    listeners: &mut Vec<Listener>,
) -> Result<(Option<Arc<PolicyGate>>, Option<PolicyReload>)> {
    let docker_sockets = hosts
        .iter()
        .filter_map(|h| match h {
            HostAddr::Unix(p) => Some(p.clone()),
            HostAddr::Tcp(_) | HostAddr::Fd(_) => None,
        })
        .chain(
            guests
                .iter()
                .filter_map(|g| match g.connector().endpoint() {
                    GuestEndpoint::Unix(p) => Some(p.clone()),
                    GuestEndpoint::Tcp(_)
                    | GuestEndpoint::Ssh(_)
                    | GuestEndpoint::NetnsTcp { .. } => None,
                }),
        )
        .collect();
    let Some(active) = plan.start(state_dir, docker_sockets)? else {
        // Like dockerd, SIGHUP does not stop berth; without a policy it has nothing to do.
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: no policy configured at start, nothing to reload");
            }
        });
        return Ok((None, None));
    };
    let (gate, socket, reload) = active.into_parts();
    tracing::info!(socket = %socket.path().display(), "serving containers under the policy");
    listeners.push(Listener::Unix(socket));
    reload.clone().spawn()?;
    Ok((Some(gate), Some(reload)))
}

/// A policy in force in a running gateway.
#[derive(Debug)]
pub(crate) struct ActivePolicy {
    pub(crate) gate: Arc<PolicyGate>,
    /// berth's socket for containers; serve it as a listener.
    pub(crate) socket: BoundSocket,
    source: Option<PolicySource>,
    record: Option<(PathBuf, Arc<PolicyRecorder>)>,
}

/// What the SIGHUP task needs (the socket goes to the gateway).
#[derive(Clone, Debug)]
pub(crate) struct PolicyReload {
    gate: Arc<PolicyGate>,
    source: Option<PolicySource>,
    record: Option<(PathBuf, Arc<PolicyRecorder>)>,
}

impl ActivePolicy {
    /// Splits off the listener.
    pub(crate) fn into_parts(self) -> (Arc<PolicyGate>, BoundSocket, PolicyReload) {
        let reload = PolicyReload {
            gate: Arc::clone(&self.gate),
            source: self.source,
            record: self.record,
        };
        (self.gate, self.socket, reload)
    }
}

impl PolicyReload {
    /// On every SIGHUP: reload the policy (a bad one is logged and the old one stays)
    /// and write the recording so far.
    pub(crate) fn spawn(self) -> Result<tokio::task::JoinHandle<()>> {
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                self.reload();
                self.write_recording();
            }
        }))
    }

    fn reload(&self) {
        let Some(source) = &self.source else {
            return;
        };
        match source.load() {
            Ok(policy) => {
                self.gate.replace(policy);
                tracing::info!(?source, "policy reloaded");
            }
            Err(e) => {
                tracing::error!(
                    ?source,
                    "policy not reloaded, the previous one stays in force: {e:#}"
                );
            }
        }
    }

    /// Writes the smallest policy that allows what was recorded (record mode).
    pub(crate) fn write_recording(&self) {
        let Some((path, recorder)) = &self.record else {
            return;
        };
        let tmp = path.with_extension("tmp");
        let written =
            std::fs::write(&tmp, recorder.to_toml()).and_then(|()| std::fs::rename(&tmp, path));
        match written {
            Ok(()) => tracing::info!(path = %path.display(), "recorded policy written"),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "writing the recorded policy")
            }
        }
    }
}
