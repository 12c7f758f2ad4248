//! When the guest engine is missing, silent or dies mid-stream, clients get
//! Docker-shaped errors promptly (502/503/504 as `{"message": …}`) or a clean EOF, and
//! berth keeps serving without leaking (style guide: who failed decides the status).

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_test::wire::{self, Response};
use berth_test::{assert_eventually, procfs, BerthProcess, DockerCli, TestEngine};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");
const IMAGE: &str = "busybox:latest";

/// Asserts that `resp` is one of berth's own errors, with exactly `status`.
#[track_caller]
fn assert_berth_error(what: &str, resp: &Response, status: u16) {
    assert_eq!(resp.status, status, "{what}: got\n{resp}");
    assert_eq!(
        resp.header("Content-Type"),
        Some("application/json"),
        "{what}: the Go client parses errors only with exactly application/json (notes 3.1)\n{resp}"
    );
    let v: serde_json::Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e})\n{resp}"));
    let message = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no message\n{resp}"));
    assert!(!message.is_empty(), "{what}: empty message");
    // These phrases would turn the CLI's exit code 125 into 126/127 (notes 3.3).
    for phrase in [
        "no such file or directory",
        "executable file not found",
        "permission denied",
        "is a directory",
    ] {
        assert!(
            !message.to_lowercase().contains(phrase),
            "{what}: message contains {phrase:?}: {message}"
        );
    }
    assert!(
        resp.header("X-Trace-Id").is_some(),
        "{what}: no X-Trace-Id\n{resp}"
    );
}

fn timed_request(socket: &Path, method: &str, path: &str) -> (Response, Duration) {
    let started = Instant::now();
    let resp = wire::request(socket, method, path, &[], b"")
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (resp, started.elapsed())
}

const ATTACH_UPGRADE: &[u8] = b"POST /v1.41/containers/gf/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n";

#[test]
fn an_engine_socket_where_nothing_listens_gets_a_prompt_502() {
    let dir = tempfile::tempdir().unwrap();
    let refused = dir.path().join("refused.sock");
    drop(UnixListener::bind(&refused).unwrap()); // the file stays, nobody listens
    for (what, socket) in [
        ("missing socket file", dir.path().join("nobody.sock")),
        ("socket nobody listens on", refused),
    ] {
        let berth = BerthProcess::start(
            Path::new(BERTH),
            &format!("unix://{}", socket.display()),
            &[],
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        for (method, path) in [
            ("GET", "/_ping"),
            ("GET", "/v1.41/containers/json"),
            ("POST", "/v1.41/containers/create"),
        ] {
            let (resp, took) = timed_request(berth.socket(), method, path);
            assert_berth_error(&format!("{what}: {method} {path}"), &resp, 502);
            assert!(
                took < berth_test::patient(Duration::from_secs(2)),
                "{what}: {method} {path} took {took:?}"
            );
        }
        let raw = wire::exchange(berth.socket(), ATTACH_UPGRADE, Duration::from_secs(5)).unwrap();
        let resp =
            Response::parse(&raw).unwrap_or_else(|| panic!("{what}: attach: no answer {raw:?}"));
        assert_berth_error(&format!("{what}: attach with Upgrade"), &resp, 502);
        // The CLI: exit 125 with berth's message (notes 3.3), and quickly.
        let run = DockerCli::new(berth.host())
            .timeout(Duration::from_secs(20))
            .run(&["run", "--rm", IMAGE, "true"]);
        assert_eq!(run.code, 125, "{what}: {run}");
        assert!(run.stderr.contains("berth"), "{what}: {run}");
        assert!(
            procfs::alive(berth.pid()),
            "{what}: berth died: {}",
            berth.stderr_log()
        );
    }
}

#[test]
fn an_engine_that_accepts_but_never_answers_gets_a_504_within_the_verify_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // Accept and hold every connection without ever answering.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let berth = BerthProcess::start(
        Path::new(BERTH),
        &format!("unix://{}", path.display()),
        &["--verify-timeout", "1", "--connect-timeout", "1"],
    )
    .unwrap();
    for round in 0..2 {
        for (method, path) in [("GET", "/_ping"), ("GET", "/v1.41/containers/json")] {
            let (resp, took) = timed_request(berth.socket(), method, path);
            assert_berth_error(&format!("round {round}: {method} {path}"), &resp, 504);
            assert!(
                took >= Duration::from_millis(900)
                    && took < berth_test::patient(Duration::from_secs(4)),
                "round {round}: {method} {path} took {took:?}"
            );
        }
    }
    // A hijack must not wait forever for a 101 either (notes 4.7).
    let started = Instant::now();
    let raw = wire::exchange(berth.socket(), ATTACH_UPGRADE, Duration::from_secs(10)).unwrap();
    let resp = Response::parse(&raw).unwrap_or_else(|| {
        panic!(
            "attach with Upgrade: no answer within {:?}: {raw:?}",
            started.elapsed()
        )
    });
    assert_berth_error("attach with Upgrade", &resp, 504);
    let version = DockerCli::new(berth.host())
        .timeout(Duration::from_secs(30))
        .run(&["version"]);
    assert!(
        !version.success() && version.elapsed < berth_test::patient(Duration::from_secs(15)),
        "{version}"
    );
    assert!(
        procfs::alive(berth.pid()),
        "berth died: {}",
        berth.stderr_log()
    );
}

