//! A real dockerd in its own network namespace `/var/run/netns/<name>`, one per test
//! binary, with a busybox image. A watchdog shell stops it and removes its namespace
//! and files when the test process is gone, however it ends (statics are never
//! dropped, and a killed test runs no destructor).
//!
//! Minimal on purpose: berth-test's `TestEngine` did not compile while this crate was
//! written; switch to it once it does.

// Shared by several test binaries; each uses a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The image every test runs: busybox-static with `/www/index.html` = "hello\n".
pub(crate) const IMAGE: &str = "bp-busybox:latest";

#[derive(Debug)]
pub(crate) struct Engine {
    dir: PathBuf,
    name: String,
    /// The watchdog shell; SIGTERM makes it clean up (a static engine is cleaned up
    /// when the watchdog sees the test process gone).
    watchdog: Child,
}

impl Engine {
    /// Starts dockerd in namespace `name` and imports [`IMAGE`]; panics with the reason.
    pub(crate) fn start(name: &str) -> Engine {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests start real dockerd engines in network namespaces and need root"
        );
        for program in ["dockerd", "docker", "ip", "nsenter", "setsid", "tar"] {
            let found = Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {program}"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "{program} not found (docker.io, iproute2, util-linux)"
            );
        }
        let dir = PathBuf::from(format!("/tmp/{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let me = std::process::id();
        // dockerd is started through setsid, so $SVC is also its process group, which
        // holds the containerd it starts: the group is killed by its id.
        let script = format!(
            r#"
D={d}; NS={name}; ME={me}; SVC=
cleanup() {{
  if [ -n "$SVC" ]; then
    kill $SVC 2>/dev/null
    for i in $(seq 1 100); do kill -0 $SVC 2>/dev/null || break; sleep 0.1; done
    kill -9 -- -$SVC 2>/dev/null
  fi
  # Containers left running, by their own cgroup. Every engine on the machine shares
  # the `docker` cgroup parent: only full IDs of this engine's containers may be used
  # (an unmatched glob would otherwise name them all).
  for c in $D/data/containers/*; do
    [ -d "$c" ] || continue
    id=$(basename "$c")
    case "$id" in *[!0-9a-f]*) continue ;; esac
    [ ${{#id}} -eq 64 ] || continue
    for p in $(cat /sys/fs/cgroup/docker/$id/cgroup.procs /sys/fs/cgroup/pids/docker/$id/cgroup.procs 2>/dev/null); do kill -9 $p 2>/dev/null; done
  done
  for m in $(awk -v p="$D/" 'index($2, p) == 1 {{ print $2 }}' /proc/mounts | sort -r); do umount -l "$m" 2>/dev/null; done
  ip netns del $NS 2>/dev/null
  rm -rf $D
}}
trap 'cleanup; exit 0' TERM INT
ip netns del $NS 2>/dev/null
ip netns add $NS && ip netns exec $NS ip link set lo up || exit 1
setsid nsenter --net=/var/run/netns/$NS dockerd --data-root $D/data --exec-root $D/exec \
  --pidfile $D/dockerd.pid --shutdown-timeout 1 -H unix://$D/docker.sock \
  > $D/dockerd.log 2>&1 < /dev/null &
SVC=$!
while [ -e /proc/$ME ] && kill -0 $SVC 2>/dev/null; do sleep 0.5; done
cleanup
"#
        );
        let log = std::fs::File::create(dir.join("watchdog.log")).unwrap();
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let engine = Engine {
            dir,
            name: name.to_owned(),
            watchdog,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine.pings() {
            assert!(
                Instant::now() < deadline,
                "engine {name} did not answer /_ping within 60 s; log:\n{}",
                std::fs::read_to_string(engine.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        engine.import_busybox();
        engine
    }

    /// The engine's API socket.
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// The engine's network namespace.
    pub(crate) fn netns(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// Runs `docker args…` against the engine; stdout, or the failure.
    pub(crate) async fn docker(&self, args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("docker: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `docker inspect` of one container, parsed.
    pub(crate) async fn inspect(&self, container: &str) -> serde_json::Value {
        let out = self.docker(&["inspect", container]).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    fn pings(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 12];
        s.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .is_ok()
            && s.read_exact(&mut buf).is_ok()
            && &buf[9..12] == b"200"
    }

    fn import_busybox(&self) {
        let root = self.dir.join("rootfs");
        for sub in ["bin", "etc", "tmp", "www"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox (apt-get install busybox-static)");
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
            }
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        std::fs::write(root.join("www/index.html"), "hello\n").unwrap();
        let tar = self.dir.join("busybox.tar");
        let ok = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar of the busybox rootfs failed");
        let out = Command::new("docker")
            .args([
                "import",
                "--change",
                "ENV PATH=/bin",
                "--change",
                r#"CMD ["sh"]"#,
            ])
            .arg(&tar)
            .arg(IMAGE)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.watchdog.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.watchdog.wait();
    }
}

/// A TCP port free on the host right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` over plain HTTP/1.0 at `addr`; the whole response, or the I/O error.
pub(crate) async fn http_get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no answer in 10 s"))??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Whether a TCP connect to `addr` is refused right now.
pub(crate) async fn refused(addr: std::net::SocketAddr) -> bool {
    matches!(
        tokio::net::TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}
