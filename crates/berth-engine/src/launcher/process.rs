//! A running dockerd: ours (a child we reap) or adopted (left by an earlier berth).
//!
//! Both kinds are held through a pidfd where the kernel has one (Linux ≥ 5.3): signals go
//! through `pidfd_send_signal`, so a signal can never hit a process that reused the pid.
//! Exit is published on a `watch` channel by a small task: for a child, the task reaps
//! it with `Child::wait`; for an adopted process, it waits for the pidfd to become
//! readable (falling back to polling `kill(pid, 0)` without pidfd).

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;

/// How dockerd ended, for logs and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExitInfo(pub(crate) String);

/// A dockerd process and the news of its exit.
#[derive(Debug)]
pub(crate) struct DockerdProcess {
    pid: u32,
    pidfd: Option<OwnedFd>,
    adopted: bool,
    exit: watch::Receiver<Option<ExitInfo>>,
}

impl DockerdProcess {
    /// Takes over a child just spawned. Must run inside a tokio runtime.
    pub(crate) fn from_child(mut child: tokio::process::Child) -> io::Result<Self> {
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("child exited before it could be watched"))?;
        // The child is not reaped until `wait` below, so the pid is still ours here.
        let pidfd = open_pidfd(pid).ok();
        let (tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let info = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("unknown status (wait failed: {e})"),
            };
            tx.send_replace(Some(ExitInfo(info)));
        });
        Ok(Self {
            pid,
            pidfd,
            adopted: false,
            exit,
        })
    }

    /// Adopts a dockerd that is not our child. Must run inside a tokio runtime.
    pub(crate) fn adopt(pid: u32) -> io::Result<Self> {
        let pidfd = match open_pidfd(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc_esrch()) => {
                return Err(io::Error::from(io::ErrorKind::NotFound))
            }
            // ENOSYS on kernels before 5.3: fall back to polling.
            Err(_) => None,
        };
        let (tx, exit) = watch::channel(None);
        let gone = || Some(ExitInfo("exited (adopted: status unknown)".into()));
        match &pidfd {
            Some(fd) => {
                // tokio deprecates the safe constructor because a generic `AsRawFd` may
                // not own its descriptor; an `OwnedFd` does, for the AsyncFd's whole
                // life, which is what the `unsafe` replacement asks the caller to promise.
                #[allow(deprecated)]
                let readable = AsyncFd::with_interest(fd.try_clone()?, Interest::READABLE)?;
                tokio::spawn(async move {
                    // A pidfd becomes readable when the process terminates.
                    let _ = readable.readable().await;
                    tx.send_replace(gone());
                });
            }
            None => {
                tokio::spawn(async move {
                    while is_alive(pid) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    tx.send_replace(gone());
                });
            }
        }
        Ok(Self {
            pid,
            pidfd,
            adopted: true,
            exit,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn is_adopted(&self) -> bool {
        self.adopted
    }

    /// A receiver that holds `Some` once the process has exited.
    pub(crate) fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.exit.clone()
    }

    /// How it exited, if it has.
    pub(crate) fn exit_info(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// Sends `signal`; a process already gone is not an error.
    pub(crate) fn signal(&self, signal: Signal) -> io::Result<()> {
        if self.exit_info().is_some() {
            return Ok(());
        }
        let sent = match &self.pidfd {
            Some(fd) => pidfd_send_signal(fd, signal).map_err(io::Error::from),
            None => {
                let sig =
                    nix::sys::signal::Signal::try_from(signal.as_raw()).map_err(io::Error::from)?;
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig)
                    .map_err(io::Error::from)
            }
        };
        match sent {
            Err(e) if e.raw_os_error() == Some(libc_esrch()) => Ok(()),
            other => other,
        }
    }

    /// Waits up to `timeout` for the exit; true if it has exited.
    pub(crate) async fn wait_exit(&self, timeout: Duration) -> bool {
        let mut exit = self.exit.clone();
        let outcome = tokio::time::timeout(timeout, async {
            exit.wait_for(Option::is_some).await.map(|_| ())
        })
        .await;
        match outcome {
            Ok(Ok(())) => true,
            // The watching task is gone: only happens when the runtime shuts down.
            Ok(Err(_)) => !is_alive(self.pid),
            Err(_) => false,
        }
    }

    /// SIGTERM, up to `grace` for a clean exit, then SIGKILL and up to 10 s more.
    /// Returns false if the process survived even that.
    pub(crate) async fn terminate(&self, grace: Duration) -> io::Result<bool> {
        if self.exit_info().is_some() {
            return Ok(true);
        }
        self.signal(Signal::TERM)?;
        if self.wait_exit(grace).await {
            return Ok(true);
        }
        tracing::warn!(
            pid = self.pid,
            ?grace,
            "dockerd did not exit after SIGTERM, sending SIGKILL"
        );
        self.signal(Signal::KILL)?;
        Ok(self.wait_exit(Duration::from_secs(10)).await)
    }
}

