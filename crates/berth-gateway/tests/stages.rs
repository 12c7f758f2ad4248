//! The gateway's stages in-process, against real dockerd engines: serve passes the
//! engine's answers through with a trace id, admit refuses before any guest I/O, route
//! sends a request to the engine that owns what it names, fanout merges what every
//! engine holds. Two engines for the whole binary; tests isolate by names (`bgw-…`).

use std::sync::OnceLock;

use berth_gateway::{Config, EngineRouter, PolicyGate};
use berth_policy::AccessPolicy;
use berth_test::gateway::{guest, send, send_raw};
use berth_test::{TestEngine, TestGateway};

struct Engines {
    a: TestEngine,
    b: TestEngine,
}

fn engines() -> &'static Engines {
    static ENGINES: OnceLock<Result<Engines, String>> = OnceLock::new();
    berth_test::shared(&ENGINES, || {
        let pid = std::process::id();
        let start = |n: &str| {
            TestEngine::start(&format!("bgw{n}-{pid}")).map_err(|e| format!("engine {n}: {e}"))
        };
        Ok(Engines {
            a: start("a")?,
            b: start("b")?,
        })
    })
}

/// A gateway over both engines, `a` the default.
fn over_both() -> TestGateway {
    let e = engines();
    TestGateway::start(
        Config::default(),
        EngineRouter::new(vec![guest("a", e.a.socket()), guest("b", e.b.socket())]),
    )
}

