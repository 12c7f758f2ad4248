//! End to end: the access policy (issue 6) with the real docker CLI through berth to a
//! real engine. Each rule has a denied and an allowed variant; a denied create must not
//! exist on the engine afterwards (asked directly); bodies are judged whatever their
//! framing; the audit log carries the decision and rule; SIGHUP reloads (a bad file
//! keeps the old policy); a container given the Docker socket is held to the policy;
//! record mode writes a policy that allows what it saw.
//!
//! One engine for the whole binary; each test starts its own berth (fast) with its own
//! policy and state dir, and names its containers `bt-pol-<test>-…`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use berth_policy::{AccessPolicy, ClientIdentity, RequestFacts};
use berth_test::wire::{self, Response};
use berth_test::{assert_eventually, procfs, BerthProcess, CliOutput, DockerCli, TestEngine};

const IMAGE: &str = "busybox:latest";
const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn engine() -> &'static TestEngine {
    static ENGINE: OnceLock<Result<TestEngine, String>> = OnceLock::new();
    berth_test::shared(&ENGINE, || {
        let engine = TestEngine::with_busybox(&format!("bt-pol-{}", std::process::id()), IMAGE)?;
        // An image the allow-list does not name.
        let tag = DockerCli::new(engine.host()).run(&["tag", IMAGE, "bt-pol-other:1"]);
        if !tag.success() {
            return Err(format!("tagging: {tag}"));
        }
        Ok(engine)
    })
}

/// The engine, asked directly (what really exists).
fn direct() -> DockerCli {
    DockerCli::new(engine().host())
}

/// A berth in front of the shared engine enforcing `policy`, with an audit log.
struct PolicedBerth {
    berth: BerthProcess,
    dir: tempfile::TempDir,
}

impl PolicedBerth {
    fn start(policy: &str, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bt-pol-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
        let policy_path = dir.path().join("policy.toml").display().to_string();
        let state = dir.path().join("state").display().to_string();
        let audit = dir.path().join("audit.log").display().to_string();
        let mut args = vec![
            "--policy",
            &policy_path,
            "--state-dir",
            &state,
            "--audit-log",
            &audit,
        ];
        args.extend_from_slice(extra);
        let berth = BerthProcess::start(Path::new(BERTH), &engine().host(), &args)
            .unwrap_or_else(|e| panic!("starting berth: {e}"));
        Self { berth, dir }
    }

    fn cli(&self) -> DockerCli {
        assert!(
            procfs::alive(self.berth.pid()),
            "berth exited: {}",
            self.berth.stderr_log()
        );
        DockerCli::new(self.berth.host())
    }

    fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }

    fn container_socket(&self) -> PathBuf {
        self.dir.path().join("state/sockets/containers.sock")
    }
}

/// `docker create --name NAME FLAGS… IMAGE` must be refused by `rule`, and nothing of
/// it may exist on the engine.
#[track_caller]
fn assert_denied(cli: &DockerCli, name: &str, flags: &[&str], image: &str, rule: &str) {
    let mut args = vec!["create", "--name", name];
    args.extend_from_slice(flags);
    args.push(image);
    let out = cli.run(&args);
    assert!(!out.success(), "expected a refusal: {out}");
    let want = format!("berth policy: rule \"{rule}\" denies");
    assert!(out.stderr.contains(&want), "expected {want:?}: {out}");
    let inspect = direct().run(&["inspect", "--type", "container", name]);
    assert!(
        !inspect.success(),
        "a refused create reached the engine: {inspect}"
    );
}

/// `docker create --name NAME FLAGS… IMAGE` must pass; the container is removed again.
#[track_caller]
fn assert_allowed(cli: &DockerCli, name: &str, flags: &[&str], image: &str) -> CliOutput {
    let mut args = vec!["create", "--name", name];
    args.extend_from_slice(flags);
    args.push(image);
    let out = cli.run(&args);
    assert!(out.success(), "expected success: {out}");
    let inspect = direct().run(&["inspect", "--type", "container", name]);
    direct().run(&["rm", "-f", name]);
    assert!(inspect.success(), "{inspect}");
    inspect
}

const STRICT: &str = r#"
default = "allow"

[[limit]]
name = "no-privileged"
privileged = false

[[limit]]
name = "only-chown"
cap_add = ["CHOWN"]

