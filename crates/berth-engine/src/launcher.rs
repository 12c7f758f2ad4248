//! How dockerd is launched: the machine's directory layout, dockerd's command line,
//! its log, its pidfile, and the leftovers of earlier runs.
//!
//! ```text
//! state_dir/
//!   data/          --data-root: images, volumes, containers (kept by stop)
//!   exec/          --exec-root: containerd socket and state, runc state
//!   docker.sock    --host unix://…  (what the gateway connects to)
//!   dockerd.pid    --pidfile, written by dockerd; how a restarted berth finds it
//!   dockerd.log    stdout+stderr of the current run (dockerd.log.1: the run before)
//!   daemon.json    --config-file: the machine's own, `{}` unless edited
//!   was-running    marker: the machine runs when berth starts
//! ```
//!
//! dockerd runs as `nsenter --net=<netns> -- dockerd …`: nsenter enters the network
//! namespace only and then execs dockerd in the same process, so the pid we spawn is
//! dockerd's pid. It gets its own process group, so a Ctrl-C aimed at berth's terminal
//! does not reach it: berth stops it in order instead.

mod log;
mod mounts;
mod process;

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub(crate) use self::log::DockerdLog;
pub(crate) use self::mounts::unmount_leftovers;
pub(crate) use self::process::{find_leftover, DockerdProcess, ExitInfo};

use crate::prerequisites::Programs;
use crate::EngineError;

/// Longest path a unix socket may have (`sun_path` is 108 bytes with the NUL).
pub(crate) const SOCKET_PATH_LIMIT: usize = 107;

/// The longest socket path containerd creates below the exec root.
const LONGEST_EXEC_SOCKET: &str = "containerd/containerd.sock.ttrpc";

/// Where each piece of a machine's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MachineLayout {
    pub(crate) state_dir: PathBuf,
    pub(crate) data_root: PathBuf,
    pub(crate) exec_root: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) pidfile: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) config_file: PathBuf,
    pub(crate) marker: PathBuf,
}

impl MachineLayout {
    pub(crate) fn new(state_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_path_buf(),
            data_root: state_dir.join("data"),
            exec_root: state_dir.join("exec"),
            socket: state_dir.join("docker.sock"),
            pidfile: state_dir.join("dockerd.pid"),
            log: state_dir.join("dockerd.log"),
            config_file: state_dir.join("daemon.json"),
            marker: state_dir.join("was-running"),
        }
    }

    /// Written by dockerd for the containerd it starts.
    pub(crate) fn containerd_pidfile(&self) -> PathBuf {
        self.exec_root.join("containerd/containerd.pid")
    }

    /// Rejects a state dir whose sockets would not fit in `sun_path`.
    pub(crate) fn check_socket_lengths(&self) -> Result<(), EngineError> {
        for path in [
            self.socket.clone(),
            self.exec_root.join(LONGEST_EXEC_SOCKET),
        ] {
            let len = path.as_os_str().len();
            if len > SOCKET_PATH_LIMIT {
                return Err(EngineError::PathTooLong {
                    path,
                    len,
                    limit: SOCKET_PATH_LIMIT,
                });
            }
        }
        Ok(())
    }
}

/// Builds and spawns dockerd for one machine.
#[derive(Debug, Clone)]
pub(crate) struct DockerdLauncher {
    machine: String,
    layout: MachineLayout,
    programs: Programs,
    netns_path: PathBuf,
    extra_args: Vec<String>,
}

impl DockerdLauncher {
    pub(crate) fn new(
        machine: &str,
        layout: MachineLayout,
        programs: Programs,
        netns_path: PathBuf,
        extra_args: Vec<String>,
    ) -> Self {
        Self {
            machine: machine.to_owned(),
            layout,
            programs,
            netns_path,
            extra_args,
        }
    }

    /// The full command line: `nsenter --net=<netns> -- dockerd …`.
    pub(crate) fn argv(&self) -> Vec<OsString> {
        let l = &self.layout;
        let mut socket = OsString::from("unix://");
        socket.push(&l.socket);
        let mut net = OsString::from("--net=");
        net.push(&self.netns_path);
        let mut argv: Vec<OsString> = vec![
            self.programs.nsenter.clone().into(),
            net,
            "--".into(),
            self.programs.dockerd.clone().into(),
            "--data-root".into(),
            l.data_root.clone().into(),
            "--exec-root".into(),
            l.exec_root.clone().into(),
            "--pidfile".into(),
            l.pidfile.clone().into(),
            "--config-file".into(),
            l.config_file.clone().into(),
            "--host".into(),
            socket,
        ];
        argv.extend(self.extra_args.iter().map(OsString::from));
        argv
    }

