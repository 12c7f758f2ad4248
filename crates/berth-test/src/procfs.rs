//! What a process holds, from /proc: for leak checks.

/// Open file descriptors of `pid` (0 if it is gone).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Threads of `pid` (0 if it is gone).
pub fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// What each open descriptor of `pid` points at (`socket:[…]`, paths, pipes), for
/// failure messages.
pub fn fd_targets(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    out.sort();
    out
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    crate::watchdog::alive(pid)
}

/// The Unix sockets `pid` holds open, with the path each is bound to (`None` for
/// unbound ones, such as client connections to an engine). Accepted connections show
/// their listener's path. From `/proc/PID/net/unix` of the process's own netns.
pub fn unix_sockets(pid: u32) -> Vec<(u64, Option<String>)> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    let mut paths = std::collections::HashMap::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let Some(inode) = fields.get(6).and_then(|i| i.parse::<u64>().ok()) {
            paths.insert(inode, fields.get(7).map(|p| (*p).to_owned()));
        }
    }
    fd_targets(pid)
        .iter()
        .filter_map(|t| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .map(|inode: u64| (inode, paths.get(&inode).cloned().flatten()))
        .collect()
}