fn open_pidfd(pid: u32) -> io::Result<OwnedFd> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    pidfd_open(pid, PidfdFlags::empty()).map_err(io::Error::from)
}

fn libc_esrch() -> i32 {
    nix::Error::ESRCH as i32
}

/// Alive and not a zombie.
pub(crate) fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A live dockerd started with `--pidfile <pidfile>`, found through that pidfile: the
/// one an earlier berth (or an earlier supervisor) left running.
pub(crate) fn find_leftover(pidfile: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    (is_alive(pid) && runs_with_pidfile(pid, pidfile)).then_some(pid)
}

/// Whether process `pid`'s command line holds `--pidfile <pidfile>` (or `=`; QEMU's
/// `-pidfile <pidfile>`): guards
/// against a pid reused by an unrelated process.
pub(crate) fn runs_with_pidfile(pid: u32, pidfile: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    has_pidfile_arg(&cmdline, pidfile)
}

/// Whether some argument of process `pid` lies under `dir`.
pub(crate) fn mentions(pid: u32, dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let dir = dir.as_os_str().as_bytes();
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg.starts_with(dir) && arg.get(dir.len()) == Some(&b'/'))
}

fn has_pidfile_arg(cmdline: &[u8], pidfile: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let want = pidfile.as_os_str().as_bytes();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2)
        .any(|w| (w[0] == b"--pidfile" || w[0] == b"-p" || w[0] == b"-pidfile") && w[1] == want)
        || args
            .iter()
            .any(|a| a.strip_prefix(b"--pidfile=") == Some(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfile_argument_is_matched_exactly() {
        let p = Path::new("/tmp/m/dockerd.pid");
        assert!(has_pidfile_arg(
            b"dockerd\0--pidfile\0/tmp/m/dockerd.pid\0",
            p
        ));
        assert!(has_pidfile_arg(
            b"dockerd\0--pidfile=/tmp/m/dockerd.pid\0",
            p
        ));
        assert!(!has_pidfile_arg(
            b"dockerd\0--pidfile\0/tmp/m/dockerd.pid2\0",
            p
        ));
        assert!(!has_pidfile_arg(b"sleep\0ten\0", p));
    }

    #[test]
    fn own_process_is_alive_and_a_free_pid_is_not() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX));
    }

    #[tokio::test]
    async fn terminate_stops_a_child_with_sigterm() {
        let child = tokio::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let process = DockerdProcess::from_child(child).unwrap();
        assert!(process.exit_info().is_none());
        assert!(process.terminate(Duration::from_secs(5)).await.unwrap());
        let info = process.exit_info().unwrap();
        assert!(
            info.0.contains("SIGTERM") || info.0.contains("15"),
            "{info:?}"
        );
        // Signalling a process that is gone is fine.
        process.signal(Signal::KILL).unwrap();
    }

    #[tokio::test]
    async fn adopted_process_exit_is_noticed() {
        // A child of std::process: tokio does not reap it, so adopt() sees it as a
        // foreign process. A thread reaps it once it is killed.
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let pid = child.id();
        let process = DockerdProcess::adopt(pid).unwrap();
        assert!(process.is_adopted());
        let reaper = std::thread::spawn(move || child.wait());
        process.signal(Signal::KILL).unwrap();
        assert!(process.wait_exit(Duration::from_secs(5)).await);
        reaper.join().unwrap().unwrap();
    }
}