[[limit]]
name = "no-devices"
devices = false

[[limit]]
name = "no-host-namespaces"
host_network = false
host_pid = false
host_ipc = false

[[limit]]
name = "no-unconfined"
unconfined = false

[[limit]]
name = "binds-under-srv"
bind_roots = ["/srv"]

[[limit]]
name = "busybox-only"
images = ["busybox:*"]
"#;

#[test]
fn each_body_rule_has_a_denied_and_an_allowed_variant() {
    let b = PolicedBerth::start(STRICT, &[]);
    let cli = b.cli();
    let n = |s: &str| format!("bt-pol-rules-{s}");
    assert_denied(&cli, &n("priv"), &["--privileged"], IMAGE, "no-privileged");
    assert_allowed(&cli, &n("priv-ok"), &["--privileged=false"], IMAGE);
    assert_denied(
        &cli,
        &n("cap"),
        &["--cap-add", "NET_ADMIN"],
        IMAGE,
        "only-chown",
    );
    let ok = assert_allowed(&cli, &n("cap-ok"), &["--cap-add", "CHOWN"], IMAGE);
    assert!(ok.stdout.contains("CHOWN"), "{ok}");
    assert_denied(
        &cli,
        &n("dev"),
        &["--device", "/dev/null:/dev/xnull"],
        IMAGE,
        "no-devices",
    );
    assert_allowed(&cli, &n("dev-ok"), &[], IMAGE);
    assert_denied(
        &cli,
        &n("net"),
        &["--network", "host"],
        IMAGE,
        "no-host-namespaces",
    );
    assert_allowed(&cli, &n("net-ok"), &["--network", "none"], IMAGE);
    assert_denied(
        &cli,
        &n("pid"),
        &["--pid", "host"],
        IMAGE,
        "no-host-namespaces",
    );
    assert_denied(
        &cli,
        &n("ipc"),
        &["--ipc", "host"],
        IMAGE,
        "no-host-namespaces",
    );
    assert_allowed(&cli, &n("ipc-ok"), &["--ipc", "private"], IMAGE);
    assert_denied(
        &cli,
        &n("seccomp"),
        &["--security-opt", "seccomp=unconfined"],
        IMAGE,
        "no-unconfined",
    );
    assert_allowed(
        &cli,
        &n("seccomp-ok"),
        &["--security-opt", "no-new-privileges"],
        IMAGE,
    );
    assert_denied(
        &cli,
        &n("bind"),
        &["-v", "/etc:/host-etc"],
        IMAGE,
        "binds-under-srv",
    );
    assert_denied(
        &cli,
        &n("mount"),
        &["--mount", "type=bind,source=/etc,target=/x"],
        IMAGE,
        "binds-under-srv",
    );
    let ok = assert_allowed(&cli, &n("bind-ok"), &["-v", "/srv:/data:ro"], IMAGE);
    assert!(ok.stdout.contains("/srv:/data:ro"), "{ok}");
    assert_denied(
        &cli,
        &n("dotdot"),
        &["-v", "/srv/../etc:/x"],
        IMAGE,
        "binds-under-srv",
    );
    // A symlink under the root that points out of it.
    let link = PathBuf::from(format!("/srv/bt-pol-escape-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let spec = format!("{}:/x", link.display());
    let sub = format!("{}/ssl:/x", link.display());
    let results = std::panic::catch_unwind(|| {
        assert_denied(
            &cli,
            &n("symlink"),
            &["-v", &spec],
            IMAGE,
            "binds-under-srv",
        );
        assert_denied(
            &cli,
            &n("symlink-sub"),
            &["-v", &sub],
            IMAGE,
            "binds-under-srv",
        );
    });
    let _ = std::fs::remove_file(&link);
    if let Err(e) = results {
        std::panic::resume_unwind(e);
    }
    assert_denied(&cli, &n("image"), &[], "bt-pol-other:1", "busybox-only");
    assert_allowed(&cli, &n("image-ok"), &[], IMAGE);

    // Exec create is judged too: privileged exec in an allowed container.
    let name = n("exec");
    cli.run(&["run", "-d", "--name", &name, IMAGE, "sleep", "60"])
        .ok();
    let out = cli.run(&["exec", "--privileged", &name, "true"]);
    assert!(
        out.stderr.contains("berth policy: rule \"no-privileged\""),
        "{out}"
    );
    cli.run(&["exec", &name, "true"]).ok();
    direct().run(&["rm", "-f", &name]);

    // One audit line per mutating request, with the decision and rule.
    let lines = b.audit_lines();
    let denied: Vec<_> = lines.iter().filter(|l| l["decision"] == "deny").collect();
    assert!(
        denied.iter().any(|l| l["rule"] == "no-privileged"
            && l["status"] == 403
            && l["method"] == "POST"
            && l["path"].as_str().unwrap().ends_with("/containers/create")),
        "{lines:#?}"
    );
    assert!(
        denied.iter().any(|l| l["rule"] == "binds-under-srv"),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["decision"] == "allow" && l["status"] == 201 && l.get("rule").is_none()),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| l["method"] != "GET"), "{lines:#?}");
}

