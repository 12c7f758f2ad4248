//! Pass-through conformance: the real docker CLI, directly against a real dockerd and
//! through berth, must see the same thing (issue: gateway core).
//!
//! One engine and one berth are shared by every test in this binary; tests isolate
//! themselves by container, image, volume and network names that start with their own
//! prefix.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_test::{assert_eventually, BerthProcess, DockerCli, TestEngine};
use sha2::{Digest, Sha256};

const IMAGE: &str = "bt-busybox:latest";

struct Setup {
    engine: TestEngine,
    berth: BerthProcess,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let engine = TestEngine::start("bt-pass").expect("starting a test engine");
        engine.import_busybox(IMAGE).expect("importing busybox");
        let berth = BerthProcess::start(
            Path::new(env!("CARGO_BIN_EXE_berth")),
            &engine.host(),
            &["--verify-timeout", "3"],
        )
        .expect("starting berth");
        Setup { engine, berth }
    })
}

fn direct() -> DockerCli {
    DockerCli::new(&setup().engine.host())
}

fn via() -> DockerCli {
    DockerCli::new(&setup().berth.host())
}

/// Replaces what differs between two runs of the same command (IDs, times, sizes).
fn normalize(s: &str) -> String {
    let mut out = String::new();
    for word in s.split_inclusive(|c: char| c.is_whitespace()) {
        let trimmed = word.trim_end();
        let is_id = trimmed.len() >= 12 && trimmed.bytes().all(|b| b.is_ascii_hexdigit());
        out.push_str(if is_id { "<id>" } else { trimmed });
        out.push_str(&word[trimmed.len()..]);
    }
    out
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    f.read_exact(&mut out).unwrap();
    out
}

/// Runs the same command both ways and returns both outcomes.
fn both(args: &[&str]) -> (berth_test::CliOutput, berth_test::CliOutput) {
    (direct().run(args), via().run(args))
}

#[test]
fn run_exit_codes_and_errors_match_direct() {
    for args in [
        vec!["run", "--rm", IMAGE, "sh", "-c", "exit 3"],
        vec!["run", "--rm", IMAGE, "echo", "hello"],
        vec!["run", "--rm", IMAGE, "no-such-binary"],
        vec!["rm", "pt-no-such-container"],
        vec!["inspect", "pt-no-such-container"],
    ] {
        let (d, v) = both(&args);
        assert_eq!(d.code, v.code, "{args:?}: direct {d:?} via berth {v:?}");
        assert_eq!(d.stdout, v.stdout, "{args:?}");
        assert_eq!(normalize(&d.stderr), normalize(&v.stderr), "{args:?}");
    }
}

#[test]
fn stdin_eof_reaches_the_container_and_output_continues() {
    let out = via().run_stdin(
        &[
            "run",
            "-i",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "cat; sleep 1; echo after",
        ],
        b"hi\n",
    );
    assert_eq!(out.ok(), "hi\nafter");
}

#[test]
fn two_hundred_megabytes_stream_through_run_i_cat_unchanged() {
    let data = random_bytes(200 << 20);
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "-i", IMAGE, "cat"])
        .env("DOCKER_HOST", setup().berth.host())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = out;
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&data).unwrap();
        sha256(&data)
    });
    let mut got = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(got.len(), 200 << 20);
    assert_eq!(sha256(&got), writer.join().unwrap());
}