#[test]
fn an_engine_killed_mid_stream_ends_the_streams_and_berth_keeps_serving() {
    let engine = TestEngine::with_busybox(&format!("bt-gf-{}", std::process::id()), IMAGE)
        .unwrap_or_else(|e| panic!("{e}"));
    let berth = BerthProcess::start(Path::new(BERTH), &engine.host(), &[]).unwrap();
    let cli = DockerCli::new(berth.host());
    cli.run(&[
        "run",
        "-d",
        "-i",
        "--name",
        "gf",
        IMAGE,
        "sh",
        "-c",
        "while true; do echo x; sleep 0.2; done",
    ])
    .ok();
    let pid = berth.pid();
    let baseline_fds = procfs::open_fds(pid);

    // Three streams in progress: the CLI following logs, a raw follow, an attach.
    let mut follow = cli
        .command(&["logs", "-f", "gf"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut raw = UnixStream::connect(berth.socket()).unwrap();
    raw.write_all(b"GET /v1.41/containers/gf/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, _) = wire::read_head(&mut raw, Duration::from_secs(10)).unwrap();
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    let mut attach = UnixStream::connect(berth.socket()).unwrap();
    attach.write_all(ATTACH_UPGRADE).unwrap();
    let (head, _) = wire::read_head(&mut attach, Duration::from_secs(10)).unwrap();
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    assert!(
        !wire::read_for_a_while(&mut raw, Duration::from_millis(500)).is_empty(),
        "the follow stream is silent"
    );
    assert!(
        follow.try_wait().unwrap().is_none(),
        "docker logs -f ended early"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.dockerd_pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    // Each client gets EOF (not a hang).
    assert!(
        wire::read_to_eof(&mut raw, Duration::from_secs(10)).is_ok(),
        "raw logs follow: no EOF after the engine died"
    );
    assert!(
        wire::read_to_eof(&mut attach, Duration::from_secs(10)).is_ok(),
        "attach: no EOF after the engine died"
    );
    assert_eventually!(
        within = Duration::from_secs(10),
        follow.try_wait().unwrap().is_some(),
        "docker logs -f still running after its engine died"
    );
    drop(raw);
    drop(attach);

    // berth keeps serving, with prompt errors.
    assert!(
        procfs::alive(pid),
        "berth died with its engine: {}",
        berth.stderr_log()
    );
    for (method, path) in [("GET", "/_ping"), ("GET", "/v1.41/containers/json")] {
        let (resp, took) = timed_request(berth.socket(), method, path);
        assert_berth_error(&format!("after the kill: {method} {path}"), &resp, 502);
        assert!(
            took < berth_test::patient(Duration::from_secs(2)),
            "{method} {path} took {took:?}"
        );
    }
    // And holds nothing for the broken streams (a pooled connection at most).
    assert_eventually!(
        within = Duration::from_secs(10),
        procfs::open_fds(pid) <= baseline_fds + 1,
        "berth holds {} fds, {} before the streams; fds: {:?}",
        procfs::open_fds(pid),
        baseline_fds,
        procfs::fd_targets(pid)
    );
}

/// `GET path` on an open keep-alive connection: the response (its body read by its
/// `Content-Length`) and how long it took.
fn keep_alive_get(conn: &mut UnixStream, path: &str) -> (Response, Duration) {
    use std::io::Read;
    let started = Instant::now();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (mut raw, mut body) = wire::read_head(conn, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let head = Response::parse(&raw).unwrap_or_else(|| panic!("GET {path}: bad head {raw:?}"));
    let len: usize = head
        .header("Content-Length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut rest = vec![0u8; len.saturating_sub(body.len())];
    conn.read_exact(&mut rest).unwrap();
    body.extend_from_slice(&rest);
    raw.extend_from_slice(&body);
    let took = started.elapsed();
    (Response::parse(&raw).unwrap(), took)
}

/// A guest that answers `/_ping` (so berth verifies it) and never answers anything
/// else: the mock for the response-head deadline of quick reads.
fn ping_only_guest(path: &Path) {
    use std::io::Read;
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = seen.drain(..end + 4).collect();
                        if head.starts_with(b"GET /_ping ") || head.starts_with(b"HEAD /_ping ") {
                            let _ = conn.write_all(
                                b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nOK",
                            );
                        }
                        // Anything else: never answered (the connection stays open).
                    }
                }
            });
        }
    });
}

