//! Wire-level edge cases with a raw socket client: hijacked attach/exec streams with
//! and without `Upgrade`, half-close both ways, h2c (`/session`, `/grpc`), WebSocket
//! attach, `/_ping`, 404s, malformed requests, body framing, `Expect`, trace ids; and
//! that clients who go away mid-exchange leave no fds or threads behind in berth.
//!
//! Each check runs against dockerd directly and through berth, and the answers must
//! agree (notes §1, §4, §6, §14, §15).

use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_test::wire::{self, Response};
use berth_test::{assert_eventually, procfs, BerthProcess, DockerCli, Fronted};

const IMAGE: &str = "busybox:latest";
const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn setup() -> &'static Fronted {
    static SETUP: OnceLock<Result<Fronted, String>> = OnceLock::new();
    berth_test::shared(&SETUP, || {
        Fronted::start(
            Path::new(BERTH),
            &format!("bt-hj-{}", std::process::id()),
            IMAGE,
        )
    })
}

/// Both ways: `("direct", engine socket)` and `("berth", berth socket)`.
fn sides() -> [(&'static str, &'static Path); 2] {
    let s = setup();
    assert!(
        procfs::alive(s.berth.pid()),
        "berth is no longer running; it printed:\n{}",
        s.berth.stderr_log()
    );
    [("direct", s.engine.socket()), ("berth", s.berth.socket())]
}

fn cli() -> DockerCli {
    DockerCli::new(setup().engine.host())
}

/// A running container `name` (replaced if it exists) running `cmd`.
fn container(name: &str, flags: &[&str], cmd: &[&str]) {
    let _ = cli().run(&["rm", "-f", name]);
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(flags);
    args.push(IMAGE);
    args.extend_from_slice(cmd);
    cli().run(&args).ok();
}

/// Creates an exec of `cmd` in `container` with stdin/stdout/stderr attached.
fn exec_create(socket: &Path, container: &str, cmd: &[&str]) -> String {
    let body = format!(
        r#"{{"AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"Tty":false,"Cmd":{}}}"#,
        serde_json::to_string(cmd).unwrap()
    );
    let resp = wire::request(
        socket,
        "POST",
        &format!("/v1.41/containers/{container}/exec"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 201, "exec create: {resp}");
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    v["Id"].as_str().unwrap().to_owned()
}

/// Sends a request that hijacks the connection and reads the response head; returns
/// the stream (positioned after the head), the head, and bytes that came with it.
fn hijack(socket: &Path, request: &str) -> (UnixStream, Response, Vec<u8>) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let (head, rest) = wire::read_head(&mut s, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{request:?}: {e}"));
    (s, Response::parse(&head).unwrap(), rest)
}

fn upgrade_headers(upgrade: bool) -> &'static str {
    if upgrade {
        "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    } else {
        ""
    }
}

/// What matters in a head for comparison.
fn head_summary(r: &Response) -> String {
    format!(
        "{} content-type={:?} upgrade={:?}",
        r.status,
        r.header("Content-Type"),
        r.header("Upgrade")
    )
}

// === attach and exec hijacks ===

