//! Remote machines: a real dockerd serving mutual TLS on a namespace address
//! (certificates made here with openssl), and one reachable only through a real sshd
//! (Debian's openssh-server, key authentication, a known_hosts made here). The docker
//! CLI works through berth on each; wrong certificates and unknown host keys are
//! refused naming the machine; a machine that goes away is shown down, left out of
//! merged views, and comes back without a restart of berth.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_test::{
    assert_eventually, link_addresses, wire, BerthProcess, CliOutput, DockerCli, TestCerts,
    TestEngine, TestSshd,
};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");
const IMAGE: &str = "busybox:latest";

struct Setup {
    local: TestEngine,
    tls: TestEngine,
    ssh_engine: TestEngine,
    certs: TestCerts,
    /// Tests that kill sshd hold it; the others that use the SSH machine too.
    sshd: Mutex<TestSshd>,
    /// One machine each, as its default: where the CLI checks run.
    berth_tls: BerthProcess,
    berth_ssh: BerthProcess,
    /// The local engine (default) and both remotes.
    berth_all: BerthProcess,
    /// The same with `placement = "spread"`.
    berth_spread: BerthProcess,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();
    berth_test::shared(&SETUP, || {
        let pid = std::process::id();
        let ssh_name = format!("bt-rs{pid}");
        let ssh_side = std::thread::spawn(move || {
            let engine = TestEngine::with_busybox(&ssh_name, IMAGE)?;
            let addr = engine.link_to_host().map_err(|e| format!("link: {e}"))?;
            let sshd = TestSshd::start(&engine, addr).map_err(|e| format!("sshd: {e}"))?;
            Ok::<_, String>((engine, sshd))
        });
        let local = TestEngine::with_busybox(&format!("bt-rl{pid}"), IMAGE)?;
        let tls_name = format!("bt-rt{pid}");
        let certs = TestCerts::make(&local.dir().join("certs"), link_addresses(&tls_name).1)
            .map_err(|e| e.to_string())?;
        let tls = TestEngine::start_with(&tls_name, &certs.dockerd_args())
            .map_err(|e| format!("tls engine: {e}"))?;
        tls.import_busybox(IMAGE).map_err(|e| e.to_string())?;
        tls.link_to_host().map_err(|e| format!("link: {e}"))?;
        let (ssh_engine, sshd) = ssh_side.join().map_err(|_| "ssh setup panicked")??;
        let tls_machine = tls_machine("tls", &tls, &certs.dir().display().to_string());
        let ssh_machine = ssh_machine("ssh", &sshd, &ssh_engine, &sshd.known_hosts());
        let berth_tls = start_berth(&local, "tls", std::slice::from_ref(&tls_machine))?;
        let berth_ssh = start_berth(&local, "ssh", std::slice::from_ref(&ssh_machine))?;
        let all = [
            format!(
                "[[machines]]\nname = \"local\"\nkind = \"external\"\nendpoint = \"{}\"\ndefault = true\n",
                local.host()
            ),
            tls_machine,
            ssh_machine,
        ];
        let berth_all = start_berth(&local, "all", &all)?;
        let mut spread = all.to_vec();
        spread.insert(0, "placement = \"spread\"\n".to_owned());
        let berth_spread = start_berth(&local, "spread", &spread)?;
        Ok(Setup {
            local,
            tls,
            ssh_engine,
            certs,
            sshd: Mutex::new(sshd),
            berth_tls,
            berth_ssh,
            berth_all,
            berth_spread,
        })
    })
}

/// A `[[machines]]` table for the TLS engine, certificates from `tls` (a directory).
fn tls_machine(name: &str, engine: &TestEngine, tls: &str) -> String {
    format!(
        "[[machines]]\nname = \"{name}\"\nkind = \"external\"\nendpoint = \"tcp://{}:2376\"\ntlsverify = true\ntls = \"{tls}\"\n",
        engine.link_address()
    )
}

