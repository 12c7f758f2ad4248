//! When the guest is missing, silent or dies mid-stream, clients get Docker-shaped
//! errors promptly and berth keeps serving; berth's own socket is handled safely.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_test::{assert_eventually, BerthProcess, DockerCli, TestEngine};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn get(socket: &Path, path: &str) -> (String, String, Duration) {
    let started = Instant::now();
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.lines().next().unwrap_or("").to_owned();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body, started.elapsed())
}

#[test]
fn an_engine_that_is_not_there_gets_a_prompt_502() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix://{}/nobody.sock", dir.path().display());
    let berth = BerthProcess::start(Path::new(BERTH), &missing, &[]).unwrap();
    let (status, body, took) = get(&berth.socket(), "/v1.41/containers/json");
    assert!(status.contains(" 502 "), "{status}");
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert!(
        v["message"].as_str().unwrap().starts_with("berth: engine"),
        "{body}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The CLI's exit code is derived from the text: it must stay 125 (notes 3.3).
    let run = DockerCli::new(&berth.host()).run(&["run", "--rm", "busybox", "true"]);
    assert_eq!(run.code, 125, "{run:?}");
    assert!(run.stderr.contains("berth: engine"), "{run:?}");
}

#[test]
fn an_engine_that_never_answers_gets_a_504_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // Accept and hold connections without ever answering.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let berth = BerthProcess::start(
        Path::new(BERTH),
        &format!("unix://{}", path.display()),
        &["--verify-timeout", "1"],
    )
    .unwrap();
    let (status, body, took) = get(&berth.socket(), "/_ping");
    assert!(status.contains(" 504 "), "{status} {body}");
    assert!(body.contains("\"message\""), "{body}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Still serving afterwards.
    let (status, _, _) = get(&berth.socket(), "/_ping");
    assert!(status.contains(" 504 "), "{status}");
}

#[test]
fn an_engine_killed_mid_stream_ends_the_stream_and_berth_keeps_serving() {
    let engine = TestEngine::start("bt-fault").unwrap();
    engine.import_busybox("bt-busybox:latest").unwrap();
    let berth = BerthProcess::start(Path::new(BERTH), &engine.host(), &[]).unwrap();
    let cli = DockerCli::new(&berth.host());
    cli.run(&[
        "run",
        "-d",
        "--name",
        "bt-fault-logs",
        "bt-busybox:latest",
        "sh",
        "-c",
        "while true; do echo x; sleep 1; done",
    ])
    .ok();
    let mut follow = std::process::Command::new("docker")
        .args(["logs", "-f", "bt-fault-logs"])
        .env("DOCKER_HOST", berth.host())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let pid = engine.dockerd_pid() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eventually!(
        follow.try_wait().unwrap().is_some(),
        "docker logs -f still running after its engine died"
    );
    let (status, body, took) = get(&berth.socket(), "/v1.41/containers/json");
    assert!(status.contains(" 502 "), "{status} {body}");
    assert!(took < Duration::from_secs(2));
}

#[test]
fn the_socket_is_not_stolen_and_is_removed_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let engine = format!("unix://{}/nobody.sock", dir.path().display());
    let mut first = BerthProcess::start(Path::new(BERTH), &engine, &[]).unwrap();
    // A second berth on the same socket fails clearly instead of taking it over.
    let second = std::process::Command::new(BERTH)
        .args(["serve", "--engine", &engine, "-H", &first.host()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already answering"), "{stderr}");
    assert!(first.socket().exists());
    let mode = std::fs::metadata(first.socket()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o660
    );
    // A stale file (nothing answering) is replaced.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let stale_host = format!("unix://{}", stale.display());
    let third = BerthProcess::start_args(
        Path::new(BERTH),
        &["serve", "--engine", &engine, "-H", &stale_host],
        &stale,
    )
    .unwrap();
    assert!(UnixStream::connect(&stale).is_ok());
    drop(third);
    // SIGTERM: exits and removes its socket.
    let status = first.stop().unwrap();
    assert!(status.success(), "berth on SIGTERM: {status}");
    assert!(!first.socket().exists(), "socket left behind");
}