#[test]
fn container_lifecycle_commands_behave_as_direct() {
    for (cli, name) in [(direct(), "pt-life-d"), (via(), "pt-life-v")] {
        let _ = cli.run(&["rm", "-f", name, &format!("{name}-2")]);
        cli.run(&[
            "create", "--name", name, "--label", "pt=life", IMAGE, "sleep", "300",
        ])
        .ok();
        cli.run(&["start", name]).ok();
        // A second start of a running container is a 304: success, as directly.
        cli.run(&["start", name]).ok();
        let top = cli.run(&["top", name]);
        assert!(top.ok().contains("sleep 300"), "{top:?}");
        cli.run(&["pause", name]).ok();
        assert_eq!(
            cli.run(&["inspect", "-f", "{{.State.Status}}", name]).ok(),
            "paused"
        );
        cli.run(&["unpause", name]).ok();
        let stats = cli.run(&["stats", "--no-stream", "--format", "{{.Name}}", name]);
        assert_eq!(stats.ok(), name);
        cli.run(&["rename", name, &format!("{name}-2")]).ok();
        let renamed = format!("{name}-2");
        cli.run(&["restart", "-t", "0", &renamed]).ok();
        cli.run(&["kill", &renamed]).ok();
        let wait = cli.run(&["wait", &renamed]);
        assert_eq!(wait.ok(), "137");
        let ps = cli.run(&[
            "ps",
            "-a",
            "--filter",
            "label=pt=life",
            "--filter",
            &format!("name={renamed}"),
            "--format",
            "{{.Names}} {{.Status}}",
        ]);
        assert!(
            ps.ok().starts_with(&format!("{renamed} Exited (137)")),
            "{ps:?}"
        );
        cli.run(&["rm", &renamed]).ok();
        let stop = cli.run(&["stop", &renamed]);
        assert_ne!(stop.code, 0);
    }
}

#[test]
fn logs_follow_sees_lines_printed_later() {
    let cli = via();
    let name = "pt-logs";
    let _ = cli.run(&["rm", "-f", name]);
    cli.run(&[
        "run",
        "-d",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        "echo first; sleep 2; echo second; sleep 300",
    ])
    .ok();
    let started = Instant::now();
    let follow = cli
        .clone()
        .timeout(Duration::from_secs(5))
        .run(&["logs", "-f", name]);
    assert!(follow.stdout.contains("first\nsecond"), "{follow:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        cli.run(&["logs", name]).ok(),
        direct().run(&["logs", name]).ok()
    );
    cli.run(&["rm", "-f", name]).ok();
}

#[test]
fn exec_with_piped_stdin_and_with_a_tty() {
    let cli = via();
    let name = "pt-exec";
    let _ = cli.run(&["rm", "-f", name]);
    cli.run(&["run", "-d", "--name", name, IMAGE, "sleep", "300"])
        .ok();
    let piped = cli.run_stdin(
        &["exec", "-i", name, "sh", "-c", "cat; echo done"],
        b"piped\n",
    );
    assert_eq!(piped.ok(), "piped\ndone");
    let split = cli.run(&["exec", name, "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(
        (split.stdout.as_str(), split.stderr.as_str()),
        ("out\n", "err\n")
    );
    // A TTY for the CLI comes from script(1).
    let tty = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("docker exec -it {name} sh -c 'tty; echo tty-ok'"),
            "/dev/null",
        ])
        .env("DOCKER_HOST", cli.host())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(
        text.contains("/dev/pts/") && text.contains("tty-ok"),
        "{text}"
    );
    cli.run(&["rm", "-f", name]).ok();
}

#[test]
fn attach_receives_output_of_a_running_container() {
    let cli = via();
    let name = "pt-attach";
    let _ = cli.run(&["rm", "-f", name]);
    cli.run(&[
        "run",
        "-d",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        "sleep 1; echo attached-out; sleep 1",
    ])
    .ok();
    let out = cli.run(&["attach", name]);
    assert!(out.stdout.contains("attached-out"), "{out:?}");
    cli.run(&["rm", "-f", name]).ok();
}

#[test]
fn copy_both_ways_keeps_100_megabytes_intact() {
    let cli = via();
    let name = "pt-cp";
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(100 << 20);
    std::fs::write(dir.path().join("big"), &data).unwrap();
    let _ = cli.run(&["rm", "-f", name]);
    cli.run(&["run", "-d", "--name", name, IMAGE, "sleep", "300"])
        .ok();
    cli.run(&[
        "cp",
        dir.path().join("big").to_str().unwrap(),
        &format!("{name}:/tmp/big"),
    ])
    .ok();
    let back = dir.path().join("back");
    cli.run(&["cp", &format!("{name}:/tmp/big"), back.to_str().unwrap()])
        .ok();
    assert_eq!(sha256(&std::fs::read(&back).unwrap()), sha256(&data));
    let inside = cli.run(&["exec", name, "sha256sum", "/tmp/big"]);
    assert!(inside.ok().starts_with(&sha256(&data)));
    let diff = cli.run(&["diff", name]);
    assert!(diff.ok().contains("A /tmp/big"), "{diff:?}");
    cli.run(&["rm", "-f", name]).ok();
}

