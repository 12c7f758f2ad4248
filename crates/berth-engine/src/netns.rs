//! The machine's network namespace: `/var/run/netns/berth-<name>`.
//!
//! dockerd runs inside it (entered with `nsenter --net=…`, network only, so dockerd keeps
//! the host's `/sys` and cgroup mounts), which gives each machine its own `docker0`,
//! iptables tables and published ports, invisible from the host.
//!
//! Lifecycle: created (with `lo` up) before the first start if missing, and *kept* across
//! restarts and across `stop`, so [`crate::EngineSupervisor::netns_path`] names the same
//! namespace for the machine's whole life. Only `teardown` removes it, and only when no
//! process is left inside: `ip netns del` only drops the name, so a namespace still
//! holding a process (a stray containerd-shim or container) would live on unnamed, and
//! the next start would create a second one beside it.
//!
//! Privileged operations go through [`NetnsControl`], so the create/teardown logic is
//! tested against a recording double without root (the youki `Syscall` seam). The real
//! implementation runs the `ip` command: no `unsafe` here.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::EngineError;

/// Where `ip netns` keeps namespace names.
pub(crate) const NETNS_DIR: &str = "/var/run/netns";

/// What is at a namespace path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// Nothing: the namespace must be created.
    Missing,
    /// A mounted namespace file (nsfs): usable.
    Mounted,
    /// A plain file left by a failed `ip netns add`: remove it, then create.
    Stale,
}

/// The privileged operations on network namespaces.
pub(crate) trait NetnsControl: Send + Sync + fmt::Debug {
    /// What is at `path`.
    fn presence(&self, path: &Path) -> Presence;
    /// Removes a stale (unmounted) namespace file.
    fn remove_stale(&self, path: &Path) -> Result<(), String>;
    /// Creates namespace `name`.
    fn add(&self, name: &str) -> Result<(), String>;
    /// Brings `lo` up inside namespace `name`.
    fn loopback_up(&self, name: &str) -> Result<(), String>;
    /// Processes whose network namespace is the one at `path`.
    fn occupants(&self, path: &Path) -> Vec<u32>;
    /// Deletes namespace `name`.
    fn delete(&self, name: &str) -> Result<(), String>;
}

/// What `teardown` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Teardown {
    /// There was no namespace.
    Absent,
    /// The namespace was deleted.
    Removed,
    /// Processes are still inside; the namespace was kept.
    Kept { occupants: Vec<u32> },
}

/// One machine's namespace, driven through a [`NetnsControl`].
#[derive(Debug)]
pub(crate) struct MachineNetns<C = IpCommand> {
    machine: String,
    name: String,
    path: PathBuf,
    control: C,
}

impl<C: NetnsControl> MachineNetns<C> {
    /// The namespace of machine `machine`: `berth-<machine>`.
    pub(crate) fn new(machine: &str, control: C) -> Self {
        let name = format!("berth-{machine}");
        Self {
            machine: machine.to_owned(),
            path: Path::new(NETNS_DIR).join(&name),
            name,
            control,
        }
    }

    /// `/var/run/netns/berth-<machine>`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the namespace if missing and brings `lo` up (every time: cheap, and it
    /// repairs a namespace someone else created).
    pub(crate) fn ensure(&self) -> Result<(), EngineError> {
        match self.control.presence(&self.path) {
            Presence::Mounted => {}
            Presence::Stale => {
                self.control
                    .remove_stale(&self.path)
                    .map_err(|m| self.error(m))?;
                self.control.add(&self.name).map_err(|m| self.error(m))?;
            }
            Presence::Missing => self.control.add(&self.name).map_err(|m| self.error(m))?,
        }
        self.control
            .loopback_up(&self.name)
            .map_err(|m| self.error(m))
    }

    /// Deletes the namespace if nothing runs inside it.
    pub(crate) fn teardown(&self) -> Result<Teardown, EngineError> {
        match self.control.presence(&self.path) {
            Presence::Missing => Ok(Teardown::Absent),
            Presence::Stale => {
                self.control
                    .remove_stale(&self.path)
                    .map_err(|m| self.error(m))?;
                Ok(Teardown::Removed)
            }
            Presence::Mounted => {
                let occupants = self.control.occupants(&self.path);
                if !occupants.is_empty() {
                    return Ok(Teardown::Kept { occupants });
                }
                self.control.delete(&self.name).map_err(|m| self.error(m))?;
                Ok(Teardown::Removed)
            }
        }
    }

    fn error(&self, message: String) -> EngineError {
        EngineError::Netns {
            machine: self.machine.clone(),
            netns: self.name.clone(),
            message,
        }
    }
}

/// Whether process `pid` lives in the namespace mounted at `path`.
pub(crate) fn process_is_in(pid: u32, path: &Path) -> bool {
    match (
        std::fs::metadata(format!("/proc/{pid}/ns/net")),
        std::fs::metadata(path),
    ) {
        (Ok(ns), Ok(target)) => ns.dev() == target.dev() && ns.ino() == target.ino(),
        _ => false,
    }
}

// === impl IpCommand ===

/// [`NetnsControl`] with the iproute2 `ip` command.
#[derive(Debug, Clone)]
pub(crate) struct IpCommand {
    ip: PathBuf,
}

impl IpCommand {
    pub(crate) fn new(ip: PathBuf) -> Self {
        Self { ip }
    }

    pub(crate) fn run(&self, args: &[&str]) -> Result<(), String> {
        let output = Command::new(&self.ip)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.ip.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`ip {}` failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

impl NetnsControl for IpCommand {
    fn presence(&self, path: &Path) -> Presence {
        if std::fs::symlink_metadata(path).is_err() {
            return Presence::Missing;
        }
        match nix::sys::statfs::statfs(path) {
            Ok(fs) if fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC => Presence::Mounted,
            _ => Presence::Stale,
        }
    }

    fn remove_stale(&self, path: &Path) -> Result<(), String> {
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale {}: {e}", path.display()))
    }

    fn add(&self, name: &str) -> Result<(), String> {
        self.run(&["netns", "add", name])
    }

    fn loopback_up(&self, name: &str) -> Result<(), String> {
        self.run(&["-n", name, "link", "set", "lo", "up"])
    }

    fn occupants(&self, path: &Path) -> Vec<u32> {
        let Ok(target) = std::fs::metadata(path) else {
            return Vec::new();
        };
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::metadata(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|ns| ns.dev() == target.dev() && ns.ino() == target.ino())
            })
            .collect()
    }

    fn delete(&self, name: &str) -> Result<(), String> {
        self.run(&["netns", "del", name])
    }
}

#[cfg(test)]
mod tests;
