//! socat, HAProxy and the reference forwarders of [`crate::floor`] forwarding a socket to
//! the engine, each under a small shell watchdog that stops it (and socat's
//! per-connection children) when the benchmark goes away, however it goes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::floor::Floor;

/// A forwarding process listening on `socket`.
#[derive(Debug)]
pub(crate) struct Forwarder {
    socket: PathBuf,
    log: PathBuf,
    pid: u32,
    watchdog: Child,
}

impl Forwarder {
    /// `socat UNIX-LISTEN:…,fork,reuseaddr UNIX-CONNECT:engine`.
    pub(crate) fn socat(dir: &Path, engine: &Path) -> Result<Self> {
        let socat = which("socat", "socat")?;
        let socket = dir.join("socat.sock");
        // backlog: socat's default of 5 refuses bursts of connects (the 256-connection
        // rows); berth and HAProxy listen with large backlogs.
        let cmd = format!(
            "{} UNIX-LISTEN:{},fork,reuseaddr,backlog=1024 UNIX-CONNECT:{}",
            socat.display(),
            socket.display(),
            engine.display()
        );
        Self::spawn("socat", dir, socket, &cmd)
    }

    /// HAProxy in TCP mode, two threads, timeouts long enough for idle hijacks.
    pub(crate) fn haproxy(dir: &Path, engine: &Path) -> Result<Self> {
        let haproxy = which("haproxy", "haproxy")?;
        let socket = dir.join("haproxy.sock");
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n    maxconn 8192\n    nbthread 2\n\n\
                 defaults\n    mode tcp\n    maxconn 8192\n    timeout connect 10s\n    \
                 timeout client 1h\n    timeout server 1h\n    timeout tunnel 1h\n\n\
                 frontend fe\n    bind {} mode 600\n    default_backend be\n\n\
                 backend be\n    server s1 {}\n",
                socket.display(),
                engine.display()
            ),
        )?;
        let cmd = format!("{} -f {} -db", haproxy.display(), cfg.display());
        Self::spawn("haproxy", dir, socket, &cmd)
    }

    /// A reference forwarder of [`crate::floor`]: this binary run again with `--floor`.
    pub(crate) fn floor(kind: Floor, dir: &Path, engine: &Path) -> Result<Self> {
        let exe = std::env::current_exe().context("finding berth-bench's own binary")?;
        let name = kind.name();
        let socket = dir.join(format!("{name}.sock"));
        // The spinner at SCHED_IDLE: it takes only CPU time nothing else wants, so it never
        // holds up the client's or dockerd's wake-ups (a CPU running only it counts as
        // idle to the scheduler), as if it had a core of its own.
        let sched = match kind {
            Floor::Minimal => "",
            Floor::Spin => "chrt --idle 0 ",
        };
        let cmd = format!(
            "{sched}{} --floor {name} --floor-listen {} --floor-upstream {}",
            exe.display(),
            socket.display(),
            engine.display()
        );
        Self::spawn(name, dir, socket, &cmd)
    }

    fn spawn(name: &'static str, dir: &Path, socket: PathBuf, cmd: &str) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let pidfile = dir.join(format!("{name}.pid"));
        let me = std::process::id();
        let script = format!(
            r#"
alive() {{ [ -e /proc/$1 ] && ! grep -q '^State:[[:space:]]*Z' /proc/$1/status 2>/dev/null; }}
cleanup() {{ kill $SVC 2>/dev/null; pkill -KILL -P $SVC 2>/dev/null; sleep 0.2; kill -9 $SVC 2>/dev/null; rm -f {sock}; }}
trap 'cleanup; exit 0' TERM INT
{cmd} > {log} 2>&1 < /dev/null &
SVC=$!
echo $SVC > {pidfile}
while alive {me} && alive $SVC; do sleep 0.5; done
cleanup
"#,
            sock = socket.display(),
            log = log.display(),
            pidfile = pidfile.display(),
        );
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let mut fwd = Self {
            socket,
            log,
            pid: 0,
            watchdog,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(pid) = std::fs::read_to_string(&pidfile) {
                fwd.pid = pid.trim().parse().unwrap_or(0);
                if std::os::unix::net::UnixStream::connect(&fwd.socket).is_ok() {
                    return Ok(fwd);
                }
            }
            if Instant::now() > deadline || fwd.watchdog.try_wait()?.is_some() {
                bail!(
                    "{name} did not listen on {}: {}",
                    fwd.socket.display(),
                    std::fs::read_to_string(&fwd.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.watchdog.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.watchdog.wait();
    }
}

/// Where `program` is (on `PATH`, or in /usr/sbin), or which Debian package to install.
pub(crate) fn which(program: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{program} not found: apt-get install {package} (or leave it out with --targets)"
            )
        })
}
