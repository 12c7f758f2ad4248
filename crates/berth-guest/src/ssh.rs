//! An engine behind SSH: one OpenSSH connection per machine, a channel per API
//! connection.
//!
//! berth runs `ssh` itself as a control master (`-M -S ctl -N`) with a local forward
//! of a Unix socket to the engine's socket on the remote host (`-L local:remote`). Each
//! connection berth opens to the local socket becomes a new `direct-streamlocal`
//! channel over the one authenticated connection: no handshake, no login, no remote
//! process per API connection, and for the rest of berth a plain Unix socket (splice,
//! half-close and the connection pool as for a local engine). Where the engine's socket
//! cannot be reached that way (`dial_stdio = true`), each connection is a session
//! channel running `docker system dial-stdio` through the same master instead.
//!
//! Host keys are checked against the machine's `known_hosts` only
//! (`StrictHostKeyChecking=yes`, batch mode: no prompt, no key accepted on first use).
//! When the connection drops, the master is started again with backoff; requests meanwhile
//! fail at once with the last error ssh gave.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::{GuestStream, LeanSocket, SshDestination};

/// The first wait after the connection drops; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A connection that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Seconds between ssh's keep-alive probes, and how many may go unanswered.
const ALIVE_INTERVAL: u32 = 5;
const ALIVE_COUNT: u32 = 3;

/// How to reach one SSH machine.
#[derive(Clone, Debug)]
pub struct SshSettings {
    /// The machine's name (for errors and logs).
    pub machine: String,
    /// `user@host:port`.
    pub destination: SshDestination,
    /// `identity_file`: the private key (ssh's defaults when `None`).
    pub identity_file: Option<PathBuf>,
    /// `known_hosts`: the only host keys accepted (ssh's default files when `None`).
    pub known_hosts: Option<PathBuf>,
    /// The engine's socket on the remote host.
    pub remote_socket: PathBuf,
    /// Run `docker system dial-stdio` per connection instead of forwarding the socket.
    pub dial_stdio: bool,
    /// A private directory for the control and forwarded sockets.
    pub run_dir: PathBuf,
    /// The `ssh` program.
    pub program: PathBuf,
    /// How long ssh may take to connect.
    pub connect_timeout: Duration,
}

/// The state of the one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunnelState {
    /// Not connected yet (the first attempt is under way).
    Connecting,
    /// Connected since then.
    Up { since: SystemTime },
    /// Down since then, with ssh's last words; reconnecting with backoff.
    Down { since: SystemTime, error: String },
    /// Stopped for good (berth is shutting down).
    Stopped,
}

/// A supervised SSH connection to one machine.
#[derive(Debug)]
pub struct SshTunnel {
    settings: SshSettings,
    state: watch::Sender<TunnelState>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SshTunnel {
    /// Starts the connection in the background (needs a tokio runtime).
    pub fn start(settings: SshSettings) -> io::Result<Arc<Self>> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&settings.run_dir)?;
        let tunnel = Arc::new(Self {
            settings,
            state: watch::Sender::new(TunnelState::Connecting),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(Arc::clone(&tunnel).supervise());
        *tunnel.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(tunnel)
    }

    /// The connection's state now.
    pub fn state(&self) -> TunnelState {
        self.state.borrow().clone()
    }

    /// Ends the connection (the master is killed) and stops reconnecting.
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        self.state.send_replace(TunnelState::Stopped);
        let _ = std::fs::remove_file(self.forward_path());
    }

    fn control_path(&self) -> PathBuf {
        self.settings.run_dir.join("ctl")
    }

    fn forward_path(&self) -> PathBuf {
        self.settings.run_dir.join("docker.sock")
    }

