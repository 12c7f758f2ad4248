//! PortForwarder against a real dockerd in its own network namespace: what inspect
//! reports after `docker run -p` is reachable from the host once applied.
//!
//! One engine for the binary; tests run in parallel and isolate themselves by container
//! name and by host ports they pick free.

#[path = "support/engine.rs"]
mod engine;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use berth_host::{GuestNet, PortError, PortForwarder, Proto};
use engine::{free_port, http_get, Engine, IMAGE};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::start("bp-fwd"))
}

fn forwarder() -> PortForwarder {
    PortForwarder::new(GuestNet::Namespace(engine().netns())).unwrap()
}

/// Runs `docker run -d --name <name> args…` and returns the full container ID.
async fn run(name: &str, args: &[&str]) -> String {
    let e = engine();
    let _ = e.docker(&["rm", "-f", name]).await;
    let mut all = vec!["run", "-d", "--name", name];
    all.extend_from_slice(args);
    e.docker(&all).await.unwrap()
}

async fn published_ports(id: &str) -> serde_json::Value {
    engine().inspect(id).await["NetworkSettings"]["Ports"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_through_a_loopback_published_port() {
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = run(
        "bp-http",
        &[
            "-p", &publish, IMAGE, "httpd", "-f", "-p", "80", "-h", "/www",
        ],
    )
    .await;
    let f = forwarder();
    f.apply(&id, &published_ports(&id).await).await.unwrap();

    let page = http_get(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    assert!(
        page.starts_with("HTTP/1.") && page.ends_with("hello\n"),
        "{page}"
    );
    let listed = f.list();
    assert_eq!(listed.len(), 1);
    // Ports alone: the guest side is dockerd's proxy on the namespace's loopback.
    assert_eq!(
        (listed[0].guest_ip.to_string(), listed[0].guest_port),
        ("127.0.0.1".to_owned(), port)
    );
    assert_eq!(
        (
            listed[0].host_ip.to_string(),
            listed[0].host_port,
            listed[0].container_port
        ),
        ("127.0.0.1".to_owned(), port, 80)
    );
    engine().docker(&["rm", "-f", "bp-http"]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_echo_through_a_published_port() {
    if !std::path::Path::new("/usr/bin/socat").exists() {
        panic!("/usr/bin/socat is needed as the UDP echo server (apt-get install socat)");
    }
    let port = std::net::UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("{port}:{port}/udp");
    let listen = format!("UDP-LISTEN:{port},fork,reuseaddr");
    // busybox's nc has no UDP: the host's socat runs in the container with the
    // host's libraries mounted read-only.
    let mut args = vec!["-p", &publish];
    args.extend(berth_test::HOST_SOCAT_MOUNTS);
    args.extend([IMAGE, "/bin/socat", &listen, "PIPE"]);
    let id = run("bp-udp", &args).await;
    let f = forwarder();
    f.apply_inspect(&engine().inspect(&id).await).await.unwrap();
    assert!(f.list().iter().all(|fw| fw.proto == Proto::Udp));

    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    // The first datagrams may beat socat's start: retry until one comes back.
    let mut echoed = None;
    for i in 0..50 {
        let msg = format!("datagram {i}");
        client.send_to(msg.as_bytes(), target).await.unwrap();
        let mut buf = [0u8; 64];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(200), client.recv_from(&mut buf)).await
        {
            echoed = Some((msg, String::from_utf8_lossy(&buf[..n]).into_owned()));
            break;
        }
    }
    let (sent, got) = echoed.expect("no UDP echo through the forward");
    assert_eq!(sent, got);
    engine().docker(&["rm", "-f", "bp-udp"]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_ports_are_forwarded_on_the_numbers_inspect_reports() {
    let id = run(
        "bp-random",
        &[
            "-P", "--expose", "80", IMAGE, "httpd", "-f", "-p", "80", "-h", "/www",
        ],
    )
    .await;
    let inspect = engine().inspect(&id).await;
    let ports = inspect["NetworkSettings"]["Ports"].clone();
    let container_ip = inspect["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    let f = forwarder();
    // The whole inspect: the guest side is the container itself, not dockerd's proxy.
    f.apply_inspect(&inspect).await.unwrap();

    let reported: Vec<u16> = ports["80/tcp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["HostPort"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(!reported.is_empty());
    for fw in f.list() {
        assert!(reported.contains(&fw.host_port), "{fw:?} vs {ports}");
        assert_eq!(
            (fw.guest_ip.to_string(), fw.guest_port),
            (container_ip.clone(), 80)
        );
    }
    let v4 = ports["80/tcp"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["HostIp"] == "0.0.0.0")
        .unwrap()["HostPort"]
        .as_str()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let page = http_get(SocketAddr::from(([127, 0, 0, 1], v4)))
        .await
        .unwrap();
    assert!(page.ends_with("hello\n"), "{page}");
    engine().docker(&["rm", "-f", "bp-random"]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_port_in_use_fails_with_dockerds_message_and_binds_nothing() {
    // Taken on the host, free inside the engine's namespace: the engine starts the
    // container, the host side cannot follow.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let publish = format!("{port}:80");
    let id = run(
        "bp-conflict",
        &[
            "-p", &publish, IMAGE, "httpd", "-f", "-p", "80", "-h", "/www",
        ],
    )
    .await;
    let f = forwarder();
    let err = f.apply(&id, &published_ports(&id).await).await.unwrap_err();
    assert!(matches!(err, PortError::AlreadyAllocated { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("Bind for 0.0.0.0:{port} failed: port is already allocated")
    );
    assert!(f.list().is_empty());
    // The IPv6 listener of the same map was not left behind either.
    if let Ok(v6) = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None) {
        v6.set_only_v6(true).unwrap();
        let addr = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
        if let Err(e) = v6.bind(&addr.into()) {
            assert_ne!(
                e.kind(),
                std::io::ErrorKind::AddrInUse,
                "[::]:{port} left bound"
            );
        }
    }
    drop(taken);
    engine().docker(&["rm", "-f", "bp-conflict"]).await.unwrap();
}
