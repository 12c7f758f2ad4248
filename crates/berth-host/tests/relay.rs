//! PortForwarder against servers in a private network namespace (no dockerd): what a
//! forward does with bytes, half-closes, many connections, UDP flows, and how
//! listeners come and go.

#[path = "support/netns.rs"]
mod netns;

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use berth_host::{GuestNet, PortError, PortForwarder, Proto};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

fn forwarder() -> PortForwarder {
    PortForwarder::new(GuestNet::Namespace(netns::path().to_owned())).unwrap()
}

/// A port free on the host for TCP (the fresh namespace has every port free).
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP echo server at `addr` inside the namespace that half-closes after echoing.
fn tcp_echo_in_namespace(addr: SocketAddr) {
    let listener = netns::inside(|| std::net::TcpListener::bind(addr)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
}

fn udp_echo_in_namespace(addr: SocketAddr) {
    let socket = netns::inside(|| std::net::UdpSocket::bind(addr)).unwrap();
    socket.set_nonblocking(true).unwrap();
    let socket = UdpSocket::from_std(socket).unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], peer).await;
        }
    });
}

/// A server at `addr` inside the namespace that answers every connection with `name`.
fn name_server_in_namespace(addr: SocketAddr, name: &'static str) {
    let listener = netns::inside(|| std::net::TcpListener::bind(addr)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(name.as_bytes()).await;
        }
    });
}

