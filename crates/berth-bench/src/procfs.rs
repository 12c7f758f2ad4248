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

/// CPU time of `pid` in seconds: the run time of all its threads (schedstat, in ns:
/// per-process utime/stime are truncated to 10 ms ticks, which loses all of a short-lived
/// socat child), plus, when `reaped`, its waited-for children's (`cutime + cstime`).
pub(crate) fn cpu_secs(pid: u32, reaped: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state is the first, utime the 12th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if f.len() < 4 {
        return None;
    }
    let children = if reaped {
        (f[2] + f[3]) as f64 / clock_ticks()
    } else {
        0.0
    };
    let mut run_ns = 0u64;
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        if let Some(ns) = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            run_ns += ns;
            threads += 1;
        }
    }
    let own = if threads > 0 {
        run_ns as f64 / 1e9
    } else {
        (f[0] + f[1]) as f64 / clock_ticks()
    };
    Some(own + children)
}

fn clock_ticks() -> f64 {
    use nix::unistd::{sysconf, SysconfVar};
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
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
        // A child of its own that spins: this process's threads come and go with the other
        // tests, and an ended thread's time leaves /proc/<pid>/task.
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        assert!(children(me).contains(&busy.id()));
        let t0 = cpu_secs(busy.id(), true).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cpu_secs(busy.id(), true).unwrap() <= t0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no CPU time seen in 10 s"
            );
            std::thread::yield_now();
        }
        busy.kill().unwrap();
        busy.wait().unwrap();
    }
}