#[test]
fn exec_start_hijacks_with_and_without_upgrade_and_half_closes_both_ways() {
    container("hj-exec", &[], &["sleep", "300"]);
    let mut seen = Vec::new();
    for (side, socket) in sides() {
        for upgrade in [false, true] {
            let id = exec_create(
                socket,
                "hj-exec",
                &["sh", "-c", "cat; sleep 1; echo after-eof"],
            );
            let body = r#"{"Detach":false,"Tty":false}"#;
            let (mut s, head, rest) = hijack(
                socket,
                &format!(
                    "POST /v1.41/exec/{id}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\n\r\n{body}",
                    upgrade_headers(upgrade),
                    body.len()
                ),
            );
            let want = if upgrade { 101 } else { 200 };
            assert_eq!(head.status, want, "[{side}, upgrade {upgrade}] {head}");
            // stdin only after the head: dockerd drops bytes that come before the hijack.
            s.write_all(b"through-the-hijack\n").unwrap();
            // Half-close: the EOF must reach cat, and what it prints after must still
            // come back, followed by EOF from the other side.
            s.shutdown(Shutdown::Write).unwrap();
            let started = Instant::now();
            let read = wire::read_to_eof(&mut s, Duration::from_secs(15));
            let mut stream = rest;
            let ended = read.is_ok();
            stream.extend(read.unwrap_or_else(|partial| partial));
            let (stdout, stderr) = wire::demux(&stream).unwrap_or_else(|| {
                panic!(
                    "[{side}, upgrade {upgrade}] not a multiplexed stream: {:?}",
                    String::from_utf8_lossy(&stream)
                )
            });
            let stdout = String::from_utf8_lossy(&stdout).into_owned();
            assert!(
                ended,
                "[{side}, upgrade {upgrade}] no EOF within {:?} after the client's half-close; got {stdout:?}",
                started.elapsed()
            );
            assert_eq!(
                stdout, "through-the-hijack\nafter-eof\n",
                "[{side}, upgrade {upgrade}]"
            );
            assert!(
                stderr.is_empty(),
                "[{side}, upgrade {upgrade}] stderr {stderr:?}"
            );
            seen.push((side, upgrade, head_summary(&head)));
        }
    }
    for upgrade in [false, true] {
        let pick = |side: &str| {
            seen.iter()
                .find(|(s, u, _)| *s == side && *u == upgrade)
                .unwrap()
                .2
                .clone()
        };
        assert_eq!(
            pick("direct"),
            pick("berth"),
            "exec start head, upgrade {upgrade}"
        );
    }
}

#[test]
fn attach_hijacks_with_and_without_upgrade_and_stdin_eof_ends_it() {
    container("hj-attach", &["-i"], &["cat"]);
    let mut seen = Vec::new();
    for (side, socket) in sides() {
        for upgrade in [false, true] {
            let (mut s, head, rest) = hijack(
                socket,
                &format!(
                    "POST /v1.41/containers/hj-attach/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: x\r\n{}Content-Length: 0\r\n\r\n",
                    upgrade_headers(upgrade)
                ),
            );
            assert_eq!(
                head.status,
                if upgrade { 101 } else { 200 },
                "[{side}, upgrade {upgrade}] {head}"
            );
            let line = format!("ping-{side}-{upgrade}\n");
            s.write_all(line.as_bytes()).unwrap();
            let mut got = rest;
            let deadline = Instant::now() + Duration::from_secs(10);
            while !wire::demux(&got).is_some_and(|(o, _)| o.ends_with(line.as_bytes())) {
                assert!(
                    Instant::now() < deadline,
                    "[{side}, upgrade {upgrade}] no echo; got {:?}",
                    String::from_utf8_lossy(&got)
                );
                got.extend(wire::read_for_a_while(&mut s, Duration::from_millis(200)));
            }
            // Not StdinOnce: stdin EOF ends the attach, the container keeps running
            // (notes 4.3), and the client sees EOF.
            s.shutdown(Shutdown::Write).unwrap();
            let ended = wire::read_to_eof(&mut s, Duration::from_secs(10));
            assert!(
                ended.is_ok(),
                "[{side}, upgrade {upgrade}] attach did not end after stdin EOF"
            );
            seen.push(head_summary(&head));
        }
    }
    assert_eq!(seen[0..2], seen[2..4], "attach heads (direct, then berth)");
    let running = cli().run(&["inspect", "-f", "{{.State.Running}}", "hj-attach"]);
    assert_eq!(
        running.ok(),
        "true",
        "a detached client must not stop the container"
    );
    cli().run(&["rm", "-f", "hj-attach"]).ok();
}

