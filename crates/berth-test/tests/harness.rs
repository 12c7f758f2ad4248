//! The harness cleans up after itself: on drop, and when the test process is killed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_test::{assert_eventually, DockerCli, TestEngine};

fn dockerd_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

/// Processes whose command line mentions `needle` (dockerd, containerd, shims).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[test]
fn an_engine_runs_containers_and_leaves_nothing_behind_when_dropped() {
    let name = format!("bt-h-{}", std::process::id());
    let engine = TestEngine::start(&name).expect("starting an engine");
    engine.import_busybox("bt-busybox:latest").unwrap();
    // Idempotent.
    engine.import_busybox("bt-busybox:latest").unwrap();
    let cli = DockerCli::new(engine.host());
    let out = cli.run(&["run", "--rm", "bt-busybox:latest", "echo", "hello"]);
    assert_eq!(out.ok(), "hello");
    // A paused container must not survive the cleanup either.
    cli.run(&[
        "run",
        "-d",
        "--name",
        "bt-h-paused",
        "bt-busybox:latest",
        "sleep",
        "600",
    ])
    .ok();
    cli.run(&["pause", "bt-h-paused"]).ok();
    assert!(Path::new("/var/run/netns").join(&name).exists());
    let dir = engine.dir().to_owned();
    let pid = engine.dockerd_pid();
    drop(engine);
    assert!(!dockerd_alive(pid), "dockerd {pid} survived the drop");
    assert!(
        !Path::new("/var/run/netns").join(&name).exists(),
        "netns left"
    );
    assert!(!dir.exists(), "{} left", dir.display());
    let left = processes_mentioning(&dir.display().to_string());
    assert!(left.is_empty(), "processes left: {left:#?}");
}

/// The child half of the next test: start an engine, say where it is, then wait to be
/// killed.
#[test]
fn child_engine_holder() {
    let Ok(name) = std::env::var("BT_HARNESS_CHILD") else {
        return;
    };
    let engine = TestEngine::start(&name).unwrap();
    println!("READY {} {}", engine.dockerd_pid(), engine.dir().display());
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_killed_test_process_takes_its_engine_with_it() {
    let name = format!("bt-k-{}", std::process::id());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_engine_holder",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BT_HARNESS_CHILD", &name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = loop {
        let line = lines.next().expect("child ended without READY").unwrap();
        // libtest prints "test child_engine_holder ... " before it on the same line.
        if let Some((_, rest)) = line.split_once("READY ") {
            break rest.to_owned();
        }
    };
    let (pid, dir) = ready.split_once(' ').unwrap();
    let pid: u32 = pid.parse().unwrap();
    assert!(dockerd_alive(pid));
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert_eventually!(
        within = Duration::from_secs(20),
        !dockerd_alive(pid)
            && !Path::new("/var/run/netns").join(&name).exists()
            && !Path::new(dir).exists()
            && processes_mentioning(dir).is_empty(),
        "after SIGKILL of the test process: dockerd alive {}, netns {}, dir {}, processes {:#?}",
        dockerd_alive(pid),
        Path::new("/var/run/netns").join(&name).exists(),
        Path::new(dir).exists(),
        processes_mentioning(dir)
    );
}

#[test]
fn stale_leftovers_of_the_same_name_do_not_break_a_start() {
    let name = format!("bt-s-{}", std::process::id());
    // A netns and a directory as a crash would leave them.
    assert!(Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap()
        .success());
    let stale = std::env::temp_dir().join(format!("{name}-abc123"));
    std::fs::create_dir_all(stale.join("data")).unwrap();
    std::fs::write(stale.join("owner.pid"), "999999999").unwrap();
    let engine = TestEngine::start(&name).expect("start over stale leftovers");
    assert!(!stale.exists(), "stale dir not removed");
    let out = DockerCli::new(engine.host()).run(&["version", "--format", "{{.Server.Version}}"]);
    assert!(!out.ok().is_empty());
}

#[test]
fn bad_names_are_refused() {
    for bad in ["", "UPPER", "a-name-that-is-too-long", "a/b"] {
        let err = TestEngine::start(bad).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::InvalidInput,
            "{bad:?}: {err}"
        );
    }
}
