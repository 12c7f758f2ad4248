//! A shell that outlives the test process by design: it waits for the test process
//! (`$ME`) to disappear, then runs a cleanup. Drop impls send it SIGTERM to clean up
//! early. Everything it needs comes through the environment, never the command line,
//! so that matching other processes' command lines against a directory never matches
//! the watchdog itself.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Shell functions every watchdog script can use.
const PRELUDE: &str = r#"
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
"#;

/// Starts `sh -c` with `cleanup` (a shell function body) run once: on SIGTERM/SIGINT/
/// SIGHUP, or when the test process is gone. `on_term` decides what SIGTERM does
/// (`cleanup` or nothing).
pub(crate) fn spawn(
    cleanup: &str,
    cleanup_on_term: bool,
    env: &[(&str, String)],
    log: &Path,
) -> io::Result<Child> {
    let on_term = if cleanup_on_term { "cleanup; " } else { "" };
    let script = format!(
        r#"{PRELUDE}
cleanup() {{
{cleanup}
}}
trap '{on_term}exit 0' TERM
trap 'cleanup; exit 0' INT HUP
while alive "$ME"; do sleep 0.5 & wait $!; done
cleanup
"#
    );
    let log = std::fs::File::create(log)?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .env("ME", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
}

/// Sends SIGTERM to a watchdog and waits for it (and so for its cleanup).
pub(crate) fn finish(watchdog: &mut Child) {
    signal(watchdog.id(), nix::sys::signal::Signal::SIGTERM);
    let _ = watchdog.wait();
}

/// Sends `sig` to `pid`, ignoring errors (the process may be gone).
pub(crate) fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Where `program` is on `PATH` (plus the sbin directories root usually has).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
}

/// Fails with the Debian package to install for the first missing program.
pub(crate) fn require(programs: &[(&str, &str)]) -> io::Result<()> {
    for (program, package) in programs {
        if which(program).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("`{program}` not found on PATH: install the Debian package {package} (apt-get install {package})"),
            ));
        }
    }
    Ok(())
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}
