//! End to end: berth runs its own managed engine (issue: managed engines).
//!
//! One berth daemon with one managed machine, driven by the real docker CLI, through a
//! whole life: cold start, image load and run, dockerd killed, berth restarted, the
//! machine commands, `berth docker enable|disable`. Steps run in order in one test
//! because starting an engine is the expensive part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");
const MACHINE: &str = "bt-managed";

/// A berth daemon with a managed machine; stopped (and the machine with it) on drop.
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
}

impl Daemon {
    fn config(dir: &Path) -> PathBuf {
        dir.join("berth.toml")
    }

    fn socket(dir: &Path) -> PathBuf {
        dir.join("docker.sock")
    }

    fn start(dir: &Path) -> Self {
        let log = std::fs::File::create(dir.join("berth.log")).unwrap();
        let child = Command::new(BERTH)
            .args(["serve", "--config"])
            .arg(Self::config(dir))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning berth");
        let daemon = Self {
            child: Some(child),
            dir: dir.to_owned(),
        };
        let socket = Self::socket(dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "berth did not listen: {}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("berth.log")).unwrap_or_default()
    }

    fn docker(&self, args: &[&str]) -> Output {
        docker_at(&Self::socket(&self.dir), args, None)
    }

    fn berth(&self, args: &[&str]) -> Output {
        Command::new(BERTH)
            .args(args)
            .arg("--config")
            .arg(Self::config(&self.dir))
            .output()
            .expect("running berth")
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(40);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes a machine's network namespace and the test's state when the test ends,
/// however it ends.
struct Cleanup(PathBuf, &'static str);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-9", "-f", &format!("dockerd.*{}", self.0.display())])
            .status();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let prefix = format!("{}/", self.0.display());
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        points.sort_unstable_by(|a, b| b.cmp(a));
        for m in points {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("berth-{}", self.1)])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn docker_at(socket: &Path, args: &[&str], docker_config: Option<&Path>) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args)
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .stdin(Stdio::null());
    if let Some(dir) = docker_config {
        cmd.env("DOCKER_CONFIG", dir).env_remove("DOCKER_HOST");
    }
    cmd.output().expect("running docker")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A busybox image tar (from Debian's busybox-static), for `docker import`.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox missing: apt-get install busybox-static");
    for tool in ["sh", "echo", "cat", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    tar
}

#[test]
fn managed_machine_lives_through_kills_and_restarts() {
    let dir = tempfile::Builder::new()
        .prefix("bt-m")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = dir.keep();
    let _cleanup = Cleanup(dir.clone(), MACHINE);
    std::fs::write(
        Daemon::config(&dir),
        format!(
            "hosts = [\"unix://{}\"]\nstate_dir = \"{}\"\n\n[[machines]]\nname = \"{MACHINE}\"\nkind = \"managed\"\n",
            Daemon::socket(&dir).display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&dir);

    // A never-used machine is stopped until its first request.
    let ls = ok(&daemon.berth(&["machine", "ls"]), "berth machine ls");
    assert!(ls.contains(MACHINE) && ls.contains("stopped"), "{ls}");

    // Cold start through the CLI's first request.
    let version = ok(
        &daemon.docker(&["version", "--format", "{{.Server.Version}}"]),
        "cold docker version",
    );
    assert!(!version.is_empty());

    // Load an image and run it.
    let tar = busybox_rootfs(&dir);
    ok(
        &daemon.docker(&["import", tar.to_str().unwrap(), "bt-busybox:1"]),
        "docker import",
    );
    let hello = ok(
        &daemon.docker(&[
            "run",
            "--rm",
            "bt-busybox:1",
            "echo",
            "hello from the machine",
        ]),
        "docker run",
    );
    assert_eq!(hello, "hello from the machine");
    ok(
        &daemon.docker(&["volume", "create", "bt-kept"]),
        "volume create",
    );
    ok(
        &daemon.docker(&["create", "--name", "bt-kept-c", "bt-busybox:1", "true"]),
        "docker create",
    );

    // dockerd killed behind berth's back: the next command works.
    let status = ok(&daemon.berth(&["status", "--json"]), "berth status");
    let report: serde_json::Value = serde_json::from_str(&status).unwrap();
    let machine = &report["machines"][0];
    assert_eq!(machine["state"], "running", "{status}");
    let pid = machine["pid"].as_u64().expect("dockerd pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let names = ok(
        &daemon.docker(&["ps", "-a", "--format", "{{.Names}}"]),
        "ps after kill",
    );
    assert!(names.lines().any(|n| n == "bt-kept-c"), "{names}");

    // berth restarted: images, volumes and containers are still there, and the machine
    // that was running comes back by itself.
    daemon.stop();
    assert!(
        !Daemon::socket(&dir).exists(),
        "socket left after a clean stop"
    );
    let daemon = Daemon::start(&dir);
    let images = ok(
        &daemon.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "images",
    );
    assert!(images.contains("bt-busybox:1"), "{images}");
    let volumes = ok(&daemon.docker(&["volume", "ls", "-q"]), "volume ls");
    assert!(volumes.contains("bt-kept"), "{volumes}");
    let names = ok(
        &daemon.docker(&["ps", "-a", "--format", "{{.Names}}"]),
        "ps after restart",
    );
    assert!(names.contains("bt-kept-c"), "{names}");

    // Machine commands through the control socket.
    ok(&daemon.berth(&["machine", "stop", MACHINE]), "machine stop");
    let ls = ok(&daemon.berth(&["machine", "ls"]), "machine ls");
    assert!(ls.contains("stopped"), "{ls}");
    // The next request starts a stopped machine (not a 502 from the old dockerd's socket).
    ok(&daemon.docker(&["ps", "-a"]), "ps starts a stopped machine");
    ok(
        &daemon.berth(&["machine", "stop", MACHINE]),
        "machine stop again",
    );
    ok(
        &daemon.berth(&["machine", "start", MACHINE]),
        "machine start",
    );
    let logs = ok(&daemon.berth(&["machine", "logs", MACHINE]), "machine logs");
    assert!(logs.contains("API listen"), "{logs}");
    ok(&daemon.docker(&["rm", "bt-kept-c"]), "rm");

    // `berth docker enable` makes plain `docker` go through berth; `disable` restores.
    let docker_config = dir.join("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    let berth_docker = |action: &str| {
        Command::new(BERTH)
            .args(["docker", action, "--config"])
            .arg(Daemon::config(&dir))
            .env("DOCKER_CONFIG", &docker_config)
            .env_remove("DOCKER_HOST")
            .output()
            .unwrap()
    };
    let context = || {
        let out = docker_at(
            &Daemon::socket(&dir),
            &["context", "show"],
            Some(&docker_config),
        );
        ok(&out, "docker context show")
    };
    ok(&berth_docker("enable"), "berth docker enable");
    assert_eq!(context(), "berth");
    let via_context = ok(
        &docker_at(
            &Daemon::socket(&dir),
            &["images", "-q", "bt-busybox:1"],
            Some(&docker_config),
        ),
        "docker images via context",
    );
    assert!(!via_context.is_empty());
    ok(&berth_docker("disable"), "berth docker disable");
    let current = context();
    assert_eq!(current, "default");
}

#[test]
fn bad_configurations_name_the_key_and_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("hosts = [\"unix:///tmp/x.sock\"]\nbogus = 1\n", "bogus"),
        ("[[machines]]\nname = \"a\"\nkind = \"vm\"\n", "kind"),
        (
            "[[machines]]\nname = \"a\"\nkind = \"external\"\n",
            "machines[0].endpoint",
        ),
        ("hosts = [\"tcp://127.0.0.1:1\"]\n", "tlsverify"),
        (
            "[[machines]]\nname = \"a\"\nkind = \"managed\"\nidle_stop = \"10\"\n",
            "machines[0].idle_stop",
        ),
        (
            "[[machines]]\nname = \"a\"\nkind = \"external\"\nendpoint = \"unix:///x.sock\"\nidle_stop = \"1m\"\n",
            "machines[0].idle_stop",
        ),
    ];
    for (text, expect) in cases {
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BERTH)
            .args(["serve", "--check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{text}: {stderr}");
        assert!(
            stderr.contains(expect),
            "{text}: expected {expect:?} in {stderr}"
        );
    }
    let out = Command::new(BERTH)
        .args(["status", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(BERTH)
        .args(["status", "--socket", "unix:///tmp/bt-nobody-here.sock"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no berth daemon is running"), "{stderr}");
}

/// The machine's state in `berth status --json`.
fn machine_state(daemon: &Daemon) -> String {
    let status = ok(&daemon.berth(&["status", "--json"]), "berth status");
    let report: serde_json::Value = serde_json::from_str(&status).unwrap();
    report["machines"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn idle_machine_stops_and_the_next_request_starts_it() {
    const IDLE: &str = "bt-idle";
    let dir = tempfile::Builder::new()
        .prefix("bt-i")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = dir.keep();
    let _cleanup = Cleanup(dir.clone(), IDLE);
    std::fs::write(
        Daemon::config(&dir),
        format!(
            "hosts = [\"unix://{}\"]\nstate_dir = \"{}\"\n\n[[machines]]\nname = \"{IDLE}\"\nkind = \"managed\"\nidle_stop = \"3s\"\n",
            Daemon::socket(&dir).display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&dir);
    let tar = busybox_rootfs(&dir);
    ok(
        &daemon.docker(&["import", tar.to_str().unwrap(), "bt-busybox:1"]),
        "docker import (cold start)",
    );
    assert_eq!(machine_state(&daemon), "running");

    // A client that only watches does not keep the engine up, and its stream ends when
    // the engine stops.
    let mut events = Command::new("docker")
        .arg("events")
        .env(
            "DOCKER_HOST",
            format!("unix://{}", Daemon::socket(&dir).display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let idle_from = Instant::now();
    berth_test::assert_eventually!(
        within = Duration::from_secs(20),
        machine_state(&daemon) == "stopped",
        "idle machine not stopped; berth log:\n{}",
        daemon.log()
    );
    assert!(
        idle_from.elapsed() >= Duration::from_millis(2500),
        "stopped after {:?}, before its idle time",
        idle_from.elapsed()
    );
    berth_test::assert_eventually!(
        within = Duration::from_secs(10),
        events.try_wait().unwrap().is_some(),
        "docker events still running after the engine stopped"
    );
    assert!(
        daemon.log().contains("stopping idle engine"),
        "{}",
        daemon.log()
    );

    // The next request starts it again.
    let images = ok(
        &daemon.docker(&["images", "--format", "{{.Repository}}"]),
        "images after the idle stop",
    );
    assert!(images.contains("bt-busybox"), "{images}");
    assert_eq!(machine_state(&daemon), "running");

    // An upload still flowing keeps it up, with no container running: the body of
    // this import stays open for 3 idle periods.
    let upload = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "(cat {}; sleep 9) | docker import - bt-slow:1",
            tar.display()
        ))
        .env(
            "DOCKER_HOST",
            format!("unix://{}", Daemon::socket(&dir).display()),
        )
        .output()
        .unwrap();
    ok(&upload, "slow docker import");
    assert_eq!(machine_state(&daemon), "running", "stopped under an upload");

    // A running container keeps it up, with an attached client and without.
    let mut attached = Command::new("docker")
        .args(["run", "-i", "--name", "bt-idle-cat", "bt-busybox:1", "cat"])
        .env(
            "DOCKER_HOST",
            format!("unix://{}", Daemon::socket(&dir).display()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(machine_state(&daemon), "running", "stopped under an attach");
    {
        use std::io::{Read, Write};
        let mut stdin = attached.stdin.take().unwrap();
        stdin.write_all(b"still here\n").unwrap();
        drop(stdin);
        let mut out = String::new();
        attached
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "still here\n");
        assert!(attached.wait().unwrap().success());
    }
    ok(
        &daemon.docker(&[
            "run",
            "-d",
            "--name",
            "bt-idle-sleep",
            "bt-busybox:1",
            "sleep",
            "600",
        ]),
        "run -d",
    );
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(
        machine_state(&daemon),
        "running",
        "stopped with a running container"
    );
    ok(
        &daemon.docker(&["rm", "-f", "bt-idle-sleep", "bt-idle-cat"]),
        "rm -f",
    );
    berth_test::assert_eventually!(
        within = Duration::from_secs(20),
        machine_state(&daemon) == "stopped",
        "machine not stopped once its last container went"
    );
    let _ = events.kill();
    let _ = events.wait();
}
