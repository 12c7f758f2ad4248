//! KVM or TCG. `/dev/kvm` may open and still not run a guest (nested virtualization:
//! the guest hangs right after the firmware), so KVM is proven by a boot within a
//! bound, and a hang is remembered until the host reboots (the probe would cost every
//! cold start that bound again).

use std::fmt;
use std::path::{Path, PathBuf};

/// How the guest's CPUs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    /// Hardware virtualization.
    Kvm,
    /// QEMU's translator: slower, works everywhere.
    Tcg,
}

impl Accelerator {
    pub(crate) fn qemu_name(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }

    /// QEMU's `-accel` value. TCG runs every vCPU in one host thread (`thread=single`):
    /// with one thread per vCPU (QEMU 7.2's default for x86), a vCPU can go on running
    /// a stale translation of kernel text another vCPU just patched (a static key
    /// flipped: the first container's memory cgroup, sched_schedstats, ...) and both
    /// spin at the patch site for ever (soft lockups in runc at the first `docker run`).
    pub(crate) fn qemu_accel(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg,thread=single",
        }
    }

    /// `-cpu host` fails on some nested hosts (MSRs); QEMU's default model is safe for
    /// KVM, `max` gives TCG every feature it emulates.
    pub(crate) fn qemu_cpu(self) -> &'static str {
        match self {
            Self::Kvm => "qemu64",
            Self::Tcg => "max",
        }
    }
}

impl fmt::Display for Accelerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.qemu_name())
    }
}

fn memo(image_dir: &Path) -> PathBuf {
    image_dir.join("kvm-hangs")
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `Ok` when KVM should be tried; otherwise why not (for the log and `berth status`).
pub(crate) fn kvm_worth_trying(image_dir: &Path) -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("/dev/kvm: {e}: using TCG"));
    }
    match std::fs::read_to_string(memo(image_dir)) {
        Ok(text) if text.trim() == boot_id() => Err(
            "a KVM guest hung at boot earlier since this host booted (nested virtualization?): using TCG"
                .to_owned(),
        ),
        _ => Ok(()),
    }
}

/// Records that a KVM guest hung, for this host boot.
pub(crate) fn remember_kvm_hang(image_dir: &Path) {
    let _ = std::fs::create_dir_all(image_dir);
    if let Err(e) = std::fs::write(memo(image_dir), format!("{}\n", boot_id())) {
        tracing::warn!(error = %e, "cannot remember that KVM hangs");
    }
}

/// The host's TSC rate in kHz (TCG's guest TSC runs at it), from `/proc/cpuinfo`.
pub(crate) fn host_tsc_khz() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = text
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}
