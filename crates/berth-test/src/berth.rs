//! `BerthProcess`: the berth binary serving in front of an engine.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{watchdog, TestEngine};

/// How long berth gets to accept connections on its socket.
const LISTEN_WITHIN: Duration = Duration::from_secs(30);

/// Waits until `child`, a berth described by `what` and printing to `log`, accepts on
/// `socket`. An error carries what berth printed, and its exit status if it exited
/// (it is reaped then).
pub(crate) fn wait_listening(
    child: &mut Child,
    socket: &Path,
    log: &Path,
    what: &str,
) -> Result<(), (io::Error, Option<ExitStatus>)> {
    let printed = || std::fs::read_to_string(log).unwrap_or_default();
    let started = Instant::now();
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                let e = io::Error::other(format!(
                    "{what} exited ({status}) before listening on {}; it printed:\n{}",
                    socket.display(),
                    printed()
                ));
                return Err((e, Some(status)));
            }
            Ok(None) => {}
            Err(e) => return Err((e, None)),
        }
        if started.elapsed() > LISTEN_WITHIN {
            let e = io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{what} did not listen on {} within {LISTEN_WITHIN:?}; it printed:\n{}",
                    socket.display(),
                    printed()
                ),
            );
            return Err((e, None));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// When the test process is gone: kill berth (if `$SVC` still is a process whose
/// command line names its socket `$NEEDLE`) and remove `$D`.
const CLEANUP: &str = r#"
if alive "$SVC" && grep -qF -- "$NEEDLE" "/proc/$SVC/cmdline" 2>/dev/null; then kill -KILL "$SVC"; fi
rm -rf "$D"
"#;

/// `berth serve` running for a test, on a socket in its own temp dir. Killed on drop or
/// when the test process goes away.
#[derive(Debug)]
pub struct BerthProcess {
    dir: PathBuf,
    socket: PathBuf,
    child: Child,
    watchdog: Child,
    exited: Option<ExitStatus>,
}

/// What the watchdog looks for in berth's command line before killing its pid (so a
/// reused pid is never killed): the socket path when the arguments name it, else the
/// longest argument (a temp path such as `--config /tmp/…/berth.toml`).
fn needle(args: &[&str], socket: &Path) -> String {
    let socket = socket.display().to_string();
    if args.iter().any(|a| a.contains(&socket)) {
        return socket;
    }
    args.iter()
        .max_by_key(|a| a.len())
        .map_or(socket, |a| (*a).to_owned())
}

impl BerthProcess {
    /// Runs `<bin> serve --engine <engine_url> -H unix://<tempdir>/berth.sock
    /// <extra_args…>` with `RUST_LOG` unset (stdout and stderr go to a file in the temp
    /// dir), and blocks until the socket accepts connections (30 s).
    pub fn start(bin: &Path, engine_url: &str, extra_args: &[&str]) -> io::Result<BerthProcess> {
        let dir = tempfile::Builder::new()
            .prefix("bt-berth-")
            .tempdir_in(std::env::temp_dir())?
            .keep();
        let socket = dir.join("berth.sock");
        let host = format!("unix://{}", socket.display());
        let mut args = vec!["serve", "--engine", engine_url, "-H", &host];
        args.extend_from_slice(extra_args);
        Self::spawn_in(dir, bin, &args, socket)
    }

    /// Runs `<bin> <args…>` (the caller passes `serve` and every flag) and blocks until
    /// `socket` accepts connections. For listeners elsewhere than the temp dir.
    pub fn start_args(bin: &Path, args: &[&str], socket: &Path) -> io::Result<BerthProcess> {
        let dir = tempfile::Builder::new()
            .prefix("bt-berth-")
            .tempdir_in(std::env::temp_dir())?
            .keep();
        Self::spawn_in(dir, bin, args, socket.to_owned())
    }

    /// Runs `<bin> serve --config <dir>/berth.toml`, the file written here: a Unix
    /// listener `<dir>/b.sock`, `state_dir = "<dir>/state"`, then `config` (more
    /// top-level keys first, then tables such as `[[machines]]`). `dir` is created; put it
    /// in an engine's directory, which that engine's watchdog removes.
    pub fn start_config(bin: &Path, dir: &Path, config: &str) -> io::Result<BerthProcess> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("b.sock");
        let file = dir.join("berth.toml");
        std::fs::write(
            &file,
            format!(
                "hosts = [\"unix://{}\"]\nstate_dir = \"{}\"\n{config}",
                socket.display(),
                dir.join("state").display(),
            ),
        )?;
        let file = file
            .to_str()
            .ok_or_else(|| io::Error::other("config path is not UTF-8"))?;
        Self::start_args(bin, &["serve", "--config", file], &socket)
    }

    fn spawn_in(dir: PathBuf, bin: &Path, args: &[&str], socket: PathBuf) -> io::Result<Self> {
        let log = std::fs::File::create(dir.join("berth.log"))?;
        let child = Command::new(bin)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| io::Error::other(format!("spawning {}: {e}", bin.display())))?;
        let watchdog = match watchdog::spawn(
            CLEANUP,
            false,
            &[
                ("D", dir.display().to_string()),
                ("SVC", child.id().to_string()),
                ("NEEDLE", needle(args, &socket)),
            ],
            &dir.join("watchdog.log"),
        ) {
            Ok(w) => w,
            Err(e) => {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut berth = BerthProcess {
            dir,
            socket,
            child,
            watchdog,
            exited: None,
        };
        let what = format!("berth {args:?}");
        let log = berth.dir.join("berth.log");
        match wait_listening(&mut berth.child, &berth.socket, &log, &what) {
            Ok(()) => Ok(berth),
            Err((e, exited)) => {
                berth.exited = exited;
                Err(e)
            }
        }
    }

    /// The API socket berth listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix:///…/berth.sock`, for `DOCKER_HOST` or `-H`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// berth's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir (log, socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What berth printed so far (stderr and stdout).
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("berth.log")).unwrap_or_default()
    }

    /// Whether berth has exited (it is reaped if so).
    pub fn has_exited(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited.is_some()
    }

    /// SIGTERM, wait up to 10 s (then SIGKILL); returns the exit status.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        watchdog::signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                break self.child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.exited = Some(status);
        Ok(status)
    }
}

impl Drop for BerthProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // SIGTERM makes the watchdog exit without its cleanup: done here.
        watchdog::finish(&mut self.watchdog);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A busybox engine and one `berth serve` in front of it: the fixture of the test
/// binaries that run each check directly and through berth.
#[derive(Debug)]
pub struct Fronted {
    /// The engine (busybox imported).
    pub engine: TestEngine,
    /// `berth serve --engine <engine>`.
    pub berth: BerthProcess,
}

impl Fronted {
    /// Starts engine `name` with busybox imported as `image`, then `<bin> serve` in
    /// front of it; the error says which of the two failed.
    pub fn start(bin: &Path, name: &str, image: &str) -> Result<Fronted, String> {
        Self::start_with(bin, name, image, &[])
    }

    /// [`Fronted::start`] with `extra_args` for `berth serve` (a configuration, a state
    /// directory, …).
    pub fn start_with(
        bin: &Path,
        name: &str,
        image: &str,
        extra_args: &[&str],
    ) -> Result<Fronted, String> {
        let engine = TestEngine::with_busybox(name, image)?;
        let berth = BerthProcess::start(bin, &engine.host(), extra_args)
            .map_err(|e| format!("starting berth: {e}"))?;
        Ok(Fronted { engine, berth })
    }
}