async fn read_all(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn tcp_map(host_ip: &str, port: u16) -> serde_json::Value {
    json!({"7/tcp": [{"HostIp": host_ip, "HostPort": port.to_string()}]})
}

/// Sends `data`, half-closes, and returns everything read until EOF.
async fn echo_round(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let recv = r.read_to_end(&mut got);
    let ((), n) = tokio::join!(send, recv);
    n.unwrap();
    got
}

async fn refused(addr: SocketAddr) -> bool {
    matches!(TcpStream::connect(addr).await, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_bytes_and_half_close_pass_both_ways() {
    let port = free_tcp_port();
    tcp_echo_in_namespace(SocketAddr::from(([127, 0, 0, 1], port)));
    let f = forwarder();
    f.apply("c-halfclose", &tcp_map("127.0.0.1", port))
        .await
        .unwrap();

    // 8 MiB of a pattern: the echo only ends because our FIN reached the server, and
    // its FIN reached us.
    let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let got = echo_round(SocketAddr::from(([127, 0, 0, 1], port)), &data).await;
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_are_all_served() {
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if soft < 16384 {
        nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            hard.min(65536),
            hard,
        )
        .unwrap();
    }
    let port = free_tcp_port();
    tcp_echo_in_namespace(SocketAddr::from(([127, 0, 0, 1], port)));
    let f = forwarder();
    f.apply("c-many", &tcp_map("127.0.0.1", port))
        .await
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // All connected first, then all talk: 1,000 forwarded connections open at once.
    let mut conns = Vec::new();
    for _ in 0..1000 {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut s) in conns.into_iter().enumerate() {
        tasks.spawn(async move {
            let msg = format!("connection {i}\n");
            s.write_all(msg.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; msg.len()];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, msg.as_bytes());
            s
        });
    }
    let mut open = Vec::new();
    while let Some(s) = tasks.join_next().await {
        open.push(s.unwrap());
    }
    assert_eq!(open.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_replies_go_back_to_each_client() {
    let port = free_udp_port();
    udp_echo_in_namespace(SocketAddr::from(([127, 0, 0, 1], port)));
    let f = forwarder();
    let map = json!({"53/udp": [{"HostIp": "127.0.0.1", "HostPort": port.to_string()}]});
    f.apply("c-udp", &map).await.unwrap();
    assert_eq!(f.list()[0].proto, Proto::Udp);

    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for round in 0..3 {
        for (name, s) in [("a", &a), ("b", &b)] {
            let msg = format!("{name} {round}");
            s.send_to(msg.as_bytes(), target).await.unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
                .await
                .expect("no UDP reply through the forward")
                .unwrap();
            assert_eq!(from, target);
            assert_eq!(&buf[..n], msg.as_bytes());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_closes_the_port_but_open_connections_finish() {
    let port = free_tcp_port();
    tcp_echo_in_namespace(SocketAddr::from(([127, 0, 0, 1], port)));
    let f = forwarder();
    f.apply("c-remove", &tcp_map("127.0.0.1", port))
        .await
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"before").await.unwrap();
    // The echo proves the forward accepted it (one still in the listen backlog when
    // the listener closes is reset, as with any closed listener).
    let mut buf = [0u8; 6];
    open.read_exact(&mut buf).await.unwrap();

    f.remove("c-remove").await;
    assert!(refused(addr).await, "port still open after remove");
    assert!(f.list().is_empty());

    open.write_all(b"after!").await.unwrap();
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"after!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapplying_keeps_connections_and_a_changed_map_replaces_listeners() {
    let (p1, p2) = (free_tcp_port(), free_tcp_port());
    tcp_echo_in_namespace(SocketAddr::from(([127, 0, 0, 1], p1)));
    tcp_echo_in_namespace(SocketAddr::from(([127, 0, 0, 1], p2)));
    let f = forwarder();
    f.apply("c-reapply", &tcp_map("127.0.0.1", p1))
        .await
        .unwrap();
    let mut open = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], p1)))
        .await
        .unwrap();

    f.apply("c-reapply", &tcp_map("127.0.0.1", p1))
        .await
        .unwrap();
    open.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    // A new random port after a restart: the old one closes, the new one serves.
    f.apply("c-reapply", &tcp_map("127.0.0.1", p2))
        .await
        .unwrap();
    assert!(refused(SocketAddr::from(([127, 0, 0, 1], p1))).await);
    let got = echo_round(SocketAddr::from(([127, 0, 0, 1], p2)), b"new port").await;
    assert_eq!(got, b"new port");
    let ports: Vec<u16> = f.list().iter().map(|fw| fw.host_port).collect();
    assert_eq!(ports, vec![p2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_fails_like_dockerd_and_binds_nothing() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let free = free_tcp_port();
    let f = forwarder();
    let map = json!({
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": free.to_string()}],
        "81/tcp": [{"HostIp": "0.0.0.0", "HostPort": busy.to_string()}],
    });
    let err = f.apply("c-conflict", &map).await.unwrap_err();
    assert!(matches!(err, PortError::AlreadyAllocated { .. }));
    assert_eq!(
        err.to_string(),
        format!("Bind for 0.0.0.0:{busy} failed: port is already allocated")
    );
    assert!(f.list().is_empty());
    // Nothing of the call stayed bound: the free port binds again.
    std::net::TcpListener::bind(("127.0.0.1", free)).expect("the free port was left bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_wildcard_sits_beside_ipv4_and_reports_brackets() {
    let port = free_tcp_port();
    tcp_echo_in_namespace(SocketAddr::from(([127, 0, 0, 1], port)));
    tcp_echo_in_namespace(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
    if std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        eprintln!("no IPv6 on this host: skipped");
        return;
    }
    let f = forwarder();
    let map = json!({"80/tcp": [
        {"HostIp": "0.0.0.0", "HostPort": port.to_string()},
        {"HostIp": "::", "HostPort": port.to_string()},
    ]});
    f.apply("c-v6", &map).await.unwrap();
    assert_eq!(f.list().len(), 2);
    let got = echo_round(SocketAddr::from((Ipv6Addr::LOCALHOST, port)), b"six").await;
    assert_eq!(got, b"six");
    let got = echo_round(SocketAddr::from(([127, 0, 0, 1], port)), b"four").await;
    assert_eq!(got, b"four");

    // The same map for another forwarder: the IPv6 clash is reported with brackets.
    let other = forwarder();
    let v6_only = json!({"80/tcp": [{"HostIp": "::", "HostPort": port.to_string()}]});
    let err = other.apply("c-v6b", &v6_only).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Bind for [::]:{port} failed: port is already allocated")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_the_engine_gave_to_another_container_is_handed_over() {
    let port = free_tcp_port();
    tcp_echo_in_namespace(SocketAddr::from(([127, 0, 0, 1], port)));
    let f = forwarder();
    f.apply("c-old", &tcp_map("0.0.0.0", port)).await.unwrap();
    // c-old exited and c-new got its port before c-old's exit was applied.
    f.apply("c-new", &tcp_map("127.0.0.1", port)).await.unwrap();
    let owners: Vec<String> = f.list().into_iter().map(|fw| fw.container_id).collect();
    assert_eq!(owners, vec!["c-new".to_owned()]);
    let got = echo_round(SocketAddr::from(([127, 0, 0, 1], port)), b"mine").await;
    assert_eq!(got, b"mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_guest_port_closes_the_client_connection() {
    // Nothing listens in the namespace on this port.
    let port = free_tcp_port();
    let f = forwarder();
    f.apply("c-nothing", &tcp_map("127.0.0.1", port))
        .await
        .unwrap();
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("the connection stayed open")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_forwarder_frees_its_ports() {
    let port = free_tcp_port();
    let f = forwarder();
    f.apply("c-drop", &tcp_map("127.0.0.1", port))
        .await
        .unwrap();
    drop(f);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !refused(addr).await {
        assert!(
            std::time::Instant::now() < deadline,
            "port still open after drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_guest_side_repoints_the_listener_without_closing_it() {
    let (port, container_port) = (free_tcp_port(), free_tcp_port());
    // The engine's proxy on loopback, and "the container" at its own address.
    name_server_in_namespace(SocketAddr::from(([127, 0, 0, 1], port)), "proxy");
    name_server_in_namespace(SocketAddr::from(([127, 0, 0, 2], container_port)), "direct");
    let key = format!("{container_port}/tcp");
    let ports = json!({ key.as_str(): [{"HostIp": "127.0.0.1", "HostPort": port.to_string()}] });
    let f = forwarder();
    f.apply("c-moved", &ports).await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(read_all(addr).await, "proxy");

    let inspect = json!({"Id": "c-moved", "NetworkSettings": {"IPAddress": "127.0.0.2",
        "Networks": {"bridge": {"IPAddress": "127.0.0.2"}}, "Ports": ports}});
    // Open across the change; its first byte proves the forward accepted it and
    // reached the proxy (the guest is chosen at accept).
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting.peek(&mut [0u8; 1]).await.unwrap();
    f.apply_inspect(&inspect).await.unwrap();
    assert_eq!(read_all(addr).await, "direct");
    let mut first = String::new();
    waiting.read_to_string(&mut first).await.unwrap();
    assert_eq!(
        first, "proxy",
        "a connection accepted before the move keeps its guest"
    );
    let fw = &f.list()[0];
    assert_eq!(
        (fw.guest_ip.to_string(), fw.guest_port),
        ("127.0.0.2".to_owned(), container_port)
    );
}
