//! `EngineError`: everything that can go wrong launching, supervising or stopping a
//! managed engine.
//!
//! Every variant is `Clone` (I/O sources are behind `Arc`) because one start attempt is
//! shared by every caller that waited for it: each of them gets its own copy of the
//! outcome.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// An error from a managed engine. Messages are lower-case and name the machine.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The machine name is not `[a-z0-9-]{1,20}`.
    #[error("invalid machine name {name:?}: want 1 to 20 of [a-z0-9-]")]
    InvalidName {
        /// The rejected name.
        name: String,
    },

    /// A program the managed engine needs is not installed.
    #[error("{program} not found (looked in {searched}): install the Debian package {package} (apt-get install {package})")]
    MissingPrerequisite {
        /// The program looked for, e.g. `containerd`.
        program: String,
        /// Where it was looked for (`PATH` plus the standard sbin directories, or the
        /// configured path).
        searched: String,
        /// The Debian package that ships it.
        package: &'static str,
    },

    /// Managed engines create network namespaces and mounts, which needs root.
    #[error("managed engine {machine:?} needs root (network namespaces and mounts); berth runs as uid {uid}")]
    NotRoot {
        /// The machine name.
        machine: String,
        /// The effective uid berth runs as.
        uid: u32,
    },

    /// A unix socket path derived from `state_dir` would exceed the kernel limit.
    #[error("socket path {path:?} is {len} bytes, over the unix socket limit of {limit}: choose a shorter state_dir")]
    PathTooLong {
        /// The offending path (the longest socket dockerd or containerd will create).
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The limit (107 bytes plus the terminating NUL).
        limit: usize,
    },

    /// A file system operation on the machine's state failed.
    #[error("engine {machine:?}: cannot {action} {path:?}: {source}")]
    Io {
        /// The machine name.
        machine: String,
        /// What berth was doing, e.g. "create directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },

    /// Creating or configuring the network namespace failed.
    #[error("engine {machine:?}: network namespace {netns:?}: {message}")]
    Netns {
        /// The machine name.
        machine: String,
        /// The namespace name, e.g. `berth-default`.
        netns: String,
        /// What failed, with the `ip` command's own message.
        message: String,
    },

    /// A VM machine's guest image, data disk or settings are not usable.
    #[error("engine {machine:?}: {message}")]
    Vm {
        /// The machine name.
        machine: String,
        /// What is wrong.
        message: String,
    },

    /// dockerd could not be spawned at all.
    #[error("engine {machine:?}: cannot run {program:?}: {source}")]
    Spawn {
        /// The machine name.
        machine: String,
        /// The program that failed to start.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },

    /// dockerd exited before it answered `GET /_ping`.
    #[error(
        "engine {machine:?} failed to start: dockerd exited ({status}){}",
        last_line(log_tail)
    )]
    Exited {
        /// The machine name.
        machine: String,
        /// How it exited, e.g. "exit status: 125".
        status: String,
        /// The last lines of `dockerd.log`.
        log_tail: String,
    },

    /// dockerd did not answer `GET /_ping` within `start_timeout`; it has been killed.
    #[error(
        "engine {machine:?} failed to start: dockerd not ready after {after:?}{}",
        last_line(log_tail)
    )]
    StartTimeout {
        /// The machine name.
        machine: String,
        /// The configured start timeout.
        after: Duration,
        /// The last lines of `dockerd.log`.
        log_tail: String,
    },

    /// The engine's process ran but did not answer `GET /_ping` for the liveness
    /// timeout: it was killed (and is restarted with the backoff).
    #[error("engine {machine:?} wedged: its process (pid {pid}) ran but did not answer /_ping for {silent_for:?} ({misses} probes in a row): killed")]
    Wedged {
        /// The machine name.
        machine: String,
        /// The process that was killed (dockerd, or QEMU for a VM).
        pid: u32,
        /// Time since the last answer (or since it became ready).
        silent_for: Duration,
        /// Consecutive probes without an answer.
        misses: u32,
    },

    /// The supervisor gave up after too many consecutive failures; `stop` resets it.
    #[error("engine {machine:?} failed {failures} times in a row, not retrying until it is stopped: {reason}")]
    GaveUp {
        /// The machine name.
        machine: String,
        /// Consecutive failures counted.
        failures: u32,
        /// The last failure.
        reason: String,
        /// The last lines of `dockerd.log` at the last failure.
        log_tail: String,
    },

    /// Sending a signal to dockerd failed.
    #[error("engine {machine:?}: cannot signal dockerd (pid {pid}): {source}")]
    Signal {
        /// The machine name.
        machine: String,
        /// The pid signalled.
        pid: u32,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },

    /// The start was abandoned because the runtime is shutting down.
    #[error("engine {machine:?}: start abandoned (runtime shutting down)")]
    Cancelled {
        /// The machine name.
        machine: String,
    },

    /// `stop` was called while this start waited (backoff or readiness); the start was
    /// abandoned and its dockerd stopped.
    #[error("engine {machine:?}: start abandoned: stop requested")]
    StopRequested {
        /// The machine name.
        machine: String,
    },

    /// dockerd did not exit even after SIGKILL.
    #[error("engine {machine:?}: dockerd (pid {pid}) did not exit after SIGKILL")]
    StopTimeout {
        /// The machine name.
        machine: String,
        /// The pid that survived.
        pid: u32,
    },
}

impl EngineError {
    /// The last lines of dockerd's log, when the error comes from a failed start.
    pub fn log_tail(&self) -> Option<&str> {
        match self {
            Self::Exited { log_tail, .. }
            | Self::StartTimeout { log_tail, .. }
            | Self::GaveUp { log_tail, .. } => Some(log_tail),
            _ => None,
        }
    }

    /// True when the error says a program is not installed (a setup problem, not a
    /// transient one).
    pub fn is_missing_prerequisite(&self) -> bool {
        matches!(self, Self::MissingPrerequisite { .. })
    }

    pub(crate) fn io(
        machine: &str,
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    ) -> Self {
        Self::Io {
            machine: machine.to_owned(),
            action,
            path,
            source: Arc::new(source),
        }
    }
}

/// `": <last log line>"` for a one-line message, or nothing when the log is empty.
/// The whole tail is available from [`EngineError::log_tail`]. Skips the usage hint
/// ("See 'dockerd --help'.") that follows a flag error: the line before says what is
/// wrong.
fn last_line(log_tail: &str) -> String {
    let telling = |line: &&str| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with("See '")
    };
    match log_tail.lines().rev().find(telling) {
        Some(line) => format!(": {}", line.trim()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(log_tail: &str) -> EngineError {
        EngineError::Exited {
            machine: "be-t".to_owned(),
            status: "exit status: 125".to_owned(),
            log_tail: log_tail.to_owned(),
        }
    }

    #[test]
    fn start_errors_show_the_telling_log_line() {
        let err = exited("unknown flag: --no-such-flag\nSee 'dockerd --help'.\n");
        assert_eq!(
            err.to_string(),
            "engine \"be-t\" failed to start: dockerd exited (exit status: 125): unknown flag: --no-such-flag"
        );
        assert!(err.log_tail().unwrap().contains("See 'dockerd --help'."));
        let quiet = exited("");
        assert!(quiet.to_string().ends_with("(exit status: 125)"));
    }
}