    /// Opens a channel to the engine. Waits for the first connection (up to
    /// `timeout`); once it has failed, fails at once with ssh's last error until the
    /// connection is back.
    pub(crate) async fn open(&self, timeout: Duration) -> Result<GuestStream, String> {
        let mut rx = self.state.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| !matches!(s, TunnelState::Connecting)),
        )
        .await;
        let state = match waited {
            Ok(Ok(s)) => s.clone(),
            Ok(Err(_)) => TunnelState::Stopped,
            Err(_) => return Err(format!("ssh did not connect within {timeout:?}")),
        };
        match state {
            TunnelState::Up { .. } => {}
            TunnelState::Down { error, .. } => return Err(format!("ssh connection down: {error}")),
            TunnelState::Stopped => return Err("ssh connection stopped".into()),
            TunnelState::Connecting => unreachable!("waited for another state"),
        }
        if self.settings.dial_stdio {
            self.dial_stdio()
                .map_err(|e| format!("ssh dial-stdio: {e}"))
        } else {
            LeanSocket::connect_unix(&self.forward_path())
                .map(GuestStream::new)
                .map_err(|e| format!("ssh forward: {:?}", e.kind()))
        }
    }

    /// One `docker system dial-stdio` through the master, its stdio one end of a
    /// socket pair.
    fn dial_stdio(&self) -> io::Result<GuestStream> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let theirs_out = theirs.try_clone()?;
        let mut child = tokio::process::Command::new(&self.settings.program)
            .args(self.common_args())
            .arg("-S")
            .arg(self.control_path())
            .args(["-o", "ControlMaster=no", "-T"])
            .arg(self.destination())
            .args(["--", "docker", "system", "dial-stdio"])
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs_out)))
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        // Reaped when the stream ends (ssh exits on its stdin's EOF).
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(GuestStream::new(LeanSocket::new(ours.into())?))
    }

    fn destination(&self) -> String {
        let d = &self.settings.destination;
        match &d.user {
            Some(user) => format!("{user}@{}", d.host),
            None => d.host.clone(),
        }
    }

    /// Options every ssh invocation of this machine gets.
    fn common_args(&self) -> Vec<String> {
        let s = &self.settings;
        let mut args: Vec<String> = [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "UpdateHostKeys=no",
            "LogLevel=ERROR",
        ]
        .iter()
        .flat_map(|o| ["-o".to_owned(), (*o).to_owned()])
        .collect();
        if let Some(known) = &s.known_hosts {
            args.extend([
                "-o".into(),
                format!("UserKnownHostsFile={}", known.display()),
                "-o".into(),
                "GlobalKnownHostsFile=/dev/null".into(),
            ]);
        }
        if let Some(identity) = &s.identity_file {
            args.extend([
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                "-i".into(),
                identity.display().to_string(),
            ]);
        }
        if let Some(port) = s.destination.port {
            args.extend(["-p".into(), port.to_string()]);
        }
        args
    }

    /// Keeps the master running: start, wait until its sockets exist, wait for it to
    /// end, back off, again.
    async fn supervise(self: Arc<Self>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let started = Instant::now();
            let error = self.run_master().await;
            tracing::warn!(machine = %self.settings.machine, %error, "ssh connection down");
            let _ = std::fs::remove_file(self.forward_path());
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

    /// Runs one master until it ends; returns why it ended.
    async fn run_master(&self) -> String {
        let ctl = self.control_path();
        let forward = self.forward_path();
        for stale in [&ctl, &forward] {
            let _ = std::fs::remove_file(stale);
        }
        let s = &self.settings;
        let mut command = tokio::process::Command::new(&s.program);
        command
            .args(["-M", "-N", "-T", "-S"])
            .arg(&ctl)
            .args(self.common_args())
            .args([
                "-o",
                "ControlPersist=no",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "StreamLocalBindUnlink=yes",
                "-o",
                "StreamLocalBindMask=0177",
                // AES-GCM first (AES-NI): bulk streams (exec, cp, logs) cost less CPU
                // than with the default chacha20-poly1305; the server still chooses.
                "-o",
                "Ciphers=^aes128-gcm@openssh.com,aes256-gcm@openssh.com",
            ])
            .arg("-o")
            .arg(format!("ServerAliveInterval={ALIVE_INTERVAL}"))
            .arg("-o")
            .arg(format!("ServerAliveCountMax={ALIVE_COUNT}"))
            .arg("-o")
            .arg(format!(
                "ConnectTimeout={}",
                s.connect_timeout.as_secs().max(1)
            ));
        if !s.dial_stdio {
            command.arg("-L").arg(format!(
                "{}:{}",
                forward.display(),
                s.remote_socket.display()
            ));
        }
        let mut child = match command
            .arg(self.destination())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return format!("starting {}: {e}", s.program.display()),
        };
        // Drained all along (a full pipe would stall ssh); the last line says why it ended.
        let last_words = Arc::new(Mutex::new(String::new()));
        let drain = child.stderr.take().map(|stderr| {
            let last_words = Arc::clone(&last_words);
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if !line.trim().is_empty() {
                        *last_words.lock().unwrap_or_else(|e| e.into_inner()) =
                            line.trim().to_owned();
                    }
                }
            })
        });
        let ready = if s.dial_stdio { &ctl } else { &forward };
        // The socket appears once ssh has authenticated and set the forward up.
        let status = loop {
            if ready.exists() {
                tracing::info!(machine = %s.machine, "ssh connection up");
                self.state.send_replace(TunnelState::Up {
                    since: SystemTime::now(),
                });
                break child.wait().await;
            }
            if let Ok(status) = tokio::time::timeout(Duration::from_millis(10), child.wait()).await
            {
                break status;
            }
        };
        if let Some(drain) = drain {
            let _ = tokio::time::timeout(Duration::from_millis(200), drain).await;
        }
        let last = std::mem::take(&mut *last_words.lock().unwrap_or_else(|e| e.into_inner()));
        match status {
            _ if !last.is_empty() => last,
            Ok(status) => format!("ssh exited ({status})"),
            Err(e) => format!("waiting for ssh: {e}"),
        }
    }
}
