//! PortSync against a real dockerd: forwards follow containers that start, stop, die,
//! restart by policy and go away, whoever made them do it.
//!
//! One engine for the binary. Tests take turns (`SERIAL`): each runs its own PortSync,
//! which forwards *every* running container of the engine, so two at once would fight
//! over the same host ports.

#[path = "support/engine.rs"]
mod engine;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_guest::{GuestConnector, GuestEndpoint};
use berth_host::{GuestNet, PortForwarder, PortSync};
use engine::{free_port, http_get, refused, Engine, IMAGE};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::start("bp-sync"))
}

/// A forwarder kept in step by a running PortSync.
struct Synced {
    forwarder: PortForwarder,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Synced {
    fn start() -> Self {
        let forwarder = PortForwarder::new(GuestNet::Namespace(engine().netns())).unwrap();
        let connector = GuestConnector::new(
            GuestEndpoint::Unix(engine().socket()),
            Duration::from_secs(5),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(PortSync::run(forwarder.clone(), connector, async {
            let _ = stopped.await;
        }));
        Self {
            forwarder,
            stop,
            task,
        }
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("PortSync did not stop on shutdown")
            .unwrap();
    }
}

async fn run(name: &str, args: &[&str]) -> String {
    let e = engine();
    let _ = e.docker(&["rm", "-f", name]).await;
    let mut all = vec!["run", "-d", "--name", name];
    all.extend_from_slice(args);
    e.docker(&all).await.unwrap()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until `GET /` on `port` answers the test page.
async fn until_served(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match http_get(local(port)).await {
            Ok(page) if page.ends_with("hello\n") => return,
            other => assert!(
                Instant::now() < deadline,
                "{what}: port {port} not served: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `port` refuses connections: the forward is gone.
async fn until_refused(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !refused(local(port)).await {
        assert!(
            Instant::now() < deadline,
            "{what}: port {port} still open after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn httpd(publish: &str) -> Vec<String> {
    [
        "-p", publish, IMAGE, "httpd", "-f", "-p", "80", "-h", "/www",
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn ending_frees_the_port(name: &str, end: &[&str]) {
    let _turn = SERIAL.lock().await;
    let sync = Synced::start();
    let port = free_port();
    let args = httpd(&format!("{port}:80"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(name, &args).await;
    until_served(port, name).await;

    engine().docker(end).await.unwrap();
    until_refused(port, name).await;
    assert!(
        sync.forwarder.list().is_empty(),
        "{:?}",
        sync.forwarder.list()
    );
    let _ = engine().docker(&["rm", "-f", name]).await;
    sync.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_container_frees_its_port() {
    ending_frees_the_port("bp-stop", &["stop", "-t", "1", "bp-stop"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_container_frees_its_port() {
    ending_frees_the_port("bp-kill", &["kill", "bp-kill"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_container_frees_its_port() {
    ending_frees_the_port("bp-rm", &["rm", "-f", "bp-rm"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_exits_by_itself_frees_its_port() {
    let _turn = SERIAL.lock().await;
    let sync = Synced::start();
    let port = free_port();
    let publish = format!("{port}:80");
    run(
        "bp-exit",
        &[
            "-p",
            &publish,
            IMAGE,
            "sh",
            "-c",
            "httpd -p 80 -h /www; sleep 4",
        ],
    )
    .await;
    until_served(port, "bp-exit").await;
    // No command from us: the container's own exit is the only signal.
    until_refused_within(port, Duration::from_secs(10), "bp-exit").await;
    let _ = engine().docker(&["rm", "-f", "bp-exit"]).await;
    sync.shutdown().await;
}

async fn until_refused_within(port: u16, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while !refused(local(port)).await {
        assert!(Instant::now() < deadline, "{what}: port {port} still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_policy_restart_is_forwarded_on_its_new_ports() {
    let _turn = SERIAL.lock().await;
    let sync = Synced::start();
    let id = run(
        "bp-restart",
        &[
            "--restart",
            "always",
            "-P",
            "--expose",
            "80",
            IMAGE,
            "sh",
            "-c",
            "httpd -p 80 -h /www; sleep 3",
        ],
    )
    .await;
    let v4_port = |inspect: &serde_json::Value| -> Option<u16> {
        inspect["NetworkSettings"]["Ports"]["80/tcp"]
            .as_array()?
            .iter()
            .find(|b| b["HostIp"] == "0.0.0.0")?["HostPort"]
            .as_str()?
            .parse()
            .ok()
    };
    let first = v4_port(&engine().inspect(&id).await).expect("a random port");
    until_served(first, "first run").await;

    // Wait for an automatic restart, then for its ports to be running.
    let deadline = Instant::now() + Duration::from_secs(30);
    let second = loop {
        let inspect = engine().inspect(&id).await;
        let restarted = inspect["RestartCount"].as_u64().unwrap_or(0) >= 1;
        let running = inspect["State"]["Running"] == true && inspect["State"]["Restarting"] != true;
        if let (true, true, Some(port)) = (restarted, running, v4_port(&inspect)) {
            break port;
        }
        assert!(Instant::now() < deadline, "no automatic restart: {inspect}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("automatic restart: port {first} -> {second}");
    until_served(second, "after the automatic restart").await;
    let listed: Vec<u16> = sync
        .forwarder
        .list()
        .iter()
        .filter(|f| f.host_ip.is_ipv4())
        .map(|f| f.host_port)
        .collect();
    assert_eq!(listed, vec![second]);
    if second != first {
        until_refused(first, "the first run's port").await;
    }
    engine().docker(&["rm", "-f", "bp-restart"]).await.unwrap();
    until_refused(second, "after rm").await;
    sync.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_started_later_picks_up_running_containers() {
    let _turn = SERIAL.lock().await;
    let port = free_port();
    let args = httpd(&format!("{port}:80"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("bp-late", &args).await;
    assert!(refused(local(port)).await, "nothing forwards yet");

    let sync = Synced::start();
    until_served(port, "picked up at start").await;
    engine().docker(&["rm", "-f", "bp-late"]).await.unwrap();
    until_refused(port, "bp-late removed").await;
    sync.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_retries_an_absent_engine_and_stops_on_shutdown() {
    let forwarder = PortForwarder::new(GuestNet::Host).unwrap();
    let connector = GuestConnector::new(
        GuestEndpoint::Unix("/nonexistent/bp-sync.sock".into()),
        Duration::from_secs(1),
    );
    let started = Instant::now();
    PortSync::run(
        forwarder,
        connector,
        tokio::time::sleep(Duration::from_secs(1)),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
}