async fn create_volume(engine: &TestEngine, name: &str) {
    let body = format!(r#"{{"Name":"{name}"}}"#);
    let headers = [("content-type", "application/json")];
    let answer = send(
        engine.socket(),
        "POST",
        "/v1.41/volumes/create",
        &headers,
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 201, "{answer:?}");
}

#[tokio::test]
async fn serve_passes_the_engines_answer_through_with_a_trace_id() {
    let e = engines();
    let gw = TestGateway::in_front_of(e.a.socket());
    let direct = send(e.a.socket(), "GET", "/v1.41/version", &[], b"")
        .await
        .unwrap();
    let via = send(gw.socket(), "GET", "/v1.41/version", &[], b"")
        .await
        .unwrap();
    assert_eq!(via.status(), 200);
    assert_eq!(via.body, direct.body);
    let trace = via.header("x-trace-id").expect("a trace id");
    assert!(
        trace.len() == 16 && trace.bytes().all(|b| b.is_ascii_hexdigit()),
        "{trace}"
    );

    // The engine's own error, byte for byte; the client's trace id is kept.
    let path = "/v1.41/containers/bgw-nothing-here/json";
    let direct = send(e.a.socket(), "GET", path, &[], b"").await.unwrap();
    let via = send(gw.socket(), "GET", path, &[("x-trace-id", "mine-1")], b"")
        .await
        .unwrap();
    assert_eq!((via.status(), &via.body), (404, &direct.body));
    assert_eq!(via.header("x-trace-id"), Some("mine-1"));
    gw.stop().await;
}

#[tokio::test]
async fn admit_refuses_before_any_guest_io_and_passes_the_rest() {
    let e = engines();
    let policy = AccessPolicy::from_toml(
        r#"
default = "allow"

[[rule]]
name = "no-volume-create"
action = "deny"
paths = ["/volumes/create"]

[[rule]]
name = "no-attach"
action = "deny"
paths = ["/containers/**/attach"]
"#,
    )
    .unwrap();
    let config = Config {
        policy: Some(std::sync::Arc::new(PolicyGate::new(policy))),
        ..Config::default()
    };
    let gw = TestGateway::start(config, EngineRouter::new(vec![guest("a", e.a.socket())]));

    let headers = [("content-type", "application/json")];
    let body = br#"{"Name":"bgw-denied"}"#;
    let answer = send(gw.socket(), "POST", "/v1.41/volumes/create", &headers, body)
        .await
        .unwrap();
    assert_eq!(answer.status(), 403, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let message = answer.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("no-volume-create"), "{message}");
    let direct = send(e.a.socket(), "GET", "/v1.41/volumes/bgw-denied", &[], b"")
        .await
        .unwrap();
    assert_eq!(direct.status(), 404, "a refused create reached the engine");

    // A raw hijack is judged on its head and answered on the socket, in the same shape.
    let raw = send_raw(
        gw.socket(),
        b"POST /v1.41/containers/bgw-x/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\nX-Trace-Id: raw-1\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
    assert!(text.contains("\r\nX-Trace-Id: raw-1\r\n"), "{text}");
    assert!(text.contains("no-attach"), "{text}");

    let ping = send(gw.socket(), "GET", "/_ping", &[], b"").await.unwrap();
    assert_eq!((ping.status(), &ping.body[..]), (200, &b"OK"[..]));
    gw.stop().await;
}

#[tokio::test]
async fn route_sends_a_request_naming_a_volume_to_the_engine_that_has_it() {
    let e = engines();
    create_volume(&e.b, "bgw-route-b").await;
    let gw = over_both();
    let answer = send(gw.socket(), "GET", "/v1.41/volumes/bgw-route-b", &[], b"")
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{answer:?}");
    assert_eq!(answer.json()["Name"], "bgw-route-b");

    // Removal goes to the owner too.
    let answer = send(
        gw.socket(),
        "DELETE",
        "/v1.41/volumes/bgw-route-b",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 204, "{answer:?}");
    let direct = send(e.b.socket(), "GET", "/v1.41/volumes/bgw-route-b", &[], b"")
        .await
        .unwrap();
    assert_eq!(direct.status(), 404);

    // A name on no engine: the default engine's own 404.
    let answer = send(gw.socket(), "GET", "/v1.41/volumes/bgw-nowhere", &[], b"")
        .await
        .unwrap();
    let direct = send(e.a.socket(), "GET", "/v1.41/volumes/bgw-nowhere", &[], b"")
        .await
        .unwrap();
    assert_eq!((answer.status(), &answer.body), (404, &direct.body));
    gw.stop().await;
}

#[tokio::test]
async fn fanout_merges_the_volume_lists_of_every_engine() {
    let e = engines();
    create_volume(&e.a, "bgw-list-a").await;
    create_volume(&e.b, "bgw-list-b").await;
    let gw = over_both();
    let answer = send(gw.socket(), "GET", "/v1.41/volumes", &[], b"")
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{answer:?}");
    let names: Vec<String> = answer.json()["Volumes"]
        .as_array()
        .expect("a Volumes array")
        .iter()
        .filter_map(|v| v["Name"].as_str().map(str::to_owned))
        .collect();
    assert!(names.contains(&"bgw-list-a".to_owned()), "{names:?}");
    assert!(names.contains(&"bgw-list-b".to_owned()), "{names:?}");
    assert_eq!(
        answer.header("content-length").map(str::to_owned),
        Some(answer.body.len().to_string())
    );
    gw.stop().await;
}

#[tokio::test]
async fn forward_streams_an_upload_and_what_it_creates_is_found_on_its_engine() {
    let e = engines();
    let dir = tempfile::tempdir().unwrap();
    let tar = std::fs::read(berth_test::busybox_rootfs_tar(dir.path()).unwrap()).unwrap();
    let gw = over_both();

    // An import is a streamed upload; with no platform named it goes to the default.
    let headers = [("content-type", "application/x-tar")];
    let path = "/v1.41/images/create?fromSrc=-&repo=bgw-rootfs&tag=1";
    let answer = send(gw.socket(), "POST", path, &headers, &tar)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{answer:?}");
    let direct = send(
        e.a.socket(),
        "GET",
        "/v1.41/images/bgw-rootfs:1/json",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(direct.status(), 200, "the import did not reach engine a");

    let headers = [("content-type", "application/json")];
    let body = br#"{"Image":"bgw-rootfs:1","Cmd":["true"]}"#;
    let path = "/v1.41/containers/create?name=bgw-owned";
    let answer = send(gw.socket(), "POST", path, &headers, body)
        .await
        .unwrap();
    assert_eq!(answer.status(), 201, "{answer:?}");
    let id = answer.json()["Id"].as_str().unwrap().to_owned();

    // Found through the gateway by name and by ID, and removed on its engine.
    for name in ["bgw-owned", &id[..12]] {
        let path = format!("/v1.41/containers/{name}/json");
        let answer = send(gw.socket(), "GET", &path, &[], b"").await.unwrap();
        assert_eq!(answer.status(), 200, "{name}: {answer:?}");
        assert_eq!(answer.json()["Id"], id.as_str());
    }
    let answer = send(
        gw.socket(),
        "DELETE",
        "/v1.41/containers/bgw-owned",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 204, "{answer:?}");
    let direct = send(
        e.a.socket(),
        "GET",
        "/v1.41/containers/bgw-owned/json",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(direct.status(), 404);
    gw.stop().await;
}