#[test]
fn images_commit_export_import_save_load_tag_history_rmi() {
    let cli = via();
    let name = "pt-img";
    let dir = tempfile::tempdir().unwrap();
    let _ = cli.run(&["rm", "-f", name]);
    cli.run(&[
        "run",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        "echo committed > /marker",
    ])
    .ok();
    cli.run(&["commit", name, "pt-committed:1"]).ok();
    let marker = cli.run(&["run", "--rm", "pt-committed:1", "cat", "/marker"]);
    assert_eq!(marker.ok(), "committed");
    let export = dir.path().join("export.tar");
    cli.run(&["export", "-o", export.to_str().unwrap(), name])
        .ok();
    cli.run(&["import", export.to_str().unwrap(), "pt-imported:1"])
        .ok();
    let saved = dir.path().join("saved.tar");
    cli.run(&["save", "-o", saved.to_str().unwrap(), "pt-committed:1"])
        .ok();
    cli.run(&["rmi", "pt-committed:1"]).ok();
    let loaded = cli.run(&["load", "-i", saved.to_str().unwrap()]);
    assert!(loaded.ok().contains("pt-committed:1"), "{loaded:?}");
    cli.run(&["tag", "pt-committed:1", "pt-tagged:2"]).ok();
    let history = cli.run(&["history", "-q", "pt-tagged:2"]);
    assert!(!history.ok().is_empty());
    let (d, v) = both(&["image", "inspect", "-f", "{{.Id}}", "pt-tagged:2"]);
    assert_eq!(d.ok(), v.ok());
    for image in ["pt-tagged:2", "pt-committed:1", "pt-imported:1"] {
        cli.run(&["rmi", image]).ok();
    }
    cli.run(&["rm", name]).ok();
}

#[test]
fn legacy_build_with_a_large_context() {
    let cli = via();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blob"), random_bytes(60 << 20)).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nCOPY blob /blob\nRUN wc -c /blob > /size\n"),
    )
    .unwrap();
    let out = cli.clone().env("DOCKER_BUILDKIT", "0").run(&[
        "build",
        "-t",
        "pt-built:1",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let size = cli.run(&["run", "--rm", "pt-built:1", "cat", "/size"]);
    assert_eq!(size.ok(), format!("{} /blob", 60 << 20));
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("Dockerfile"), "FROM\n").unwrap();
    let err = cli
        .clone()
        .env("DOCKER_BUILDKIT", "0")
        .run(&["build", broken.to_str().unwrap()]);
    assert_ne!(err.code, 0);
    assert!(
        !err.stderr.contains("berth"),
        "the engine's error, not berth's: {err:?}"
    );
    cli.run(&["rmi", "pt-built:1"]).ok();
}

#[test]
fn volumes_networks_prune_and_system_views() {
    let cli = via();
    cli.run(&["volume", "create", "--label", "pt=vol", "pt-vol"])
        .ok();
    assert!(cli
        .run(&["volume", "ls", "-q"])
        .ok()
        .lines()
        .any(|l| l == "pt-vol"));
    assert_eq!(
        cli.run(&["volume", "inspect", "-f", "{{.Name}}", "pt-vol"])
            .ok(),
        "pt-vol"
    );
    let pruned = cli.run(&["volume", "prune", "-f", "--filter", "label=pt=vol"]);
    assert!(pruned.ok().contains("pt-vol"), "{pruned:?}");
    cli.run(&["network", "create", "--label", "pt=net", "pt-net"])
        .ok();
    assert_eq!(
        cli.run(&["network", "inspect", "-f", "{{.Name}}", "pt-net"])
            .ok(),
        "pt-net"
    );
    cli.run(&["network", "rm", "pt-net"]).ok();
    cli.run(&["create", "--label", "pt=prune", IMAGE, "true"])
        .ok();
    let pruned = cli.run(&["container", "prune", "-f", "--filter", "label=pt=prune"]);
    assert!(pruned.ok().contains("Deleted Containers"), "{pruned:?}");
    let pruned = cli.run(&["image", "prune", "-f", "--filter", "label=pt=none"]);
    assert_eq!(pruned.code, 0);
    let (d, v) = both(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}}",
    ]);
    assert_eq!(d.ok(), v.ok());
    let (d, v) = both(&["info", "--format", "{{.ID}} {{.Driver}}"]);
    assert_eq!(d.ok(), v.ok());
    assert!(cli.run(&["system", "df"]).ok().contains("Images"));
}

