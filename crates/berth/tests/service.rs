//! berth as a service, without systemd: its listener handed over the way systemd hands
//! it (`systemd-socket-activate` binds the socket, waits for the first client and execs
//! berth with `LISTEN_FDS`), readiness and stop reported on a `NOTIFY_SOCKET` the test
//! listens on, the Prometheus endpoint counting what the docker CLI did through it, the
//! JSON outputs against the tables, JSON log lines, and the units `berth install` writes.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use berth_test::{assert_eventually, ManagedBerth};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");
const MACHINE: &str = "bt-svc";

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `berth ARGS --config CONFIG` (the daemon's own binary, not the launcher).
fn berth(config: &Path, args: &[&str]) -> Output {
    Command::new(BERTH)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("running berth")
}

/// Reads notification datagrams until one contains `what`; returns it.
fn notified(socket: &UnixDatagram, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.lines().any(|l| l == what || l.starts_with(what)) {
                return text;
            }
            seen.push(text);
        }
    }
    panic!("no notification {what:?} within 60 s; got {seen:?}");
}

/// The launcher `ManagedBerth` runs as `<it> serve --config CONFIG`: it hands berth its
/// API socket the way a socket unit would, with a notification socket, a policy, a
/// metrics address the kernel picks, and JSON logs.
fn launcher(dir: &Path, notify: &Path, policy: &Path) -> PathBuf {
    let script = dir.join("launch.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ndir=$(dirname \"$3\")\nrm -f \"$dir/docker.sock\"\nexec systemd-socket-activate -l \"$dir/docker.sock\" --fdname=api -E NOTIFY_SOCKET={} {BERTH} \"$@\" -H fd://api --metrics-addr 127.0.0.1:0 --policy {} --log-format json\n",
            notify.display(),
            policy.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

/// The value of one series in a scrape (0 if absent).
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn scrape(addr: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://{addr}/metrics")])
        .output()
        .expect("curl");
    ok(&out, "scraping /metrics")
}

fn series(name: &str, kind: &str) -> String {
    format!("berth_{name}{{machine=\"{MACHINE}\",kind=\"{kind}\"}}")
}

fn requests(kind: &str, class: &str) -> String {
    format!(
        "berth_requests_total{{machine=\"{MACHINE}\",kind=\"{kind}\",status_class=\"{class}\"}}"
    )
}

#[test]
fn a_socket_activated_berth_reports_readiness_metrics_and_status() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (managed machine)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let notify_path = work.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        "default = \"allow\"\n\n[[limit]]\nname = \"no-privileged\"\nprivileged = false\n",
    )
    .unwrap();
    let launch = launcher(work.path(), &notify_path, &policy);
    let daemon = ManagedBerth::start(&launch, MACHINE, "").expect("starting berth");
    let config = daemon.config();

    let ready = notified(&notify, "READY=1");
    assert!(
        ready.contains(&format!(
            "STATUS=serving the Docker API on {}",
            daemon.host()
        )),
        "{ready}"
    );

    // Status: JSON, table and template carry the same facts.
    let status: serde_json::Value = serde_json::from_str(&ok(
        &berth(&config, &["status", "--format", "json"]),
        "status",
    ))
    .unwrap();
    assert_eq!(
        status["listeners"],
        serde_json::json!([daemon.host()]),
        "{status}"
    );
    let metrics_addr = status["metrics_addr"]
        .as_str()
        .expect("metrics_addr")
        .to_owned();
    let machine = &status["machines"][0];
    assert_eq!(machine["name"], MACHINE);
    let table = ok(&berth(&config, &["status"]), "status table");
    assert!(
        table.contains(&format!("listening on {}", daemon.host())),
        "{table}"
    );
    assert!(
        table.contains(&format!("metrics on http://{metrics_addr}/metrics")),
        "{table}"
    );
    let ls = ok(&berth(&config, &["machine", "ls"]), "machine ls");
    let header: Vec<&str> = ls.lines().next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = ls.lines().nth(1).unwrap().split_whitespace().collect();
    let ls_json: serde_json::Value = serde_json::from_str(&ok(
        &berth(&config, &["machine", "ls", "--format", "json"]),
        "ls json",
    ))
    .unwrap();
    assert_eq!(header.len(), row.len(), "{ls}");
    assert_eq!(&header[..3], ["NAME", "KIND", "STATE"], "{ls}");
    for (column, cell) in header.iter().zip(&row) {
        // Each column is the field of its name, printed as it is in JSON.
        let field = column.to_ascii_lowercase();
        let value = &ls_json[0][&field];
        let printed = match value {
            serde_json::Value::Null => "-".to_owned(),
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        if !field.ends_with("_secs") {
            assert_eq!(*cell, printed, "{field}: {ls}");
            assert_eq!(*value, machine[&field], "{field}: status and machine ls");
        }
    }
    let line = ok(
        &berth(&config, &["machine", "ls", "--format", "{name}\\t{kind}"]),
        "ls template",
    );
    assert_eq!(line, format!("{MACHINE}\tmanaged\n"));

    // Drive the docker CLI through it.
    let tar = berth_test::busybox_rootfs_tar(work.path()).unwrap();
    let tar_len = std::fs::metadata(&tar).unwrap().len() as f64;
    ok(
        &daemon.docker(&["import", tar.to_str().unwrap(), "bt-busybox:1"]),
        "docker import",
    );
    ok(&daemon.docker(&["version"]), "docker version");
    ok(
        &daemon.docker(&[
            "run",
            "-d",
            "--name",
            "bt-svc-c",
            "-p",
            "127.0.0.1::8080",
            "bt-busybox:1",
            "sleep",
            "300",
        ]),
        "docker run -d",
    );
    ok(
        &daemon.docker(&[
            "run",
            "-d",
            "--name",
            "bt-svc-log",
            "bt-busybox:1",
            "sh",
            "-c",
            "echo hello; sleep 1; echo bye",
        ]),
        "docker run (logs)",
    );
    let logs = ok(
        &daemon.docker(&["logs", "-f", "bt-svc-log"]),
        "docker logs -f",
    );
    assert_eq!(logs, "hello\nbye\n");
    let tty = Command::new("timeout")
        .args([
            "60",
            "script",
            "-qec",
            &format!(
                "docker -H {} exec -it bt-svc-c sh -c 'echo tty-ok'",
                daemon.host()
            ),
            "/dev/null",
        ])
        .output()
        .expect("script(1)");
    assert!(
        String::from_utf8_lossy(&tty.stdout).contains("tty-ok"),
        "exec -it: {tty:?}"
    );
    let refused = daemon.docker(&["run", "--rm", "--privileged", "bt-busybox:1", "true"]);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("no-privileged"),
        "{refused:?}"
    );
    let before = scrape(&metrics_addr);
    let machine_series = |name: &str| format!("berth_{name}{{machine=\"{MACHINE}\"}}");
    let started_before = value(
        &before,
        &machine_series("machine_generation_start_time_seconds"),
    );
    assert!(started_before > 0.0, "{before}");
    assert_eq!(
        value(&before, &machine_series("port_forwards_open")),
        1.0,
        "{before}"
    );
    ok(
        &berth(&config, &["machine", "restart", MACHINE]),
        "machine restart",
    );
    ok(&daemon.docker(&["ps"]), "docker ps after the restart");

    // The counters moved as they should.
    let text = scrape(&metrics_addr);
    assert!(value(&text, &requests("ordinary", "2xx")) >= 5.0, "{text}");
    assert!(
        value(&text, &requests("stream", "2xx")) >= 2.0,
        "import and logs -f: {text}"
    );
    assert!(
        value(&text, &requests("upgrade", "1xx")) >= 1.0,
        "exec -it: {text}"
    );
    assert!(
        value(&text, &series("received_bytes_total", "stream")) >= tar_len,
        "{text}"
    );
    assert!(
        value(&text, &series("sent_bytes_total", "stream")) >= 10.0,
        "logs: {text}"
    );
    assert!(
        value(&text, &series("sent_bytes_total", "upgrade")) >= 6.0,
        "tty-ok: {text}"
    );
    assert!(
        value(&text, &series("sent_bytes_total", "ordinary")) > 0.0,
        "{text}"
    );
    assert!(
        value(
            &text,
            "berth_policy_decisions_total{decision=\"deny\",rule=\"no-privileged\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(
        value(
            &text,
            "berth_policy_decisions_total{decision=\"allow\",rule=\"\"}"
        ) >= 5.0,
        "{text}"
    );
    assert!(
        value(&text, &machine_series("machine_restarts_total")) >= 1.0,
        "{text}"
    );
    assert!(
        value(
            &text,
            &machine_series("machine_generation_start_time_seconds")
        ) > started_before,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("berth_machine_state{{machine=\"{MACHINE}\",state=\"running\"}}")
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, &machine_series("readiness_failures_total")),
        0.0,
        "{text}"
    );
    // Every exchange is over: each counted once, each observed once, none open.
    assert_eventually!(within = Duration::from_secs(10), {
        let text = scrape(&metrics_addr);
        ["ordinary", "stream", "hijack", "upgrade"]
            .iter()
            .all(|kind| {
                let answered: f64 = ["1xx", "2xx", "3xx", "4xx", "5xx"]
                    .iter()
                    .map(|c| value(&text, &requests(kind, c)))
                    .sum();
                value(&text, &series("open_sessions", kind)) == 0.0
                    && value(&text, &series("request_duration_seconds_count", kind)) == answered
            })
    });

    // The forward went with its container at the restart (no restart policy); a new one
    // counts.
    ok(
        &daemon.docker(&[
            "run",
            "-d",
            "--name",
            "bt-svc-p",
            "-p",
            "127.0.0.1::8080",
            "bt-busybox:1",
            "sleep",
            "300",
        ]),
        "docker run -p",
    );
    assert_eventually!(within = Duration::from_secs(10), {
        value(
            &scrape(&metrics_addr),
            &machine_series("port_forwards_open"),
        ) == 1.0
    });

    // JSON logs: one object per line; the refusal names its trace id.
    let log = daemon.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .skip_while(|l| !l.starts_with("Execing"))
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "berth refused"
            && l["trace_id"].as_str().is_some_and(|t| t.len() == 16)),
        "{log}"
    );

    let mut daemon = daemon;
    daemon.stop().unwrap();
    notified(&notify, "STOPPING=1");
    assert!(
        daemon.socket().exists(),
        "the handed-over socket's file belongs to its owner and stays"
    );
}

