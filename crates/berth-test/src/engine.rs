//! `TestEngine`: a real dockerd in its own network namespace and temp directory.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{watchdog, wire};

/// How long dockerd gets to answer `GET /_ping` after it was started.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Stops dockerd and everything it started, unmounts, deletes the netns and the
/// directory. Inputs: `$D` (the engine dir), `$NS` (netns name), `$SVC` (dockerd pid).
/// Container processes are found through their cgroups (paused ones are thawed first,
/// since a frozen process does not die); containerd and its shims (and a stale dockerd) through
/// `$D/exec/` or `$D/data` on their command lines.
pub(crate) const CLEANUP: &str = r#"
ids=""
for c in "$D"/data/containers/*/; do [ -d "$c" ] && ids="$ids $(basename "$c")"; done
for id in $ids; do
  for f in /sys/fs/cgroup/freezer/docker/$id/freezer.state; do [ -e "$f" ] && echo THAWED > "$f"; done
  for f in /sys/fs/cgroup/docker/$id/cgroup.freeze /sys/fs/cgroup/system.slice/docker-$id.scope/cgroup.freeze; do [ -e "$f" ] && echo 0 > "$f"; done
done 2>/dev/null
if alive "$SVC" && grep -qF -- "$D/" "/proc/$SVC/cmdline" 2>/dev/null; then
  kill -TERM "$SVC" 2>/dev/null
  i=0; while alive "$SVC" && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  alive "$SVC" && kill -KILL "$SVC" 2>/dev/null
fi
for id in $ids; do
  for f in /sys/fs/cgroup/pids/docker/$id/cgroup.procs /sys/fs/cgroup/unified/docker/$id/cgroup.procs \
           /sys/fs/cgroup/docker/$id/cgroup.procs /sys/fs/cgroup/system.slice/docker-$id.scope/cgroup.procs; do
    [ -e "$f" ] && for p in $(cat "$f"); do kill -KILL "$p"; done
  done
done 2>/dev/null
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = "$$" ] && continue
  { grep -qF -- "$D/exec/" "$p/cmdline" || grep -qF -- "$D/data" "$p/cmdline"; } 2>/dev/null && kill -KILL "$pid" 2>/dev/null
done
sleep 0.2
for m in $(awk -v p="$D/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$m" 2>/dev/null; done
[ -e "/var/run/netns/$NS" ] && ip netns del "$NS" 2>/dev/null
rm -rf "$D" 2>/dev/null || { sleep 0.5; rm -rf "$D"; }
"#;

/// A dockerd started for tests, in network namespace `netns` with everything under one
/// temp directory. Dropping it (or the test process going away) stops dockerd and its
/// containers and removes the namespace and the directory.
#[derive(Debug)]
pub struct TestEngine {
    dir: PathBuf,
    socket: PathBuf,
    netns: String,
    dockerd: Child,
    watchdog: Child,
}

impl TestEngine {
    /// Starts dockerd in a new netns named `name` (<= 15 chars, `[a-z0-9-]`), with
    /// data-root, exec-root, pidfile and log under a fresh temp dir, listening on a unix
    /// socket in that dir. Blocks until `GET /_ping` answers (60 s; the error carries the
    /// tail of dockerd's log). Leftovers of a crashed run with the same name are removed
    /// first. Needs root; fails naming the Debian package when a program is missing.
    ///
    /// The name must not be in use by a live engine: tests add their pid to it.
    pub fn start(name: &str) -> io::Result<TestEngine> {
        Self::start_with(name, &[])
    }

    /// [`TestEngine::start`] with more dockerd arguments (a TLS listener, say).
    pub fn start_with(name: &str, dockerd_args: &[String]) -> io::Result<TestEngine> {
        if name.is_empty()
            || name.len() > 15
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("engine name {name:?}: want 1 to 15 of [a-z0-9-]"),
            ));
        }
        if !nix::unistd::geteuid().is_root() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "TestEngine needs root (network namespaces, dockerd): run the tests as root",
            ));
        }
        watchdog::require(&[
            ("dockerd", "docker.io"),
            ("containerd", "docker.io"),
            ("runc", "docker.io"),
            ("ip", "iproute2"),
            ("nsenter", "util-linux"),
            ("setsid", "util-linux"),
            ("umount", "mount"),
        ])?;
        remove_stale(name)?;

        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(std::env::temp_dir())?
            .keep();
        std::fs::write(dir.join("owner.pid"), std::process::id().to_string())?;
        std::fs::write(dir.join("daemon.json"), "{}\n")?;
        let socket = dir.join("docker.sock");

        run("ip", &["netns", "add", name])?;
        if let Err(e) = run(
            "ip",
            &["netns", "exec", name, "ip", "link", "set", "lo", "up"],
        ) {
            let _ = run("ip", &["netns", "del", name]);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }

        let log = std::fs::File::create(dir.join("dockerd.log"))?;
        // nsenter, not `ip netns exec` (which remounts /sys); setsid so that dockerd and
        // its children are their own session, out of reach of the terminal's signals.
        // The child is not a group leader, so setsid execs in place: the pid is dockerd's.
        let spawned = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{name}"))
            .arg("setsid")
            .arg("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--shutdown-timeout", "2"])
            .args(dockerd_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn();
        let dockerd = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = run("ip", &["netns", "del", name]);
                let _ = std::fs::remove_dir_all(&dir);
                return Err(io::Error::other(format!("spawning dockerd: {e}")));
            }
        };
        let watchdog = match watchdog::spawn(
            CLEANUP,
            true,
            &[
                ("D", dir.display().to_string()),
                ("NS", name.to_owned()),
                ("SVC", dockerd.id().to_string()),
            ],
            &dir.join("watchdog.log"),
        ) {
            Ok(w) => w,
            Err(e) => {
                let mut dockerd = dockerd;
                let _ = dockerd.kill();
                let _ = dockerd.wait();
                let _ = run("ip", &["netns", "del", name]);
                return Err(io::Error::other(format!("spawning the watchdog: {e}")));
            }
        };
        // From here on, Drop cleans up whatever happens.
        let mut engine = TestEngine {
            dir,
            socket,
            netns: name.to_owned(),
            dockerd,
            watchdog,
        };
        let started = Instant::now();
        loop {
            if let Ok(resp) = wire::request(&engine.socket, "GET", "/_ping", &[], b"") {
                if resp.status == 200 {
                    return Ok(engine);
                }
            }
            if let Ok(Some(status)) = engine.dockerd.try_wait() {
                return Err(io::Error::other(format!(
                    "dockerd for engine {name} exited ({status}) before answering /_ping; log tail:\n{}",
                    engine.log_tail(30)
                )));
            }
            if started.elapsed() > READY_WITHIN {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "engine {name} did not answer GET /_ping within {READY_WITHIN:?}; log tail:\n{}",
                        engine.log_tail(30)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The engine's API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix:///…/docker.sock`, for `DOCKER_HOST` or `-H`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The network namespace name (as in /var/run/netns).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The engine's directory (data-root, exec-root, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// dockerd's pid.
    pub fn dockerd_pid(&self) -> u32 {
        self.dockerd.id()
    }

    /// Links the engine's namespace to the host with a veth pair, so that the host
    /// reaches it at [`TestEngine::link_address`] (as a remote machine on a network).
    /// The pair goes away with the namespace.
    pub fn link_to_host(&self) -> io::Result<Ipv4Addr> {
        let (host, guest) = link_addresses(&self.netns);
        let outside = format!("bv{:x}", fnv(&self.netns) & 0xff_ffff);
        run(
            "ip",
            &[
                "link",
                "add",
                &outside,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &self.netns,
            ],
        )?;
        run(
            "ip",
            &["addr", "add", &format!("{host}/30"), "dev", &outside],
        )?;
        run("ip", &["link", "set", &outside, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &self.netns, "ip"];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        inside(&["addr", "add", &format!("{guest}/30"), "dev", "eth0"])?;
        inside(&["link", "set", "eth0", "up"])?;
        Ok(guest)
    }

    /// The namespace's address on the link [`TestEngine::link_to_host`] makes (known
    /// before the link exists, for certificates).
    pub fn link_address(&self) -> Ipv4Addr {
        link_addresses(&self.netns).1
    }

    /// [`TestEngine::start`], then [`TestEngine::import_busybox`] as `tag`; errors say
    /// which step failed.
    pub fn with_busybox(name: &str, tag: &str) -> Result<TestEngine, String> {
        let engine = Self::start(name).map_err(|e| format!("starting the test engine: {e}"))?;
        engine
            .import_busybox(tag)
            .map_err(|e| format!("importing busybox: {e}"))?;
        Ok(engine)
    }

    /// Imports a busybox-static rootfs as image `tag` (e.g. `busybox:latest`), with
    /// `CMD ["sh"]` and `PATH=/bin`; does nothing if `tag` already exists.
    pub fn import_busybox(&self, tag: &str) -> io::Result<()> {
        let exists = wire::request(
            &self.socket,
            "GET",
            &format!("/images/{}/json", wire::encode_query(tag)),
            &[],
            b"",
        )?;
        if exists.status == 200 {
            return Ok(());
        }
        let (repo, version) = match tag.rsplit_once(':') {
            Some((r, v)) if !v.contains('/') => (r, v),
            _ => (tag, "latest"),
        };
        let tar = crate::busybox_rootfs_tar(&self.dir)?;
        let body = std::fs::read(&tar)?;
        let path = format!(
            "/images/create?fromSrc=-&repo={}&tag={}&changes={}&changes={}",
            wire::encode_query(repo),
            wire::encode_query(version),
            wire::encode_query(r#"CMD ["sh"]"#),
            wire::encode_query("ENV PATH=/bin"),
        );
        let resp = wire::request(
            &self.socket,
            "POST",
            &path,
            &[("Content-Type", "application/x-tar")],
            &body,
        )?;
        let text = resp.text();
        if resp.status != 200 || text.contains("errorDetail") {
            return Err(io::Error::other(format!(
                "importing busybox as {tag}: {resp}"
            )));
        }
        Ok(())
    }

    /// The last `lines` lines of dockerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("dockerd.log"), lines)
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        // The watchdog's SIGTERM trap runs the cleanup (dockerd SIGTERM, SIGKILL after
        // 10 s, containers, containerd, mounts, netns, directory); wait for it.
        watchdog::finish(&mut self.watchdog);
        let _ = self.dockerd.kill();
        let _ = self.dockerd.wait();
    }
}

/// The host's and the namespace's address of a /30 in 10.200.0.0/13 picked by the
/// namespace's name (names carry the test's pid, so concurrent tests differ).
pub fn link_addresses(netns: &str) -> (Ipv4Addr, Ipv4Addr) {
    let h = fnv(netns);
    let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) + ((h % (1 << 17)) << 2);
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Removes what a crashed run left under the same name: processes inside the old
/// namespace or using an old directory, their mounts, the namespace and the directory.
/// Refuses if the old directory belongs to a live process (another run in progress).
fn remove_stale(name: &str) -> io::Result<()> {
    let tmp = std::env::temp_dir();
    let prefix = format!("{name}-");
    let mut stale_dirs = Vec::new();
    for entry in std::fs::read_dir(&tmp)?.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(suffix) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        // tempfile's suffix: 6 alphanumerics; anything else is not ours.
        if suffix.len() != 6 || !suffix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            continue;
        }
        let path = entry.path();
        if let Some(owner) = std::fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            if owner != std::process::id() && watchdog::alive(owner) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "engine name {name} is in use by live process {owner} ({}); pick another name",
                        path.display()
                    ),
                ));
            }
        }
        stale_dirs.push(path);
    }
    let netns_path = Path::new("/var/run/netns").join(name);
    if !netns_path.exists() && stale_dirs.is_empty() {
        return Ok(());
    }
    // Processes still inside the old namespace (a dockerd whose watchdog died too).
    if let Ok(ns) = std::fs::metadata(&netns_path) {
        use std::os::unix::fs::MetadataExt;
        for pid in pids() {
            if pid == std::process::id() {
                continue;
            }
            if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/ns/net")) {
                if m.ino() == ns.ino() && m.dev() == ns.dev() {
                    watchdog::signal(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }
    for dir in &stale_dirs {
        let script = format!("{}\n{CLEANUP}", "alive() { [ -e \"/proc/$1\" ]; }");
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("D", dir)
            .env("NS", name)
            .env("SVC", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if netns_path.exists() {
        run("ip", &["netns", "del", name])?;
    }
    Ok(())
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc").map_or_else(
        |_| Vec::new(),
        |d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        },
    )
}

/// Runs a command to completion; an error carries its stderr.
fn run(program: &str, args: &[&str]) -> io::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::other(format!("{program} {args:?}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