/// A `[[machines]]` table for the SSH engine, accepting the host keys in `known_hosts`.
fn ssh_machine(name: &str, sshd: &TestSshd, engine: &TestEngine, known_hosts: &Path) -> String {
    format!(
        "[[machines]]\nname = \"{name}\"\nkind = \"external\"\nendpoint = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\nremote_socket = \"{}\"\n",
        sshd.endpoint(),
        sshd.identity_file().display(),
        known_hosts.display(),
        engine.socket().display()
    )
}

/// Starts berth with `machines` (TOML tables), its files in the local engine's directory.
fn start_berth(local: &TestEngine, tag: &str, machines: &[String]) -> Result<BerthProcess, String> {
    BerthProcess::start_config(
        Path::new(BERTH),
        &local.dir().join(format!("berth-{tag}")),
        &format!(
            "connect_timeout = 3\nverify_timeout = 5\n\n{}",
            machines.join("\n")
        ),
    )
    .map_err(|e| format!("starting berth ({tag}): {e}"))
}

fn unique(what: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("rm-{what}-{}-{n}", std::process::id())
}

fn direct(engine: &TestEngine) -> DockerCli {
    DockerCli::new(engine.host())
}

fn lock_sshd() -> MutexGuard<'static, TestSshd> {
    setup().sshd.lock().unwrap_or_else(|e| e.into_inner())
}

#[track_caller]
fn ok(out: &CliOutput) -> String {
    assert!(out.success(), "{out}");
    out.stdout.trim().to_owned()
}

