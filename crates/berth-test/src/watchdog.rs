//! Runs a command under a shell that cleans up when the test process exits.

use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `script` (a shell snippet that starts the service in the background and sets
/// `$SVC` to its pid) under a watchdog: when the test process (our pid) is gone, or when
/// the returned child is killed, `cleanup` runs.
pub(crate) fn spawn(script: &str, cleanup: &str, log: &Path) -> io::Result<Child> {
    let me = std::process::id();
    let full = format!(
        r#"
cleanup() {{ {cleanup}; }}
alive() {{ [ -e /proc/$1 ] && ! grep -q '^State:[[:space:]]*Z' /proc/$1/status 2>/dev/null; }}
trap 'cleanup; exit 0' TERM INT
{script}
while alive {me} && alive "$SVC"; do sleep 0.5; done
cleanup
"#
    );
    let log = std::fs::File::create(log)?;
    Command::new("sh")
        .arg("-c")
        .arg(full)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

/// Whether a program is on `PATH`.
pub(crate) fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether process `pid` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}