#[test]
fn events_show_what_happens_through_berth() {
    let cli = via();
    let since = cli.run(&["version", "-f", "{{.Server.Version}}"]);
    since.ok();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    cli.run(&["run", "--rm", "--label", "pt=events", IMAGE, "true"])
        .ok();
    let until = start + 30;
    let events = cli.run(&[
        "events",
        "--since",
        &start.to_string(),
        "--until",
        &(until.min(start + 5)).to_string(),
        "--filter",
        "label=pt=events",
        "--format",
        "{{.Action}}",
    ]);
    let actions = events.ok();
    assert!(
        actions.contains("create") && actions.contains("start") && actions.contains("destroy"),
        "{actions}"
    );
}

// === raw wire checks ===

fn raw(socket: &Path, request: &[u8], read_for: Duration) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(request).unwrap();
    s.set_read_timeout(Some(read_for)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + read_for;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn status_line(resp: &[u8]) -> String {
    String::from_utf8_lossy(resp)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn hijack_without_upgrade_is_a_raw_bidirectional_stream_with_half_close() {
    let cli = via();
    let name = "pt-rawexec";
    let _ = cli.run(&["rm", "-f", name]);
    cli.run(&["run", "-d", "--name", name, IMAGE, "sleep", "300"])
        .ok();
    let body = r#"{"AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"Cmd":["cat"]}"#;
    for upgrade in [false, true] {
        let create = raw(
            &setup().berth.socket(),
            format!("POST /v1.41/containers/{name}/exec HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
            Duration::from_secs(3),
        );
        let text = String::from_utf8_lossy(&create);
        let id = text
            .split("\"Id\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        let start = r#"{"Detach":false,"Tty":false}"#;
        let headers = if upgrade {
            "Connection: Upgrade\r\nUpgrade: tcp\r\n"
        } else {
            ""
        };
        let mut s = UnixStream::connect(setup().berth.socket()).unwrap();
        s.write_all(format!("POST /v1.41/exec/{id}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{start}", start.len()).as_bytes()).unwrap();
        // Like every client, send stdin only once the head arrived: dockerd drops bytes
        // that arrive before it hijacks the connection.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the head");
            out.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"through-the-hijack\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s.read_to_end(&mut out).unwrap();
        let expect = if upgrade {
            "HTTP/1.1 101"
        } else {
            "HTTP/1.1 200 OK"
        };
        assert!(
            status_line(&out).starts_with(expect),
            "{}",
            String::from_utf8_lossy(&out)
        );
        // Non-TTY output is multiplexed: header byte 1 (stdout) then the payload.
        let payload = b"through-the-hijack\n";
        assert!(
            out.windows(payload.len()).any(|w| w == payload),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    cli.run(&["rm", "-f", name]).ok();
}

#[test]
fn buildkit_session_and_grpc_upgrades_reach_the_engine() {
    let session = raw(
        &setup().berth.socket(),
        b"POST /session HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nX-Docker-Expose-Session-Uuid: pt-session-1\r\nX-Docker-Expose-Session-Sharedkey: k\r\nX-Docker-Expose-Session-Grpc-Method: /a\r\nX-Docker-Expose-Session-Grpc-Method: /b\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(2),
    );
    let text = String::from_utf8_lossy(&session);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains("\r\n\r\nPRI * HTTP/2.0"), "{text}");
    let grpc = raw(
        &setup().berth.socket(),
        b"POST /grpc HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(2),
    );
    let head_end = grpc.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(status_line(&grpc).starts_with("HTTP/1.1 101"));
    assert_eq!(
        grpc[head_end + 3],
        0x04,
        "an HTTP/2 SETTINGS frame follows the 101"
    );
}

#[test]
fn websocket_attach_streams_binary_frames() {
    let cli = via();
    let name = "pt-ws";
    let _ = cli.run(&["rm", "-f", name]);
    cli.run(&[
        "run",
        "-d",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.2; done",
    ])
    .ok();
    let out = raw(
        &setup().berth.socket(),
        format!("GET /v1.41/containers/{name}/attach/ws?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://x\r\n\r\n").as_bytes(),
        Duration::from_secs(2),
    );
    assert!(
        status_line(&out).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(out.get(head_end), Some(&0x82), "binary frame expected");
    cli.run(&["rm", "-f", name]).ok();
}

#[test]
fn wire_details_match_dockerd() {
    let s = setup();
    // HEAD /_ping carries Api-Version.
    let ping = raw(
        &s.berth.socket(),
        b"HEAD /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    );
    let text = String::from_utf8_lossy(&ping).to_ascii_lowercase();
    assert!(
        text.starts_with("http/1.1 200") && text.contains("api-version: 1."),
        "{text}"
    );
    assert!(text.contains("x-trace-id: "), "{text}");
    // Unknown path: dockerd's own 404.
    for (req, expect) in [
        (&b"GET /v1.41/no/such/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..], "404"),
        (&b"POST /v1.41/containers/pt-nope/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"[..], "400"),
    ] {
        let d = raw(&s.engine.socket(), req, Duration::from_secs(2));
        let v = raw(&s.berth.socket(), req, Duration::from_secs(2));
        assert!(status_line(&v).contains(expect), "{}", String::from_utf8_lossy(&v));
        assert_eq!(status_line(&d), status_line(&v));
        let body = |r: &[u8]| r.split(|b| *b == b'{').skip(1).map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>().join("{");
        assert_eq!(body(&d), body(&v));
    }
    // Garbage gets a JSON 400 and berth keeps serving.
    let bad = raw(
        &s.berth.socket(),
        b"\x16\x03\x01garbage\r\n\r\n",
        Duration::from_secs(2),
    );
    let text = String::from_utf8_lossy(&bad);
    assert!(
        text.starts_with("HTTP/1.1 400") && text.contains("{\"message\":"),
        "{text}"
    );
    via().run(&["version"]).ok();
}

#[test]
fn clients_going_away_mid_stream_leak_nothing() {
    let s = setup();
    let cli = via();
    let name = "pt-leak";
    let _ = cli.run(&["rm", "-f", name]);
    cli.run(&[
        "run",
        "-d",
        "-i",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        "while true; do sleep 100; done",
    ])
    .ok();
    // Settle: let pooled connections form.
    cli.run(&["ps"]).ok();
    let baseline = berth_test::procfs::open_fds(s.berth.pid());
    for _ in 0..3 {
        // Mid-attach: an upgraded attach dropped by the client.
        let mut a = UnixStream::connect(s.berth.socket()).unwrap();
        a.write_all(format!("POST /v1.41/containers/{name}/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        let _ = a.read(&mut buf);
        drop(a);
        // Mid-upload: a load whose body never finishes.
        let mut u = UnixStream::connect(s.berth.socket()).unwrap();
        u.write_all(b"POST /v1.41/images/load HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: 100000000\r\n\r\n").unwrap();
        u.write_all(&[0u8; 65536]).unwrap();
        drop(u);
        // Mid-follow: logs -f dropped.
        let mut l = UnixStream::connect(s.berth.socket()).unwrap();
        l.write_all(
            format!(
                "GET /v1.41/containers/{name}/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let _ = l.read(&mut buf);
        drop(l);
    }
    assert_eventually!(
        within = Duration::from_secs(15),
        berth_test::procfs::open_fds(s.berth.pid()) <= baseline + 2,
        "berth holds {} fds, {} before the abandoned exchanges",
        berth_test::procfs::open_fds(s.berth.pid()),
        baseline
    );
    cli.run(&["rm", "-f", name]).ok();
}
