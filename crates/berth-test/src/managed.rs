//! `ManagedBerth`: `berth serve` running a managed machine of its own (berth starts
//! dockerd in network namespace `berth-<machine>`), everything under one temp dir.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::watchdog;

/// How long berth gets to stop (it stops its dockerd first) after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(40);

/// Kills berth (the pid in `$TOP/berth.pid`, if it still is the process whose command
/// line names `$CONFIG`),
/// then cleans the machine up as a `TestEngine` (`$D`: the machine's directory, whose
/// `data`/`exec` dockerd uses; `$NS`: its namespace) and removes the whole temp dir
/// `$TOP`.
fn cleanup_script() -> String {
    format!(
        r#"
SVC=$(cat "$TOP/berth.pid" 2>/dev/null)
if [ -n "$SVC" ] && alive "$SVC" && grep -qF -- "$CONFIG" "/proc/$SVC/cmdline" 2>/dev/null; then kill -KILL "$SVC"; fi
SVC=
# A vm machine's QEMU (named by its pidfile).
for p in /proc/[0-9]*; do grep -qF -- "$D/qemu.pid" "$p/cmdline" 2>/dev/null && kill -KILL "${{p#/proc/}}" 2>/dev/null; done
{}
rm -rf "$TOP" 2>/dev/null || {{ sleep 0.5; rm -rf "$TOP"; }}
"#,
        crate::engine::CLEANUP
    )
}

/// A berth daemon with one managed machine, for end-to-end tests of what berth does
/// to engines it runs (lazy start, restarts, published ports, idle stop). The temp dir
/// holds `berth.toml`, the API socket, berth's log and the state dir. Dropping it (or
/// the test process going away) stops berth, then kills whatever the machine left
/// (dockerd, containerd, container processes), unmounts, deletes the namespace and
/// removes the directory.
#[derive(Debug)]
pub struct ManagedBerth {
    bin: PathBuf,
    dir: PathBuf,
    machine: String,
    child: Option<Child>,
    watchdog: Child,
}

impl ManagedBerth {
    /// Writes `berth.toml` (the socket and state dir in a fresh temp dir, one
    /// `[[machines]]` table `machine` of kind `managed`, plus `machine_toml`, lines
    /// added to that table such as `idle_stop = "3s"`) and runs `<bin> serve --config
    /// …` until its socket accepts connections (30 s). The machine itself starts at the
    /// first request, as in production.
    pub fn start(bin: &Path, machine: &str, machine_toml: &str) -> io::Result<ManagedBerth> {
        Self::start_kind(bin, machine, "managed", machine_toml)
    }

    /// [`start`](Self::start) for a machine of another kind that berth runs (`vm`: the
    /// watchdog's cleanup kills the QEMU in the machine's namespace like any process
    /// there).
    pub fn start_kind(
        bin: &Path,
        machine: &str,
        kind: &str,
        machine_toml: &str,
    ) -> io::Result<ManagedBerth> {
        if !nix::unistd::geteuid().is_root() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "ManagedBerth needs root (berth runs dockerd in a network namespace)",
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("bt-{machine}-"))
            .tempdir_in(std::env::temp_dir())?
            .keep();
        let config = dir.join("berth.toml");
        std::fs::write(
            &config,
            format!(
                "hosts = [\"unix://{}\"]\nstate_dir = \"{}\"\n\n[[machines]]\nname = \"{machine}\"\nkind = \"{kind}\"\n{machine_toml}\n",
                dir.join("docker.sock").display(),
                dir.join("state").display()
            ),
        )?;
        let watchdog = watchdog::spawn(
            &cleanup_script(),
            true,
            &[
                ("TOP", dir.display().to_string()),
                (
                    "D",
                    dir.join("state/machines")
                        .join(machine)
                        .display()
                        .to_string(),
                ),
                ("NS", format!("berth-{machine}")),
                ("CONFIG", config.display().to_string()),
            ],
            &dir.join("watchdog.log"),
        )?;
        let mut berth = ManagedBerth {
            bin: bin.to_owned(),
            dir,
            machine: machine.to_owned(),
            child: None,
            watchdog,
        };
        berth.serve()?;
        Ok(berth)
    }

    /// Starts `berth serve` again after [`stop`](Self::stop), with the same state.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.serve()
    }

    fn serve(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("berth.log"))?;
        let child = Command::new(&self.bin)
            .args(["serve", "--config"])
            .arg(self.config())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| io::Error::other(format!("spawning {}: {e}", self.bin.display())))?;
        // The watchdog learns berth's pid through a file: its environment is fixed.
        std::fs::write(self.dir.join("berth.pid"), child.id().to_string())?;
        let socket = self.socket();
        let child = self.child.insert(child);
        let log = self.dir.join("berth.log");
        match crate::berth::wait_listening(child, &socket, &log, "berth") {
            Ok(()) => Ok(()),
            Err((e, exited)) => {
                if exited.is_some() {
                    self.child = None;
                }
                Err(e)
            }
        }
    }

    /// SIGTERM (berth stops the machine's dockerd cleanly, keeping its data), waits
    /// 40 s, then SIGKILL. The machine's files and namespace stay until drop.
    pub fn stop(&mut self) -> io::Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        watchdog::signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_WITHIN;
        while child.try_wait()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().map(Some)
    }

    /// SIGKILL, as a crash: berth stops nothing, so its engine keeps running for the
    /// next berth ([`restart`](Self::restart)) to find.
    pub fn kill(&mut self) -> io::Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        child.kill()?;
        child.wait().map(Some)
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `berth.toml`, for `berth <command> --config`.
    pub fn config(&self) -> PathBuf {
        self.dir.join("berth.toml")
    }

    /// berth's API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// `unix:///…/docker.sock`, for `DOCKER_HOST` or `-H`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The machine's name.
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// The socket of the machine's own dockerd (behind berth).
    pub fn engine_socket(&self) -> PathBuf {
        self.dir
            .join("state/machines")
            .join(&self.machine)
            .join("docker.sock")
    }

    /// The machine's network namespace, `/var/run/netns/berth-<machine>`.
    pub fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/berth-{}", self.machine))
    }

    /// What berth printed so far (every run since [`start`](Self::start)).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("berth.log")).unwrap_or_default()
    }

    /// `docker args…` through berth (stdin closed).
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_command(args)
            .stdin(Stdio::null())
            .output()
            .expect("running docker")
    }

    /// A `docker args…` command through berth, to spawn with pipes.
    pub fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", self.host())
            .env_remove("DOCKER_CONTEXT");
        cmd
    }

    /// `<berth> args… --config berth.toml` (status, machine ls, …).
    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .expect("running berth")
    }
}

impl Drop for ManagedBerth {
    fn drop(&mut self) {
        let _ = self.stop();
        // SIGTERM makes the watchdog run its cleanup now.
        watchdog::finish(&mut self.watchdog);
    }
}
