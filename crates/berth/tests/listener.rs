//! berth's own socket: it is not stolen from a live server, a stale file is replaced,
//! it has dockerd's mode, and SIGTERM stops accepting, drains in-flight exchanges and
//! removes it. The engine here is a scripted fake: only berth's side is under test.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_test::wire::{self, Response};
use berth_test::{assert_eventually, BerthProcess};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// A fake engine on a Unix socket. `/_ping` answers like dockerd; `/slow` answers after
/// two seconds (and reports when it got the request); `/stream` sends a head and one
/// chunk and then stays open; everything else is a 404.
struct FakeEngine {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    got_slow: mpsc::Receiver<()>,
}

impl FakeEngine {
    fn start() -> FakeEngine {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (tx, got_slow) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || serve_fake(conn, &tx));
            }
        });
        FakeEngine {
            _dir: dir,
            socket,
            got_slow,
        }
    }

    fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

fn serve_fake(mut conn: UnixStream, slow: &mpsc::Sender<()>) {
    loop {
        let Ok((head, _)) = wire::read_head(&mut conn, Duration::from_secs(600)) else {
            return;
        };
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        let reply = if path.ends_with("/_ping") {
            "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nOstype: linux\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nOK".to_owned()
        } else if path.ends_with("/slow") {
            let _ = slow.send(());
            std::thread::sleep(Duration::from_secs(2));
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"slow\":true}\n".to_owned()
        } else if path.ends_with("/stream") {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhi\n\r\n");
            std::thread::sleep(Duration::from_secs(600));
            return;
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n{\"message\":\"page not found\"}\n".to_owned()
        };
        if conn.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn wait_exit(berth: &mut BerthProcess, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if berth.has_exited() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn sigterm(berth: &BerthProcess) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(berth.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

#[test]
fn a_second_berth_on_the_same_socket_fails_clearly_and_the_first_keeps_serving() {
    let fake = FakeEngine::start();
    let first = BerthProcess::start(Path::new(BERTH), &fake.url(), &[]).unwrap();
    let started = Instant::now();
    let second = std::process::Command::new(BERTH)
        .args(["serve", "--engine", &fake.url(), "-H", &first.host()])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        !second.status.success(),
        "a second berth took the socket over"
    );
    assert!(
        started.elapsed() < berth_test::patient(Duration::from_secs(10)),
        "the second berth took {:?} to give up",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&first.socket().display().to_string())
            && stderr.to_lowercase().contains("already"),
        "the error should name the socket and say it is in use: {stderr}"
    );
    let ping = wire::request(first.socket(), "GET", "/_ping", &[], b"").unwrap();
    assert_eq!((ping.status, ping.text().as_str()), (200, "OK"), "{ping}");
    // dockerd's mode for its socket.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(first.socket()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let fake = FakeEngine::start();
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    // A child process that another test of this binary forks at this moment holds a
    // copy of the listener until it execs (seen once in CI): wait until nobody does.
    assert_eventually!(
        within = Duration::from_secs(5),
        UnixStream::connect(&stale).is_err(),
        "the stale socket still accepts"
    );
    let host = format!("unix://{}", stale.display());
    let berth = BerthProcess::start_args(
        Path::new(BERTH),
        &["serve", "--engine", &fake.url(), "-H", &host],
        &stale,
    )
    .unwrap();
    let ping = wire::request(&stale, "GET", "/_ping", &[], b"").unwrap();
    assert_eq!(ping.status, 200, "{ping}\n{}", berth.stderr_log());
}

#[test]
fn sigterm_stops_accepting_finishes_in_flight_requests_and_removes_the_socket() {
    let fake = FakeEngine::start();
    let mut berth =
        BerthProcess::start(Path::new(BERTH), &fake.url(), &["--shutdown-timeout", "10"]).unwrap();
    let socket = berth.socket().to_owned();
    let in_flight =
        std::thread::spawn(move || wire::request(&socket, "GET", "/v1.41/slow", &[], b""));
    fake.got_slow
        .recv_timeout(Duration::from_secs(10))
        .expect("the slow request never reached the engine");
    sigterm(&berth);
    // No longer accepting: the socket goes away while the request is still running.
    assert_eventually!(
        within = Duration::from_secs(2),
        !berth.socket().exists() && UnixStream::connect(berth.socket()).is_err(),
        "the socket still exists or accepts after SIGTERM"
    );
    assert!(
        !in_flight.is_finished(),
        "the in-flight request ended before its answer was due"
    );
    let resp = in_flight
        .join()
        .unwrap()
        .expect("the in-flight request failed during the drain");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "{\"slow\":true}\n"),
        "{resp}"
    );
    let took = wait_exit(&mut berth, Duration::from_secs(5));
    assert!(
        took.is_some(),
        "berth still running after its last request finished:\n{}",
        berth.stderr_log()
    );
    let status = berth.stop().unwrap();
    assert!(
        status.success(),
        "exit status {status} after SIGTERM:\n{}",
        berth.stderr_log()
    );
}

#[test]
fn sigterm_with_only_idle_keep_alive_connections_exits_promptly() {
    let fake = FakeEngine::start();
    let mut berth =
        BerthProcess::start(Path::new(BERTH), &fake.url(), &["--shutdown-timeout", "10"]).unwrap();
    // A client that finished its request and keeps the connection open (as the Go
    // client's pool does).
    let mut idle = UnixStream::connect(berth.socket()).unwrap();
    idle.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, _) = wire::read_head(&mut idle, Duration::from_secs(5)).unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"));
    sigterm(&berth);
    let took = wait_exit(&mut berth, Duration::from_secs(12));
    assert!(
        took.is_some_and(|t| t < berth_test::patient(Duration::from_secs(3))),
        "with one idle keep-alive connection, berth exited after {took:?} (shutdown timeout 10 s): idle connections should not hold up the drain"
    );
    let mut rest = Vec::new();
    let _ = idle.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = idle.read_to_end(&mut rest);
}

#[test]
fn sigterm_with_an_endless_stream_exits_after_the_shutdown_timeout() {
    let fake = FakeEngine::start();
    let mut berth =
        BerthProcess::start(Path::new(BERTH), &fake.url(), &["--shutdown-timeout", "1"]).unwrap();
    let mut stream = UnixStream::connect(berth.socket()).unwrap();
    stream
        .write_all(b"GET /v1.41/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, _) = wire::read_head(&mut stream, Duration::from_secs(10)).unwrap();
    let head = Response::parse(&head).unwrap();
    assert_eq!(head.status, 200, "{head}");
    sigterm(&berth);
    let took = wait_exit(&mut berth, Duration::from_secs(8));
    assert!(
        took.is_some_and(|t| t < berth_test::patient(Duration::from_secs(4))),
        "berth exited after {took:?} with a stream open and --shutdown-timeout 1:\n{}",
        berth.stderr_log()
    );
    assert!(
        wire::read_to_eof(&mut stream, Duration::from_secs(5)).is_ok(),
        "the client saw no EOF"
    );
    assert!(!berth.socket().exists(), "socket left behind");
}
