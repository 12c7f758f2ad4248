//! End to end: a `kind = "vm"` machine (issue 20): dockerd in a QEMU guest with its own
//! kernel, behind berth's socket, driven by the real docker CLI.
//!
//! One VM for the whole binary (booting one is the expensive part, under TCG here), so
//! the steps run in order in one test: cold start, the everyday CLI work, kernel text
//! patched at run time, a shared host directory, published ports, machine stop/start
//! keeping data, a berth killed and its VM adopted by the next berth, the VM wedged
//! (found by the liveness check, killed and booted again), the QEMU process killed, a
//! clean shutdown with berth and the VM restored (on q35, the fallback machine type) at
//! berth's next start, idle stop and the next request starting it again, and `machine
//! rm`. Six boots in all.
//! Images are imported, never pulled.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use berth_test::ManagedBerth;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");
const MACHINE: &str = "bt-vm";
const IMAGE: &str = "bt-vm-busybox:1";

#[track_caller]
fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Polls the machine's report until `state`, for at most `within`.
fn wait_state(berth: &ManagedBerth, state: &str, within: Duration) -> serde_json::Value {
    wait_report(berth, within, &format!("machine not {state}"), |now| {
        now["state"] == state
    })
}

/// Polls the machine's report until `done` holds, for at most `within`; `what` names
/// the failure.
fn wait_report(
    berth: &ManagedBerth,
    within: Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let now = report(berth);
        if done(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what} after {within:?}: {now}\n{}",
            berth.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The guest's console and dockerd log of the current (or last) run.
fn vm_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(format!("state/machines/{MACHINE}/vm.log"))).unwrap()
}

/// The machine's report in `berth status --json`.
fn report(berth: &ManagedBerth) -> serde_json::Value {
    let status = ok(&berth.berth(&["status", "--json"]), "berth status");
    let report: serde_json::Value = serde_json::from_str(&status).unwrap();
    report["machines"][0].clone()
}

