//! `DockerCli`: the real docker CLI against one socket, with a timeout.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one docker command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliOutput {
    /// The arguments after `-H <host>`.
    pub args: Vec<String>,
    /// Exit code; -1 when it was killed by a signal or by the timeout.
    pub code: i32,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CliOutput {
    /// Runs `program args…` (another CLI than docker: `berth tenant …`) to its end with
    /// stdin closed.
    pub fn run(program: &std::path::Path, args: &[&str]) -> CliOutput {
        let started = Instant::now();
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        CliOutput {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            timed_out: false,
            elapsed: started.elapsed(),
        }
    }

    /// Whether it exited 0 in time.
    pub fn success(&self) -> bool {
        self.code == 0 && !self.timed_out
    }

    /// Stdout without trailing whitespace; panics with the whole outcome unless the
    /// command succeeded.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(self.success(), "expected success: {self}");
        self.stdout.trim_end()
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |s: &str| -> String {
            if s.len() > 4000 {
                let mut end = 4000;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}… ({} bytes)", &s[..end], s.len())
            } else {
                s.to_owned()
            }
        };
        write!(
            f,
            "`docker {}` → exit {}{} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.elapsed,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

/// The docker CLI (`/usr/local/bin/docker`, else `docker` on `PATH`) pointed at one
/// socket with `-H`. Commands that run longer than the timeout (120 s by default) are
/// killed and reported as `timed_out`, so a hang fails the test instead of hanging it.
#[derive(Debug, Clone)]
pub struct DockerCli {
    host: String,
    timeout: Duration,
    env: Vec<(String, String)>,
}

impl DockerCli {
    /// For `host` (`unix:///…`).
    pub fn new(host: impl Into<String>) -> DockerCli {
        DockerCli {
            host: host.into(),
            timeout: Duration::from_secs(120),
            env: Vec::new(),
        }
    }

    /// The same CLI with another timeout.
    pub fn timeout(mut self, timeout: Duration) -> DockerCli {
        self.timeout = timeout;
        self
    }

    /// The same CLI with an extra environment variable (e.g. `DOCKER_BUILDKIT=0`).
    pub fn env(mut self, key: &str, value: &str) -> DockerCli {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The host it talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The docker binary used.
    pub fn binary() -> PathBuf {
        let local = PathBuf::from("/usr/local/bin/docker");
        if local.exists() {
            local
        } else {
            PathBuf::from("docker")
        }
    }

    /// A `Command` for `docker -H <host> args…` with this CLI's environment, for tests
    /// that stream (the caller owns stdio and timing).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(Self::binary());
        cmd.arg("-H")
            .arg(&self.host)
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `docker -H <host> args…` with stdin closed.
    pub fn run(&self, args: &[&str]) -> CliOutput {
        self.run_with_stdin(args, None)
    }

    /// Runs `docker -H <host> args…`, writing `stdin` then closing it.
    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> CliOutput {
        self.run_with_stdin(args, Some(stdin))
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
        let started = Instant::now();
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that the timeout can kill whatever it started.
        .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run {}: {e} (the docker CLI: /usr/local/bin/docker, or apt-get install docker.io)",
                Self::binary().display()
            ),
        };
        let writer = stdin.map(|input| {
            let mut pipe = child.stdin.take().expect("piped stdin");
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            })
        });
        // Drain both pipes while waiting: a full pipe would block the CLI.
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let _ = r.read_to_end(&mut out);
                out
            })
        };
        let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
        let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
        let deadline = started + self.timeout;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() > deadline => {
                    timed_out = true;
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(child.id() as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    break child.wait().ok();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break None,
            }
        };
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        CliOutput {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            timed_out,
            elapsed: started.elapsed(),
        }
    }
}
