//! An engine behind SSH: one SSH connection per machine, held by berth itself (russh),
//! and a channel per API connection.
//!
//! Each connection berth opens to the engine is a new `direct-streamlocal@openssh.com`
//! channel to the engine's socket on the remote host, over the one authenticated
//! connection: no handshake, no login, no remote process and no local `ssh` process per
//! API connection. Where the engine's socket cannot be reached that way
//! (`dial_stdio = true`), each connection is a session channel running `docker system
//! dial-stdio` instead. The guest stream is the channel itself: the gateway reads and
//! writes it through the connection's task, and its half-close is the channel's EOF.
//!
//! Host keys are checked against the machine's `known_hosts` (by default ssh's
//! `~/.ssh/known_hosts` and `/etc/ssh/ssh_known_hosts`): an unknown or changed key is
//! refused, never learned. When the connection drops it is made again with backoff;
//! requests meanwhile fail at once with why it dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::sync::{oneshot, watch};

use crate::{GuestStream, SshDestination};

/// The first wait after the connection drops; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A connection that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Keep-alive probes after this much silence from the server, and how many may go
/// unanswered before the connection counts as dropped.
const ALIVE_INTERVAL: Duration = Duration::from_secs(5);
const ALIVE_COUNT: usize = 3;
/// Bytes read from the connection at once.
const READ_BUFFER: usize = 64 * 1024;
/// AES-GCM first (AES-NI): bulk streams (exec, cp, logs) cost less CPU than with
/// chacha20-poly1305, which stays for servers without AES-GCM.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
];

/// How to reach one SSH machine.
#[derive(Clone, Debug)]
pub struct SshSettings {
    /// The machine's name (for errors and logs).
    pub machine: String,
    /// `user@host:port`.
    pub destination: SshDestination,
    /// `identity_file`: the private key (ssh's default key files when `None`).
    pub identity_file: Option<PathBuf>,
    /// `known_hosts`: the only host keys accepted (ssh's default files when `None`).
    pub known_hosts: Option<PathBuf>,
    /// The engine's socket on the remote host.
    pub remote_socket: PathBuf,
    /// Run `docker system dial-stdio` per connection instead of forwarding the socket.
    pub dial_stdio: bool,
    /// How long connecting and logging in may take.
    pub connect_timeout: Duration,
}

/// The state of the one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunnelState {
    /// Not connected yet (the first attempt is under way).
    Connecting,
    /// Connected since then.
    Up { since: SystemTime },
    /// Down since then, with why; reconnecting with backoff.
    Down { since: SystemTime, error: String },
    /// Stopped for good (berth is shutting down).
    Stopped,
}

/// A supervised SSH connection to one machine.
pub struct SshTunnel {
    settings: SshSettings,
    state: watch::Sender<TunnelState>,
    session: Mutex<Option<Arc<Handle<HostCheck>>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for SshTunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTunnel")
            .field("settings", &self.settings)
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl SshTunnel {
    /// Starts the connection in the background (needs a tokio runtime).
    pub fn start(settings: SshSettings) -> std::io::Result<Arc<Self>> {
        let tunnel = Arc::new(Self {
            settings,
            state: watch::Sender::new(TunnelState::Connecting),
            session: Mutex::new(None),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(Arc::clone(&tunnel).supervise());
        *lock(&tunnel.task) = Some(task);
        Ok(tunnel)
    }

    /// The connection's state now.
    pub fn state(&self) -> TunnelState {
        self.state.borrow().clone()
    }

    /// Ends the connection and stops reconnecting.
    pub fn stop(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        lock(&self.session).take();
        self.state.send_replace(TunnelState::Stopped);
    }

    /// Opens a channel to the engine. Waits for the first connection (up to
    /// `timeout`); once it has failed, fails at once with why until it is back.
    pub(crate) async fn open(&self, timeout: Duration) -> Result<GuestStream, String> {
        let mut rx = self.state.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            match rx.wait_for(|s| !matches!(s, TunnelState::Connecting)).await {
                Ok(s) => s.clone(),
                Err(_) => TunnelState::Stopped,
            }
        })
        .await;
        let Ok(state) = waited else {
            return Err(format!("ssh did not connect within {timeout:?}"));
        };
        match state {
            TunnelState::Up { .. } => {}
            TunnelState::Down { error, .. } => return Err(format!("ssh connection down: {error}")),
            TunnelState::Stopped => return Err("ssh connection stopped".into()),
            TunnelState::Connecting => unreachable!("waited for another state"),
        }
        let Some(session) = lock(&self.session).clone() else {
            return Err("ssh connection down".into());
        };
        let s = &self.settings;
        let opened = tokio::time::timeout(timeout, async {
            if s.dial_stdio {
                let channel = session.channel_open_session().await?;
                channel
                    .exec(false, "docker system dial-stdio".as_bytes())
                    .await?;
                Ok::<_, russh::Error>(channel)
            } else {
                let socket = s.remote_socket.to_string_lossy().into_owned();
                session.channel_open_direct_streamlocal(socket).await
            }
        })
        .await;
        let channel = match opened {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) if s.dial_stdio => return Err(format!("ssh dial-stdio: {e}")),
            Ok(Err(e)) => return Err(format!("ssh channel to {}: {e}", s.remote_socket.display())),
            Err(_) => return Err(format!("ssh channel not opened within {timeout:?}")),
        };
        Ok(GuestStream::transported(channel.into_stream()))
    }