#[test]
fn a_quick_read_without_an_answer_gets_a_504_at_the_head_timeout_and_zero_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let guest = dir.path().join("ping-only.sock");
    ping_only_guest(&guest);
    let engine = format!("unix://{}", guest.display());

    let berth = BerthProcess::start(Path::new(BERTH), &engine, &["--head-timeout", "1"]).unwrap();
    // One keep-alive connection, two rounds: the second request's deadline counts from
    // its own start, not from the timer the first one left (berth keeps one timer per
    // client connection and re-arms it).
    let mut conn = UnixStream::connect(berth.socket()).unwrap();
    for round in 0..2 {
        let (ping, _) = keep_alive_get(&mut conn, "/_ping");
        assert_eq!(ping.status, 200, "round {round}: {ping}");
        std::thread::sleep(Duration::from_millis(600));
        let (resp, took) = keep_alive_get(&mut conn, "/v1.41/containers/json");
        assert_berth_error(&format!("round {round}"), &resp, 504);
        assert!(
            took >= Duration::from_millis(900)
                && took < berth_test::patient(Duration::from_secs(4)),
            "round {round}: took {took:?}"
        );
    }

    // `--head-timeout 0`: no deadline (and no overflow computing one).
    let berth = BerthProcess::start(Path::new(BERTH), &engine, &["--head-timeout", "0"]).unwrap();
    for _ in 0..3 {
        let (ping, _) = timed_request(berth.socket(), "GET", "/_ping");
        assert_eq!(ping.status, 200, "{ping}\n{}", berth.stderr_log());
    }
    let raw = wire::exchange(
        berth.socket(),
        b"GET /v1.41/containers/json HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .unwrap();
    assert!(
        raw.is_empty(),
        "answered although the guest never did: {raw:?}"
    );
    assert!(
        procfs::alive(berth.pid()),
        "berth died: {}",
        berth.stderr_log()
    );
}
