//! `TestRegistry`: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1:5000
//! inside a test engine's network namespace: the engine reaches it, and takes it as an
//! insecure (HTTP) registry without configuration (dockerd does so for 127.0.0.0/8).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{watchdog, TestEngine};

/// Where the registry listens, as the engine names it.
pub const REGISTRY_ADDR: &str = "127.0.0.1:5000";

/// A registry serving one engine. Its files sit in `<engine dir>/data-registry`, so the
/// engine's cleanup (which kills what names `<dir>/data` on its command line) ends it
/// too when the test process goes away.
#[derive(Debug)]
pub struct TestRegistry {
    dir: PathBuf,
    child: Child,
}

impl TestRegistry {
    /// Starts the registry; returns once it listens.
    pub fn start(engine: &TestEngine) -> io::Result<TestRegistry> {
        watchdog::require(&[("docker-registry", "docker-registry")])?;
        let dir = engine.dir().join("data-registry");
        std::fs::create_dir_all(dir.join("storage"))?;
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {REGISTRY_ADDR}\n",
                dir.join("storage").display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", engine.netns()))
            .args(["docker-registry", "serve"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut registry = TestRegistry { dir, child };
        let started = Instant::now();
        while !registry.listens() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                return Err(io::Error::other(format!(
                    "docker-registry exited ({status}): {}",
                    crate::engine::tail(&registry.dir.join("registry.log"), 10)
                )));
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::other(
                    "docker-registry did not listen within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(registry)
    }

    /// Whether 127.0.0.1:5000 listens in the registry's namespace (its /proc/PID/net/tcp:
    /// `0100007F:1388`, state 0A).
    fn listens(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/net/tcp", self.child.id())).is_ok_and(|t| {
            t.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1) == Some(&"0100007F:1388") && f.get(3) == Some(&"0A")
            })
        })
    }

    /// Where the registry keeps its files (its log is `registry.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
