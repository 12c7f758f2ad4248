//! `DockerCli`: the real docker CLI against one socket, with a timeout.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a docker command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code (-1 when killed by the timeout).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Outcome {
    /// Stdout, asserting success.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "docker failed: {self:?}");
        self.stdout.trim_end()
    }
}

/// The docker CLI pointed at one socket.
#[derive(Debug, Clone)]
pub struct DockerCli {
    host: String,
    timeout: Duration,
}

impl DockerCli {
    /// For `host` (`unix:///…`).
    pub fn new(host: &str) -> Self {
        Self {
            host: host.to_owned(),
            timeout: Duration::from_secs(120),
        }
    }

    /// The same CLI with another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The host it talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Runs `docker args…`.
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_with(args, None, &[])
    }

    /// Runs `docker args…` with `stdin` bytes and extra environment.
    pub fn run_with(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Outcome {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", &self.host)
            .env_remove("DOCKER_CONTEXT")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .expect("docker CLI missing (/usr/local/bin/docker or docker.io)");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().expect("waiting for docker");
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
