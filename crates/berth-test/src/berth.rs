//! `BerthProcess`: the berth binary serving in front of an engine.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::watchdog;

/// `berth serve` running for a test; stopped on drop or when the test process exits.
#[derive(Debug)]
pub struct BerthProcess {
    dir: PathBuf,
    watchdog: Child,
    pid: u32,
}

impl BerthProcess {
    /// Runs `bin serve --engine engine_url -H unix://<tmp>/berth.sock extra_args…` and
    /// waits until the socket accepts connections (30 s).
    pub fn start(bin: &Path, engine_url: &str, extra_args: &[&str]) -> io::Result<Self> {
        let mut args = vec!["--engine".to_owned(), engine_url.to_owned()];
        args.extend(extra_args.iter().map(|s| (*s).to_owned()));
        Self::start_with(bin, &args)
    }

    /// Runs `bin serve -H unix://<tmp>/berth.sock args…`.
    pub fn start_with(bin: &Path, args: &[String]) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("bt-berth-")
            .tempdir_in("/tmp")?
            .keep();
        let d = dir.display();
        let quoted: Vec<String> = args
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let script = format!(
            "env -u RUST_LOG {bin} serve -H unix://{d}/berth.sock {} > {d}/berth.log 2>&1 < /dev/null &\nSVC=$!\necho $SVC > {d}/berth.pid\n",
            quoted.join(" "),
            bin = bin.display(),
        );
        let cleanup = format!(
            "kill $SVC 2>/dev/null; for i in $(seq 1 100); do kill -0 $SVC 2>/dev/null || break; sleep 0.1; done; kill -9 $SVC 2>/dev/null; rm -rf {d}"
        );
        let watchdog = watchdog::spawn(&script, &cleanup, &dir.join("watchdog.log"))?;
        let sock = dir.join("berth.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = loop {
            if let Ok(pid) = std::fs::read_to_string(dir.join("berth.pid")) {
                if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                    break pid.trim().parse().unwrap_or(0);
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "berth did not listen within 30 s: {}",
                    std::fs::read_to_string(dir.join("berth.log")).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Self { dir, watchdog, pid })
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("berth.sock")
    }

    /// `unix:///…/berth.sock`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// berth's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What berth logged so far.
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("berth.log")).unwrap_or_default()
    }

    /// Open file descriptors of the berth process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, |d| d.count())
    }

    /// SIGTERM, then wait up to 15 s for berth to exit; returns whether it exited.
    pub fn stop(&mut self) -> io::Result<bool> {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !watchdog::alive(self.pid) {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(false)
    }
}

impl Drop for BerthProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.watchdog.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.watchdog.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
