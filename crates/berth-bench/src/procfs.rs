//! Resident memory of the processes under test, from /proc.

/// A `kB` field (`VmRSS:`, `Pss:`…) of a /proc file, in KiB.
fn field_kib(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `VmRSS` of one process, in KiB.
pub(crate) fn vm_rss_kib(pid: u32) -> Option<u64> {
    field_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Proportional set size of one process, in KiB (shared pages divided among sharers).
pub(crate) fn pss_kib(pid: u32) -> Option<u64> {
    field_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// Direct children of `pid`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                // "pid (comm) state ppid …"; comm may hold spaces and parentheses.
                stat.rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_children() {
        let me = std::process::id();
        assert!(vm_rss_kib(me).unwrap() > 0);
        assert!(pss_kib(me).unwrap() > 0);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(children(me).contains(&child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
