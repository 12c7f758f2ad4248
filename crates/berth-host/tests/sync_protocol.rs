//! PortSync's conversation with an engine, against a scripted one (no dockerd): it
//! subscribes before it lists, follows events in order, and after the stream ends
//! (an engine restart) subscribes and lists again, dropping forwards of containers
//! that are gone. The real-engine behaviour is in `sync.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_guest::{GuestConnector, GuestEndpoint};
use berth_host::{GuestNet, PortForwarder, PortSync};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// What the scripted engine knows and what it was asked.
#[derive(Default)]
struct Script {
    /// Container ID → (running, NetworkSettings.Ports).
    containers: HashMap<String, (bool, Value)>,
    /// Request paths, in arrival order (query strings cut).
    requests: Vec<String>,
    /// The open event stream: `Some(line)` sends an event, `None` ends the stream.
    events: Option<mpsc::UnboundedSender<Option<String>>>,
}

type Shared = Arc<Mutex<Script>>;

fn start_engine() -> (Shared, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let script: Shared = Arc::default();
    let shared = Arc::clone(&script);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s, Arc::clone(&shared)));
        }
    });
    (script, path, dir)
}

async fn serve(mut s: UnixStream, script: Shared) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split(' ').nth(1).unwrap_or("").to_owned();
    let path = target.split('?').next().unwrap_or("").to_owned();
    let reply = {
        let mut sc = script.lock().unwrap();
        sc.requests.push(path.clone());
        if path == "/events" {
            let (tx, rx) = mpsc::unbounded_channel();
            sc.events = Some(tx);
            Err(rx)
        } else if path == "/containers/json" {
            let ids: Vec<Value> = sc
                .containers
                .iter()
                .filter(|(_, (running, _))| *running)
                .map(|(id, _)| json!({"Id": id}))
                .collect();
            Ok((200, Value::Array(ids).to_string()))
        } else if let Some(id) = path
            .strip_prefix("/containers/")
            .and_then(|p| p.strip_suffix("/json"))
        {
            match sc.containers.get(id) {
                Some((running, ports)) => Ok((
                    200,
                    json!({"Id": id, "State": {"Running": running, "Restarting": false},
                           "NetworkSettings": {"Ports": if *running { ports.clone() } else { json!({}) }}})
                    .to_string(),
                )),
                None => Ok((404, json!({"message": format!("No such container: {id}")}).to_string())),
            }
        } else {
            Ok((404, "{}".to_owned()))
        }
    };
    match reply {
        Ok((status, body)) => {
            let res = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(res.as_bytes()).await;
        }
        Err(mut events) => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            while let Some(Some(line)) = events.recv().await {
                let chunk = format!("{:x}\r\n{line}\n\r\n", line.len() + 1);
                let _ = s.write_all(chunk.as_bytes()).await;
            }
            let _ = s.write_all(b"0\r\n\r\n").await;
        }
    }
}

fn ports(port: u16) -> Value {
    json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": port.to_string()}]})
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn event(action: &str, id: &str) -> String {
    json!({"Type": "container", "Action": action, "Actor": {"ID": id, "Attributes": {}},
           "status": action, "id": id, "time": 0, "timeNano": 0})
    .to_string()
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn owners(f: &PortForwarder) -> Vec<String> {
    f.list().into_iter().map(|fw| fw.container_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_first_follows_events_and_relists_after_the_stream_ends() {
    let (script, sock, _dir) = start_engine();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    script
        .lock()
        .unwrap()
        .containers
        .insert("a".into(), (true, ports(pa)));

    // Host network: these tests look at listeners, nothing connects through them.
    let forwarder = PortForwarder::new(GuestNet::Host).unwrap();
    let connector = GuestConnector::new(GuestEndpoint::Unix(sock), Duration::from_secs(2));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sync = tokio::spawn(PortSync::run(forwarder.clone(), connector, async {
        let _ = stopped.await;
    }));

    eventually("a forwarded from the list", || owners(&forwarder) == ["a"]).await;
    assert_eq!(
        script.lock().unwrap().requests[..3],
        ["/events", "/containers/json", "/containers/a/json"],
        "the subscription must come before the list"
    );

    // Events, in order: c starts (forwarded), c dies (freed), a is destroyed.
    let send = |line: Option<String>| {
        let sc = script.lock().unwrap();
        sc.events.as_ref().unwrap().send(line).unwrap();
    };
    script
        .lock()
        .unwrap()
        .containers
        .insert("c".into(), (true, ports(pc)));
    send(Some(event("start", "c")));
    eventually("c forwarded on start", || owners(&forwarder) == ["a", "c"]).await;
    script.lock().unwrap().containers.get_mut("c").unwrap().0 = false;
    send(Some(event("die", "c")));
    eventually("c freed on die", || owners(&forwarder) == ["a"]).await;
    // A die whose container runs again by now (a policy restart) keeps the forward.
    send(Some(event("die", "a")));
    send(Some(event("start", "c-none")));
    eventually("events processed", || {
        script
            .lock()
            .unwrap()
            .requests
            .contains(&"/containers/c-none/json".to_owned())
    })
    .await;
    assert_eq!(owners(&forwarder), ["a"]);

    // The engine restarts: a is gone without a word, b runs. The stream ends.
    {
        let mut sc = script.lock().unwrap();
        sc.containers.clear();
        sc.containers.insert("b".into(), (true, ports(pb)));
    }
    send(None);
    eventually("re-listed after the stream ended", || {
        owners(&forwarder) == ["b"]
    })
    .await;
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", pa)).is_ok(),
        "a's port still bound"
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), sync)
        .await
        .expect("PortSync did not stop")
        .unwrap();
}