/// `docker <args>` with a pseudo-terminal (script(1)); exit code and what it printed.
fn with_tty(cli: &DockerCli, args: &str) -> (i32, String) {
    let cmd = format!("{} -H {} {args}", DockerCli::binary().display(), cli.host());
    let out = std::process::Command::new("timeout")
        .args(["60", "script", "-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux (bsdutils)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// run, logs, exec -it, attach, cp, build and a BuildKit session through `berth`, whose
/// only machine is `engine`; each checked on the engine directly.
fn cli_works_through(berth: &BerthProcess, engine: &TestEngine, tag: &str) {
    let via = DockerCli::new(berth.host());
    assert_eq!(
        ok(&via.run(&["run", "--rm", IMAGE, "echo", "hi"])),
        "hi",
        "[{tag}]"
    );

    let name = unique(tag);
    ok(&via.run(&[
        "run",
        "-d",
        "-i",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        "echo started; read line; echo got:$line; sleep 300",
    ]));
    assert!(
        direct(engine).run(&["inspect", &name]).success(),
        "[{tag}] the container is on the remote engine"
    );
    assert_eventually!(
        via.run(&["logs", &name]).stdout.contains("started"),
        "[{tag}] logs"
    );

    // exec -it: a pseudo-terminal through the hijack.
    let (code, text) = with_tty(&via, &format!("exec -it {name} sh -c 'tty; exit 3'"));
    assert_eq!(code, 3, "[{tag}] exec -it: {text:?}");
    assert!(text.contains("/dev/pts/"), "[{tag}] exec -it: {text:?}");

    // attach: stdin in, output back.
    let mut attach = via
        .command(&["attach", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    attach
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello\n")
        .unwrap();
    let mut stdout = attach.stdout.take().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + berth_test::patient(Duration::from_secs(20));
    while !String::from_utf8_lossy(&seen).contains("got:hello") && Instant::now() < deadline {
        let mut buf = [0u8; 256];
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let _ = attach.kill();
    let _ = attach.wait();
    assert!(
        String::from_utf8_lossy(&seen).contains("got:hello"),
        "[{tag}] attach: {:?}",
        String::from_utf8_lossy(&seen)
    );

    // cp both ways.
    let dir = tempfile::tempdir().unwrap();
    let payload = berth_test::pseudo_random_bytes(200_000, 7);
    std::fs::write(dir.path().join("in.bin"), &payload).unwrap();
    ok(&via.run(&[
        "cp",
        dir.path().join("in.bin").to_str().unwrap(),
        &format!("{name}:/tmp/in.bin"),
    ]));
    ok(&via.run(&[
        "cp",
        &format!("{name}:/tmp/in.bin"),
        dir.path().join("out.bin").to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read(dir.path().join("out.bin")).unwrap(),
        payload,
        "[{tag}] cp round trip"
    );

    // build (the classic builder: no buildx plugin here) and run what it built.
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nRUN echo built > /built\n"),
    )
    .unwrap();
    let built = format!("{}:1", unique(&format!("{tag}-img")));
    ok(&via.clone().env("DOCKER_BUILDKIT", "0").run(&[
        "build",
        "-q",
        "-t",
        &built,
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(
        ok(&via.run(&["run", "--rm", &built, "cat", "/built"])),
        "built"
    );
    assert!(direct(engine).run(&["image", "inspect", &built]).success());

    // A BuildKit session: the h2c upgrade, then dockerd's HTTP/2 preface.
    let mut s = std::os::unix::net::UnixStream::connect(berth.socket()).unwrap();
    write!(
        s,
        "POST /session HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nX-Docker-Expose-Session-Uuid: {}\r\nX-Docker-Expose-Session-Sharedkey: k\r\nX-Docker-Expose-Session-Grpc-Method: /grpc.health.v1.Health/Check\r\nContent-Length: 0\r\n\r\n",
        unique("session")
    )
    .unwrap();
    let (head, mut rest) = wire::read_head(&mut s, Duration::from_secs(10)).unwrap();
    assert!(
        String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"),
        "[{tag}] {}",
        String::from_utf8_lossy(&head)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while rest.len() < 24 && Instant::now() < deadline {
        rest.extend(wire::read_for_a_while(&mut s, Duration::from_millis(200)));
    }
    assert!(
        rest.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        "[{tag}] after the 101: {:?}",
        String::from_utf8_lossy(&rest)
    );
    drop(s);

    via.run(&["rm", "-f", &name]);
    via.run(&["rmi", &built]);
}

#[test]
fn the_cli_works_through_a_tls_machine() {
    let s = setup();
    cli_works_through(&s.berth_tls, &s.tls, "tls");
}

#[test]
fn the_cli_works_through_an_ssh_machine() {
    let s = setup();
    let _sshd = lock_sshd();
    cli_works_through(&s.berth_ssh, &s.ssh_engine, "ssh");
    // The SSH connection is berth's own: no ssh process that a SIGKILLed berth would
    // leave behind.
    assert_eq!(children_of(s.berth_ssh.pid()), Vec::<String>::new());
}

/// `pid (comm)` of the processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.ok()?.path().join("stat")).ok()?;
            let comm_end = stat.rfind(')')?;
            // After "pid (comm) ": the state, then the parent's pid.
            let ppid: u32 = stat.get(comm_end + 2..)?.split(' ').nth(1)?.parse().ok()?;
            (ppid == pid).then(|| stat[..=comm_end].to_owned())
        })
        .collect()
}

#[test]
fn merged_views_span_the_local_and_both_remote_machines() {
    let s = setup();
    let _sshd = lock_sshd();
    let via = DockerCli::new(s.berth_all.host());
    let names: Vec<String> = ["local", "tls", "ssh"].iter().map(|m| unique(m)).collect();
    for (engine, name) in [&s.local, &s.tls, &s.ssh_engine].iter().zip(&names) {
        ok(&direct(engine).run(&["create", "--name", name, IMAGE, "true"]));
    }
    let ps = ok(&via.run(&["ps", "-a", "--format", "{{.Names}}"]));
    for name in &names {
        assert!(ps.lines().any(|l| l == name), "{name} missing from {ps}");
    }
    // Each by name reaches its owner.
    for name in &names {
        ok(&via.run(&["rm", name]));
    }
    let status = berth_status(&s.berth_all);
    for machine in ["tls", "ssh"] {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(machine) && l.contains(" up ")),
            "{machine} up in:\n{status}"
        );
    }
}

fn berth_status(berth: &BerthProcess) -> String {
    let out = std::process::Command::new(BERTH)
        .args(["status", "--socket", &berth.host()])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `berth status` once it shows every one of `needles` (20 s).
#[track_caller]
fn status_until(berth: &BerthProcess, needles: &[&str]) -> String {
    let deadline = Instant::now() + berth_test::patient(Duration::from_secs(20));
    loop {
        let status = berth_status(berth);
        if needles.iter().all(|n| status.contains(n)) {
            return status;
        }
        assert!(Instant::now() < deadline, "{needles:?} not in:\n{status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_wrong_server_certificate_and_an_unknown_host_key_are_refused_naming_the_machine() {
    let s = setup();
    // Another CA that did not sign the engine's certificate.
    let rogue = TestCerts::make(&s.local.dir().join("rogue-certs"), s.tls.link_address()).unwrap();
    let rogue_dir = s.local.dir().join("rogue-client");
    std::fs::create_dir_all(&rogue_dir).unwrap();
    std::fs::copy(rogue.file("ca.pem"), rogue_dir.join("ca.pem")).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(s.certs.file(f), rogue_dir.join(f)).unwrap();
    }
    // A known_hosts with another key for the SSH host.
    let sshd = lock_sshd();
    let stranger = s.local.dir().join("stranger");
    let _ = std::fs::remove_file(&stranger);
    assert!(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap()
        .success());
    let addr = s.ssh_engine.link_address();
    let wrong_known = s.local.dir().join("wrong_known_hosts");
    std::fs::write(
        &wrong_known,
        format!(
            "{addr} {}",
            std::fs::read_to_string(stranger.with_extension("pub")).unwrap()
        ),
    )
    .unwrap();
    let berth = start_berth(
        &s.local,
        "wrong",
        &[
            tls_machine("badca", &s.tls, &rogue_dir.display().to_string()),
            ssh_machine("badkey", &sshd, &s.ssh_engine, &wrong_known),
        ],
    )
    .unwrap();
    drop(sshd);

    let ping = wire::request(berth.socket(), "GET", "/_ping", &[], b"").unwrap();
    assert_eq!(ping.status, 502, "{ping}");
    let message: serde_json::Value = serde_json::from_str(&ping.text()).unwrap();
    let message = message["message"].as_str().unwrap();
    assert!(
        message.contains("engine \"badca\"")
            && message.contains("not signed by the machine's tlscacert"),
        "{message}"
    );
    let status = status_until(&berth, &["badkey: down", "badca: down"]);
    assert!(status.contains("Host key verification failed"), "{status}");
    // Never learned: the file still holds only the stranger's key.
    assert_eq!(
        std::fs::read_to_string(&wrong_known)
            .unwrap()
            .lines()
            .count(),
        1
    );
}

/// An engine whose certificate chains to the machine's CA but names another host: a real
/// TLS server (`openssl s_server`, its stdout line-buffered for the port it prints) on a
/// loopback port, its certificate made for 192.0.2.1 (TEST-NET) while the endpoint says
/// 127.0.0.1.
#[test]
fn a_server_certificate_for_another_host_is_refused_naming_the_machine() {
    let s = setup();
    let certs = TestCerts::make(
        // Under "<engine dir>/data…": the engine's cleanup ends what names it (the server,
        // should this test process die first).
        &s.local.dir().join("data-other-host"),
        std::net::Ipv4Addr::new(192, 0, 2, 1),
    )
    .unwrap();
    // stdbuf execs openssl: the child is the server itself, ended when this is dropped.
    let server = std::process::Command::new("stdbuf")
        .args(["-oL", "openssl", "s_server", "-accept", "127.0.0.1:0"])
        .arg("-cert")
        .arg(certs.file("server-cert.pem"))
        .arg("-key")
        .arg(certs.file("server-key.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Killed(server);
    // "ACCEPT 127.0.0.1:PORT" once it listens.
    let mut out = std::io::BufReader::new(server.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("ACCEPT") {
        line.clear();
        let read = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(read > 0, "openssl s_server ended: {:?}", server.0.wait());
    }
    let port = line.trim().rsplit(':').next().unwrap().to_owned();
    let machine = format!(
        "[[machines]]\nname = \"badname\"\nkind = \"external\"\nendpoint = \"tcp://127.0.0.1:{port}\"\ntlsverify = true\ntls = \"{}\"\n",
        certs.dir().display()
    );
    let berth = start_berth(&s.local, "badname", &[machine]).unwrap();
    let ping = wire::request(berth.socket(), "GET", "/_ping", &[], b"").unwrap();
    drop(server);
    assert_eq!(ping.status, 502, "{ping}");
    let message: serde_json::Value = serde_json::from_str(&ping.text()).unwrap();
    let message = message["message"].as_str().unwrap();
    assert!(
        message.contains("engine \"badname\"")
            && message.contains("certificate does not name the endpoint's host"),
        "{message}"
    );
}

/// A child process killed and reaped when dropped (a failed assertion included).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sshd_killed_and_restarted_the_machine_is_down_then_back_without_restarting_berth() {
    let s = setup();
    let mut sshd = lock_sshd();
    let via = DockerCli::new(s.berth_all.host());
    // Placed by default on the local machine; one on the SSH machine directly.
    let name = ticker(&via, "follow", "tick");
    let remote = ticker(&direct(&s.ssh_engine), "remote", "tock");
    ok(&via.run(&["inspect", &remote]));
    // The stream ends (keep-alives give up within ~15 s), it does not hang.
    let took = follow_until_cut(&via, &remote, "tock", || sshd.kill());
    assert!(took < berth_test::patient(Duration::from_secs(30)));

    status_until(&s.berth_all, &["ssh: down"]);
    // Its container: a 502 naming the machine; merged views go on without it.
    let out = via.run(&["container", "inspect", &remote]);
    assert!(!out.success());
    assert!(out.stderr.contains("\"ssh\""), "{out}");
    let ps = ok(&via.run(&["ps", "--format", "{{.Names}}"]));
    assert!(ps.lines().any(|l| l == name), "{ps}");
    assert!(!ps.lines().any(|l| l == remote), "{ps}");

    sshd.restart().unwrap();
    assert_eventually!(
        within = Duration::from_secs(30),
        via.run(&["container", "inspect", &remote]).success(),
        "the SSH machine came back"
    );
    let ps = ok(&via.run(&["ps", "--format", "{{.Names}}"]));
    assert!(ps.lines().any(|l| l == remote), "{ps}");
    let status = berth_status(&s.berth_all);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("ssh ") && l.contains(" up ")),
        "{status}"
    );
    via.run(&["rm", "-f", &name, &remote]);
    // The other berths hold connections of their own to this sshd and reconnect with
    // backoff (up to 10 s apart): the tests after this one find them up again.
    for berth in [&s.berth_ssh, &s.berth_spread] {
        assert_eventually!(
            within = Duration::from_secs(30),
            berth_status(berth)
                .lines()
                .any(|l| l.starts_with("ssh ") && l.contains(" up ")),
            "the SSH machine is up again in every berth"
        );
    }
}

/// Runs a container through `cli` printing `word` five times a second; its name.
fn ticker(cli: &DockerCli, what: &str, word: &str) -> String {
    let name = unique(what);
    ok(&cli.run(&[
        "run",
        "-d",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        &format!("while true; do echo {word}; sleep 0.2; done"),
    ]));
    name
}

/// Follows `container`'s logs through `via` until its first `word`, then `cut`s the
/// machine away and reads until the stream ends; how long the end took.
fn follow_until_cut(via: &DockerCli, container: &str, word: &str, cut: impl FnOnce()) -> Duration {
    let mut follow = via
        .command(&["logs", "-f", container])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 5];
    follow
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(first, format!("{word}\n").as_bytes());

    cut();
    let ended = Instant::now();
    let mut rest = Vec::new();
    let _ = follow.stdout.as_mut().unwrap().read_to_end(&mut rest);
    let _ = follow.wait();
    ended.elapsed()
}

#[test]
fn an_engine_stopped_mid_logs_follow_ends_the_stream_and_is_shown_down() {
    let s = setup();
    // An engine of its own (stopping a shared one would break the others' tests),
    // reached with TLS: the shared certificates' server also names its address.
    let pid = std::process::id();
    let name = format!("bt-rx{pid}");
    let certs =
        TestCerts::make(&s.local.dir().join("stop-certs"), link_addresses(&name).1).unwrap();
    let mut engine = Some(TestEngine::start_with(&name, &certs.dockerd_args()).unwrap());
    let e = engine.as_ref().unwrap();
    e.import_busybox(IMAGE).unwrap();
    e.link_to_host().unwrap();
    let berth = start_berth(
        &s.local,
        "stop",
        &[
            format!(
                "[[machines]]\nname = \"local\"\nkind = \"external\"\nendpoint = \"{}\"\ndefault = true\n",
                s.local.host()
            ),
            tls_machine("going", e, &certs.dir().display().to_string()),
        ],
    )
    .unwrap();
    let via = DockerCli::new(berth.host());
    let ticker = ticker(&direct(e), "ticker", "tick");
    follow_until_cut(&via, &ticker, "tick", || drop(engine.take())); // dockerd stopped, its namespace gone
    status_until(&berth, &["going: down"]);
    ok(&via.run(&["ps"]));
    let out = via.run(&["logs", &ticker]);
    assert!(!out.success() && out.stderr.contains("\"going\""), "{out}");
}

#[test]
fn an_ssh_machine_with_dial_stdio_runs_docker_system_dial_stdio_per_connection() {
    let s = setup();
    let sshd = lock_sshd();
    let machine = format!(
        "[[machines]]\nname = \"dial\"\nkind = \"external\"\nendpoint = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\ndial_stdio = true\n",
        sshd.endpoint(),
        sshd.identity_file().display(),
        sshd.known_hosts().display(),
    );
    let berth = start_berth(&s.local, "dial", &[machine]).unwrap();
    let via = DockerCli::new(berth.host());
    let name = unique("dial");
    ok(&via.run(&["run", "-d", "--name", &name, IMAGE, "sleep", "300"]));
    assert!(direct(&s.ssh_engine).run(&["inspect", &name]).success());
    // stdin's EOF crosses ssh and dial-stdio as a half-close; the output still comes.
    let out = via.run_stdin(
        &["exec", "-i", &name, "sh", "-c", "cat; echo done"],
        b"piped\n",
    );
    assert_eq!(ok(&out), "piped\ndone");
    via.run(&["rm", "-f", &name]);
}

/// Which of the three engines has container `name`.
fn machine_of(name: &str) -> Vec<&'static str> {
    let s = setup();
    [("local", &s.local), ("tls", &s.tls), ("ssh", &s.ssh_engine)]
        .into_iter()
        .filter(|(_, e)| direct(e).run(&["container", "inspect", name]).success())
        .map(|(m, _)| m)
        .collect()
}

#[test]
fn a_create_goes_to_the_machine_that_has_what_it_needs() {
    let s = setup();
    let _sshd = lock_sshd();
    let via = DockerCli::new(s.berth_all.host());
    let net = unique("net");
    let vol = unique("vol");
    let owner = unique("owner");
    let tag = format!("{}:1", unique("only-ssh"));
    ok(&direct(&s.tls).run(&["network", "create", &net]));
    ok(&direct(&s.ssh_engine).run(&["volume", "create", &vol]));
    ok(&direct(&s.tls).run(&["create", "--name", &owner, "-v", "/shared", IMAGE, "true"]));
    ok(&direct(&s.ssh_engine).run(&["tag", IMAGE, &tag]));

    let mut made = Vec::new();
    let from_owner = format!("{owner}:ro");
    let mount = format!("{vol}:/data");
    let container_net = format!("container:{owner}");
    for (args, expected) in [
        (vec!["--network", net.as_str()], "tls"),
        (vec!["-v", mount.as_str()], "ssh"),
        (vec!["--volumes-from", from_owner.as_str()], "tls"),
        (vec!["--network", container_net.as_str()], "tls"),
        (vec![], "local"),
    ] {
        let name = unique("placed");
        let mut run = vec!["create", "--name", &name];
        run.extend(args.iter().copied());
        run.extend([IMAGE, "true"]);
        ok(&via.run(&run));
        assert_eq!(machine_of(&name), [expected], "{args:?}");
        made.push(name);
    }
    // An image only one machine has.
    let name = unique("by-image");
    ok(&via.run(&["create", "--name", &name, &tag, "true"]));
    assert_eq!(machine_of(&name), ["ssh"]);
    made.push(name);

    // Needs on two machines: a 409 that says why.
    let out = via.run(&[
        "create",
        "--network",
        &net,
        "-v",
        &format!("{vol}:/data"),
        IMAGE,
        "true",
    ]);
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("cannot place the container on one machine")
            && out.stderr.contains(&format!("network \"{net}\" is on tls"))
            && out.stderr.contains(&format!("volume \"{vol}\" is on ssh")),
        "{out}"
    );
    for name in &made {
        via.run(&["rm", "-f", name]);
    }
    via.run(&["rm", "-f", &owner]);
    direct(&s.tls).run(&["network", "rm", &net]);
    direct(&s.ssh_engine).run(&["volume", "rm", &vol]);
    direct(&s.ssh_engine).run(&["rmi", &tag]);
}

#[test]
fn spread_places_untied_containers_on_the_least_loaded_machines() {
    let s = setup();
    let _sshd = lock_sshd();
    let via = DockerCli::new(s.berth_spread.host());
    let mut used = std::collections::BTreeSet::new();
    let mut made = Vec::new();
    for _ in 0..6 {
        let name = unique("spread");
        ok(&via.run(&["run", "-d", "--name", &name, IMAGE, "sleep", "120"]));
        used.extend(machine_of(&name));
        made.push(name);
    }
    // Each went to the machine with the fewest running containers at that moment;
    // other tests' containers move the counts, but six cannot all land on one.
    assert!(used.len() >= 2, "all on {used:?}");
    for name in &made {
        via.run(&["rm", "-f", name]);
    }
}

#[test]
fn a_compose_project_lands_on_one_machine() {
    let s = setup();
    let _sshd = lock_sshd();
    let project = unique("proj").replace('-', "");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        format!(
            "version: \"3\"\nservices:\n  a:\n    image: {IMAGE}\n    command: sleep 300\n  b:\n    image: {IMAGE}\n    command: sleep 300\n    volumes: [\"data:/data\"]\n  c:\n    image: {IMAGE}\n    command: sleep 300\nvolumes:\n  data: {{}}\n"
        ),
    )
    .unwrap();
    let compose = |args: &[&str]| {
        std::process::Command::new("docker-compose")
            .args(["-p", &project])
            .args(args)
            .current_dir(dir.path())
            .env("DOCKER_HOST", s.berth_spread.host())
            .output()
            .expect("docker-compose (scripts/deps.sh installs it)")
    };
    let up = compose(&["up", "-d"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let label = format!("label=com.docker.compose.project={project}");
    let per_machine: Vec<(&str, usize)> =
        [("local", &s.local), ("tls", &s.tls), ("ssh", &s.ssh_engine)]
            .into_iter()
            .map(|(m, e)| {
                let ids = ok(&direct(e).run(&["ps", "-aq", "--filter", &label]));
                (m, ids.lines().count())
            })
            .collect();
    let down = compose(&["down", "-v"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let holding: Vec<_> = per_machine.iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(holding.len(), 1, "{per_machine:?}");
    assert_eq!(holding[0].1, 3, "{per_machine:?}");
}
