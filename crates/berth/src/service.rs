//! Running under a service manager (systemd): listeners handed over by socket
//! activation (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`) and state notifications
//! (`NOTIFY_SOCKET`: `READY=1`, `STATUS=…`, `STOPPING=1`).
//!
//! Both are read from the environment once, before the runtime starts any thread, and
//! the variables are removed then, so that the dockerd processes berth starts do not
//! inherit them (dockerd would take the notification socket for its own).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{SocketAddr, UnixDatagram};

use anyhow::{Context, Result};
use sd_notify::NotifyState;

use crate::cmd::UsageError;

/// What the service manager handed over.
#[derive(Debug)]
pub(crate) struct Handover {
    /// Listening sockets, with their descriptor number and name (`LISTEN_FDNAMES`).
    pub(crate) sockets: Vec<HandedSocket>,
    pub(crate) notifier: Notifier,
}

/// One socket passed by socket activation.
#[derive(Debug)]
pub(crate) struct HandedSocket {
    pub(crate) fd: OwnedFd,
    /// Its descriptor number, as `fd://N` names it.
    pub(crate) number: RawFd,
    /// Its name (systemd: the socket unit's `FileDescriptorName=`, else the unit's name).
    pub(crate) name: String,
}

impl Handover {
    /// Takes the handed-over sockets and the notification socket out of the environment.
    /// Must run before any thread is started (it edits the environment).
    #[allow(unsafe_code)]
    // Removing the variables is the point: dockerd children must not inherit them, and
    // this runs once, before any thread (never under parallel tests).
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn take() -> Result<Self> {
        let notifier = Notifier::from_env();
        // SAFETY (environment): called from `berth serve` before the runtime or any other
        // thread exists, so nothing reads the environment concurrently.
        let fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
            .context("reading the sockets handed over (LISTEN_FDS)")?;
        let sockets = fds
            .map(|(number, name)| HandedSocket {
                // SAFETY (descriptor): LISTEN_PID named this process, so descriptors
                // 3..3+LISTEN_FDS were opened for it by the service manager and nothing
                // in berth has taken them; the variables are gone now, so no second
                // owner can be made from them.
                fd: unsafe { OwnedFd::from_raw_fd(number) },
                number,
                name,
            })
            .collect();
        std::env::remove_var("NOTIFY_SOCKET");
        Ok(Self { sockets, notifier })
    }

    /// The sockets `-H fd://SELECTOR` names, as dockerd reads it: empty or `*` for all,
    /// a number for that descriptor, otherwise the sockets with that name.
    pub(crate) fn select(&mut self, selector: &str) -> Result<Vec<HandedSocket>> {
        if self.sockets.is_empty() {
            return Err(UsageError(format!(
                "-H fd://{selector}: no sockets were handed over by socket activation (LISTEN_FDS): start berth through its socket unit (berth install), or use -H unix:///path"
            ))
            .into());
        }
        let wanted = |s: &HandedSocket| match selector {
            "" | "*" => true,
            n if n.parse::<RawFd>().is_ok() => n.parse() == Ok(s.number),
            name => s.name == name,
        };
        let (chosen, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(wanted);
        self.sockets = rest;
        if chosen.is_empty() {
            return Err(UsageError(format!(
                "-H fd://{selector}: no handed-over socket has that number or name (left: {})",
                self.sockets
                    .iter()
                    .map(|s| format!("{} ({})", s.number, s.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
        Ok(chosen)
    }
}

/// Tells the service manager what berth is doing; does nothing when it did not ask.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    socket: Option<SocketAddr>,
}

impl Notifier {
    fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
            match bytes.strip_prefix(b"@") {
                // An abstract socket (systemd's own is a path, containers' may not be).
                Some(name) => {
                    <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name)
                        .ok()
                }
                None => SocketAddr::from_pathname(&path).ok(),
            }
        });
        Self { socket }
    }

    /// Sends `states`; a failure is logged, never fatal (the manager may be gone).
    pub(crate) fn send(&self, states: &[NotifyState<'_>]) {
        let Some(addr) = &self.socket else {
            return;
        };
        let message: String = states.iter().map(|s| format!("{s}\n")).collect();
        let sent =
            UnixDatagram::unbound().and_then(|sock| sock.send_to_addr(message.as_bytes(), addr));
        if let Err(e) = sent {
            tracing::warn!(error = %e, "notifying the service manager failed");
        }
    }
}

/// Whether systemd manages this machine (as `sd_booted()`).
pub(crate) fn systemd_running() -> bool {
    sd_notify::booted().unwrap_or(false)
}