    /// Keeps the connection up: connect, wait until it ends, back off, again.
    async fn supervise(self: Arc<Self>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let started = Instant::now();
            let error = match self.connect().await {
                Ok((session, ended)) => {
                    tracing::info!(machine = %self.settings.machine, "ssh connection up");
                    *lock(&self.session) = Some(Arc::new(session));
                    self.state.send_replace(TunnelState::Up {
                        since: SystemTime::now(),
                    });
                    let why = ended
                        .await
                        .unwrap_or_else(|_| "ssh connection closed".to_owned());
                    lock(&self.session).take();
                    why
                }
                Err(e) => e,
            };
            tracing::warn!(machine = %self.settings.machine, %error, "ssh connection down");
            self.state.send_replace(TunnelState::Down {
                since: SystemTime::now(),
                error,
            });
            if started.elapsed() >= STABLE_AFTER {
                backoff = MIN_BACKOFF;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Connects, checks the host key and logs in; hands back the session and what
    /// resolves with why it ended.
    async fn connect(&self) -> Result<(Handle<HostCheck>, oneshot::Receiver<String>), String> {
        let s = &self.settings;
        let port = s.destination.port.unwrap_or(22);
        let user = match &s.destination.user {
            Some(user) => user.clone(),
            None => local_user()?,
        };
        let keys = identities(s.identity_file.as_deref())?;
        let (ended_tx, ended) = oneshot::channel();
        let refused = Arc::new(Mutex::new(None));
        let check = HostCheck {
            host: s.destination.host.clone(),
            port,
            known_hosts: match &s.known_hosts {
                Some(path) => vec![path.clone()],
                None => default_known_hosts(),
            },
            refused: Arc::clone(&refused),
            ended: Some(ended_tx),
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(ALIVE_INTERVAL),
            keepalive_max: ALIVE_COUNT,
            nodelay: true,
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(CIPHERS),
                ..Default::default()
            },
            ..Default::default()
        });
        let attempt = async {
            let host = s.destination.host.as_str();
            let tcp = tokio::net::TcpStream::connect((host, port))
                .await
                .map_err(|e| format!("connect to {host} port {port}: {e}"))?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            crate::keep_alive(&tcp).map_err(|e| e.to_string())?;
            // A LeanSocket: no `read(2)` that finds nothing after each short read.
            let tcp = crate::LeanSocket::from_tcp(tcp).map_err(|e| e.to_string())?;
            // Buffered: russh reads each packet's length and then its rest, two reads
            // per packet straight on the socket.
            let tcp = tokio::io::BufReader::with_capacity(READ_BUFFER, tcp);
            let mut session = client::connect_stream(config, tcp, check)
                .await
                .map_err(|e| match lock(&refused).take() {
                    Some(why) => why,
                    None => format!("ssh handshake with {host} port {port}: {e}"),
                })?;
            let rsa_hash = session
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten();
            for (path, key) in &keys {
                let key = PrivateKeyWithHashAlg::new(Arc::clone(key), rsa_hash);
                match session.authenticate_publickey(&user, key).await {
                    Ok(russh::client::AuthResult::Success) => return Ok(session),
                    Ok(_) => tracing::debug!(key = %path.display(), "ssh key refused"),
                    Err(e) => return Err(format!("ssh login as {user}: {e}")),
                }
            }
            Err(format!(
                "{user}@{host}: Permission denied (publickey) for {}",
                keys.iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        match tokio::time::timeout(s.connect_timeout, attempt).await {
            Ok(Ok(session)) => Ok((session, ended)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "ssh did not connect within {:?}",
                s.connect_timeout
            )),
        }
    }
}

/// The client side's callbacks: the host-key check, and the news that the connection
/// ended.
#[derive(Debug)]
struct HostCheck {
    host: String,
    port: u16,
    known_hosts: Vec<PathBuf>,
    /// Why the host key was refused (the handshake error itself only says "unknown key").
    refused: Arc<Mutex<Option<String>>>,
    /// Told why the connection ended; dropped with the session otherwise.
    ended: Option<oneshot::Sender<String>>,
}

impl client::Handler for HostCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                known_host(&self.host, self.port, key, &self.known_hosts)
            }
            PublicKeyOrCertificate::Certificate(_) => {
                Err("host certificates are not accepted, only keys in known_hosts".into())
            }
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(why) => {
                *lock(&self.refused) = Some(format!("Host key verification failed: {why}"));
                Ok(false)
            }
        }
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let why = match &reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                format!("disconnected by the server: {}", info.message)
            }
            client::DisconnectReason::Error(e) => format!("ssh connection lost: {e}"),
        };
        if let Some(tx) = self.ended.take() {
            let _ = tx.send(why);
        }
        Ok(())
    }
}

