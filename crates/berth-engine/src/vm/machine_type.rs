//! The QEMU machine type: `microvm` (no firmware, no PCI, virtio-mmio devices: the
//! fastest boot) where this QEMU has it and it starts, `q35` (SeaBIOS, PCI, virtio-pci
//! devices) otherwise or when the machine's `machine_type` asks for it.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

/// A QEMU x86 machine type berth can boot the guest on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineType {
    /// QEMU's minimal machine: virtio-mmio devices, no firmware.
    Microvm,
    /// A standard PC (ICH9 chipset, PCI): works with every QEMU that can run x86.
    Q35,
}

impl MachineType {
    /// The `-M` value.
    pub(crate) fn qemu_machine(self) -> &'static str {
        match self {
            // The legacy timers and RTC: Debian's kernel calibrates its clock with them.
            Self::Microvm => "microvm,pit=on,pic=on,rtc=on",
            Self::Q35 => "q35",
        }
    }

    /// A virtio device's QEMU name on this machine's bus (`virtio-blk` → `virtio-blk-pci`).
    pub(crate) fn virtio(self, device: &str) -> String {
        match self {
            Self::Microvm => format!("{device}-device"),
            Self::Q35 => format!("{device}-pci"),
        }
    }

    /// Extra `-device` options: no option ROM for the q35 network card (iPXE is not
    /// needed to boot a kernel QEMU loads itself, and costs time under TCG).
    pub(crate) fn nic_options(self) -> &'static str {
        match self {
            Self::Microvm => "",
            Self::Q35 => ",romfile=",
        }
    }
}

impl fmt::Display for MachineType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Microvm => "microvm",
            Self::Q35 => "q35",
        })
    }
}

impl FromStr for MachineType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "microvm" => Ok(Self::Microvm),
            "q35" => Ok(Self::Q35),
            other => Err(format!(
                "{other:?} is not a machine type berth boots: \"microvm\" or \"q35\""
            )),
        }
    }
}

/// Whether `qemu -machine help` lists `microvm` (QEMU ≥ 4.2 built with it); `Err` if
/// QEMU could not be asked.
pub(crate) fn qemu_has_microvm(qemu: &Path) -> Result<bool, String> {
    let out = Command::new(qemu)
        .args(["-machine", "help"])
        .output()
        .map_err(|e| format!("{}: {e}", qemu.display()))?;
    Ok(lists_microvm(&String::from_utf8_lossy(&out.stdout)))
}

/// `-machine help` prints one machine a line, its name first.
fn lists_microvm(help: &str) -> bool {
    help.lines()
        .any(|line| line.split_whitespace().next() == Some("microvm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microvm_is_found_by_its_line_in_the_machine_list() {
        let with = "Supported machines are:\nmicrovm              microvm (i386)\npc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)\nq35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)\n";
        assert!(lists_microvm(with));
        let without = "Supported machines are:\npc                   Standard PC (i440FX + PIIX, 1996)\nq35                  Standard PC (Q35 + ICH9, 2009)\nisapc                ISA-only PC (not microvm)\n";
        assert!(!lists_microvm(without));
    }

    #[test]
    fn names_parse_and_print_alike() {
        for m in [MachineType::Microvm, MachineType::Q35] {
            assert_eq!(m.to_string().parse::<MachineType>(), Ok(m));
        }
        assert!("pc".parse::<MachineType>().unwrap_err().contains("q35"));
        assert_eq!(MachineType::Q35.virtio("virtio-blk"), "virtio-blk-pci");
        assert_eq!(
            MachineType::Microvm.virtio("virtio-net"),
            "virtio-net-device"
        );
    }
}
