//! End to end: tenants (issue 19) with the real docker CLI and docker-compose through
//! berth to one real engine. Two tenants with sockets of their own and one by uid (the
//! CLI run as that user) use the same names at the same time; each sees only its own;
//! every cross-tenant attempt gets dockerd's not-found answer and changes nothing on
//! the engine (asked directly); prune in one leaves the other's; the admin sees all;
//! `berth tenant add|ls|rm` work without a restart and `rm` leaves nothing behind.
//!
//! One engine and one berth for the whole binary; tenants are named per test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use berth_test::{BerthProcess, CliOutput, DockerCli, Fronted};

const IMAGE: &str = "busybox:latest";
const BERTH: &str = env!("CARGO_BIN_EXE_berth");
/// The uid (and gid) the "by uid" tenant's CLI runs as.
const TENANT_UID: u32 = 4242;

struct Setup {
    fronted: Fronted,
    dir: PathBuf,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();
    berth_test::shared(&SETUP, || {
        let dir = tempfile::Builder::new()
            .prefix("bt-ten-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let config = format!(
            r#"shared_images = ["{IMAGE}"]
[[tenants]]
name = "ta"
socket = "{a}"
[[tenants]]
name = "tb"
socket = "{b}"
[[tenants]]
name = "tu"
clients = ["uid:{TENANT_UID}"]
"#,
            a = dir.join("ta.sock").display(),
            b = dir.join("tb.sock").display(),
        );
        std::fs::write(dir.join("berth.toml"), config).map_err(|e| e.to_string())?;
        let config = dir.join("berth.toml").display().to_string();
        let state = dir.join("state").display().to_string();
        let group = TENANT_UID.to_string();
        let fronted = Fronted::start_with(
            Path::new(BERTH),
            &format!("bt-ten-{}", std::process::id()),
            IMAGE,
            &["--config", &config, "--state-dir", &state, "-G", &group],
        )?;
        // An image of the engine that is not shared.
        let tag = DockerCli::new(fronted.engine.host()).run(&["tag", IMAGE, "bt-ten-private:1"]);
        if !tag.success() {
            return Err(format!("tagging: {tag}"));
        }
        Ok(Setup { fronted, dir })
    })
}

fn direct() -> DockerCli {
    DockerCli::new(setup().fronted.engine.host())
}

fn admin() -> DockerCli {
    DockerCli::new(setup().fronted.berth.host())
}

fn tenant(name: &str) -> DockerCli {
    DockerCli::new(format!(
        "unix://{}",
        setup().dir.join(format!("{name}.sock")).display()
    ))
}

fn berth_cmd(args: &[&str]) -> CliOutput {
    berth_cmd_on(&setup().fronted.berth.host(), args)
}