#[test]
fn read_only_mode_lets_reads_through_and_nothing_else() {
    let b = PolicedBerth::start("read_only = true\ndefault = \"allow\"\n", &[]);
    let cli = b.cli();
    cli.run(&["ps", "-a"]).ok();
    cli.run(&["image", "inspect", IMAGE]).ok();
    assert_denied(&cli, "bt-pol-ro", &[], IMAGE, "read_only");
    direct()
        .run(&["create", "--name", "bt-pol-ro-rm", IMAGE])
        .ok();
    let out = cli.run(&["rm", "bt-pol-ro-rm"]);
    assert!(
        out.stderr
            .contains("berth policy: rule \"read_only\" denies DELETE"),
        "{out}"
    );
    direct().run(&["inspect", "bt-pol-ro-rm"]).ok();
    direct().run(&["rm", "-f", "bt-pol-ro-rm"]).ok();
}

#[test]
fn rules_apply_per_client_uid() {
    let policy = r#"
default = "allow"

[[rule]]
name = "nobody-reads-only"
action = "deny"
clients = ["uid:65534"]
methods = ["POST", "PUT", "DELETE"]
"#;
    let b = PolicedBerth::start(policy, &["--group", "65534"]);
    // The socket lives in a 0700 temp dir: let uid 65534 reach it.
    std::fs::set_permissions(b.berth.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "--",
            ])
            .arg(DockerCli::binary())
            .arg("-H")
            .arg(b.berth.host())
            .args(args)
            .env("HOME", home.path())
            .env("DOCKER_CONFIG", home.path())
            .env_remove("DOCKER_HOST")
            .output()
            .expect("running setpriv");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = as_nobody(&["ps", "-a"]);
    assert!(ok, "uid 65534 may read: {err}");
    let (ok, err) = as_nobody(&["create", "--name", "bt-pol-uid", IMAGE]);
    assert!(!ok);
    assert!(
        err.contains("berth policy: rule \"nobody-reads-only\" denies POST /containers/create"),
        "{err}"
    );
    assert!(!direct().run(&["inspect", "bt-pol-uid"]).success());
    // The same request as root passes.
    assert_allowed(&b.cli(), "bt-pol-uid", &[], IMAGE);
    let lines = b.audit_lines();
    assert!(
        lines.iter().any(|l| l["decision"] == "deny"
            && l["rule"] == "nobody-reads-only"
            && l["client"].as_str().unwrap().starts_with("unix:uid=65534,")),
        "{lines:#?}"
    );
}

/// A raw `POST /containers/create` with `body`, chunked (in small chunks) or with a
/// `Content-Length`.
fn raw_create(socket: &Path, name: &str, body: &[u8], chunked: bool) -> Response {
    let path = format!("/v1.41/containers/create?name={name}");
    if !chunked {
        return wire::request(
            socket,
            "POST",
            &path,
            &[("Content-Type", "application/json")],
            body,
        )
        .unwrap();
    }
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: berth-test\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(7) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let raw = wire::exchange(socket, &req, Duration::from_secs(30)).unwrap();
    Response::parse(&raw).expect("a response")
}