#[test]
fn attach_to_a_missing_container_answers_as_direct() {
    let mut seen = Vec::new();
    for (side, socket) in sides() {
        for upgrade in [false, true] {
            let raw = wire::exchange(
                socket,
                format!(
                    "POST /v1.41/containers/hj-nope/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\n{}Content-Length: 0\r\n\r\n",
                    upgrade_headers(upgrade)
                )
                .as_bytes(),
                Duration::from_secs(3),
            )
            .unwrap();
            let resp = Response::parse(&raw).unwrap_or_else(|| panic!("[{side}] no head: {raw:?}"));
            seen.push((side, upgrade, resp.status, resp.text().trim().to_owned()));
        }
    }
    assert_eq!(seen[0].2, 404, "{seen:?}");
    for i in 0..2 {
        assert_eq!(
            (seen[i].2, &seen[i].3),
            (seen[i + 2].2, &seen[i + 2].3),
            "direct vs berth: {seen:?}"
        );
    }
}

// === h2c and WebSocket ===

#[test]
fn buildkit_session_upgrade_gets_101_then_the_http2_preface() {
    let mut statuses = Vec::new();
    for (side, socket) in sides() {
        let (mut s, head, mut rest) = hijack(
            socket,
            &format!(
                "POST /session HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nX-Docker-Expose-Session-Uuid: hj-session-{side}-{}\r\nX-Docker-Expose-Session-Sharedkey: k\r\nX-Docker-Expose-Session-Grpc-Method: /moby.filesync.v1.FileSync/DiffCopy\r\nX-Docker-Expose-Session-Grpc-Method: /grpc.health.v1.Health/Check\r\nContent-Length: 0\r\n\r\n",
                std::process::id()
            ),
        );
        assert_eq!(head.status, 101, "[{side}] {head}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while rest.len() < 24 && Instant::now() < deadline {
            rest.extend(wire::read_for_a_while(&mut s, Duration::from_millis(200)));
        }
        assert!(
            rest.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            "[{side}] after the 101: {:?}",
            String::from_utf8_lossy(&rest)
        );
        // Without Upgrade: dockerd's own answer.
        let plain = wire::request(socket, "POST", "/session", &[], b"").unwrap();
        statuses.push((head_summary(&head), plain.status, plain.text()));
    }
    assert_eq!(statuses[0], statuses[1], "direct vs berth");
}