    /// Creates the directories and the machine's `daemon.json` when missing. The
    /// machine gets its own config file so the host's `/etc/docker/daemon.json` (which
    /// belongs to the host's own dockerd, and may set `hosts`) never applies.
    pub(crate) fn prepare(&self) -> Result<(), EngineError> {
        let l = &self.layout;
        for dir in [&l.state_dir, &l.data_root, &l.exec_root] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| self.io("create directory", dir, e))?;
        }
        if !l.config_file.exists() {
            std::fs::write(&l.config_file, "{}\n")
                .map_err(|e| self.io("write", &l.config_file, e))?;
        }
        Ok(())
    }

    /// Removes what a dead dockerd left: its pidfile (dockerd refuses to start while
    /// the pid in it is alive, and pids get reused), its socket, and containerd's pidfile
    /// unless that containerd still runs.
    ///
    /// The containerd pidfile matters: dockerd starts containerd with
    /// `Pdeathsig: SIGKILL`, so a killed dockerd takes its containerd along, but the
    /// dead containerd stays a zombie until init reaps it. A new dockerd that reads the
    /// pidfile meanwhile sees the pid "alive" (`kill(pid, 0)` succeeds on a zombie),
    /// waits for that containerd's socket, and fails with "timeout waiting for
    /// containerd to start". A live containerd of this machine is kept: dockerd reuses it.
    pub(crate) fn remove_stale_files(&self) -> Result<(), EngineError> {
        let containerd_pidfile = self.layout.containerd_pidfile();
        let containerd_runs = std::fs::read_to_string(&containerd_pidfile)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .is_some_and(|pid| {
                process::is_alive(pid) && process::mentions(pid, &self.layout.exec_root)
            });
        let mut stale = vec![&self.layout.pidfile, &self.layout.socket];
        if !containerd_runs {
            stale.push(&containerd_pidfile);
        }
        for path in stale {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io("remove", path, e)),
            }
        }
        Ok(())
    }

    /// Rotates the log and spawns dockerd with stdout and stderr into it.
    pub(crate) fn spawn(&self) -> Result<DockerdProcess, EngineError> {
        let log = DockerdLog::new(self.layout.log.clone());
        log.rotate()
            .map_err(|e| self.io("rotate log", &self.layout.log, e))?;
        spawn_engine(
            &self.machine,
            &self.argv(),
            &self.programs.search_path,
            &log,
            &self.programs.dockerd,
        )
    }

    fn io(&self, action: &'static str, path: &Path, e: std::io::Error) -> EngineError {
        EngineError::io(&self.machine, action, path.to_path_buf(), e)
    }
}

/// Spawns a machine's engine process, `argv` (`nsenter --net=… -- <program> …`):
/// stdout and stderr appended to `log`, in its own process group, with `search_path` as
/// its `PATH`. `program` is what nsenter execs, named in errors.
pub(crate) fn spawn_engine(
    machine: &str,
    argv: &[OsString],
    search_path: &OsStr,
    log: &DockerdLog,
    program: &Path,
) -> Result<DockerdProcess, EngineError> {
    let open_error = |e| EngineError::io(machine, "open log", log.path().to_path_buf(), e);
    let stdout = log.open_append().map_err(open_error)?;
    let stderr = stdout.try_clone().map_err(open_error)?;
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env("PATH", search_path)
        // Not ours to pass on: the engine would talk to berth's systemd or take
        // berth's activated sockets.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    let child = command.spawn().map_err(|e| EngineError::Spawn {
        machine: machine.to_owned(),
        program: PathBuf::from(&argv[0]),
        source: std::sync::Arc::new(e),
    })?;
    DockerdProcess::from_child(child).map_err(|e| EngineError::Spawn {
        machine: machine.to_owned(),
        program: program.to_path_buf(),
        source: std::sync::Arc::new(e),
    })
}

#[cfg(test)]
mod tests;
