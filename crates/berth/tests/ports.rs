//! End to end: ports published by containers of a managed machine reach the host, and
//! bind mounts follow path mappings (issue: host integration). Real docker CLI, real
//! managed engine started by berth.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use berth_test::{BerthProcess, ManagedBerth};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");
const MACHINE: &str = "bt-ports";

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn web_image(d: &ManagedBerth, dir: &Path) {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for tool in ["sh", "httpd", "sleep", "cat", "ls", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    std::fs::write(root.join("www/index.html"), "page-from-the-machine\n").unwrap();
    let tar = dir.join("web.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    ok(&d.docker(&["import", tar.to_str().unwrap(), "bt-web:1"]));
}

#[test]
fn published_ports_follow_the_container_and_bind_mounts_follow_mappings() {
    let mut d = ManagedBerth::start(Path::new(BERTH), MACHINE, "").expect("starting berth");
    let dir = d.dir().to_owned();
    web_image(&d, &dir);
    let httpd = ["httpd", "-f", "-p", "80", "-h", "/www"];

    // The port answers as soon as `docker run -d` returns: no race.
    let port = free_port();
    let mut args = vec!["run", "-d", "--name", "bt-web", "-p"];
    let spec = format!("127.0.0.1:{port}:80");
    args.push(&spec);
    args.push("bt-web:1");
    args.extend(httpd);
    ok(&d.docker(&args));
    let page = http_get(port).expect("the published port answers right after run");
    assert!(page.contains("page-from-the-machine"), "{page}");
    let status = ok(&d.berth(&["status"]));
    assert!(status.contains(&format!("127.0.0.1:{port}")), "{status}");

    // Stop frees the port, start brings it back, rm frees it.
    ok(&d.docker(&["stop", "-t", "0", "bt-web"]));
    eventually("port closed after stop", || http_get(port).is_none());
    ok(&d.docker(&["start", "bt-web"]));
    assert!(http_get(port).is_some(), "port back right after start");
    ok(&d.docker(&["kill", "bt-web"]));
    eventually("port closed after kill", || http_get(port).is_none());
    ok(&d.docker(&["rm", "bt-web"]));

    // UDP: datagrams reach the container and its answers come back. busybox's nc has
    // no UDP, so the host's socat runs in the container with the host's libraries.
    let uport = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = format!("127.0.0.1:{uport}:{uport}/udp");
    let listen = format!("UDP-LISTEN:{uport},fork,reuseaddr");
    let mut args = vec!["run", "-d", "--name", "bt-udp", "-p", &spec];
    args.extend(berth_test::HOST_SOCAT_MOUNTS);
    args.extend(["bt-web:1", "/bin/socat", &listen, "PIPE"]);
    ok(&d.docker(&args));
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // The first datagrams may beat socat's start: retry until one comes back.
    let echoed = (0..50).find_map(|i| {
        let msg = format!("datagram {i}");
        client
            .send_to(msg.as_bytes(), ("127.0.0.1", uport))
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).ok()?;
        Some((msg, String::from_utf8_lossy(&buf[..n]).into_owned()))
    });
    let (sent, got) = echoed.expect("no UDP echo through the published port");
    assert_eq!(sent, got);
    ok(&d.docker(&["rm", "-f", "bt-udp"]));

    // A --rm container that exits by itself frees its port (and is gone).
    let gone = free_port();
    let spec = format!("127.0.0.1:{gone}:80");
    ok(&d.docker(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "bt-gone",
        "-p",
        &spec,
        "bt-web:1",
        "sh",
        "-c",
        "httpd -p 80 -h /www; sleep 2",
    ]));
    assert!(http_get(gone).is_some(), "port open right after run");
    eventually("port closed after a --rm container exited", || {
        http_get(gone).is_none()
    });
    eventually("the --rm container is removed", || {
        !d.docker(&["inspect", "bt-gone"]).status.success()
    });

    // A host port that is taken: dockerd's error, and the container is not left running.
    let taken = TcpListener::bind("0.0.0.0:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let spec = format!("{taken_port}:80");
    let mut args = vec!["run", "-d", "--name", "bt-clash", "-p", &spec, "bt-web:1"];
    args.extend(httpd);
    let clash = d.docker(&args);
    assert!(!clash.status.success());
    let stderr = String::from_utf8_lossy(&clash.stderr);
    assert!(
        stderr.contains(&format!(
            "Bind for 0.0.0.0:{taken_port} failed: port is already allocated"
        )),
        "{stderr}"
    );
    assert_eq!(
        ok(&d.docker(&["inspect", "-f", "{{.State.Running}}", "bt-clash"])),
        "false"
    );
    drop(taken);

    // -P: the host gets the ports `docker port` reports; a restart policy brings them back.
    let args = vec![
        "run",
        "-d",
        "--name",
        "bt-auto",
        "--restart",
        "always",
        "-P",
        "--expose",
        "80",
        "bt-web:1",
        "sh",
        "-c",
        "httpd -p 80 -h /www; sleep 2",
    ];
    ok(&d.docker(&args));
    let host_port = |d: &ManagedBerth| -> Option<u16> {
        let out = d.docker(&["port", "bt-auto", "80/tcp"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .rsplit(':')
            .next()?
            .trim()
            .parse()
            .ok()
    };
    let first = host_port(&d).expect("a random port");
    assert!(http_get(first).is_some());
    // It exits by itself after 2 s and is restarted with new random ports.
    eventually("restarted with a forward on its new port", || {
        host_port(&d).is_some_and(|p| p != first && http_get(p).is_some())
    });

    // berth restarted while the container runs: the forward comes back.
    d.restart().unwrap();
    eventually("forward rebuilt after a berth restart", || {
        host_port(&d).is_some_and(|p| http_get(p).is_some())
    });
    ok(&d.docker(&["rm", "-f", "bt-auto", "bt-clash"]));

    // Path mappings: a second berth in front of the same engine sees host paths under
    // another prefix; an unmapped path is refused.
    let shared = dir.join("guest-side");
    std::fs::create_dir_all(shared.join("sub")).unwrap();
    std::fs::write(shared.join("sub/f.txt"), "mapped\n").unwrap();
    let engine_sock = d.engine_socket();
    let mapped_sock = dir.join("mapped.sock");
    let mapped_config = dir.join("mapped.toml");
    std::fs::write(
        &mapped_config,
        format!(
            "hosts = [\"unix://{}\"]\n\n[[machines]]\nname = \"vm\"\nkind = \"external\"\nendpoint = \"unix://{}\"\npath_mappings = [{{ host = \"/host-view\", guest = \"{}\" }}]\n",
            mapped_sock.display(),
            engine_sock.display(),
            shared.display()
        ),
    )
    .unwrap();
    let m = BerthProcess::start_args(
        Path::new(BERTH),
        &["serve", "--config", mapped_config.to_str().unwrap()],
        &mapped_sock,
    )
    .expect("starting the mapping berth");
    let mapped = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", m.host())
            .output()
            .unwrap()
    };
    let seen = ok(&mapped(&[
        "run",
        "--rm",
        "-v",
        "/host-view/sub:/w:ro",
        "bt-web:1",
        "cat",
        "/w/f.txt",
    ]));
    assert_eq!(seen, "mapped");
    let seen = ok(&mapped(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,source=/host-view/sub,target=/w",
        "bt-web:1",
        "cat",
        "/w/f.txt",
    ]));
    assert_eq!(seen, "mapped");
    let refused = mapped(&["run", "--rm", "-v", "/etc:/w", "bt-web:1", "true"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no path_mappings entry"));

    // A local volume that binds a host directory: its device is translated like a bind
    // source (the engine holds the engine-side path), an unmapped one is refused and
    // nothing is created.
    let on_engine = |args: &[&str]| {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", engine_sock.display()))
            .args(args)
            .output()
            .unwrap()
    };
    let bind_volume = |device: &str, name: &str| {
        mapped(&[
            "volume",
            "create",
            "--driver",
            "local",
            "--opt",
            "type=none",
            "--opt",
            "o=bind",
            "--opt",
            &format!("device={device}"),
            name,
        ])
    };
    ok(&bind_volume("/host-view/sub", "bt-mapped-vol"));
    let device = ok(&on_engine(&[
        "volume",
        "inspect",
        "-f",
        "{{.Options.device}}",
        "bt-mapped-vol",
    ]));
    assert_eq!(device, shared.join("sub").display().to_string());
    let seen = ok(&mapped(&[
        "run",
        "--rm",
        "-v",
        "bt-mapped-vol:/w:ro",
        "bt-web:1",
        "cat",
        "/w/f.txt",
    ]));
    assert_eq!(seen, "mapped");
    let refused = bind_volume("/etc", "bt-unmapped-vol");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("volume device \"/etc\"") && stderr.contains("no path_mappings entry"),
        "{stderr}"
    );
    assert!(!on_engine(&["volume", "inspect", "bt-unmapped-vol"])
        .status
        .success());
    ok(&on_engine(&["volume", "rm", "bt-mapped-vol"]));
    drop(m);
    drop(d);
}
