//! Plain configuration data for one managed machine.

use std::path::PathBuf;
use std::time::Duration;

use crate::EngineError;

/// Where the state directories of machines live by default.
pub const DEFAULT_MACHINES_DIR: &str = "/var/lib/berth/machines";

/// How long a running engine may leave `GET /_ping` unanswered before it counts as
/// wedged: generous, because a VM under TCG on a busy host answers slowly while it works.
pub const DEFAULT_LIVENESS_TIMEOUT: Duration = Duration::from_secs(60);

/// Configuration of one managed machine: a dockerd in its own network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// Machine name, `[a-z0-9-]{1,20}`. Names the network namespace `berth-<name>`.
    pub name: String,
    /// The machine's own directory: `data/` (images, volumes, containers), `exec/`,
    /// `docker.sock`, `dockerd.pid`, `dockerd.log`. Keep it short: unix socket paths
    /// below it are limited to 107 bytes.
    pub state_dir: PathBuf,
    /// The dockerd binary: a bare name is looked up on `PATH` (plus the sbin directories).
    pub dockerd: PathBuf,
    /// Extra arguments appended to dockerd's command line.
    pub dockerd_args: Vec<String>,
    /// How long `ensure_running` waits for dockerd to answer `GET /_ping`.
    pub start_timeout: Duration,
    /// How long `stop` waits after SIGTERM before it sends SIGKILL.
    pub stop_timeout: Duration,
    /// Restart pacing after repeated failures, and when to give up.
    pub restart_backoff: BackoffConfig,
    /// A running engine whose process is alive but that has not answered `GET /_ping`
    /// for this long is wedged: it is killed and restarted (`None`: never checked).
    pub liveness_timeout: Option<Duration>,
    /// Set for a VM machine: dockerd runs in a QEMU guest with its own kernel instead
    /// of in a network namespace of the host's kernel.
    pub vm: Option<VmConfig>,
}

/// The virtual machine of a VM machine (`kind = "vm"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Size of the disk image that holds Docker's data root, in MiB (sparse).
    pub disk_size_mib: u64,
    /// Host directories shared into the guest (virtio-9p) at the same paths.
    pub shares: Vec<PathBuf>,
    /// Where the guest image (kernel, initramfs, root file system) is built and cached;
    /// machines may share it.
    pub image_dir: PathBuf,
    /// QEMU's machine type; `None`: microvm where it works, q35 otherwise.
    pub machine_type: Option<crate::MachineType>,
}

impl VmConfig {
    /// Defaults: 2 vCPUs, 1 GiB of memory, a 16 GiB data disk, no shares, the image
    /// under `image_dir`.
    pub fn new(image_dir: PathBuf) -> Self {
        Self {
            cpus: 2,
            memory_mib: 1024,
            disk_size_mib: 16 * 1024,
            shares: Vec::new(),
            image_dir,
            machine_type: None,
        }
    }
}

impl MachineConfig {
    /// The default configuration for machine `name`, with its state under
    /// [`DEFAULT_MACHINES_DIR`].
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state_dir: PathBuf::from(DEFAULT_MACHINES_DIR).join(name),
            ..Self::default()
        }
    }

    /// Checks the name: `[a-z0-9-]{1,20}`.
    pub fn validate_name(name: &str) -> Result<(), EngineError> {
        let valid = (1..=20).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(())
        } else {
            Err(EngineError::InvalidName {
                name: name.to_owned(),
            })
        }
    }
}

impl Default for MachineConfig {
    /// The machine berth runs when it has no configuration: `default`.
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            state_dir: PathBuf::from(DEFAULT_MACHINES_DIR).join("default"),
            dockerd: PathBuf::from("dockerd"),
            dockerd_args: Vec::new(),
            start_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            restart_backoff: BackoffConfig::default(),
            liveness_timeout: Some(DEFAULT_LIVENESS_TIMEOUT),
            vm: None,
        }
    }
}

/// Restart pacing. A failure is a start that did not reach `/_ping`, or an exit that
/// `stop` did not ask for. The first failure is retried at once by the next
/// `ensure_running`; each further consecutive failure doubles the wait, from `initial`
/// up to `max`. After `give_up_after` consecutive failures the machine is `Failed` and
/// `ensure_running` returns an error at once until `stop` resets it. A run that stayed
/// up for at least `max` resets the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Wait before the retry that follows the second consecutive failure.
    pub initial: Duration,
    /// Longest wait between retries; also the uptime after which failures are forgotten.
    pub max: Duration,
    /// Consecutive failures after which the machine becomes `Failed` (at least 1).
    pub give_up_after: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            give_up_after: 5,
        }
    }
}

impl BackoffConfig {
    /// The wait before the next attempt after `failures` consecutive failures.
    pub fn delay_after(&self, failures: u32) -> Duration {
        if failures < 2 {
            return Duration::ZERO;
        }
        let doublings = (failures - 2).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// Whether `failures` consecutive failures mean giving up.
    pub fn gives_up_at(&self, failures: u32) -> bool {
        failures >= self.give_up_after.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_netns_rule() {
        for good in ["default", "be-1", "a", "abcdefghij0123456789"] {
            assert!(MachineConfig::validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Default", "a_b", "abcdefghij0123456789x", "a/b", "é"] {
            assert!(MachineConfig::validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_waits_only_after_repeated_failures_and_is_capped() {
        let b = BackoffConfig::default();
        assert_eq!(b.delay_after(0), Duration::ZERO);
        assert_eq!(b.delay_after(1), Duration::ZERO);
        assert_eq!(b.delay_after(2), Duration::from_millis(500));
        assert_eq!(b.delay_after(3), Duration::from_secs(1));
        assert_eq!(b.delay_after(4), Duration::from_secs(2));
        assert_eq!(b.delay_after(10), Duration::from_secs(30));
        assert_eq!(b.delay_after(u32::MAX), Duration::from_secs(30));
        assert!(!b.gives_up_at(4));
        assert!(b.gives_up_at(5));
    }

    #[test]
    fn named_config_puts_state_under_the_machines_dir() {
        let c = MachineConfig::named("be-x");
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/berth/machines/be-x"));
        assert_eq!(c.start_timeout, Duration::from_secs(60));
    }
}