/// `berth tenant ARGS` against the daemon serving `host`.
fn berth_cmd_on(host: &str, args: &[&str]) -> CliOutput {
    let mut all = vec!["tenant", "-H", host];
    all.extend_from_slice(args);
    CliOutput::run(Path::new(BERTH), &all)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `POST /containers/create` with `body` on `socket`: status and message.
fn create(socket: &Path, body: &str) -> (u16, String) {
    let res = berth_test::wire::request(
        socket,
        "POST",
        "/v1.41/containers/create",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .expect("create");
    let v: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_default();
    (
        res.status,
        v["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn lines(out: &CliOutput) -> Vec<String> {
    let mut v: Vec<String> = out.ok().lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// `docker events` of `cli` between two unix times, with extra arguments (filters, format).
fn events_between(cli: &DockerCli, since: &str, until: &str, args: &[&str]) -> CliOutput {
    let mut all = vec!["events", "--since", since, "--until", until];
    all.extend_from_slice(args);
    cli.run(&all)
}

/// `docker REF-OP` from `cli` on another tenant's object must fail as a missing one.
#[track_caller]
fn assert_missing(cli: &DockerCli, args: &[&str], message: &str) {
    let out = cli.run(args);
    assert!(!out.success(), "a cross-tenant attempt succeeded: {out}");
    assert!(
        out.stderr.contains(message),
        "expected dockerd's not-found {message:?}: {out}"
    );
}

#[test]
fn two_tenants_use_the_same_names_and_never_see_each_other() {
    let (a, b) = (tenant("ta"), tenant("tb"));
    let since = unix_now().to_string();
    let mut ids = Vec::new();
    for cli in [&a, &b] {
        cli.run(&["volume", "create", "data"]).ok();
        cli.run(&["network", "create", "backend"]).ok();
        let id = cli
            .run(&[
                "run",
                "-d",
                "--name",
                "web",
                "--network",
                "backend",
                "-v",
                "data:/data",
                IMAGE,
                "sh",
                "-c",
                "hostname > /data/who; sleep 300",
            ])
            .ok()
            .to_owned();
        cli.run(&["create", "--name", "idle", IMAGE, "true"]).ok();
        ids.push(id);
    }
    let (id_a, id_b) = (&ids[0], &ids[1]);
    for cli in [&a, &b] {
        assert_eq!(
            lines(&cli.run(&["ps", "-a", "--format", "{{.Names}}"])),
            ["idle", "web"]
        );
        assert_eq!(
            lines(&cli.run(&["volume", "ls", "--format", "{{.Name}}"])),
            ["data"]
        );
        assert_eq!(
            lines(&cli.run(&["network", "ls", "--format", "{{.Name}}"])),
            ["backend", "bridge"]
        );
        // Shared images only: the engine's other tag is not there.
        assert_eq!(
            lines(&cli.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"])),
            [IMAGE]
        );
        let inspect = cli.run(&[
            "inspect",
            "--format",
            "{{.Name}} {{.HostConfig.NetworkMode}}",
            "web",
        ]);
        assert_eq!(inspect.ok(), "/web backend");
        assert!(cli.run(&["system", "df"]).success());
        let info = cli.run(&["info", "--format", "{{.Containers}} {{.ContainersRunning}}"]);
        assert_eq!(info.ok(), "2 1");
    }
    // Events: the tenant's own, in its names.
    let until = (unix_now() + 1).to_string();
    for cli in [&a, &b] {
        let events = events_between(
            cli,
            &since,
            &until,
            &[
                "--filter",
                "type=container",
                "--format",
                "{{.Actor.Attributes.name}}",
            ],
        );
        let names: std::collections::BTreeSet<String> = lines(&events).into_iter().collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["idle", "web"],
            "{events}"
        );
    }
    // Each container has its own volume: the volume name is the tenant's.
    for (cli, id) in [(&a, id_a), (&b, id_b)] {
        let who = cli.run(&["exec", "web", "cat", "/data/who"]);
        assert_eq!(who.ok(), &id[..12]);
    }
    // The admin sees both worlds, under their engine names.
    let all = lines(&admin().run(&["ps", "-a", "--format", "{{.Names}}"]));
    for n in ["ta.web", "tb.web", "ta.idle", "tb.idle"] {
        assert!(all.contains(&n.to_owned()), "admin sees {all:?}");
    }

    // Every cross-tenant attempt is dockerd's not-found, by ID, short ID and name.
    for reference in [id_b.as_str(), &id_b[..12], "tb.web"] {
        let no = format!("No such container: {reference}");
        for args in [
            vec!["container", "inspect", reference],
            vec!["logs", reference],
            vec!["exec", reference, "true"],
            vec!["stop", reference],
            vec!["rm", reference],
            vec!["cp", &format!("{reference}:/etc/hostname"), "-"],
            vec!["network", "connect", "backend", reference],
        ] {
            assert_missing(&a, &args, &no);
        }
        // A create that names it, compared on the API with dockerd's own answer for
        // a missing container (the docker CLI turns a 404 into a pull).
        for field in [
            r#""VolumesFrom":["REF"]"#,
            r#""PidMode":"container:REF""#,
            r#""Links":["REF:alias"]"#,
        ] {
            let body = format!(r#"{{"Image":"{IMAGE}","HostConfig":{{{field}}}}}"#);
            let ours = create(
                &setup().dir.join("ta.sock"),
                &body.replace("REF", reference),
            );
            let theirs = create(
                setup().fronted.engine.socket(),
                &body.replace("REF", "bt-ten-missing"),
            );
            assert_eq!(
                ours.0, theirs.0,
                "{body}: ours {ours:?}, dockerd {theirs:?}"
            );
            assert_eq!(ours.1, theirs.1.replace("bt-ten-missing", reference));
        }
        // dockerd defers a container network mode to start; berth refuses at create.
        let body = format!(
            r#"{{"Image":"{IMAGE}","HostConfig":{{"NetworkMode":"container:{reference}"}}}}"#
        );
        assert_eq!(
            create(&setup().dir.join("ta.sock"), &body),
            (404, no.clone())
        );
    }
    let attach = a.run(&["attach", &id_b[..12]]);
    assert!(
        !attach.success() && attach.stderr.contains("No such container"),
        "{attach}"
    );
    // Another tenant's network and volume by their engine names and IDs.
    let net_b = direct()
        .run(&["network", "inspect", "-f", "{{.Id}}", "tb.backend"])
        .ok()
        .to_owned();
    assert_missing(&a, &["network", "inspect", &net_b], "not found");
    assert_missing(&a, &["network", "rm", "tb.backend"], "not found");
    assert_missing(&a, &["volume", "inspect", "tb.data"], "no such volume");
    // An image that is not shared is missing (another tag of the same image included).
    let ours = create(
        &setup().dir.join("ta.sock"),
        r#"{"Image":"bt-ten-private:1"}"#,
    );
    let theirs = create(
        setup().fronted.engine.socket(),
        r#"{"Image":"bt-ten-nope:1"}"#,
    );
    assert_eq!(
        ours,
        (theirs.0, theirs.1.replace("bt-ten-nope", "bt-ten-private"))
    );
    // Nothing of b changed.
    let state = direct().run(&["inspect", "-f", "{{.State.Running}}", id_b]);
    assert_eq!(state.ok(), "true");
    // Host binds are not a tenant's; what is not in the table is refused by name.
    let bind = a.run(&["run", "--rm", "-v", "/etc:/host", IMAGE, "true"]);
    assert!(
        !bind.success() && bind.stderr.contains("berth tenant \"ta\""),
        "{bind}"
    );

    // Prune in one leaves the other's.
    a.run(&["rm", "-f", "web"]).ok();
    a.run(&["container", "prune", "-f"]).ok();
    a.run(&["network", "prune", "-f"]).ok();
    a.run(&["volume", "prune", "-f"]).ok();
    assert_eq!(a.run(&["volume", "ls", "-q"]).ok(), "");
    assert_eq!(a.run(&["ps", "-aq"]).ok(), "");
    assert_eq!(
        lines(&b.run(&["ps", "-a", "--format", "{{.Names}}"])),
        ["idle", "web"]
    );
    assert_eq!(lines(&b.run(&["volume", "ls", "-q"])), ["data"]);
    assert!(direct().run(&["volume", "inspect", "tb.data"]).success());
}

#[test]
fn a_tenant_by_uid_is_the_cli_run_as_that_user() {
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(home.path(), Some(TENANT_UID), Some(TENANT_UID)).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = admin().command(args);
        cmd.env("DOCKER_CONFIG", home.path());
        std::os::unix::process::CommandExt::uid(&mut cmd, TENANT_UID);
        std::os::unix::process::CommandExt::gid(&mut cmd, TENANT_UID);
        let out = cmd.output().expect("docker as the tenant's user");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&["run", "-d", "--name", "web", IMAGE, "sleep", "300"]);
    assert!(ok, "{err}");
    let (ok, ps, err) = run(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(ok, "{err}");
    assert_eq!(ps.trim(), "web");
    assert!(direct().run(&["inspect", "tu.web"]).success());
    // root on the same socket is the admin.
    assert!(admin().run(&["inspect", "tu.web"]).success());
    let out = berth_cmd(&["rm", "tu"]);
    assert!(out.success(), "{out}");
    assert!(!direct().run(&["inspect", "tu.web"]).success());
}

#[test]
fn compose_projects_of_the_same_name_in_two_tenants() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        format!(
            "version: '3'\nservices:\n  web:\n    image: {IMAGE}\n    command: sleep 300\n    volumes: [data:/data]\n  db:\n    image: {IMAGE}\n    command: sleep 300\nvolumes:\n  data: {{}}\n"
        ),
    )
    .unwrap();
    let compose = |t: &str, args: &[&str]| {
        let out = Command::new("docker-compose")
            .current_dir(dir.path())
            .env(
                "DOCKER_HOST",
                format!("unix://{}", setup().dir.join(format!("{t}.sock")).display()),
            )
            .args(["-p", "app"])
            .args(args)
            .output()
            .expect("docker-compose");
        assert!(
            out.status.success(),
            "compose {args:?} in {t}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Fresh tenants for this test.
    for t in ["tc", "td"] {
        let sock = setup().dir.join(format!("{t}.sock"));
        let out = berth_cmd(&["add", t, "--socket", &sock.display().to_string()]);
        assert!(out.success(), "{out}");
    }
    let (tc, td) = (tenant("tc"), tenant("td"));
    std::thread::scope(|s| {
        s.spawn(|| compose("tc", &["up", "-d"]));
        s.spawn(|| compose("td", &["up", "-d"]));
    });
    for cli in [&tc, &td] {
        assert_eq!(
            lines(&cli.run(&["ps", "--format", "{{.Names}}"])),
            ["app_db_1", "app_web_1"]
        );
        // Containers reach each other by name on their project network.
        let ping = cli.run(&["exec", "app_web_1", "ping", "-c", "1", "-W", "2", "db"]);
        assert!(ping.success(), "{ping}");
    }
    let ls = berth_cmd(&["ls", "--format", "{name} {containers} {running} {volumes}"]);
    assert!(ls.ok().contains("tc 2 2 1"), "{ls}");
    compose("tc", &["down", "-v"]);
    assert_eq!(tc.run(&["ps", "-aq"]).ok(), "");
    assert_eq!(
        lines(&td.run(&["ps", "--format", "{{.Names}}"])),
        ["app_db_1", "app_web_1"]
    );
    // `berth tenant rm` leaves nothing of the tenant on the engine, and closes its socket.
    let rm = berth_cmd(&["rm", "td"]);
    assert!(rm.success(), "{rm}");
    for what in [
        vec!["ps", "-aq", "--filter", "label=berth.tenant=td"],
        vec!["network", "ls", "-q", "--filter", "label=berth.tenant=td"],
        vec!["volume", "ls", "-q", "--filter", "label=berth.tenant=td"],
    ] {
        assert_eq!(direct().run(&what).ok(), "", "{what:?}");
    }
    assert!(!td.run(&["ps"]).success());
    berth_cmd(&["rm", "tc"]);
}

#[test]
fn quotas_refuse_and_name_the_limit() {
    let sock = setup().dir.join("tq.sock");
    let add = berth_cmd(&[
        "add",
        "tq",
        "--socket",
        &sock.display().to_string(),
        "--max-containers",
        "2",
        "--max-running",
        "1",
        "--default-memory",
        "64m",
        "--max-memory",
        "128m",
        "--max-cpus",
        "1",
    ]);
    assert!(add.success(), "{add}");
    let q = tenant("tq");
    let refused = |out: &CliOutput, limit: &str| {
        assert!(!out.success(), "expected a refusal: {out}");
        assert!(
            out.stderr
                .contains(&format!("berth tenant \"tq\": quota {limit}")),
            "expected the quota {limit} named: {out}"
        );
    };
    refused(
        &q.run(&["create", "--name", "big", "-m", "256m", IMAGE, "true"]),
        "max_memory = 134217728",
    );
    assert!(
        !direct().run(&["inspect", "tq.big"]).success(),
        "a refused create stays on the engine"
    );
    refused(
        &q.run(&["create", "--name", "fast", "--cpus", "2", IMAGE, "true"]),
        "max_cpus = 1",
    );
    refused(
        &q.run(&[
            "create",
            "--name",
            "quota",
            "--cpu-quota",
            "400000",
            IMAGE,
            "true",
        ]),
        "max_cpus = 1",
    );
    assert!(!direct().run(&["inspect", "tq.quota"]).success());
    q.run(&["run", "-d", "--name", "a1", IMAGE, "sleep", "300"])
        .ok();
    let limits = direct().run(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
        "tq.a1",
    ]);
    assert_eq!(limits.ok(), "67108864 1000000000");
    // `docker update` of its own container, held to the same quotas.
    refused(
        &q.run(&["update", "-m", "256m", "a1"]),
        "max_memory = 134217728",
    );
    refused(&q.run(&["update", "--cpus", "2", "a1"]), "max_cpus = 1");
    refused(
        &q.run(&["update", "--cpu-quota", "200000", "a1"]),
        "max_cpus = 1",
    );
    q.run(&["update", "-m", "100m", "--memory-swap", "200m", "a1"])
        .ok();
    let memory = || {
        direct()
            .run(&["inspect", "-f", "{{.HostConfig.Memory}}", "tq.a1"])
            .ok()
            .trim()
            .to_owned()
    };
    assert_eq!(memory(), "104857600");
    // dockerd reads the last of keys Go folds together: what berth judges too. The same
    // body sent to dockerd directly sets 200 MiB, through the tenant it is refused.
    let folded = br#"{"Memory": 110000000, "mEMORY": 209715200, "MemorySwap": 419430400}"#;
    let engine = setup().fronted.engine.socket().to_path_buf();
    direct()
        .run(&[
            "run",
            "-d",
            "--name",
            "bt-ten-upd",
            "-m",
            "64m",
            IMAGE,
            "sleep",
            "300",
        ])
        .ok();
    let update = |socket: &Path, container: &str| {
        berth_test::wire::request(
            socket,
            "POST",
            &format!("/v1.41/containers/{container}/update"),
            &[("Content-Type", "application/json")],
            folded,
        )
        .expect("update")
    };
    assert_eq!(update(&engine, "bt-ten-upd").status, 200);
    let direct_memory = direct().run(&["inspect", "-f", "{{.HostConfig.Memory}}", "bt-ten-upd"]);
    assert_eq!(direct_memory.ok().trim(), "209715200");
    direct().run(&["rm", "-f", "bt-ten-upd"]).ok();
    let through = update(&sock, "a1");
    assert_eq!(
        through.status,
        403,
        "{}",
        String::from_utf8_lossy(&through.body)
    );
    assert_eq!(memory(), "104857600");
    // Another tenant's container is missing, by name and by ID.
    let id = direct()
        .run(&["inspect", "-f", "{{.Id}}", "tq.a1"])
        .ok()
        .trim()
        .to_owned();
    for r in ["a1", "tq.a1", id.as_str()] {
        assert_missing(
            &tenant("ta"),
            &["update", "-m", "100m", r],
            "No such container",
        );
    }
    refused(
        &q.run(&["run", "-d", "--name", "a2", IMAGE, "sleep", "300"]),
        "max_running = 1",
    );
    refused(
        &q.run(&["create", "--name", "a3", IMAGE, "true"]),
        "max_containers = 2",
    );
    assert!(berth_cmd(&["rm", "tq"]).success());
    assert_eq!(
        direct()
            .run(&["ps", "-aq", "--filter", "label=berth.tenant=tq"])
            .ok(),
        ""
    );
}

#[test]
fn untenanted_clients_can_be_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    let tenant_sock = dir.path().join("t.sock");
    let other_sock = dir.path().join("s.sock");
    // A tenant's own policy rule: `tenant:NAME` as the rule's client.
    std::fs::write(
        &config,
        format!(
            r#"untenanted = "refuse"
shared_images = ["*"]
[[tenants]]
name = "tr"
socket = "{}"
[[tenants]]
name = "ts"
socket = "{}"
[policy]
default = "allow"
[[policy.rule]]
name = "tr-makes-no-volumes"
action = "deny"
clients = ["tenant:tr"]
sections = ["volumes"]
methods = ["POST"]
"#,
            tenant_sock.display(),
            other_sock.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let berth = start_berth(&config, &state);
    let out = DockerCli::new(berth.host()).run(&["ps"]);
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("belongs to no tenant"), "{out}");
    // The tenant itself is served; `*` shares the engine's images, the one tagged only
    // on the engine too. (Not compared with the engine's whole list: other tests of this
    // binary make and remove images meanwhile.)
    let t = DockerCli::new(format!("unix://{}", tenant_sock.display()));
    let seen = lines(&t.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    for shared in [IMAGE, "bt-ten-private:1"] {
        assert!(seen.iter().any(|l| l == shared), "{shared} not in {seen:?}");
    }
    assert_eq!(t.run(&["ps", "-aq"]).ok(), "");
    let refused = t.run(&["volume", "create", "v"]);
    assert!(
        !refused.success() && refused.stderr.contains("rule \"tr-makes-no-volumes\""),
        "{refused}"
    );
    let s = DockerCli::new(format!("unix://{}", other_sock.display()));
    assert_eq!(s.run(&["volume", "create", "v"]).ok(), "v");
    s.run(&["volume", "rm", "v"]).ok();
}

/// `shared_images = ["*"]` shares the images no tenant owns: another tenant's image,
/// named or nameless, is dockerd's "No such image" by name, ID, short ID and digest, for
/// inspect, history, tag, run and a Dockerfile's `FROM`, and is not listed; the admin
/// sees it; an image of the engine stays shared. A tenant's build that changes nothing
/// (its ID is the base's) never lets its prune or `tenant rm` remove the shared base.
#[test]
fn a_star_shares_only_the_images_no_tenant_owns() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    let sock = |t: &str| dir.path().join(format!("{t}.sock"));
    std::fs::write(
        &config,
        format!(
            "shared_images = [\"*\"]\n[[tenants]]\nname = \"sa\"\nsocket = \"{}\"\n[[tenants]]\nname = \"sb\"\nsocket = \"{}\"\n",
            sock("sa").display(),
            sock("sb").display()
        ),
    )
    .unwrap();
    let berth = start_berth(&config, &dir.path().join("state"));
    let cli = |t: &str| {
        DockerCli::new(format!("unix://{}", sock(t).display())).env("DOCKER_BUILDKIT", "0")
    };
    let (a, b) = (cli("sa"), cli("sb"));
    let admin = DockerCli::new(berth.host());
    let pid = std::process::id();
    let build = |cli: &DockerCli, args: &[&str], dockerfile: String| {
        let mut all = vec!["build", "-q"];
        all.extend_from_slice(args);
        all.push("-");
        cli.run_stdin(&all, dockerfile.as_bytes()).ok().to_owned()
    };
    let named = build(
        &a,
        &["-t", "app"],
        format!("FROM {IMAGE}\nRUN echo sa {pid} > /o\n"),
    );
    let nameless = build(&a, &[], format!("FROM {IMAGE}\nRUN echo sa-x {pid} > /o\n"));
    assert!(a.run(&["image", "inspect", &nameless]).success());
    for id in [&named, &nameless] {
        let hex = id.trim_start_matches("sha256:");
        let short = &hex[..12];
        let mut refs = vec![id.as_str(), hex, short];
        let digests = [
            format!("berth.tenant/sb/app@{id}"),
            format!("berth.tenant/sa/app@{id}"),
            format!("busybox@{id}"),
        ];
        refs.extend(digests.iter().map(String::as_str));
        if id == &named {
            refs.extend(["berth.tenant/sa/app", "berth.tenant/sa/app:latest"]);
        }
        for r in refs {
            for args in [
                &["image", "inspect", r][..],
                &["history", r],
                &["tag", r, "mine"],
                &["run", "--rm", "--pull", "never", r, "true"],
            ] {
                assert_missing(&b, args, "No such image");
            }
            let from = b.run_stdin(&["build", "-q", "-"], format!("FROM {r}\n").as_bytes());
            assert!(!from.success(), "FROM {r}: {from}");
        }
        let listed = b.run(&[
            "images",
            "-a",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}",
        ]);
        assert!(!listed.ok().contains(id.as_str()), "{listed}");
        assert!(!listed.ok().contains("berth.tenant"), "{listed}");
        assert!(admin.run(&["image", "inspect", id]).success());
    }
    let seen = admin.run(&["images", "--format", "{{.Repository}}"]);
    assert!(
        seen.ok().lines().any(|l| l == "berth.tenant/sa/app"),
        "{seen}"
    );
    // An image of the engine no tenant owns stays shared, by name and by ID.
    for shared in [IMAGE, "bt-ten-private:1"] {
        let id = direct()
            .run(&["image", "inspect", "-f", "{{.Id}}", shared])
            .ok()
            .to_owned();
        for r in [shared, id.as_str()] {
            assert!(b.run(&["image", "inspect", r]).success(), "{r}");
        }
        b.run(&["run", "--rm", "--pull", "never", shared, "true"])
            .ok();
    }
    // A public image of its own (one repository: dockerd removes it by ID), built on by
    // B without a change.
    let public = format!("bt-star-pub:{pid}");
    let public_id = DockerCli::new(setup().fronted.engine.host())
        .env("DOCKER_BUILDKIT", "0")
        .run_stdin(
            &["build", "-q", "-t", &public, "-"],
            format!("FROM {IMAGE}\nRUN echo public {pid} > /o\n").as_bytes(),
        )
        .ok()
        .to_owned();
    assert_eq!(build(&b, &[], format!("FROM {public}\n")), public_id);
    b.run(&["image", "prune", "-f"]).ok();
    b.run(&["image", "prune", "-af"]).ok();
    assert!(direct().run(&["image", "inspect", &public]).success());
    for t in ["sb", "sa"] {
        let rm = berth_cmd_on(&berth.host(), &["rm", t]);
        assert!(rm.success(), "{rm}");
    }
    assert!(direct().run(&["image", "inspect", &public]).success());
    for gone in [&named, &nameless] {
        assert!(!direct().run(&["image", "inspect", gone]).success());
    }
    direct().run(&["rmi", &public]).ok();
}

/// A tenant's container list asks dockerd by the tenant's container IDs (berth keeps
/// them) with the owner label as the guard: it stays exactly the tenant's containers when
/// a `--rm` container ends, when the engine removes one behind berth's back, and a
/// container given the tenant's label on the engine shows at once when asked by name and
/// in the whole list from berth's next seed (at most 10 s).
#[test]
fn a_tenants_list_is_whole_when_asked_by_its_container_ids() {
    let sock = setup().dir.join("tl.sock");
    let add = berth_cmd(&["add", "tl", "--socket", &sock.display().to_string()]);
    assert!(add.success(), "{add}");
    let t = tenant("tl");
    let names = |args: &[&str]| {
        let mut all = vec!["ps", "-a", "--format", "{{.Names}}"];
        all.extend_from_slice(args);
        lines(&t.run(&all))
    };
    t.run(&["create", "--name", "c1", IMAGE, "true"]).ok();
    t.run(&["create", "--name", "c2", IMAGE, "true"]).ok();
    assert_eq!(names(&[]), ["c1", "c2"]);
    t.run(&["run", "--rm", "--name", "gone", IMAGE, "true"])
        .ok();
    t.run(&["run", "-d", "--name", "c3", IMAGE, "true"]).ok();
    assert_eq!(names(&[]), ["c1", "c2", "c3"]);
    direct().run(&["rm", "tl.c2"]).ok();
    assert_eq!(names(&[]), ["c1", "c3"]);
    assert_eq!(names(&["--filter", "status=created"]), ["c1"]);
    // Labelled as the tenant's on the engine, unknown to berth.
    direct()
        .run(&[
            "create",
            "--name",
            "tl.adm",
            "--label",
            "berth.tenant=tl",
            IMAGE,
            "true",
        ])
        .ok();
    assert_eq!(names(&["--filter", "name=adm"]), ["adm"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while names(&[]) != ["adm", "c1", "c3"] {
        assert!(std::time::Instant::now() < deadline, "{:?}", names(&[]));
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(berth_cmd(&["rm", "tl"]).success());
    assert_eq!(
        direct()
            .run(&["ps", "-aq", "--filter", "label=berth.tenant=tl"])
            .ok(),
        ""
    );
}

#[test]
fn containers_reach_each_other_by_the_tenants_names() {
    let sock = setup().dir.join("tn.sock");
    let add = berth_cmd(&["add", "tn", "--socket", &sock.display().to_string()]);
    assert!(add.success(), "{add}");
    let t = tenant("tn");
    t.run(&["network", "create", "backend"]).ok();
    t.run(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "backend",
        IMAGE,
        "sleep",
        "300",
    ])
    .ok();
    // On the tenant's default network too (its own bridge, not the engine's).
    t.run(&["run", "-d", "--name", "srv", IMAGE, "sleep", "300"])
        .ok();
    let ping = |args: &[&str]| {
        let out = t.run(args);
        assert!(out.success(), "{out}");
    };
    let pinger = [
        "run",
        "--rm",
        "--network",
        "backend",
        IMAGE,
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "web",
    ];
    ping(&pinger);
    ping(&["run", "--rm", IMAGE, "ping", "-c", "1", "-W", "2", "srv"]);
    // Connected later: reachable on the new network by its name.
    t.run(&["network", "connect", "backend", "srv"]).ok();
    ping(&["exec", "web", "ping", "-c", "1", "-W", "2", "srv"]);
    // The engine's DNS name stays too; the alias is the tenant's name only.
    let aliases = direct().run(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks}}",
        "tn.web",
    ]);
    assert!(aliases.ok().contains(r#""Aliases":["web""#), "{aliases}");
    assert!(berth_cmd(&["rm", "tn"]).success());
}

/// The tenant's engine names of images (`berth.tenant/<tenant>/…`), asked directly.
fn engine_images_of(tenant: &str) -> Vec<String> {
    let all = direct().run(&["images", "-a", "--format", "{{.Repository}}:{{.Tag}}"]);
    let prefix = format!("berth.tenant/{tenant}/");
    lines(&all)
        .into_iter()
        .filter(|i| i.starts_with(&prefix))
        .collect()
}

#[test]
fn images_a_tenant_builds_loads_imports_commits_and_tags_are_its_own() {
    let mut clis = Vec::new();
    for t in ["ti", "tj"] {
        let sock = setup().dir.join(format!("{t}.sock"));
        let add = berth_cmd(&["add", t, "--socket", &sock.display().to_string()]);
        assert!(add.success(), "{add}");
        // No buildx here: the classic builder (the context comes in the request body).
        clis.push(tenant(t).env("DOCKER_BUILDKIT", "0"));
    }
    let (ti, tj) = (&clis[0], &clis[1]);
    // An archive whose image is named bt-ten-tmp:1, made on the engine directly.
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("tmp.tar");
    direct().run(&["tag", IMAGE, "bt-ten-tmp:1"]).ok();
    direct()
        .run(&["save", "-o", &tar.display().to_string(), "bt-ten-tmp:1"])
        .ok();
    direct().run(&["rmi", "bt-ten-tmp:1"]).ok();
    let mut ids = Vec::new();
    for (t, cli) in [("ti", ti), ("tj", tj)] {
        let ctx = dir.path().join(t);
        std::fs::create_dir_all(&ctx).unwrap();
        let build = |dockerfile: &str, args: &[&str]| {
            std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
            let mut all = vec!["build", "-q"];
            all.extend_from_slice(args);
            all.push(ctx.to_str().unwrap());
            cli.run(&all).ok().to_owned()
        };
        // The same names in both tenants; a second build on the first by its name.
        let id = build(
            &format!("FROM {IMAGE}\nRUN echo {t} > /who\n"),
            &["-t", "app"],
        );
        build(
            "FROM app AS base\nFROM base\nRUN cat /who\n",
            &["-t", "app2"],
        );
        ids.push(id);
        assert_eq!(cli.run(&["run", "--rm", "app2", "cat", "/who"]).ok(), t);
        cli.run(&["load", "-i", &tar.display().to_string()]).ok();
        cli.run(&["tag", "app", "web:v1"]).ok();
        cli.run(&["create", "--name", "c", "app", "true"]).ok();
        cli.run(&["commit", "c", "snap:1"]).ok();
        let export = cli.run(&["export", "c"]);
        assert!(export.success(), "{export}");
        let import = cli
            .command(&["import", "-", "imp:1"])
            .stdin(std::process::Stdio::piped())
            .spawn();
        let mut import = import.unwrap();
        std::io::Write::write_all(import.stdin.as_mut().unwrap(), &export_bytes(cli, "c")).unwrap();
        drop(import.stdin.take());
        assert!(import.wait().unwrap().success());
    }
    let want = [
        "app2:latest",
        "app:latest",
        "bt-ten-tmp:1",
        IMAGE,
        "imp:1",
        "snap:1",
        "web:v1",
    ];
    for cli in [ti, tj] {
        assert_eq!(
            lines(&cli.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"])),
            want
        );
    }
    // A reference filter finds the tenant's own names and the shared ones.
    assert_eq!(
        lines(&ti.run(&["images", "--format", "{{.Repository}}:{{.Tag}}", "app"])),
        ["app:latest"]
    );
    assert_eq!(
        lines(&ti.run(&["images", "--format", "{{.Repository}}:{{.Tag}}", "busybox"])),
        [IMAGE]
    );
    // On the engine: in each tenant's repository; the archive's own name was never made.
    assert_eq!(
        engine_images_of("ti").len(),
        6,
        "{:?}",
        engine_images_of("ti")
    );
    assert!(!direct()
        .run(&["image", "inspect", "bt-ten-tmp:1"])
        .success());
    // Another tenant's image by ID, short ID and engine name is dockerd's "No such image".
    let (id_i, _) = (&ids[0], &ids[1]);
    let short = id_i.trim_start_matches("sha256:")[..12].to_owned();
    for reference in [id_i.as_str(), &short, "berth.tenant/ti/app"] {
        let no = format!("No such image: {reference}");
        for args in [
            vec!["image", "inspect", reference],
            vec!["history", reference],
            vec!["rmi", reference],
            vec!["tag", reference, "mine"],
        ] {
            assert_missing(tj, &args, &no);
        }
        let ours = create(
            &setup().dir.join("tj.sock"),
            &format!(r#"{{"Image":"{reference}"}}"#),
        );
        assert_eq!(ours.0, 404, "{ours:?}");
    }
    // A shared image's name is not a tenant's to give; a missing image in a create is
    // dockerd's answer, in the tenant's names.
    let shadow = ti.run(&["tag", "app", IMAGE]);
    assert!(
        !shadow.success() && shadow.stderr.contains("shared"),
        "{shadow}"
    );
    let ours = create(&setup().dir.join("ti.sock"), r#"{"Image":"bt-ten-nope"}"#);
    let theirs = create(
        setup().fronted.engine.socket(),
        r#"{"Image":"bt-ten-nope"}"#,
    );
    assert_eq!(ours, theirs);
    // The build cache is each tenant's own: the same steps again hit the cache in the
    // tenant that built them, not in the other one.
    let same = format!("FROM {IMAGE}\nRUN echo shared-step > /s\n");
    let first = ti.run_stdin(&["build", "-t", "cached", "-"], same.as_bytes());
    assert!(!first.ok().contains("Using cache"), "{first}");
    let again = ti.run_stdin(&["build", "-"], same.as_bytes());
    assert!(again.ok().contains("Using cache"), "{again}");
    let other = tj.run_stdin(&["build", "-"], same.as_bytes());
    assert!(!other.ok().contains("Using cache"), "{other}");
    ti.run(&["rmi", "cached"]).ok();
    tj.run(&["image", "prune", "-f"]).ok();
    // A Dockerfile naming it (or a non-shared image of the engine) finds nothing.
    for from in ["berth.tenant/ti/app", "bt-ten-private:1"] {
        let out = tj.run_stdin(&["build", "-q", "-"], format!("FROM {from}\n").as_bytes());
        assert!(!out.success(), "{out}");
    }
    assert!(direct()
        .run(&["image", "inspect", "berth.tenant/ti/app"])
        .success());
    // Remove and prune touch only the tenant's.
    ti.run(&["rm", "c"]).ok();
    ti.run(&["rmi", "web:v1", "snap:1"]).ok();
    let dangling = ti.run_stdin(
        &["build", "-q", "-"],
        b"FROM busybox:latest\nRUN echo x > /x\n",
    );
    let dangling = dangling.ok().to_owned();
    let seen = ti.run(&["image", "inspect", &dangling]);
    assert!(seen.success(), "{seen}");
    assert_missing(tj, &["image", "inspect", &dangling], "No such image");
    ti.run(&["image", "prune", "-f"]).ok();
    assert!(!direct().run(&["image", "inspect", &dangling]).success());
    // (bt-ten-tmp:1 is busybox: other tests' containers use it, so a prune keeps it.)
    ti.run(&["rmi", "bt-ten-tmp:1"]).ok();
    ti.run(&["image", "prune", "-af"]).ok();
    assert_eq!(
        lines(&ti.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"])),
        [IMAGE]
    );
    assert_eq!(
        lines(&tj.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"])),
        want
    );
    assert!(direct().run(&["image", "inspect", IMAGE]).success());
    // `berth tenant rm` takes every image of the tenant, and only its.
    let ls = berth_cmd(&["ls", "--format", "{name} {images}"]);
    // Images, not names: app and web:v1 are one.
    assert!(ls.ok().contains("tj 5"), "{ls}");
    assert!(berth_cmd(&["rm", "tj"]).success());
    assert_eq!(engine_images_of("tj"), Vec::<String>::new());
    assert!(!direct().run(&["image", "inspect", &ids[1]]).success());
    assert!(berth_cmd(&["rm", "ti"]).success());
}

/// A berth on the shared engine with `config` and its own state directory.
fn start_berth(config: &Path, state: &Path) -> BerthProcess {
    BerthProcess::start(
        Path::new(BERTH),
        &setup().fronted.engine.host(),
        &[
            "--config",
            &config.display().to_string(),
            "--state-dir",
            &state.display().to_string(),
        ],
    )
    .unwrap()
}

fn export_bytes(cli: &DockerCli, container: &str) -> Vec<u8> {
    let out = cli.command(&["export", container]).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn tenants_added_at_run_time_outlive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, format!("shared_images = [\"{IMAGE}\"]\n")).unwrap();
    let state = dir.path().join("state");
    let sock = dir.path().join("tp.sock");
    let start = || start_berth(&config, &state);
    let mut berth = start();
    let add = berth_cmd_on(
        &berth.host(),
        &["add", "tp", "--socket", &sock.display().to_string()],
    );
    assert!(add.success(), "{add}");
    let tp = DockerCli::new(format!("unix://{}", sock.display())).env("DOCKER_BUILDKIT", "0");
    tp.run(&["create", "--name", "keep", IMAGE, "true"]).ok();
    // A nameless image the tenant made is its by ID, kept in the state directory.
    let id = tp
        .run_stdin(
            &["build", "-q", "-"],
            b"FROM busybox:latest\nRUN echo tp > /tp\n",
        )
        .ok()
        .to_owned();
    berth.stop().unwrap();
    let mut berth = start();
    assert_eq!(tp.run(&["ps", "-a", "--format", "{{.Names}}"]).ok(), "keep");
    assert!(tp.run(&["image", "inspect", &id]).success());
    let ls = berth_cmd_on(
        &berth.host(),
        &["ls", "--format", "{name} {containers} {images}"],
    );
    assert_eq!(ls.ok(), "tp 1 1");
    let rm = berth_cmd_on(&berth.host(), &["rm", "tp"]);
    assert!(rm.success(), "{rm}");
    assert!(!direct().run(&["image", "inspect", &id]).success());
    assert!(!direct().run(&["inspect", "tp.keep"]).success());
    // Removed is removed for good.
    berth.stop().unwrap();
    let berth = start();
    assert_eq!(
        berth_cmd_on(&berth.host(), &["ls", "--format", "{name}"]).ok(),
        ""
    );
    assert!(!tp.run(&["ps"]).success());
}

/// A tenant's `docker pull` from a real registry (Debian's docker-registry in the
/// engine's namespace, the image pushed there directly, not through berth): the image
/// is the tenant's under the name it pulled (images, inspect, run), another tenant's
/// is not, two tenants pulling the same reference at once both get it, an engine name
/// the admin has is never moved, a shared name is not pulled for a tenant, and nothing
/// is left under the registry's names on the engine; `berth tenant rm` removes it.
#[test]
fn a_tenants_pull_is_its_own_and_names_nothing_on_the_engine() {
    let since = unix_now().to_string();
    let engine = &setup().fronted.engine;
    let _registry = berth_test::TestRegistry::start(engine).expect("registry");
    let d = direct();
    let remote = |tag: &str| format!("{}/bt/pulled:{tag}", berth_test::REGISTRY_ADDR);
    // An image the engine does not have, in the registry as :1, :2 and :3.
    d.run(&[
        "run",
        "--name",
        "bt-ten-pushed",
        IMAGE,
        "sh",
        "-c",
        "echo pulled > /pulled",
    ])
    .ok();
    d.run(&["commit", "bt-ten-pushed", &remote("1")]).ok();
    d.run(&["rm", "bt-ten-pushed"]).ok();
    let pushed = d
        .run(&["image", "inspect", "-f", "{{.Id}}", &remote("1")])
        .ok()
        .trim()
        .to_owned();
    for t in ["2", "3"] {
        d.run(&["tag", &remote("1"), &remote(t)]).ok();
    }
    for t in ["1", "2", "3"] {
        d.run(&["push", &remote(t)]).ok();
        d.run(&["rmi", &remote(t)]).ok();
    }
    assert!(!d.run(&["image", "inspect", &pushed]).success());
    // The admin's own :3 on the engine: another image.
    d.run(&["tag", IMAGE, &remote("3")]).ok();
    let busybox = d
        .run(&["image", "inspect", "-f", "{{.Id}}", IMAGE])
        .ok()
        .trim()
        .to_owned();
    for t in ["pa", "pb"] {
        let sock = setup().dir.join(format!("{t}.sock"));
        let add = berth_cmd(&["add", t, "--socket", &sock.display().to_string()]);
        assert!(add.success(), "{add}");
    }
    let (pa, pb) = (tenant("pa"), tenant("pb"));
    let id_in = |cli: &DockerCli, r: &str| {
        cli.run(&["image", "inspect", "-f", "{{.Id}}", r])
            .ok()
            .trim()
            .to_owned()
    };
    // Two tenants pull the same reference at once.
    std::thread::scope(|s| {
        let pulls = [&pa, &pb].map(|cli| s.spawn(|| cli.run(&["pull", &remote("1")])));
        for pull in pulls {
            let out = pull.join().unwrap();
            assert!(
                out.ok().contains(&format!("image for {}", remote("1"))),
                "{out}"
            );
            assert!(
                !out.stdout.contains("berth.tenant") && !out.stdout.contains("@sha256"),
                "{out}"
            );
        }
    });
    for cli in [&pa, &pb] {
        assert_eq!(id_in(cli, &remote("1")), pushed);
        let images = cli.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(lines(&images).contains(&remote("1")), "{images}");
        let run = cli.run(&["run", "--rm", &remote("1"), "cat", "/pulled"]);
        assert_eq!(run.ok().trim(), "pulled");
    }
    // `docker run` pulls what is missing; the other tenant does not see it.
    let run = pb.run(&["run", "--rm", &remote("2"), "cat", "/pulled"]);
    assert_eq!(run.ok().trim(), "pulled", "{run}");
    assert_missing(&pa, &["image", "inspect", &remote("2")], "No such image");
    // The admin's :3 stays the admin's; the tenant's :3 is the registry's.
    pa.run(&["pull", &remote("3")]).ok();
    assert_eq!(id_in(&pa, &remote("3")), pushed);
    assert_eq!(id_in(&d, &remote("3")), busybox);
    // A shared name is the admin's to pull: the tenant keeps using it.
    let shared = pa.run(&["pull", IMAGE]);
    assert!(shared.ok().contains("shared image"), "{shared}");
    assert_eq!(id_in(&d, IMAGE), busybox);
    // What dockerd refuses, refused; digests and every tag refused by berth.
    let missing = pa.run(&["pull", &remote("nope")]);
    assert!(
        !missing.success() && !missing.stderr.contains("berth.tenant"),
        "{missing}"
    );
    let digest = pa.run(&[
        "pull",
        &format!(
            "{}/bt/pulled@sha256:{}",
            berth_test::REGISTRY_ADDR,
            "0".repeat(64)
        ),
    ]);
    assert!(digest.stderr.contains("by digest"), "{digest}");
    // Nothing under the registry's names on the engine but the admin's :3.
    let named = d.run(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}}:{{.Tag}}@{{.Digest}}",
    ]);
    let registry_names: Vec<String> = lines(&named)
        .into_iter()
        .filter(|l| l.starts_with(berth_test::REGISTRY_ADDR))
        .collect();
    assert_eq!(
        registry_names,
        [format!("{}@<none>", remote("3"))],
        "{named}"
    );
    // Its image events: its own pulls and tags in its names; nothing named of the other
    // tenant's (pb's :2, pb's `mine:1`) nor of the admin's (its :2 and :3 tags).
    for cli in [&pa, &pb] {
        cli.run(&["tag", IMAGE, "mine:1"]).ok();
    }
    let until = (unix_now() + 1).to_string();
    let format = "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.ID}}";
    let events = events_between(
        &pa,
        &since,
        &until,
        &["--filter", "type=image", "--format", format],
    );
    let events = lines(&events);
    let count = |start: String| events.iter().filter(|e| e.starts_with(&start)).count();
    for tag in ["1", "3"] {
        let pull = format!(
            "pull {}/bt/pulled {}",
            berth_test::REGISTRY_ADDR,
            remote(tag)
        );
        assert_eq!(count(pull), 1, "{events:?}");
        assert_eq!(
            count(format!("tag {} sha256:", remote(tag))),
            1,
            "{events:?}"
        );
    }
    assert_eq!(count("tag mine:1 sha256:".into()), 1, "{events:?}");
    for e in &events {
        let action = e.split(' ').next().unwrap_or_default();
        assert!(
            ["pull", "tag", "untag", "delete"].contains(&action)
                && !e.contains("berth.tenant")
                && !e.contains("pulled:2")
                && !e.contains('@'),
            "{events:?}"
        );
    }
    // An `image` filter names the tenant's images as it does.
    let format = "{{.Action}} {{.Actor.Attributes.name}}";
    let mine = events_between(
        &pa,
        &since,
        &until,
        &["--filter", "image=mine", "--format", format],
    );
    assert_eq!(lines(&mine), ["tag mine:1"]);
    // The container events stay in the same stream.
    let both = lines(&events_between(
        &pa,
        &since,
        &until,
        &["--format", "{{.Type}}"],
    ));
    assert!(
        both.contains(&"container".to_owned()) && both.contains(&"image".to_owned()),
        "{both:?}"
    );
    // `docker save` of its own and shared images, in its names; another's is missing.
    let saved = setup().dir.join("pb-save.tar");
    pb.run(&[
        "save",
        "-o",
        &saved.display().to_string(),
        &remote("1"),
        "mine:1",
        IMAGE,
    ])
    .ok();
    let manifest = Command::new("tar")
        .arg("-xOf")
        .arg(&saved)
        .arg("manifest.json")
        .output()
        .unwrap();
    let manifest = String::from_utf8_lossy(&manifest.stdout);
    for name in [remote("1"), "mine:1".into(), IMAGE.into()] {
        assert!(manifest.contains(&format!("\"{name}\"")), "{manifest}");
    }
    assert!(!manifest.contains("berth.tenant"), "{manifest}");
    let _ = std::fs::remove_file(&saved);
    assert_missing(
        &pa,
        &["save", "-o", &saved.display().to_string(), &remote("2")],
        "No such image",
    );
    // rmi in one tenant leaves the other's; `tenant rm` leaves nothing pulled.
    pa.run(&["rmi", &remote("1")]).ok();
    assert_missing(&pa, &["image", "inspect", &remote("1")], "No such image");
    assert_eq!(id_in(&pb, &remote("1")), pushed);
    for t in ["pa", "pb"] {
        assert!(berth_cmd(&["rm", t]).success());
    }
    assert!(!d.run(&["image", "inspect", &pushed]).success());
    d.run(&["rmi", &remote("3")]).ok();
}
