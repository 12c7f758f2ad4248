//! Mounts a dead dockerd left behind.
//!
//! A dockerd that exits cleanly unmounts what it mounted. One killed with SIGKILL leaves
//! container network namespaces bound under `exec/netns/`, overlay `merged` dirs and
//! `shm` tmpfs under `data/`, and the bind of the data root onto itself. They keep
//! references to dead namespaces and make the state dir impossible to remove, so `stop`
//! sweeps them (lazily, `MNT_DETACH`, deepest first) once dockerd is gone.
//!
//! What is swept: every mount strictly below the exec root or the data root, the exec
//! root itself, and the data root itself only when it is a bind of a directory (its
//! mountinfo root is not `/`): a whole file system mounted there by the operator is
//! left alone.

use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

use super::MachineLayout;

/// One line of `/proc/self/mountinfo`, the two fields we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    /// Field 4: the path inside the file system that is mounted.
    pub(crate) root: PathBuf,
    /// Field 5: where it is mounted.
    pub(crate) mount_point: PathBuf,
}

/// Unmounts dockerd's leftovers; returns the mount points it could not unmount.
pub(crate) fn unmount_leftovers(layout: &MachineLayout) -> Vec<(PathBuf, nix::Error)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    // mountinfo shows resolved paths: resolve ours too (a symlinked /var/lib/berth).
    let resolved = match std::fs::canonicalize(&layout.state_dir) {
        Ok(state_dir) => MachineLayout::new(&state_dir),
        Err(_) => layout.clone(),
    };
    let mut targets = leftovers(&parse_mountinfo(&text), &resolved);
    // Deepest first, so a parent is unmounted after what sits on it.
    targets.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    targets.dedup();
    targets
        .into_iter()
        .filter_map(|target| match umount2(&target, MntFlags::MNT_DETACH) {
            Ok(()) => None,
            // Already gone (a parent's lazy unmount took it along).
            Err(nix::Error::EINVAL | nix::Error::ENOENT) => None,
            Err(e) => Some((target, e)),
        })
        .collect()
}

/// The mount points to sweep, per the rule in the module doc.
pub(crate) fn leftovers(entries: &[MountEntry], layout: &MachineLayout) -> Vec<PathBuf> {
    entries
        .iter()
        .filter(|m| {
            let p = &m.mount_point;
            strictly_below(p, &layout.exec_root)
                || *p == layout.exec_root
                || strictly_below(p, &layout.data_root)
                || (*p == layout.data_root && m.root != Path::new("/"))
        })
        .map(|m| m.mount_point.clone())
        .collect()
}

fn strictly_below(path: &Path, dir: &Path) -> bool {
    path != dir && path.starts_with(dir)
}

/// Parses mountinfo: fields are space-separated, with space, tab, newline and backslash
/// in paths written as octal escapes (`\040`).
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let root = fields.nth(3)?;
            let mount_point = fields.next()?;
            Some(MountEntry {
                root: PathBuf::from(unescape(root)),
                mount_point: PathBuf::from(unescape(mount_point)),
            })
        })
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(digits) = field.get(i + 1..i + 4) {
                if digits.bytes().all(|d| (b'0'..=b'7').contains(&d)) {
                    if let Ok(value) = u8::from_str_radix(digits, 8) {
                        out.push(value);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
72 22 254:0 /tmp/m/data /tmp/m/data rw,relatime shared:7 - ext4 /dev/vda rw
80 72 0:50 / /tmp/m/data/overlay2/abc/merged rw - overlay overlay rw
81 22 0:4 net:[4026532] /tmp/m/exec/netns/3f15 rw - nsfs nsfs rw
82 22 0:51 / /tmp/m/data2 rw - ext4 /dev/vdb rw
83 22 0:52 / /tmp/m/exec\\040dir rw - tmpfs tmpfs rw
";

    #[test]
    fn octal_escapes_are_decoded() {
        let entries = parse_mountinfo(SAMPLE);
        assert_eq!(entries.len(), 6);
        assert_eq!(entries[5].mount_point, PathBuf::from("/tmp/m/exec dir"));
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("trailing\\"), "trailing\\");
        assert_eq!(unescape("\\04"), "\\04");
    }

    #[test]
    fn sweep_takes_dockerd_mounts_and_leaves_others() {
        let layout = MachineLayout::new(Path::new("/tmp/m"));
        let targets = leftovers(&parse_mountinfo(SAMPLE), &layout);
        assert_eq!(
            targets,
            [
                PathBuf::from("/tmp/m/data"),
                PathBuf::from("/tmp/m/data/overlay2/abc/merged"),
                PathBuf::from("/tmp/m/exec/netns/3f15"),
            ]
        );
    }

    #[test]
    fn a_file_system_mounted_on_the_data_root_is_kept() {
        let layout = MachineLayout::new(Path::new("/tmp/m"));
        let entries = [MountEntry {
            root: PathBuf::from("/"),
            mount_point: PathBuf::from("/tmp/m/data"),
        }];
        assert!(leftovers(&entries, &layout).is_empty());
    }
}
