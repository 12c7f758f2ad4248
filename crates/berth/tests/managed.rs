//! End to end: berth runs its own managed engine (issue: managed engines).
//!
//! One berth daemon with one managed machine, driven by the real docker CLI, through a
//! whole life: cold start, image load and run, dockerd killed, berth restarted, the
//! machine commands, `berth docker enable|disable`. Steps run in order in one test
//! because starting an engine is the expensive part.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_test::ManagedBerth;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");
const MACHINE: &str = "bt-managed";

/// `docker args…` at `socket`, or through the context in `docker_config` if given.
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

#[track_caller]
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

fn start(machine: &str, machine_toml: &str) -> ManagedBerth {
    ManagedBerth::start(Path::new(BERTH), machine, machine_toml).expect("starting berth")
}

/// The machine's state in `berth status --json`.
fn machine_state(berth: &ManagedBerth) -> String {
    machine_report(berth)["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The machine's report in `berth status --json`.
fn machine_report(berth: &ManagedBerth) -> serde_json::Value {
    let status = ok(&berth.berth(&["status", "--json"]), "berth status");
    let report: serde_json::Value = serde_json::from_str(&status).unwrap();
    report["machines"][0].clone()
}

#[test]
fn managed_machine_lives_through_kills_and_restarts() {
    let mut daemon = start(MACHINE, "");
    let dir = daemon.dir().to_owned();

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
    let tar = berth_test::busybox_rootfs_tar(&dir).unwrap();
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
    daemon.stop().unwrap();
    assert!(!daemon.socket().exists(), "socket left after a clean stop");
    daemon.restart().unwrap();
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
            .arg(daemon.config())
            .env("DOCKER_CONFIG", &docker_config)
            .env_remove("DOCKER_HOST")
            .output()
            .unwrap()
    };
    let context = || {
        let out = docker_at(&daemon.socket(), &["context", "show"], Some(&docker_config));
        ok(&out, "docker context show")
    };
    ok(&berth_docker("enable"), "berth docker enable");
    assert_eq!(context(), "berth");
    let via_context = ok(
        &docker_at(
            &daemon.socket(),
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
        ("[[machines]]\nname = \"a\"\nkind = \"jail\"\n", "kind"),
        (
            "[[machines]]\nname = \"a\"\nkind = \"vm\"\nmemory = \"lots\"\n",
            "machines[0].memory",
        ),
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

#[test]
fn idle_machine_stops_and_the_next_request_starts_it() {
    let daemon = start("bt-idle", "idle_stop = \"3s\"");
    let tar = berth_test::busybox_rootfs_tar(daemon.dir()).unwrap();
    ok(
        &daemon.docker(&["import", tar.to_str().unwrap(), "bt-busybox:1"]),
        "docker import (cold start)",
    );
    assert_eq!(machine_state(&daemon), "running");

    // A client that only watches does not keep the engine up, and its stream ends when
    // the engine stops.
    let mut events = Command::new("docker")
        .arg("events")
        .env("DOCKER_HOST", daemon.host())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
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
    {
        // What the CLI says when a dockerd it watches stops (checked against dockerd
        // 20.10 directly): the stream is cut, not left hanging.
        use std::io::Read;
        let mut err = String::new();
        events
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(err.trim(), "unexpected EOF");
    }
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

    // Work that leaves nothing running keeps it up too: the engine's own events
    // (here a container created every 1.5 s, for 2.5 idle periods) count. The same
    // dockerd must still be running (a stop would be hidden by the next lazy start).
    let pid = machine_report(&daemon)["pid"].clone();
    for i in 0..5 {
        let name = format!("bt-idle-created-{i}");
        ok(
            &daemon.docker(&["create", "--name", &name, "bt-busybox:1", "true"]),
            "docker create",
        );
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert_eq!(
        machine_report(&daemon)["pid"],
        pid,
        "stopped while containers were being created:\n{}",
        daemon.log()
    );

    // An upload still flowing keeps it up, with no container running: the body of
    // this import stays open for 3 idle periods.
    let upload = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "(cat {}; sleep 9) | docker import - bt-slow:1",
            tar.display()
        ))
        .env("DOCKER_HOST", daemon.host())
        .output()
        .unwrap();
    ok(&upload, "slow docker import");
    assert_eq!(machine_state(&daemon), "running", "stopped under an upload");

    // A running container keeps it up, with an attached client and without.
    let mut attached = Command::new("docker")
        .args(["run", "-i", "--name", "bt-idle-cat", "bt-busybox:1", "cat"])
        .env("DOCKER_HOST", daemon.host())
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
        &daemon.docker(&[
            "rm",
            "-f",
            "bt-idle-sleep",
            "bt-idle-cat",
            "bt-idle-created-0",
            "bt-idle-created-1",
            "bt-idle-created-2",
            "bt-idle-created-3",
            "bt-idle-created-4",
        ]),
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
