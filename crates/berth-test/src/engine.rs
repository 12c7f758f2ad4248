//! `TestEngine`: a real dockerd in its own network namespace and temp directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::watchdog;

/// A dockerd started for tests; stopped and cleaned up on drop or when the test
/// process exits.
#[derive(Debug)]
pub struct TestEngine {
    dir: PathBuf,
    netns: String,
    watchdog: Child,
}

impl TestEngine {
    /// Starts dockerd in a new network namespace `name` (`[a-z0-9-]`, at most 15 bytes),
    /// and waits until it answers `GET /_ping` (60 s).
    pub fn start(name: &str) -> io::Result<Self> {
        for (program, package) in [
            ("dockerd", "docker.io"),
            ("ip", "iproute2"),
            ("nsenter", "util-linux"),
            ("curl", "curl"),
        ] {
            if !watchdog::have(program) {
                return Err(io::Error::other(format!(
                    "{program} not found: apt-get install {package} (tests start real engines and need root)"
                )));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in("/tmp")?
            .keep();
        let sock = dir.join("docker.sock");
        let d = dir.display();
        // A leftover namespace from a crashed run is replaced.
        let script = format!(
            r#"
ip netns del {name} 2>/dev/null
ip netns add {name} && ip netns exec {name} ip link set lo up || exit 1
echo '{{}}' > {d}/daemon.json
nsenter --net=/var/run/netns/{name} setsid dockerd --config-file {d}/daemon.json --shutdown-timeout 1 \
  --data-root {d}/data --exec-root {d}/exec --pidfile {d}/dockerd.pid \
  -H unix://{d}/docker.sock > {d}/dockerd.log 2>&1 < /dev/null &
SVC=$!
"#
        );
        // Patterns are written `[c]…` so that pkill does not match this very script.
        let cleanup = format!(
            r#"kill $SVC 2>/dev/null; for i in $(seq 1 100); do kill -0 $SVC 2>/dev/null || break; sleep 0.1; done; kill -9 $SVC 2>/dev/null;
for c in {d}/data/containers/*; do id=$(basename "$c"); for p in $(cat /sys/fs/cgroup/pids/docker/$id/cgroup.procs /sys/fs/cgroup/docker/$id/cgroup.procs 2>/dev/null); do kill -9 $p 2>/dev/null; done; done;
pkill -9 -f "[c]ontainerd-shim.*{d}/" 2>/dev/null;
pkill -9 -f "[c]ontainerd --config {d}/" 2>/dev/null;
for m in $(awk -v p="{d}/" 'index($2, p) == 1 {{ print $2 }}' /proc/mounts | sort -r); do umount -l "$m" 2>/dev/null; done;
ip netns del {name} 2>/dev/null; rm -rf {d}"#
        );
        let watchdog = watchdog::spawn(&script, &cleanup, &dir.join("watchdog.log"))?;
        let engine = Self {
            dir,
            netns: name.to_owned(),
            watchdog,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ping(&sock) {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "engine {name} did not answer /_ping within 60 s; log:\n{}",
                    engine.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(engine)
    }

    /// The engine's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// `unix:///…/docker.sock`, for `DOCKER_HOST` or `-H`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The network namespace name (under /var/run/netns).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// dockerd's pid.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("dockerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Imports a busybox-static rootfs as image `tag`.
    pub fn import_busybox(&self, tag: &str) -> io::Result<()> {
        let tar = crate::busybox_rootfs_tar(&self.dir)?;
        let out = crate::DockerCli::new(&self.host()).run(&[
            "import",
            tar.to_str().unwrap_or_default(),
            tag,
        ]);
        if out.code == 0 {
            Ok(())
        } else {
            Err(io::Error::other(format!("docker import: {}", out.stderr)))
        }
    }

    /// The last lines of dockerd's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The engine's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        // SIGTERM to the watchdog runs its cleanup; wait for it.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.watchdog.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.watchdog.wait();
    }
}

fn ping(sock: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && &buf[9..12] == b"200"
}