#[test]
fn bodies_are_judged_whatever_their_framing() {
    let policy = "default = \"allow\"\nmax_body_bytes = 4096\n\n[[limit]]\nname = \"no-privileged\"\nprivileged = false\n";
    let b = PolicedBerth::start(policy, &[]);
    let socket = b.berth.socket();
    // Keys as Go's encoding/json matches them: case-insensitively, duplicates merged.
    let evil = br#"{"Image":"busybox","hostconfig":{"Memory":0},"HostConfig":{"privileged":true}}"#;
    for chunked in [false, true] {
        let name = format!("bt-pol-frame-evil-{chunked}");
        let res = raw_create(socket, &name, evil, chunked);
        assert_eq!(res.status, 403, "chunked={chunked}: {}", res.text());
        assert!(
            res.text()
                .contains("berth policy: rule \\\"no-privileged\\\" denies privileged containers"),
            "{}",
            res.text()
        );
        assert_eq!(res.header("Content-Type"), Some("application/json"));
        assert!(!direct().run(&["inspect", &name]).success());
    }
    // The same judgment on a body the engine accepts: it arrives whole.
    let good = br#"{"Image":"busybox","Cmd":["true"],"Labels":{"framing":"held"},"HostConfig":{"Privileged":false}}"#;
    for chunked in [false, true] {
        let name = format!("bt-pol-frame-good-{chunked}");
        let res = raw_create(socket, &name, good, chunked);
        assert_eq!(res.status, 201, "chunked={chunked}: {}", res.text());
        let label = direct().run(&[
            "inspect",
            "--format",
            "{{index .Config.Labels \"framing\"}}",
            &name,
        ]);
        assert_eq!(label.ok(), "held");
        direct().run(&["rm", "-f", &name]);
    }
    // Fail closed: empty, unparsable and oversized bodies are refused (with the rule).
    let big = format!(
        "{{\"Image\":\"busybox\",\"Env\":[\"X={}\"]}}",
        "a".repeat(5000)
    );
    for (what, body) in [
        ("empty", &b""[..]),
        (
            "unparsable",
            &b"{\"Image\":\"busybox\",\"HostConfig\":{"[..],
        ),
        ("oversized", big.as_bytes()),
    ] {
        for chunked in [false, true] {
            let name = format!("bt-pol-frame-{what}-{chunked}");
            let res = raw_create(socket, &name, body, chunked);
            assert_eq!(res.status, 403, "{what} chunked={chunked}: {}", res.text());
            assert!(res.text().contains("no-privileged"), "{}", res.text());
            assert!(!direct().run(&["inspect", &name]).success());
        }
    }
}

#[test]
fn raw_hijacks_are_judged_before_splicing() {
    let policy = r#"
default = "allow"

[[rule]]
name = "no-attach"
action = "deny"
paths = ["/containers/**/attach"]
"#;
    let b = PolicedBerth::start(policy, &[]);
    let name = "bt-pol-hijack";
    direct()
        .run(&["run", "-d", "--name", name, IMAGE, "sleep", "60"])
        .ok();
    // attach without Upgrade on a fresh connection: the raw-hijack path.
    let req = format!(
        "POST /v1.41/containers/{name}/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: berth-test\r\nContent-Length: 0\r\n\r\n"
    );
    let raw = wire::exchange(b.berth.socket(), req.as_bytes(), Duration::from_secs(5)).unwrap();
    let res = Response::parse(&raw).expect("a response");
    assert_eq!(res.status, 403, "{}", res.text());
    assert!(
        res.text().contains("berth policy: rule \\\"no-attach\\\""),
        "{}",
        res.text()
    );
    assert!(res.header("X-Trace-Id").is_some());
    direct().run(&["rm", "-f", name]);
}

#[test]
fn sighup_reloads_the_policy_and_a_bad_file_keeps_the_old_one() {
    let b = PolicedBerth::start("default = \"allow\"\n", &[]);
    let cli = b.cli();
    assert_allowed(&cli, "bt-pol-hup-1", &[], IMAGE);
    let hup = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(b.berth.pid() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    };
    std::fs::write(b.policy_path(), "default = \"allow\"\nread_only = true\n").unwrap();
    hup();
    assert_eventually!(
        cli.run(&["create", "--name", "bt-pol-hup-2", IMAGE])
            .stderr
            .contains("rule \"read_only\""),
        "the reloaded policy is not in force: {}",
        b.berth.stderr_log()
    );
    std::fs::write(b.policy_path(), "default = \"allow\"\n[[rule]]\nname = 1\n").unwrap();
    hup();
    assert_eventually!(
        b.berth.stderr_log().contains("policy not reloaded"),
        "no log line for the bad policy: {}",
        b.berth.stderr_log()
    );
    assert!(
        b.berth.stderr_log().contains("name"),
        "{}",
        b.berth.stderr_log()
    );
    assert_denied(&cli, "bt-pol-hup-3", &[], IMAGE, "read_only");
}

