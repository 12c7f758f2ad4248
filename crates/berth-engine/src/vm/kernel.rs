//! The guest kernel as an uncompressed ELF (`vmlinux`) that QEMU boots through its PVH
//! entry point. Debian ships a bzImage whose payload is XZ-compressed; the kernel's own
//! decompressor runs in the guest, and under TCG that takes ~4 s of every boot. Here the
//! payload is decompressed once, on the host, when the image is built.

use std::io::Write;
use std::process::{Command, Stdio};

/// Compressed payloads this finds in a bzImage, by their magic, and the host tool that
/// decompresses one stream of it (the bzImage has more bytes after the stream).
const DECOMPRESSORS: &[(&[u8], &str, &[&str])] = &[
    (b"\xfd7zXZ\x00", "xz", &["-dc", "--single-stream"]),
    (b"\x28\xb5\x2f\xfd", "zstd", &["-dcq"]),
];

/// The program header type of notes.
const PT_NOTE: u32 = 4;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the kernel's PVH entry point, which QEMU boots.
const PVH_ENTRY_NOTE: u32 = 18;

/// The bzImage's kernel, uncompressed, if it has a PVH entry; otherwise why not.
pub(crate) fn uncompressed_pvh(bzimage: &[u8]) -> Result<Vec<u8>, String> {
    let mut tried = Vec::new();
    for (magic, tool, args) in DECOMPRESSORS {
        let Some(at) = find(bzimage, magic) else {
            continue;
        };
        match decompress(tool, args, &bzimage[at..]) {
            Ok(elf) => {
                check_pvh_elf(&elf)?;
                return Ok(elf);
            }
            Err(e) => tried.push(e),
        }
    }
    if tried.is_empty() {
        Err("no XZ or zstd payload in the bzImage".to_owned())
    } else {
        Err(tried.join("; "))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn decompress(tool: &str, args: &[&str], input: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let output = std::thread::scope(|scope| {
        // The payload goes in while the output comes out (pipes are small).
        let writer = scope.spawn(move || stdin.write_all(input));
        let output = child.wait_with_output();
        let _ = writer.join();
        output
    })
    .map_err(|e| format!("{tool}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{tool}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output.stdout)
}

/// A whole 64-bit x86 ELF executable with the PVH entry note.
fn check_pvh_elf(elf: &[u8]) -> Result<(), String> {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if !elf.starts_with(b"\x7fELF\x02\x01") || u16_at(18) != Some(0x3e) {
        return Err("the payload is not a 64-bit x86 ELF kernel".to_owned());
    }
    let bad = || "the uncompressed kernel is truncated".to_owned();
    let phoff = u64_at(32).ok_or_else(bad)? as usize;
    let phentsize = u16_at(54).ok_or_else(bad)? as usize;
    let phnum = u16_at(56).ok_or_else(bad)? as usize;
    let mut pvh = false;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let kind = u32_at(ph).ok_or_else(bad)?;
        let offset = u64_at(ph + 8).ok_or_else(bad)? as usize;
        let filesz = u64_at(ph + 32).ok_or_else(bad)? as usize;
        if offset.checked_add(filesz).is_none_or(|end| end > elf.len()) {
            return Err(bad());
        }
        if kind != PT_NOTE {
            continue;
        }
        // Notes: namesz, descsz, type, name and desc each padded to 4 bytes.
        let mut at = offset;
        while at + 12 <= offset + filesz {
            let (namesz, descsz) = (
                u32_at(at).ok_or_else(bad)? as usize,
                u32_at(at + 4).ok_or_else(bad)? as usize,
            );
            let kind = u32_at(at + 8).ok_or_else(bad)?;
            let name = elf.get(at + 12..at + 12 + namesz).ok_or_else(bad)?;
            if name == b"Xen\0" && kind == PVH_ENTRY_NOTE {
                pvh = true;
            }
            at += 12 + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
        }
    }
    if pvh {
        Ok(())
    } else {
        Err("the kernel has no PVH entry point (CONFIG_PVH)".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF: header, one PT_NOTE holding `note`.
    fn elf_with_note(name: &[u8], kind: u32) -> Vec<u8> {
        let mut note = Vec::new();
        note.extend_from_slice(&(name.len() as u32).to_le_bytes());
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&kind.to_le_bytes());
        note.extend_from_slice(name);
        note.resize(12 + name.len().div_ceil(4) * 4, 0);
        note.extend_from_slice(&[1, 2, 3, 4]);
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[18..20].copy_from_slice(&0x3eu16.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&PT_NOTE.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes());
        ph[32..40].copy_from_slice(&(note.len() as u64).to_le_bytes());
        elf.extend_from_slice(&ph);
        elf.extend_from_slice(&note);
        elf
    }

    #[test]
    fn a_kernel_with_the_pvh_note_passes() {
        assert!(check_pvh_elf(&elf_with_note(b"Xen\0", PVH_ENTRY_NOTE)).is_ok());
        assert!(check_pvh_elf(&elf_with_note(b"Xen\0", 5)).is_err());
        assert!(check_pvh_elf(&elf_with_note(b"GNU\0", PVH_ENTRY_NOTE)).is_err());
        let whole = elf_with_note(b"Xen\0", PVH_ENTRY_NOTE);
        assert!(check_pvh_elf(&whole[..whole.len() - 2]).is_err());
        assert!(check_pvh_elf(b"MZ not an elf").is_err());
    }

    /// Debian's kernel on this host, when there is one: its payload comes out as a PVH
    /// ELF (xz is installed with it).
    #[test]
    fn the_hosts_debian_kernel_uncompresses() {
        let Some(kernel) = std::fs::read_dir("/boot")
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        else {
            return;
        };
        let Ok(bzimage) = std::fs::read(kernel.path()) else {
            return;
        };
        let elf = uncompressed_pvh(&bzimage).unwrap();
        assert!(elf.len() > bzimage.len());
    }
}
