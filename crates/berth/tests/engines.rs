//! Several engines behind one berth socket: creation routed by platform, everything
//! else by owner, lists/events/prune merged, ambiguity refused. Two real dockerd
//! engines ("amd", the default, serving linux/amd64, and "arm" serving linux/arm64),
//! each checked directly to see where things landed.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_test::{assert_eventually, BerthProcess, CliOutput, DockerCli, TestEngine};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");
const IMAGE: &str = "busybox:latest";

struct Setup {
    amd: TestEngine,
    arm: TestEngine,
    berth: BerthProcess,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();
    berth_test::shared(&SETUP, || {
        let pid = std::process::id();
        let amd = TestEngine::with_busybox(&format!("bt-me-a{pid}"), IMAGE)?;
        let arm = TestEngine::with_busybox(&format!("bt-me-b{pid}"), IMAGE)?;
        relabel_arm64(&arm)?;
        let berth = start_berth(&amd, &arm, "main")?;
        Ok(Setup { amd, arm, berth })
    })
}

/// Makes the arm engine's busybox say linux/arm64 (its binary still runs here):
/// dockerd 20.10's `import --platform` records the host's architecture, so the saved
/// image's config is edited and loaded back under its new digest.
fn relabel_arm64(engine: &TestEngine) -> Result<(), String> {
    let script = r#"set -e
d=$(mktemp -d)
docker save "$IMAGE" | tar -C "$d" -xf -
cd "$d"
cfg=$(sed 's/.*"Config":"\([^"]*\)".*/\1/' manifest.json)
sed -i 's/"architecture":"[a-z0-9]*"/"architecture":"arm64"/' "$cfg"
new=$(sha256sum "$cfg" | cut -d' ' -f1).json
mv "$cfg" "$new"
sed -i "s/$cfg/$new/" manifest.json
rm -f repositories
docker rmi "$IMAGE" >/dev/null
tar -cf - . | docker load -q
rm -rf "$d"
"#;
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .env("DOCKER_HOST", engine.host())
        .env("IMAGE", IMAGE)
        .env(
            "PATH",
            format!(
                "/usr/local/bin:{}",
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .map_err(|e| e.to_string())?;
    let arch = DockerCli::new(engine.host()).run(&[
        "image",
        "inspect",
        "--format",
        "{{.Architecture}}",
        IMAGE,
    ]);
    if !out.status.success() || arch.stdout.trim() != "arm64" {
        return Err(format!(
            "relabelling busybox as arm64: {}\n{}\n{arch}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A berth over both engines, from a config file in its own directory.
fn start_berth(amd: &TestEngine, arm: &TestEngine, tag: &str) -> Result<BerthProcess, String> {
    // Inside the engine's directory, which its watchdog removes when the tests end.
    BerthProcess::start_config(
        Path::new(BERTH),
        &amd.dir().join(format!("berth-{tag}")),
        &format!(
            r#"
[[machines]]
name = "arm"
kind = "external"
endpoint = "unix://{arm}"
platforms = ["linux/arm64"]

[[machines]]
name = "amd"
kind = "external"
endpoint = "unix://{amd}"
platforms = ["linux/amd64", "linux/386"]
default = true
"#,
            arm = arm.socket().display(),
            amd = amd.socket().display(),
        ),
    )
    .map_err(|e| format!("starting berth: {e}"))
}

fn via() -> DockerCli {
    DockerCli::new(setup().berth.host())
}

fn amd() -> DockerCli {
    DockerCli::new(setup().amd.host())
}

fn arm() -> DockerCli {
    DockerCli::new(setup().arm.host())
}

/// A name unique to this test run.
fn unique(what: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("me-{what}-{}-{n}", std::process::id())
}

fn exists(cli: &DockerCli, kind: &str, name: &str) -> bool {
    cli.run(&[kind, "inspect", name]).success()
}

#[track_caller]
fn fails_with(out: &CliOutput, needle: &str) {
    assert!(!out.success(), "expected a failure: {out}");
    assert!(
        out.stderr.contains(needle),
        "expected {needle:?} in stderr: {out}"
    );
}

#[test]
fn containers_are_created_on_the_machine_serving_their_platform() {
    let arm_name = unique("arm");
    let amd_name = unique("amd");
    let plain = unique("plain");
    via()
        .run(&[
            "create",
            "--platform",
            "linux/arm64",
            "--name",
            &arm_name,
            IMAGE,
            "true",
        ])
        .ok();
    via()
        .run(&[
            "create",
            "--platform",
            "linux/amd64",
            "--name",
            &amd_name,
            IMAGE,
            "true",
        ])
        .ok();
    via().run(&["create", "--name", &plain, IMAGE, "true"]).ok();
    assert!(exists(&arm(), "container", &arm_name));
    assert!(!exists(&amd(), "container", &arm_name));
    assert!(exists(&amd(), "container", &amd_name));
    assert!(!exists(&arm(), "container", &amd_name));
    assert!(
        exists(&amd(), "container", &plain),
        "no platform → the default machine"
    );

    let out = via().run(&["create", "--platform", "linux/s390x", IMAGE, "true"]);
    fails_with(&out, "no machine serves platform linux/s390x");

    for name in [&arm_name, &amd_name, &plain] {
        via().run(&["rm", name]).ok();
    }
    assert!(!exists(&arm(), "container", &arm_name));
}

/// `docker run -d --platform linux/arm64 --name NAME busybox sh -c SCRIPT` through berth.
fn run_on_arm(name: &str, script: &str) -> CliOutput {
    via().run(&[
        "run",
        "-d",
        "--platform",
        "linux/arm64",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        script,
    ])
}

#[test]
fn requests_naming_a_container_reach_its_owner_by_name_and_short_id() {
    let name = unique("owner");
    let id = run_on_arm(&name, "echo started; sleep 300").ok().to_owned();
    assert!(exists(&arm(), "container", &id));
    let short = &id[..12];
    assert_eventually!(
        via().run(&["logs", &name]).stdout.contains("started"),
        "docker logs by name reaches the arm engine"
    );
    assert_eq!(via().run(&["logs", short]).ok(), "started");
    assert_eq!(via().run(&["exec", &name, "echo", "hi"]).ok(), "hi");
    assert_eq!(
        via()
            .run_stdin(&["exec", "-i", short, "cat"], b"through stdin\n")
            .ok(),
        "through stdin"
    );
    assert_eq!(
        via().run(&["inspect", "--format", "{{.Id}}", short]).ok(),
        id
    );
    via().run(&["rename", &name, &format!("{name}-r")]).ok();
    let renamed = format!("{name}-r");
    assert_eventually!(
        via().run(&["logs", &renamed]).success(),
        "a renamed container is found by its new name"
    );
    via().run(&["stop", "-t", "0", &renamed]).ok();
    assert_eq!(
        arm()
            .run(&["inspect", "--format", "{{.State.Running}}", &id])
            .ok(),
        "false"
    );
    via().run(&["rm", short]).ok();
    assert!(!exists(&arm(), "container", &id));
}

#[test]
fn a_name_on_both_machines_is_a_conflict_not_a_guess() {
    let name = unique("dup");
    amd().run(&["create", "--name", &name, IMAGE, "true"]).ok();
    arm().run(&["create", "--name", &name, IMAGE, "true"]).ok();
    assert_eventually!(
        {
            let out = via().run(&["inspect", &name]);
            !out.success() && out.stderr.contains("matches on several machines")
        },
        "inspect of a name present on both engines is refused with 409"
    );
    let raw = berth_test::wire::request(
        setup().berth.socket(),
        "GET",
        &format!("/v1.41/containers/{name}/json"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(raw.status, 409, "{raw}");
    assert_eq!(raw.header("Content-Type"), Some("application/json"));

    // A name taken on one machine cannot be created on the other through berth.
    let taken = unique("taken");
    arm().run(&["create", "--name", &taken, IMAGE, "true"]).ok();
    assert_eventually!(
        {
            let out = via().run(&[
                "create",
                "--platform",
                "linux/amd64",
                "--name",
                &taken,
                IMAGE,
            ]);
            !out.success() && out.stderr.contains("is already in use")
        },
        "creating a name taken on the other machine is dockerd's 409 conflict"
    );
    assert!(!exists(&amd(), "container", &taken));

    amd().run(&["rm", &name]).ok();
    arm().run(&["rm", &name, &taken]).ok();
}

#[test]
fn lists_info_and_prune_merge_both_machines() {
    let label = unique("merge");
    let on_amd = unique("ma");
    let on_arm = unique("mb");
    amd()
        .run(&[
            "create", "--label", &label, "--name", &on_amd, IMAGE, "true",
        ])
        .ok();
    // The list API's `Created` is in whole seconds: a second apart, the order is sure.
    std::thread::sleep(Duration::from_millis(1100));
    arm()
        .run(&[
            "create", "--label", &label, "--name", &on_arm, IMAGE, "true",
        ])
        .ok();
    let ps = via()
        .run(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.Names}}",
        ])
        .ok()
        .to_owned();
    let mut names: Vec<&str> = ps.lines().collect();
    names.sort();
    assert_eq!(names, [on_amd.as_str(), on_arm.as_str()]);
    // Newest first, as dockerd orders; --last 1 is the arm one (created second).
    assert_eq!(
        via()
            .run(&[
                "ps",
                "-a",
                "--last",
                "1",
                "--filter",
                &format!("label={label}"),
                "--format",
                "{{.Names}}"
            ])
            .ok(),
        on_arm
    );

    // since/before name a container on one engine; the other engine's list is cut by
    // its creation time.
    let filtered = |filter: String| -> String {
        via()
            .run(&[
                "ps",
                "-a",
                "--filter",
                &format!("label={label}"),
                "--filter",
                &filter,
                "--format",
                "{{.Names}}",
            ])
            .ok()
            .to_owned()
    };
    assert_eq!(filtered(format!("since={on_amd}")), on_arm);
    assert_eq!(filtered(format!("before={on_arm}")), on_amd);

    // Images, volumes, networks: each engine's own shows up once.
    let image = unique("img");
    arm().run(&["tag", IMAGE, &format!("{image}:arm")]).ok();
    let images = via()
        .run(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .ok()
        .to_owned();
    assert!(images.contains(&format!("{image}:arm")), "{images}");
    let volume = unique("vol");
    arm().run(&["volume", "create", &volume]).ok();
    let volumes = via()
        .run(&["volume", "ls", "--format", "{{.Name}}"])
        .ok()
        .to_owned();
    assert!(volumes.lines().any(|v| v == volume), "{volumes}");
    assert!(via().run(&["volume", "inspect", &volume]).success());
    let networks = via()
        .run(&["network", "ls", "--format", "{{.Name}}"])
        .ok()
        .to_owned();
    assert_eq!(
        networks.lines().filter(|n| *n == "bridge").count(),
        1,
        "one bridge: {networks}"
    );

    let df = via()
        .run(&["system", "df", "--format", "{{.Type}}"])
        .ok()
        .to_owned();
    assert!(df.contains("Containers") && df.contains("Images"), "{df}");

    // docker info: container counts are the sum of both engines' (retry: other tests
    // create containers concurrently).
    let count = |cli: &DockerCli| -> u64 {
        cli.run(&["info", "--format", "{{.Containers}}"])
            .ok()
            .parse()
            .unwrap()
    };
    assert_eventually!(
        {
            let before = count(&amd()) + count(&arm());
            let merged = count(&via());
            let after = count(&amd()) + count(&arm());
            before == merged && merged == after
        },
        "docker info sums the containers of both engines"
    );

    // Prune acts on both and reports both.
    let out = via()
        .run(&[
            "container",
            "prune",
            "-f",
            "--filter",
            &format!("label={label}"),
        ])
        .ok()
        .to_owned();
    let id_amd = amd().run(&["inspect", "--format", "{{.Id}}", &on_amd]);
    assert!(!id_amd.success(), "pruned on amd");
    assert!(!exists(&arm(), "container", &on_arm), "pruned on arm");
    assert_eq!(out.lines().filter(|l| l.len() == 64).count(), 2, "{out}");
    arm().run(&["rmi", &format!("{image}:arm")]).ok();
    via().run(&["volume", "rm", &volume]).ok();
    assert!(!exists(&arm(), "volume", &volume));
}

#[test]
fn events_from_both_machines_come_as_one_stream_in_time_order() {
    let label = unique("ev");
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let a = unique("ea");
    let b = unique("eb");
    arm()
        .run(&["create", "--label", &label, "--name", &b, IMAGE, "true"])
        .ok();
    std::thread::sleep(Duration::from_millis(50));
    amd()
        .run(&["create", "--label", &label, "--name", &a, IMAGE, "true"])
        .ok();
    std::thread::sleep(Duration::from_millis(50));
    arm().run(&["rm", &b]).ok();
    let until = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let out = via()
        .timeout(Duration::from_secs(30))
        .run(&[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .ok()
        .to_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            format!("create {b}").as_str(),
            format!("create {a}").as_str(),
            format!("destroy {b}").as_str()
        ],
        "{out}"
    );
    amd().run(&["rm", &a]).ok();
}

#[test]
fn a_restarted_berth_still_routes_to_the_owner() {
    let s = setup();
    let name = unique("restart");
    run_on_arm(&name, "echo alive; sleep 300").ok();
    let mut second = start_berth(&s.amd, &s.arm, "second").unwrap();
    let fresh = DockerCli::new(second.host());
    assert_eventually!(
        fresh.run(&["logs", &name]).stdout.contains("alive"),
        "a berth that never saw the container finds it on the arm engine"
    );
    assert_eq!(fresh.run(&["exec", &name, "echo", "ok"]).ok(), "ok");
    second.stop().unwrap();
    via().run(&["rm", "-f", &name]).ok();
    assert!(!exists(&arm(), "container", &name));
}

/// Reads one response with a `Content-Length` body from `s`; returns head and body.
fn read_response(s: &mut std::os::unix::net::UnixStream) -> (String, Vec<u8>) {
    use std::io::Read;
    let (head, mut body) = berth_test::wire::read_head(s, Duration::from_secs(10)).unwrap();
    let head = String::from_utf8_lossy(&head).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while body.len() < len {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed inside a body");
        body.extend_from_slice(&buf[..n]);
    }
    (head, body)
}

#[test]
fn a_request_berth_refuses_has_its_body_read_and_the_connection_kept() {
    use std::io::Write;
    // Go clients write the body after the head; answering and closing before reading
    // it makes their write fail ("broken pipe") instead of showing berth's error.
    let mut s = std::os::unix::net::UnixStream::connect(setup().berth.socket()).unwrap();
    let body = br#"{"Image":"busybox:latest","Cmd":["true"]}"#;
    write!(
        s,
        "POST /v1.41/containers/create?platform=linux%2Fs390x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(body).unwrap();
    let (head, answer) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        String::from_utf8_lossy(&answer).contains("no machine serves platform"),
        "{head}"
    );
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, answer) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(answer, b"OK");
}

/// A legacy `/build` through berth of `FROM scratch` + a label (no base image needed).
fn build(query: &str) -> berth_test::wire::Response {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nLABEL x=1\n").unwrap();
    let tar = dir.path().join("ctx.tar");
    let ok = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .arg("-cf")
        .arg(&tar)
        .arg("Dockerfile")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    berth_test::wire::request(
        setup().berth.socket(),
        "POST",
        &format!("/v1.41/build?{query}"),
        &[("Content-Type", "application/x-tar")],
        &std::fs::read(&tar).unwrap(),
    )
    .unwrap()
}

#[test]
fn a_build_naming_a_buildkit_session_reaches_the_engine_holding_it() {
    use std::io::Write;
    let uuid = unique("session");
    // BuildKit opens its session first (h2c upgrade); berth puts it on the default.
    let mut session = std::os::unix::net::UnixStream::connect(setup().berth.socket()).unwrap();
    write!(
        session,
        "POST /v1.41/session HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nX-Docker-Expose-Session-Uuid: {uuid}\r\nX-Docker-Expose-Session-Name: t\r\nX-Docker-Expose-Session-Sharedkey: t\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let (head, _) = berth_test::wire::read_head(&mut session, Duration::from_secs(10)).unwrap();
    assert!(
        String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );

    // The build names the session and another platform: the session wins.
    let with_session = unique("with-session");
    let resp = build(&format!(
        "t={with_session}:1&platform=linux%2Farm64&session={uuid}"
    ));
    assert!(resp.text().contains("Successfully tagged"), "{resp}");
    assert!(exists(&amd(), "image", &format!("{with_session}:1")));
    assert!(!exists(&arm(), "image", &format!("{with_session}:1")));

    // Without a session, the platform decides.
    let by_platform = unique("by-platform");
    let resp = build(&format!("t={by_platform}:1&platform=linux%2Farm64"));
    assert!(resp.text().contains("Successfully tagged"), "{resp}");
    assert!(exists(&arm(), "image", &format!("{by_platform}:1")));
    drop(session);
    amd().run(&["rmi", &format!("{with_session}:1")]).ok();
    arm().run(&["rmi", &format!("{by_platform}:1")]).ok();
}