#[test]
fn sighup_without_a_policy_does_not_stop_berth() {
    let berth = BerthProcess::start(Path::new(BERTH), &engine().host(), &[]).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(berth.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert_eventually!(
        berth.stderr_log().contains("nothing to reload"),
        "{}",
        berth.stderr_log()
    );
    DockerCli::new(berth.host()).run(&["version"]).ok();
}

#[test]
fn a_container_given_the_docker_socket_is_held_to_the_policy() {
    let policy = r#"
default = "allow"

[[rule]]
name = "containers-may-not-delete"
action = "deny"
clients = ["internal"]
methods = ["DELETE"]

[[limit]]
name = "no-privileged"
privileged = false
"#;
    let b = PolicedBerth::start(policy, &[]);
    let cli = b.cli();
    direct()
        .run(&["create", "--name", "bt-pol-sock-victim", IMAGE])
        .ok();
    // The static docker CLI inside busybox, talking to what it thinks is dockerd.
    let docker = DockerCli::binary().display().to_string();
    let script = "D='/docker -H unix:///var/run/docker.sock'; \
        $D version --format 'server={{.Server.Version}}'; \
        $D create --privileged busybox true; echo priv=$?; \
        $D rm bt-pol-sock-victim; echo rm=$?; \
        $D ps -a --format 'seen={{.Names}}' --filter name=bt-pol-sock-victim";
    let out = cli.run(&[
        "run",
        "--rm",
        "--name",
        "bt-pol-sock",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        &format!("{docker}:/docker:ro"),
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    let stdout = out.ok();
    assert!(stdout.contains("server="), "{out}");
    assert!(
        stdout.contains("priv=1") || stdout.contains("priv=125"),
        "{out}"
    );
    assert!(
        out.stderr.contains("berth policy: rule \"no-privileged\""),
        "{out}"
    );
    assert!(stdout.contains("rm=1"), "{out}");
    assert!(
        out.stderr
            .contains("berth policy: rule \"containers-may-not-delete\""),
        "{out}"
    );
    assert!(stdout.contains("seen=bt-pol-sock-victim"), "{out}");
    direct().run(&["inspect", "bt-pol-sock-victim"]).ok();
    let lines = b.audit_lines();
    assert!(
        lines
            .iter()
            .any(|l| l["client"] == "internal" && l["rule"] == "containers-may-not-delete"),
        "{lines:#?}"
    );
    // The same delete from the host is allowed.
    cli.run(&["rm", "bt-pol-sock-victim"]).ok();
    assert!(b.container_socket().exists());
}

#[test]
fn docker_socket_binds_are_rewritten_to_the_container_socket() {
    let b = PolicedBerth::start("default = \"allow\"\n", &[]);
    let cli = b.cli();
    let berth_sock = format!("{}:/b.sock", b.berth.socket().display());
    for (i, spec) in [
        "/var/run/docker.sock:/var/run/docker.sock",
        "/run/docker.sock:/d.sock:ro",
        &berth_sock,
    ]
    .iter()
    .enumerate()
    {
        let name = format!("bt-pol-rewrite-{i}");
        cli.run(&["create", "--name", &name, "-v", spec, IMAGE])
            .ok();
        let binds = direct().run(&[
            "inspect",
            "--format",
            "{{join .HostConfig.Binds \",\"}}",
            &name,
        ]);
        direct().run(&["rm", "-f", &name]);
        let target = spec.split(':').nth(1).unwrap();
        assert_eq!(
            binds.ok(),
            spec.replacen(
                spec.split(':').next().unwrap(),
                &b.container_socket().display().to_string(),
                1
            ),
            "{target}"
        );
    }
}

#[test]
fn record_mode_writes_the_policy_that_allows_what_it_saw() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recorded.toml");
    let out_arg = out.display().to_string();
    let state = dir.path().join("state").display().to_string();
    let mut berth = BerthProcess::start(
        Path::new(BERTH),
        &engine().host(),
        &["--policy-record", &out_arg, "--state-dir", &state],
    )
    .unwrap();
    let cli = DockerCli::new(berth.host());
    cli.run(&[
        "create",
        "--name",
        "bt-pol-rec",
        "--cap-add",
        "CHOWN",
        IMAGE,
    ])
    .ok();
    cli.run(&["rm", "bt-pol-rec"]).ok();
    berth.stop().unwrap();
    let text = std::fs::read_to_string(&out).expect("the recorded policy");
    let policy = AccessPolicy::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let me = ClientIdentity::Unix {
        uid: 0,
        gid: 0,
        pid: None,
    };
    let create = RequestFacts::new("POST", "/v1.41/containers/create", &me);
    let allowed = br#"{"Image":"busybox:latest","HostConfig":{"CapAdd":["CHOWN"]}}"#;
    let refused = br#"{"Image":"busybox:latest","HostConfig":{"CapAdd":["SYS_ADMIN"]}}"#;
    assert!(policy.check_body(&create, allowed).is_allow(), "{text}");
    assert!(policy.check_body(&create, refused).is_deny(), "{text}");
    let build = RequestFacts::new("POST", "/v1.41/build", &me);
    assert!(policy.check_request(&build).is_deny(), "{text}");
}

/// The `[policy]` table of an example configuration.
fn example_policy(name: &str) -> AccessPolicy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let policy = toml::to_string(table["policy"].as_table().unwrap()).unwrap();
    AccessPolicy::from_toml(&policy).unwrap()
}

#[test]
fn the_example_configurations_load_and_decide() {
    for name in ["policy-strict.toml", "policy-readonly.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name);
        let out = Command::new(BERTH)
            .args(["serve", "--check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `berth policy check` takes a policy file, or a configuration with [policy].
    let check = |path: &Path| {
        Command::new(BERTH)
            .args(["policy", "check"])
            .arg(path)
            .output()
            .unwrap()
    };
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for path in [
        "examples/policy-strict.toml",
        "examples/policy-readonly.toml",
        "crates/berth-policy/examples/bench-50-rules.toml",
    ] {
        let out = check(&examples.join(path));
        assert!(out.status.success(), "{path}: {out:?}");
    }
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "default = \"maybe\"\n").unwrap();
    let out = check(bad.path());
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1"),
        "{out:?}"
    );

    let me = ClientIdentity::Unix {
        uid: 1000,
        gid: 1000,
        pid: None,
    };
    let create = RequestFacts::new("POST", "/v1.41/containers/create", &me);
    let strict = example_policy("policy-strict.toml");
    for (body, rule) in [
        (
            &br#"{"Image":"x","HostConfig":{"Privileged":true}}"#[..],
            Some("no-privileged"),
        ),
        (
            br#"{"Image":"x","HostConfig":{"CapAdd":["ALL"]}}"#,
            Some("no-added-capabilities"),
        ),
        (
            br#"{"Image":"x","HostConfig":{"Devices":[{"PathOnHost":"/dev/sda"}]}}"#,
            Some("no-devices"),
        ),
        (
            br#"{"Image":"x","HostConfig":{"PidMode":"host"}}"#,
            Some("no-host-namespaces"),
        ),
        (
            br#"{"Image":"x","HostConfig":{"SecurityOpt":["apparmor=unconfined"]}}"#,
            Some("no-unconfined"),
        ),
        (
            br#"{"Image":"x","HostConfig":{"Binds":["/home:/h"]}}"#,
            Some("binds-under-srv"),
        ),
        (
            br#"{"Image":"x","HostConfig":{"Binds":["/srv/data:/d"]}}"#,
            None,
        ),
    ] {
        match (strict.check_body(&create, body), rule) {
            (berth_policy::Decision::Deny { rule: got, .. }, Some(want)) => assert_eq!(got, want),
            (berth_policy::Decision::Allow, None) => {}
            (other, _) => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
    let readonly = example_policy("policy-readonly.toml");
    assert!(readonly.check_request(&create).is_deny());
    let list = RequestFacts::new("GET", "/v1.41/containers/json", &me);
    assert!(readonly.check_request(&list).is_allow());
}
