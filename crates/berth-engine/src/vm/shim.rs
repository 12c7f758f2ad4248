//! A 200-byte static program that execs another without address-space randomization.
//!
//! Why: TCG keys the code it has translated by virtual address, so a program whose
//! libraries land somewhere new at every exec (ASLR) is translated afresh every time.
//! dockerd runs `iptables` about a hundred times while it starts; through this shim
//! each run maps `ld.so`, libc and iptables where the last one did and reuses their
//! translations (~80 ms → ~25 ms per run under TCG). Only the programs started through
//! the shim lose ASLR; dockerd, containerd and containers keep it.
//!
//! The program is `personality(ADDR_NO_RANDOMIZE); execve(target, argv, envp);
//! exit(127)`, with `argv` passed through unchanged (so a multi-call binary still sees
//! the name it was run by). There is no compiler in the guest image's inputs, hence the
//! machine code below; x86-64 only, like the guest.

/// Where the ELF file is loaded (a fixed address: the shim itself is not randomized).
const BASE: u64 = 0x40_0000;
/// ELF header (64 bytes) + one program header (56 bytes).
const HEADERS: usize = 64 + 56;

/// The code, with the assembly it was written from.
const CODE: [u8; 52] = [
    0xbf, 0x00, 0x00, 0x04, 0x00, // mov edi, 0x40000        ; ADDR_NO_RANDOMIZE
    0xb8, 0x87, 0x00, 0x00, 0x00, // mov eax, 135            ; personality
    0x0f, 0x05, //                   syscall
    0x48, 0x8b, 0x0c, 0x24, //       mov rcx, [rsp]          ; argc
    0x48, 0x8d, 0x74, 0x24, 0x08, // lea rsi, [rsp+8]        ; argv
    0x48, 0x8d, 0x54, 0xcc, 0x10, // lea rdx, [rsp+rcx*8+16] ; envp
    0x48, 0x8d, 0x3d, 0x13, 0x00, 0x00, 0x00, // lea rdi, [rip+19] ; target, after the code
    0xb8, 0x3b, 0x00, 0x00, 0x00, // mov eax, 59             ; execve
    0x0f, 0x05, //                   syscall
    0xbf, 0x7f, 0x00, 0x00, 0x00, // mov edi, 127
    0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60             ; exit
    0x0f, 0x05, //                   syscall
];

/// The shim's ELF file, exec'ing `target` (an absolute path).
pub(crate) fn no_aslr_exec(target: &str) -> Vec<u8> {
    let size = (HEADERS + CODE.len() + target.len() + 1) as u64;
    let mut elf = Vec::with_capacity(size as usize);
    // ELF header: 64-bit, little endian, version 1, System V ABI.
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&(BASE + HEADERS as u64).to_le_bytes()); // entry: the code
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers right after
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64u16, 56, 1, 0, 0, 0] {
        // header size, program header size and count, section header size, count, names
        elf.extend_from_slice(&half.to_le_bytes());
    }
    // One PT_LOAD, read + execute, the whole file at BASE.
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    for word in [0, BASE, BASE, size, size, 0x1000] {
        // offset, virtual and physical address, file and memory size, alignment
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(&CODE);
    elf.extend_from_slice(target.as_bytes());
    elf.push(0);
    elf
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_target_follows_the_code_where_lea_points() {
        let elf = no_aslr_exec("/usr/sbin/xtables-nft-multi");
        // lea rdi, [rip+disp32] ends 33 bytes into the code; disp32 reaches the target.
        let disp = u32::from_le_bytes(CODE[29..33].try_into().unwrap()) as usize;
        assert_eq!(HEADERS + 33 + disp, HEADERS + CODE.len());
        assert_eq!(
            &elf[HEADERS + CODE.len()..],
            b"/usr/sbin/xtables-nft-multi\0"
        );
        assert_eq!(&elf[..4], b"\x7fELF");
    }

    /// Runs the shim on this host (x86-64 Linux, as the guest): the program it execs
    /// sees its arguments and no address randomization.
    #[test]
    fn execs_the_target_without_randomization() {
        if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("cat-no-aslr");
        std::fs::write(&shim, no_aslr_exec("/bin/cat")).unwrap();
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new(&shim)
            .arg("/proc/self/personality")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "00040000");
    }
}
