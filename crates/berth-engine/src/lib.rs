//! Managed engines: the dockerd berth launches, supervises and stops itself. With no
//! configuration berth runs one such machine, `default`.
//!
//! ```text
//!  gateway route ──ensure_running()──► EngineSupervisor ──spawns──► nsenter --net=… dockerd
//!    │  Generation: drop pooled         │ readiness: /_ping,          (+ the containerd it starts)
//!    │  connections of older ones       │ exit watcher, backoff       netns  /var/run/netns/berth-<name>
//!    └──── connects to socket_path() ───┼──────────────────────────►  state_dir/docker.sock
//!  host-port forwarder ── opens sockets inside netns_path()
//! ```
//!
//! Modules, in the order a start uses them: [`config`](MachineConfig) (plain data),
//! `prerequisites` (programs and their Debian packages), `netns` (the namespace),
//! `launcher` (layout, command line, log, pidfile, leftovers), `readiness` (the state word
//! and `/_ping`), `supervisor` (lazy start, restart, stop). A VM machine
//! ([`MachineConfig::vm`]) swaps the launcher for `vm` (guest image, QEMU, KVM or TCG,
//! tap device in the same namespace, clean poweroff); the supervisor is the same.
//! Everything fallible returns [`EngineError`].

mod config;
mod error;
mod launcher;
mod netns;
mod prerequisites;
mod readiness;
mod supervisor;
mod vm;

pub use config::{
    BackoffConfig, MachineConfig, VmConfig, DEFAULT_LIVENESS_TIMEOUT, DEFAULT_MACHINES_DIR,
};
pub use error::EngineError;
pub use readiness::{Generation, MachineState, MachineStatus};
pub use supervisor::EngineSupervisor;
pub use vm::{Accelerator, MachineType, VmFacts};

use std::ffi::OsString;
use std::path::Path;

/// The command line a machine's dockerd is started with (`nsenter --net=… -- dockerd
/// --data-root … --host unix://…`), for a machine whose state lives in `state_dir` and
/// whose namespace is at `netns_path`: for tools that must start the same dockerd the
/// same way by hand (the cold-start benchmark's baseline).
pub fn dockerd_command_line(
    state_dir: &Path,
    netns_path: &Path,
) -> Result<Vec<OsString>, EngineError> {
    let path_var = std::env::var_os("PATH");
    let programs = prerequisites::Programs::find(Path::new("dockerd"), path_var.as_deref())?;
    let launcher = launcher::DockerdLauncher::new(
        "",
        launcher::MachineLayout::new(state_dir),
        programs,
        netns_path.to_path_buf(),
        Vec::new(),
    );
    Ok(launcher.argv())
}