#[test]
fn install_writes_units_for_the_configuration_and_says_when_systemd_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    let socket = dir.path().join("api.sock");
    std::fs::write(
        &config,
        format!("hosts = [\"unix://{}\"]\ngroup = \"0\"\n", socket.display()),
    )
    .unwrap();
    let printed = ok(
        &Command::new(BERTH)
            .args(["install", "--print", "--config"])
            .arg(&config)
            .output()
            .unwrap(),
        "install --print",
    );
    assert!(
        printed.contains(&format!("\nListenStream={}\n", socket.display())),
        "{printed}"
    );
    assert!(printed.contains("\nSocketGroup=0\n"), "{printed}");
    assert!(
        printed.contains(&format!(
            "\nExecStart={BERTH} serve --config {} -H fd://\n",
            config.display()
        )),
        "{printed}"
    );
    assert!(printed.contains("\nType=notify\n"), "{printed}");

    let systemd = Path::new("/run/systemd/system").is_dir();
    if !systemd {
        let out = Command::new(BERTH)
            .args(["install", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("systemd is not running"),
            "{out:?}"
        );
        let units = dir.path().join("units");
        let out = ok(
            &Command::new(BERTH)
                .args(["install", "--config"])
                .arg(&config)
                .arg("--unit-dir")
                .arg(&units)
                .output()
                .unwrap(),
            "install --unit-dir",
        );
        assert!(out.contains("not enabled or started"), "{out}");
        let written = std::fs::read_to_string(units.join("berth.service")).unwrap();
        assert!(printed.contains(&written), "{written}");
        assert!(units.join("berth.socket").exists());
        let out = ok(
            &Command::new(BERTH)
                .args(["uninstall", "--unit-dir"])
                .arg(&units)
                .output()
                .unwrap(),
            "uninstall",
        );
        assert!(out.contains("systemd is not running"), "{out}");
        assert!(!units.join("berth.service").exists() && !units.join("berth.socket").exists());
    }
}