/// `docker args…` with `input` on stdin.
fn docker_with_input(berth: &ManagedBerth, args: &[&str], input: &[u8]) -> Output {
    let mut child = berth
        .docker_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// What the test volume's file holds, read by a new container.
fn read_volume(berth: &ManagedBerth, what: &str) -> String {
    ok(
        &berth.docker(&[
            "run",
            "--rm",
            "-v",
            "bt-vm-vol:/data",
            IMAGE,
            "cat",
            "/data/file",
        ]),
        what,
    )
}

/// GET `path` from 127.0.0.1:`port` (a forward berth made), polled until it answers.
fn http_get(port: u16, path: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })();
        match attempt {
            Ok(text) if text.starts_with("HTTP/1.") => return text,
            other if Instant::now() >= deadline => panic!("GET :{port}{path}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The liveness timeout of the berth that adopts the VM: short, so the wedge step is.
const LIVENESS: Duration = Duration::from_secs(10);

/// SIGSTOP the running QEMU; see the step in the test.
fn wedge_and_recover(berth: &ManagedBerth) {
    use nix::sys::signal::{kill, Signal};
    let pid = report(berth)["pid"].as_u64().unwrap();
    let qemu = nix::unistd::Pid::from_raw(pid as i32);
    kill(qemu, Signal::SIGSTOP).unwrap();
    let stopped = Instant::now();
    // A client on the wedged engine: an error within the liveness timeout (plus the
    // probes' slack), in Docker's shape and naming the machine, not a wait for ever.
    let answer = berth_test::wire::exchange(
        &berth.socket(),
        b"GET /v1.41/containers/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        LIVENESS * 4,
    )
    .unwrap();
    let waited = stopped.elapsed();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    eprintln!("a request to the wedged VM, after {waited:?}: {answer}");
    assert!(
        answer.starts_with("HTTP/1.1 503") || answer.starts_with("HTTP/1.1 504"),
        "{answer}"
    );
    assert!(
        answer.contains("{\"message\":") && answer.contains(MACHINE),
        "{answer}"
    );
    assert!(waited < LIVENESS * 3, "the request waited {waited:?}");
    // berth said so, killed the stopped QEMU and started a new one by itself.
    let back = wait_report(berth, Duration::from_secs(300), "no new VM", |now| {
        now["state"] == "running" && now["pid"].as_u64() != Some(pid)
    });
    let failure = back["last_failure"].as_str().unwrap_or_default();
    assert!(failure.contains("wedged"), "{back}");
    let table = ok(&berth.berth(&["status"]), "berth status");
    assert!(
        table.contains(&format!("{MACHINE}: last failure")) && table.contains("wedged"),
        "{table}"
    );
    assert!(berth.log().contains("engine wedged"), "{}", berth.log());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the wedged QEMU still runs"
    );
    let after = ok(
        &berth.docker(&["run", "--rm", IMAGE, "echo", "after the wedge"]),
        "docker run after the wedge",
    );
    assert_eq!(after, "after the wedge");
    eprintln!("wedge noticed and recovered in {:?}", stopped.elapsed());
}

#[test]
fn vm_machine_runs_the_docker_cli_everyday_work() {
    let began = Instant::now();
    let share = tempfile::tempdir().unwrap();
    let share_dir = share.path().to_str().unwrap().to_owned();
    let mut berth = ManagedBerth::start_kind(
        Path::new(BERTH),
        MACHINE,
        "vm",
        &format!("cpus = 2\nmemory = \"1GiB\"\ndisk_size = \"2GiB\"\nshares = [\"{share_dir}\"]\n"),
    )
    .expect("starting berth");
    let dir = berth.dir().to_owned();
    let before = report(&berth);
    assert_eq!(before["kind"], "vm");
    assert_eq!(before["state"], "stopped");

    // Cold start: the image is built, the guest boots, dockerd answers.
    let started = Instant::now();
    let kernel = ok(
        &berth.docker(&["info", "--format", "{{.KernelVersion}}"]),
        "cold docker info",
    );
    eprintln!("cold start (image build + boot): {:?}", started.elapsed());
    // The guest's own kernel (Debian's), not the host's.
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_ne!(
        kernel,
        host_kernel.trim(),
        "dockerd must run on the guest's kernel"
    );
    let running = report(&berth);
    assert_eq!(running["state"], "running");
    assert_eq!(running["vcpus"], 2);
    assert_eq!(running["memory_mib"], 1024);
    let accelerator = running["accelerator"].as_str().unwrap().to_owned();
    assert!(["kvm", "tcg"].contains(&accelerator.as_str()), "{running}");
    eprintln!(
        "accelerator: {accelerator} ({})",
        running["accelerator_note"]
    );
    let table = ok(&berth.berth(&["status"]), "berth status");
    assert!(
        table.contains(&format!(
            "vm {MACHINE}: 2 vCPUs, 1024 MiB, accelerator {accelerator}"
        )),
        "{table}"
    );
    // The API is reachable only inside the machine's namespace.
    assert!(running["endpoint"].as_str().unwrap().contains("netns"));

    let tar = berth_test::busybox_rootfs_tar(&dir).unwrap();
    ok(
        &berth.docker(&["import", tar.to_str().unwrap(), IMAGE]),
        "docker import",
    );
    let echoed = ok(
        &berth.docker(&["run", "--rm", IMAGE, "echo", "hello from the guest"]),
        "docker run --rm",
    );
    assert_eq!(echoed, "hello from the guest");

    // Kernel text patched while the guest runs (a static key flipped, as the first
    // container's memory cgroup does) with the other vCPU in the patched code: under
    // multi-threaded TCG a vCPU could keep running a stale translation, and both spun
    // at the patch site for ever. Five seconds of sched_schedstats flips beside a
    // container that forks without pause.
    ok(
        &berth.docker(&[
            "run",
            "-d",
            "--name",
            "bt-vm-busy",
            IMAGE,
            "sh",
            "-c",
            "while :; do busybox true; done",
        ]),
        "docker run -d (busy)",
    );
    let flips = ok(
        &berth.docker(&[
            "run",
            "--rm",
            "--privileged",
            IMAGE,
            "sh",
            "-c",
            "n=0; end=$(($(busybox date +%s) + 5)); while [ $(busybox date +%s) -lt $end ]; do \
             echo 1 > /proc/sys/kernel/sched_schedstats; echo 0 > /proc/sys/kernel/sched_schedstats; \
             n=$((n + 1)); done; echo $n",
        ]),
        "flipping a static key",
    );
    assert!(flips.parse::<u32>().unwrap() > 0, "{flips}");
    eprintln!("static key flips in 5 s: {flips}");
    ok(
        &berth.docker(&["rm", "-f", "bt-vm-busy"]),
        "docker rm -f (busy)",
    );

    // A shared host directory, written on each side.
    std::fs::write(share.path().join("from-host.txt"), "host wrote this\n").unwrap();
    let seen = ok(
        &berth.docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{share_dir}:/src"),
            IMAGE,
            "sh",
            "-c",
            "cat /src/from-host.txt; echo guest wrote this > /src/from-guest.txt",
        ]),
        "docker run -v <share>",
    );
    assert_eq!(seen, "host wrote this");
    assert_eq!(
        std::fs::read_to_string(share.path().join("from-guest.txt")).unwrap(),
        "guest wrote this\n"
    );
    // Outside the shares: refused by berth, naming the setting.
    let refused = berth.docker(&["run", "--rm", "-v", "/etc:/host-etc", IMAGE, "true"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("shares"), "{stderr}");

    // A published port, reachable from the host. The host port is picked here: the
    // guest's dockerd cannot know which host ports are taken (a dynamic one it picks
    // may be some host socket's ephemeral port, which berth then reports as allocated).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = free.local_addr().unwrap().port();
    drop(free);
    let publish = format!("127.0.0.1:{host_port}:8080");
    ok(
        &berth.docker(&[
            "run",
            "-d",
            "--name",
            "bt-vm-web",
            "-p",
            &publish,
            IMAGE,
            "sh",
            "-c",
            "mkdir -p /srv/www && echo served from the vm > /srv/www/index.html && exec httpd -f -p 8080 -h /srv/www",
        ]),
        "docker run -d -p",
    );
    let port_out = berth.docker(&["port", "bt-vm-web", "8080"]);
    if !port_out.status.success() {
        let ps = berth.docker(&["ps", "-a"]);
        let logs = berth.docker(&["logs", "bt-vm-web"]);
        panic!(
            "docker port: {}\nps -a: {}\nlogs: {}{}",
            String::from_utf8_lossy(&port_out.stderr),
            String::from_utf8_lossy(&ps.stdout),
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
    }
    let mapped = String::from_utf8_lossy(&port_out.stdout).trim().to_owned();
    let port: u16 = mapped.rsplit(':').next().unwrap().parse().unwrap();
    let page = http_get(port, "/index.html", Duration::from_secs(60));
    assert!(page.contains("served from the vm"), "{page}");

    // exec -i: stdin through the hijacked exec stream.
    let exec = docker_with_input(
        &berth,
        &["exec", "-i", "bt-vm-web", "sh", "-c", "tr a-z A-Z"],
        b"shout\n",
    );
    assert_eq!(ok(&exec, "docker exec -i"), "SHOUT");

    // attach: a container that waits for a line on stdin.
    ok(
        &berth.docker(&[
            "run",
            "-d",
            "-i",
            "--name",
            "bt-vm-attach",
            IMAGE,
            "sh",
            "-c",
            "read line; echo got $line",
        ]),
        "docker run -d -i",
    );
    let mut attach = berth
        .docker_command(&["attach", "bt-vm-attach"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stdin stays open: its EOF would end the attach before the answer comes back.
    let mut attach_stdin = attach.stdin.take().unwrap();
    attach_stdin.write_all(b"ping\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while attach.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(attach_stdin);
    let attached = attach.wait_with_output().unwrap();
    assert!(ok(&attached, "docker attach").contains("got ping"));

    // logs -f follows until the container ends.
    ok(
        &berth.docker(&[
            "run",
            "-d",
            "--name",
            "bt-vm-logs",
            IMAGE,
            "sh",
            "-c",
            "for i in 1 2 3; do echo line $i; sleep 0.2; done",
        ]),
        "docker run -d (logs)",
    );
    let logs = ok(
        &berth.docker(&["logs", "-f", "bt-vm-logs"]),
        "docker logs -f",
    );
    assert_eq!(logs, "line 1\nline 2\nline 3");

    // cp both ways.
    let payload = dir.join("payload.txt");
    std::fs::write(&payload, "copied in\n").unwrap();
    ok(
        &berth.docker(&["cp", payload.to_str().unwrap(), "bt-vm-web:/payload.txt"]),
        "docker cp into",
    );
    let back = dir.join("back.txt");
    ok(
        &berth.docker(&["cp", "bt-vm-web:/payload.txt", back.to_str().unwrap()]),
        "docker cp out of",
    );
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied in\n");

    // build (the classic builder: this host's CLI has no buildx plugin), and a BuildKit
    // session's upgrade answered by the guest's dockerd through berth.
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {IMAGE}\nCOPY note.txt /note.txt\nRUN echo built >> /note.txt\n"),
    )
    .unwrap();
    std::fs::write(ctx.join("note.txt"), "context\n").unwrap();
    let mut build =
        berth.docker_command(&["build", "-q", "-t", "bt-vm-built:1", ctx.to_str().unwrap()]);
    ok(
        &build
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .unwrap(),
        "docker build",
    );
    let built = ok(
        &berth.docker(&["run", "--rm", "bt-vm-built:1", "cat", "/note.txt"]),
        "run the built image",
    );
    assert_eq!(built, "context\nbuilt");
    let session = berth_test::wire::exchange(
        &berth.socket(),
        b"POST /session HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nX-Docker-Expose-Session-Uuid: bt-vm-session\r\nX-Docker-Expose-Session-Sharedkey: k\r\nX-Docker-Expose-Session-Grpc-Method: /grpc.health.v1.Health/Check\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(5),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&session);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    // dockerd's session manager dials back as the HTTP/2 client: its preface first.
    let body = &session[berth_test::wire::find(&session, b"\r\n\r\n").unwrap() + 4..];
    assert!(
        body.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        "no HTTP/2 preface: {body:?}"
    );

    // A volume with data, then machine stop/start: images and volumes are kept.
    ok(
        &berth.docker(&[
            "run",
            "--rm",
            "-v",
            "bt-vm-vol:/data",
            IMAGE,
            "sh",
            "-c",
            "echo kept > /data/file",
        ]),
        "write a volume",
    );
    ok(
        &berth.berth(&["machine", "stop", MACHINE]),
        "berth machine stop",
    );
    assert_eq!(report(&berth)["state"], "stopped");
    let log = vm_log(&dir);
    assert!(
        log.contains("berth-init: powering off"),
        "not a clean poweroff:\n{log}"
    );
    ok(
        &berth.berth(&["machine", "start", MACHINE]),
        "berth machine start",
    );
    assert_eq!(
        read_volume(&berth, "read the volume after stop/start"),
        "kept"
    );
    let images = ok(
        &berth.docker(&["images", "--format", "{{.Repository}}"]),
        "docker images",
    );
    assert!(images.contains("bt-vm-built"), "{images}");

    // berth killed: its VM keeps running, and the next berth adopts it (no boot). That
    // berth checks the engine's liveness with a short timeout (the wedge below).
    let qemu = report(&berth)["pid"].as_u64().unwrap();
    berth.kill().unwrap();
    let mut config = std::fs::read_to_string(berth.config()).unwrap();
    config.push_str(&format!("liveness_timeout = \"{}s\"\n", LIVENESS.as_secs()));
    std::fs::write(berth.config(), config).unwrap();
    berth.restart().unwrap();
    let adopted = wait_state(&berth, "running", Duration::from_secs(60));
    assert_eq!(adopted["pid"].as_u64(), Some(qemu), "{adopted}");
    assert!(
        berth
            .log()
            .contains("adopted dockerd left running by an earlier berth"),
        "{}",
        berth.log()
    );
    let images = ok(
        &berth.docker(&["images", "--format", "{{.Repository}}"]),
        "docker images through the adopted VM",
    );
    assert!(images.contains("bt-vm-built"), "{images}");

    // The VM wedged: QEMU alive but stopped, so nothing answers. berth finds it wedged
    // within its liveness_timeout, kills it and boots it again; a client that waited on
    // the wedged engine gets an error naming the machine, not a hang, and the next
    // command is served by the new VM.
    wedge_and_recover(&berth);

    // The VM process killed: the next request is served by a restarted VM.
    let pid = report(&berth)["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while report(&berth)["pid"].as_u64() == Some(pid as u64) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let again = ok(
        &berth.docker(&["run", "--rm", IMAGE, "echo", "after the kill"]),
        "docker run after the VM was killed",
    );
    assert_eq!(again, "after the kill");
    let after = report(&berth);
    assert_ne!(after["pid"].as_u64(), Some(pid as u64));
    assert_eq!(after["state"], "running");

    // berth stopped cleanly: the guest powers off (dockerd stops, the data disk is
    // unmounted). The next berth, set to q35 and a short idle_stop, restores the machine
    // at its start, before any request.
    berth.stop().unwrap();
    let log = vm_log(&dir);
    assert!(
        log.contains("berth-init: powering off"),
        "berth's stop did not power the guest off:\n{log}"
    );
    let mut config = std::fs::read_to_string(berth.config()).unwrap();
    config.push_str("machine_type = \"q35\"\nidle_stop = \"5s\"\n");
    std::fs::write(berth.config(), config).unwrap();
    berth.restart().unwrap();
    let restored = wait_state(&berth, "running", Duration::from_secs(300));
    assert_eq!(restored["machine_type"], "q35", "{restored}");
    assert_eq!(restored["accelerator"], accelerator.as_str(), "{restored}");
    let table = ok(&berth.berth(&["status"]), "berth status");
    assert!(
        table.contains("machine q35 (set by machine_type)"),
        "{table}"
    );
    assert_eq!(
        read_volume(&berth, "read the volume on q35 after the clean shutdown"),
        "kept"
    );

    // Nothing runs in it: idle_stop powers it off cleanly, and the next request starts
    // it again.
    wait_state(&berth, "stopped", Duration::from_secs(120));
    let log = vm_log(&dir);
    assert!(
        log.contains("berth-init: powering off"),
        "idle stop was not a clean poweroff:\n{log}"
    );
    let images = ok(
        &berth.docker(&["images", "--format", "{{.Repository}}"]),
        "docker images after the idle stop",
    );
    assert!(images.contains("bt-vm-built"), "{images}");
    assert_eq!(report(&berth)["state"], "running");

    // machine rm: the machine's data disk, logs and namespace are gone.
    ok(
        &berth.berth(&["machine", "rm", MACHINE]),
        "berth machine rm",
    );
    assert!(!dir.join(format!("state/machines/{MACHINE}")).exists());
    assert!(!berth.netns().exists(), "namespace left by machine rm");

    berth.stop().unwrap();
    eprintln!("vm test took {:?}", began.elapsed());
}