#[test]
fn grpc_upgrade_gets_101_then_a_settings_frame() {
    let mut statuses = Vec::new();
    for (side, socket) in sides() {
        let (mut s, head, mut rest) = hijack(
            socket,
            "POST /grpc HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(head.status, 101, "[{side}] {head}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while rest.len() < 9 && Instant::now() < deadline {
            rest.extend(wire::read_for_a_while(&mut s, Duration::from_millis(200)));
        }
        assert_eq!(
            rest.get(3),
            Some(&0x04),
            "[{side}] an HTTP/2 SETTINGS frame must follow the 101 unprompted; got {rest:02x?}"
        );
        let plain = wire::request(socket, "POST", "/grpc", &[], b"").unwrap();
        statuses.push((head_summary(&head), plain.status, plain.text()));
    }
    assert_eq!(statuses[0], statuses[1], "direct vs berth");
}

#[test]
fn websocket_attach_gets_101_and_binary_frames() {
    container(
        "hj-ws",
        &[],
        &["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
    );
    let mut seen = Vec::new();
    for (side, socket) in sides() {
        let (mut s, head, mut rest) = hijack(
            socket,
            "GET /v1.41/containers/hj-ws/attach/ws?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://x\r\n\r\n",
        );
        assert_eq!(head.status, 101, "[{side}] {head}");
        assert_eq!(
            head.header("Sec-WebSocket-Accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "[{side}] {head}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while wire::find(&rest, b"tick").is_none() && Instant::now() < deadline {
            rest.extend(wire::read_for_a_while(&mut s, Duration::from_millis(300)));
        }
        assert_eq!(
            rest.first(),
            Some(&0x82),
            "[{side}] a binary frame expected: {rest:02x?}"
        );
        assert!(wire::find(&rest, b"tick").is_some(), "[{side}] {rest:02x?}");
        // More than one subprotocol: a bare 400 from dockerd (notes 14).
        let two = wire::exchange(
            socket,
            b"GET /v1.41/containers/hj-ws/attach/ws?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a, b\r\n\r\n",
            Duration::from_secs(3),
        )
        .unwrap();
        let two = Response::parse(&two).map(|r| (r.status, r.text()));
        seen.push((head.header("Upgrade").map(str::to_owned), two));
    }
    assert_eq!(seen[0], seen[1], "direct vs berth");
    cli().run(&["rm", "-f", "hj-ws"]).ok();
}

// === plain HTTP details ===

#[test]
fn ping_carries_api_version_and_the_same_headers_as_direct() {
    let mut seen = Vec::new();
    for (side, socket) in sides() {
        let head = wire::request(socket, "HEAD", "/_ping", &[], b"").unwrap();
        assert_eq!(head.status, 200, "[{side}] {head}");
        assert!(
            head.raw_body.is_empty(),
            "[{side}] HEAD with a body: {head}"
        );
        let api = head
            .header("Api-Version")
            .unwrap_or_else(|| panic!("[{side}] no Api-Version: {head}"));
        assert!(api.starts_with("1."), "[{side}] {head}");
        let get = wire::request(socket, "GET", "/_ping", &[], b"").unwrap();
        assert_eq!(
            (get.status, get.text().as_str()),
            (200, "OK"),
            "[{side}] {get}"
        );
        // HTTP/1.0 without Host: berth must still send Host upstream (notes 1.1).
        let old = wire::exchange(
            socket,
            b"GET /_ping HTTP/1.0\r\n\r\n",
            Duration::from_secs(3),
        )
        .unwrap();
        let old = Response::parse(&old).map(|r| r.status);
        let pick = |r: &Response| {
            [
                "Api-Version",
                "Ostype",
                "Docker-Experimental",
                "Cache-Control",
                "Pragma",
                "Builder-Version",
            ]
            .map(|h| r.header(h).map(str::to_owned))
        };
        seen.push((pick(&head), pick(&get), old));
    }
    assert_eq!(seen[0], seen[1], "direct vs berth");
}

#[test]
fn unknown_paths_wrong_methods_and_missing_objects_get_dockerds_404() {
    for path_and_method in [
        ("GET", "/v1.41/no/such/path"),
        ("DELETE", "/_ping"),
        ("GET", "/v1.41/containers/hj-nope/json"),
        ("GET", "/v1.41/images/hj-nope:1/json"),
        ("GET", "/v99.0/version"),
    ] {
        let (method, path) = path_and_method;
        let [d, v] =
            sides().map(|(_, socket)| wire::request(socket, method, path, &[], b"").unwrap());
        assert!(d.status >= 400, "{method} {path} direct: {d}");
        assert_eq!(
            (d.status, d.header("Content-Type"), d.text()),
            (v.status, v.header("Content-Type"), v.text()),
            "{method} {path}\ndirect: {d}\nberth: {v}"
        );
    }
}

#[test]
fn malformed_requests_get_a_4xx_and_berth_keeps_serving() {
    let socket = setup().berth.socket();
    let cases: [(&str, &[u8]); 7] = [
        (
            "tls hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
        ),
        ("garbage", b"this is not http at all\r\n\r\n"),
        (
            "header without colon",
            b"GET /_ping HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
        ),
        (
            "NUL in a header",
            b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        ),
        (
            "bad Content-Length",
            b"POST /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        ),
        (
            "two Content-Lengths",
            b"POST /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ),
        (
            "space in the path",
            b"GET /_ping now HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
    ];
    let mut failures = Vec::new();
    for (what, bytes) in cases {
        let raw = wire::exchange(socket, bytes, Duration::from_secs(5)).unwrap_or_default();
        match Response::parse(&raw) {
            Some(r) if (400..500).contains(&r.status) => {}
            Some(r) => failures.push(format!("{what}: {}", r.status_line)),
            None => failures.push(format!(
                "{what}: no response ({:?})",
                String::from_utf8_lossy(&raw)
            )),
        }
        let ping = wire::request(socket, "GET", "/_ping", &[], b"").unwrap();
        assert_eq!(ping.status, 200, "after {what}: {ping}");
    }
    assert!(
        procfs::alive(setup().berth.pid()),
        "berth died: {}",
        setup().berth.stderr_log()
    );
    assert!(
        failures.is_empty(),
        "malformed requests not answered with a 4xx:\n{}",
        failures.join("\n")
    );
}

#[test]
fn start_with_an_empty_chunked_body_gets_the_same_400_as_direct() {
    let _ = cli().run(&["rm", "-f", "hj-chunked"]);
    cli()
        .run(&["create", "--name", "hj-chunked", IMAGE, "sleep", "300"])
        .ok();
    let req = b"POST /v1.41/containers/hj-chunked/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
    let [d, v] = sides().map(|(_, socket)| {
        Response::parse(&wire::exchange(socket, req, Duration::from_secs(5)).unwrap()).unwrap()
    });
    assert_eq!(d.status, 400, "direct: {d}");
    assert_eq!(
        (d.status, d.text()),
        (v.status, v.text()),
        "direct: {d}\nberth: {v}"
    );
    // With no body at all (what the CLI sends), start works through berth.
    let ok = wire::request(
        setup().berth.socket(),
        "POST",
        "/v1.41/containers/hj-chunked/start",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(ok.status, 204, "{ok}");
    // Again: 304 with no body, both ways.
    for (side, socket) in sides() {
        let again = wire::request(
            socket,
            "POST",
            "/v1.41/containers/hj-chunked/start",
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(
            (again.status, again.raw_body.len()),
            (304, 0),
            "[{side}] {again}"
        );
    }
    cli().run(&["rm", "-f", "hj-chunked"]).ok();
}

#[test]
fn expect_100_continue_upload_gets_exactly_one_interim_response() {
    let body = vec![b'j'; 2 << 20];
    let mut finals = Vec::new();
    for (side, socket) in sides() {
        let mut s = UnixStream::connect(socket).unwrap();
        s.write_all(
            format!(
                "POST /v1.41/images/load?quiet=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        let (head, rest) = wire::read_head(&mut s, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("[{side}] no 100 Continue: {e}"));
        assert!(
            head.starts_with(b"HTTP/1.1 100"),
            "[{side}] {:?}",
            String::from_utf8_lossy(&head)
        );
        s.write_all(&body).unwrap();
        let mut all = rest;
        all.extend(wire::read_to_eof(&mut s, Duration::from_secs(30)).unwrap_or_else(|p| p));
        let text = String::from_utf8_lossy(&all).into_owned();
        assert_eq!(
            text.matches("HTTP/1.1 100").count(),
            0,
            "[{side}] a second 100 Continue: {text}"
        );
        let resp =
            Response::parse(&all).unwrap_or_else(|| panic!("[{side}] no final response: {text}"));
        // A bad tar: 200 with the error in the stream (notes 5.3).
        finals.push((resp.status, resp.text().contains("errorDetail")));
    }
    assert_eq!(finals[0], finals[1], "direct vs berth");
}

#[test]
fn every_response_carries_a_trace_id() {
    container("hj-trace", &["-i"], &["cat"]);
    let socket = setup().berth.socket();
    let mut missing = Vec::new();
    let mut ids = Vec::new();
    let mut check = |what: &str, head: &Response| match head.header("X-Trace-Id") {
        Some(id) if !id.is_empty() => ids.push(id.to_owned()),
        _ => missing.push(format!("{what}:\n{head}")),
    };
    check(
        "GET /version",
        &wire::request(socket, "GET", "/v1.41/version", &[], b"").unwrap(),
    );
    check(
        "GET /version again",
        &wire::request(socket, "GET", "/v1.41/version", &[], b"").unwrap(),
    );
    check(
        "dockerd 404",
        &wire::request(socket, "GET", "/v1.41/containers/hj-nope/json", &[], b"").unwrap(),
    );
    check(
        "304",
        &wire::request(socket, "POST", "/v1.41/containers/hj-trace/start", &[], b"").unwrap(),
    );
    check(
        "berth 400",
        &Response::parse(
            &wire::exchange(
                socket,
                b"GET /_ping HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                Duration::from_secs(3),
            )
            .unwrap(),
        )
        .unwrap_or_else(|| panic!("no answer to a bad header")),
    );
    for upgrade in [true, false] {
        let (_s, head, _) = hijack(
            socket,
            &format!(
                "POST /v1.41/containers/hj-trace/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\n{}Content-Length: 0\r\n\r\n",
                upgrade_headers(upgrade)
            ),
        );
        check(
            if upgrade {
                "attach 101"
            } else {
                "attach 200 raw"
            },
            &head,
        );
    }
    let (_s, head, _) = hijack(
        socket,
        "GET /v1.41/containers/hj-trace/attach/ws?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    check("websocket 101", &head);
    assert!(
        missing.is_empty(),
        "responses without X-Trace-Id:\n{}",
        missing.join("\n")
    );
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "trace ids repeat: {ids:?}");
    cli().run(&["rm", "-f", "hj-trace"]).ok();
}

// === clients that go away ===

/// A berth of its own on the shared engine, so that its fd and thread counts are not
/// disturbed by other tests.
fn own_berth() -> BerthProcess {
    BerthProcess::start(Path::new(BERTH), &setup().engine.host(), &[]).expect("starting berth")
}

struct Baseline {
    fds: usize,
    threads: usize,
}

impl Baseline {
    /// Counts once berth has been quiet for a moment.
    fn take(berth: &BerthProcess) -> Baseline {
        std::thread::sleep(Duration::from_millis(500));
        Baseline {
            fds: procfs::open_fds(berth.pid()),
            threads: procfs::threads(berth.pid()),
        }
    }

    /// Waits until berth is back to (at most one pooled connection above) the baseline.
    fn assert_back(&self, berth: &BerthProcess, after: &str) {
        let pid = berth.pid();
        assert_eventually!(
            within = Duration::from_secs(20),
            procfs::open_fds(pid) <= self.fds + 1 && procfs::threads(pid) <= self.threads,
            "after {after}: berth holds {} fds (baseline {}) and {} threads (baseline {}); fds:\n{}\nunix sockets (inode, bound path; unbound = upstream):\n{:?}",
            procfs::open_fds(pid),
            self.fds,
            procfs::threads(pid),
            self.threads,
            procfs::fd_targets(pid).join("\n"),
            procfs::unix_sockets(pid)
        );
        let ping = wire::request(berth.socket(), "GET", "/_ping", &[], b"").unwrap();
        assert_eq!(
            ping.status, 200,
            "berth no longer serves after {after}: {ping}"
        );
    }
}

#[test]
fn clients_leaving_mid_upload_mid_attach_and_mid_stream_leak_nothing() {
    container(
        "hj-leak",
        &["-i"],
        &["sh", "-c", "while true; do echo x; sleep 0.5; done"],
    );
    // Silent: writes nothing unless its stdin brings something.
    container("hj-quiet", &["-i"], &["cat"]);
    let berth = own_berth();
    let socket = berth.socket();
    // Warm up every path once, completely.
    assert_eq!(
        wire::request(socket, "GET", "/_ping", &[], b"")
            .unwrap()
            .status,
        200
    );
    let id = exec_create(socket, "hj-leak", &["true"]);
    let (mut s, _, _) = hijack(socket, &format!("POST /v1.41/exec/{id}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 2\r\n\r\n{{}}"));
    let _ = wire::read_to_eof(&mut s, Duration::from_secs(5));
    drop(s);
    let baseline = Baseline::take(&berth);

    for round in 0..3 {
        // Mid-upload: a load whose body never finishes.
        let mut u = UnixStream::connect(socket).unwrap();
        u.write_all(b"POST /v1.41/images/load HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: 100000000\r\n\r\n").unwrap();
        u.write_all(&vec![0u8; 1 << 20]).unwrap();
        drop(u);
        // Mid-upload, chunked: a build context that stops.
        let mut b = UnixStream::connect(socket).unwrap();
        b.write_all(b"POST /v1.41/build?t=hj-never HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n").unwrap();
        b.write_all(&vec![0u8; 0x10000]).unwrap();
        drop(b);
        // Mid-attach, upgraded and raw: with stdin to a talking container, and without
        // stdin to a silent one (`docker start -a`), where dockerd reads nothing from
        // the connection and writes nothing to it: only the client's hang-up ends it.
        for (query, upgrade) in [
            ("hj-leak/attach?stream=1&stdin=1&stdout=1", true),
            ("hj-leak/attach?stream=1&stdin=1&stdout=1", false),
            ("hj-quiet/attach?stream=1&stdout=1&stderr=1", true),
            ("hj-quiet/attach?stream=1&stdout=1&stderr=1", false),
        ] {
            let (a, head, _) = hijack(
                socket,
                &format!(
                    "POST /v1.41/containers/{query} HTTP/1.1\r\nHost: x\r\n{}Content-Length: 0\r\n\r\n",
                    upgrade_headers(upgrade)
                ),
            );
            assert!(
                head.status == 101 || head.status == 200,
                "round {round} attach {query}: {head}"
            );
            drop(a);
        }
        // Mid-exec: a long exec whose client vanishes.
        let id = exec_create(socket, "hj-leak", &["sleep", "2"]);
        let (e, _, _) = hijack(socket, &format!("POST /v1.41/exec/{id}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 2\r\n\r\n{{}}"));
        drop(e);
        // Mid-stream: logs -f and events.
        for path in [
            "/v1.41/containers/hj-leak/logs?follow=1&stdout=1",
            "/v1.41/events",
        ] {
            let (l, head, _) = hijack(socket, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
            assert_eq!(head.status, 200, "round {round} {path}: {head}");
            drop(l);
        }
        // WebSocket and h2c sessions dropped.
        let (w, _, _) = hijack(socket, "GET /v1.41/containers/hj-leak/attach/ws?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        drop(w);
        let (h, _, _) = hijack(socket, &format!("POST /session HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nX-Docker-Expose-Session-Uuid: hj-leak-{round}\r\nContent-Length: 0\r\n\r\n"));
        drop(h);
        // Half a request head, then gone.
        let mut p = UnixStream::connect(socket).unwrap();
        p.write_all(b"GET /v1.41/version HTTP/1.1\r\nHo").unwrap();
        drop(p);
    }
    baseline.assert_back(
        &berth,
        "abandoned uploads, attaches, execs, streams and upgrades",
    );
    cli().run(&["rm", "-f", "hj-leak", "hj-quiet"]).ok();
}

#[test]
fn fifty_concurrent_exec_hijacks_all_finish_and_leave_nothing_behind() {
    container("hj-many", &[], &["sleep", "300"]);
    let berth = own_berth();
    let socket = berth.socket().to_owned();
    // Created one after another, so that the pool of ordinary upstream connections
    // stays at one; then 50 hijacks at once (notes 4.7), which are never pooled.
    let ids: Vec<String> = (0..50)
        .map(|i| exec_create(&socket, "hj-many", &["echo", &format!("hi-{i}")]))
        .collect();
    let baseline = Baseline::take(&berth);
    let threads: Vec<_> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let (mut s, head, rest) = hijack(
                    &socket,
                    &format!("POST /v1.41/exec/{id}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 2\r\n\r\n{{}}"),
                );
                assert_eq!(head.status, 101, "exec {i}: {head}");
                let mut all = rest;
                all.extend(wire::read_to_eof(&mut s, Duration::from_secs(60)).unwrap_or_else(|p| panic!("exec {i}: no EOF; got {p:?}")));
                let (out, _) = wire::demux(&all).unwrap();
                assert_eq!(String::from_utf8_lossy(&out), format!("hi-{i}\n"), "exec {i}");
            })
        })
        .collect();
    let mut failed = Vec::new();
    for (i, t) in threads.into_iter().enumerate() {
        if let Err(e) = t.join() {
            failed.push(format!("{i}: {:?}", e.downcast_ref::<String>()));
        }
    }
    assert!(failed.is_empty(), "execs failed:\n{}", failed.join("\n"));
    baseline.assert_back(&berth, "50 concurrent exec hijacks");
    cli().run(&["rm", "-f", "hj-many"]).ok();
}
