//! The gateway in front of engines that fail, each in one way, and the one status each
//! failure is answered with (who failed decides: docs/request-flow.md, "Who may
//! answer"). No dockerd is needed: the engines here are sockets the test controls.

use std::path::Path;
use std::time::Duration;

use berth_gateway::{Config, EngineRouter, GuestTimeouts};
use berth_test::gateway::{guest, guest_with, send, send_raw};
use berth_test::TestGateway;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

/// Asserts berth's own JSON error with `status`, naming `engine`.
#[track_caller]
fn assert_berth_error(what: &str, answer: &berth_test::gateway::Answer, status: u16, engine: &str) {
    assert_eq!(answer.status(), status, "{what}: {answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let message = answer.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with("berth: engine") && message.contains(&format!("{engine:?}")),
        "{what}: {message}"
    );
    assert!(answer.header("x-trace-id").is_some(), "{what}: no trace id");
}

fn one_engine(name: &str, socket: &Path, timeouts: GuestTimeouts) -> TestGateway {
    TestGateway::start(
        Config::default(),
        EngineRouter::new(vec![guest_with(name, socket, timeouts)]),
    )
}

#[tokio::test]
async fn a_missing_engine_socket_is_502_naming_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(
        Config::default(),
        EngineRouter::new(vec![guest("gone", &dir.path().join("nobody.sock"))]),
    );
    for (method, path) in [
        ("GET", "/_ping"),
        ("GET", "/v1.41/containers/json"),
        ("POST", "/v1.41/containers/create"),
    ] {
        let answer = send(gw.socket(), method, path, &[], b"").await.unwrap();
        assert_berth_error(&format!("{method} {path}"), &answer, 502, "gone");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_socket_nobody_listens_on_is_502() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("refused.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap()); // the file stays
    let gw = one_engine("refusing", &socket, GuestTimeouts::default());
    let answer = send(gw.socket(), "GET", "/_ping", &[], b"").await.unwrap();
    assert_berth_error("ping", &answer, 502, "refusing");
    // An upgrade is answered the same way, before any 101.
    let headers = [("connection", "Upgrade"), ("upgrade", "tcp")];
    let path = "/v1.41/containers/c/attach?stream=1&stdout=1";
    let answer = send(gw.socket(), "POST", path, &headers, b"")
        .await
        .unwrap();
    assert_berth_error("attach with Upgrade", &answer, 502, "refusing");
    gw.stop().await;
}

#[tokio::test]
async fn a_raw_hijack_to_an_unreachable_engine_is_answered_502_by_hyper() {
    let dir = tempfile::tempdir().unwrap();
    let gw = one_engine(
        "gone",
        &dir.path().join("nobody.sock"),
        GuestTimeouts::default(),
    );
    let raw = send_raw(
        gw.socket(),
        b"POST /v1.41/containers/c/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(text.contains("berth: engine \\\"gone\\\""), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn an_engine_that_never_answers_its_ping_is_504() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    // Accepts and holds every connection, never writing a byte.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let timeouts = GuestTimeouts {
        verify: Duration::from_millis(300),
        ..GuestTimeouts::default()
    };
    let gw = one_engine("silent", &socket, timeouts);
    let answer = send(gw.socket(), "GET", "/_ping", &[], b"").await.unwrap();
    assert_berth_error("ping", &answer, 504, "silent");
    gw.stop().await;
    silent.abort();
}

#[tokio::test]
async fn an_engine_that_answers_garbage_is_502() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("garbage.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let garbage = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"this is not HTTP\r\n\r\n").await;
        }
    });
    let gw = one_engine("garbled", &socket, GuestTimeouts::default());
    let answer = send(gw.socket(), "GET", "/_ping", &[], b"").await.unwrap();
    assert_berth_error("ping", &answer, 502, "garbled");
    gw.stop().await;
    garbage.abort();
}

#[tokio::test]
async fn a_first_request_that_is_not_http_gets_docker_json_and_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let gw = one_engine(
        "unused",
        &dir.path().join("nobody.sock"),
        GuestTimeouts::default(),
    );
    let raw = send_raw(gw.socket(), b"\x16\x03\x01 hello\r\n\r\n")
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    assert!(head.contains("Content-Type: application/json"), "{head}");
    assert!(head.contains("Connection: close"), "{head}");
    assert!(head.contains("X-Trace-Id: "), "{head}");
    let message: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed HTTP request"),
        "{body}"
    );
    gw.stop().await;
}