/// Whether `key` is the one `known_hosts` records for the host, in ssh's words when not.
fn known_host(
    host: &str,
    port: u16,
    key: &russh::keys::PublicKey,
    files: &[PathBuf],
) -> Result<(), String> {
    let named = if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    };
    for file in files {
        match russh::keys::check_known_hosts_path(host, port, key, file) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            // (russh's line number skips comment lines: not shown.)
            Err(russh::keys::Error::KeyChanged { .. }) => {
                return Err(format!(
                    "the host key of {named} has changed ({} records another)",
                    file.display()
                ))
            }
            Err(e) => return Err(format!("reading {}: {e}", file.display())),
        }
    }
    Err(format!(
        "no {} key of {named} in {} (fingerprint {})",
        key.algorithm(),
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        key.fingerprint(HashAlg::Sha256)
    ))
}

/// ssh's default user: the local one.
fn local_user() -> Result<String, String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or_else(|| "no user in the endpoint and no local user name".to_owned())
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// ssh's default host-key files.
fn default_known_hosts() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = home()
        .map(|h| h.join(".ssh/known_hosts"))
        .into_iter()
        .collect();
    files.push("/etc/ssh/ssh_known_hosts".into());
    files
}

/// The keys to log in with: `identity_file`, or those of ssh's default files that exist.
fn identities(identity_file: Option<&Path>) -> Result<Vec<(PathBuf, Arc<PrivateKey>)>, String> {
    let load = |path: &Path| {
        russh::keys::load_secret_key(path, None)
            .map(|k| (path.to_owned(), Arc::new(k)))
            .map_err(|e| format!("identity_file {}: {e}", path.display()))
    };
    if let Some(path) = identity_file {
        return Ok(vec![load(path)?]);
    }
    let defaults: Vec<PathBuf> = ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .filter_map(|name| home().map(|h| h.join(".ssh").join(name)))
        .filter(|p| p.exists())
        .collect();
    if defaults.is_empty() {
        return Err("no identity_file and no key in ~/.ssh (id_ed25519, id_ecdsa, id_rsa)".into());
    }
    defaults.iter().map(|p| load(p)).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID0gINZWEkNnbo9RH+L7A01kjcA6JX2+ok7aFEubz+mr";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJrm9KEsrZCod/rZuV27bgLbavX2lgk86YG96QhAwG85";
    /// `[10.0.0.6]:2222` with KEY_A, hashed by `ssh-keygen -H`.
    const HASHED_A: &str = "|1|yOyr46U8gP1SXKgPYG7PH6Dr3Q4=|ot3m5Pb7INk1m/kxx9De2K8Sb8E= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID0gINZWEkNnbo9RH+L7A01kjcA6JX2+ok7aFEubz+mr";

    fn key(text: &str) -> russh::keys::PublicKey {
        russh::keys::PublicKey::from_openssh(text).unwrap()
    }

    fn known_hosts(lines: &str) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, lines).unwrap();
        (dir, vec![file])
    }

    #[test]
    fn a_recorded_key_is_accepted_plain_or_hashed_with_its_port() {
        let (_d, files) = known_hosts(&format!("10.0.0.5 {KEY_A}\n{HASHED_A}\n"));
        assert_eq!(known_host("10.0.0.5", 22, &key(KEY_A), &files), Ok(()));
        assert_eq!(known_host("10.0.0.6", 2222, &key(KEY_A), &files), Ok(()));
    }

    #[test]
    fn an_unknown_host_or_another_port_is_refused_with_the_fingerprint() {
        let (_d, files) = known_hosts(&format!("10.0.0.5 {KEY_A}\n"));
        let why = known_host("10.0.0.7", 22, &key(KEY_A), &files).unwrap_err();
        assert!(
            why.starts_with("no ssh-ed25519 key of 10.0.0.7 in "),
            "{why}"
        );
        assert!(why.contains("SHA256:"), "{why}");
        let why = known_host("10.0.0.5", 2222, &key(KEY_A), &files).unwrap_err();
        assert!(why.contains("of [10.0.0.5]:2222"), "{why}");
        let (_d, none) = known_hosts("");
        assert!(known_host("10.0.0.5", 22, &key(KEY_A), &none).is_err());
    }

    #[test]
    fn a_changed_key_is_refused_naming_the_file() {
        let (_d, files) = known_hosts(&format!("# hosts\n10.0.0.5 {KEY_A}\n"));
        let why = known_host("10.0.0.5", 22, &key(KEY_B), &files).unwrap_err();
        assert!(
            why.starts_with("the host key of 10.0.0.5 has changed ("),
            "{why}"
        );
    }
}
