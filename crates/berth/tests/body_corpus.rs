//! Differential: every spelling of a create body in the corpus
//! (`crates/berth-policy/tests/create-bodies/`: duplicates at every level, folded and
//! case-variant keys, top-level HostConfig fields, escapes in keys, nulls, arrays where
//! objects belong) is sent to a real dockerd directly — what the engine really reads —
//! and through two berths in front of the same engine: one with a policy and path
//! mappings, one with path mappings only. For each, what berth did must follow from what
//! dockerd read: a refusal exactly when the policy forbids what the engine would have
//! given the container (or the body is one berth refuses as ambiguous: `refused-*`),
//! otherwise a container whose inspect shows exactly what the engine read from the
//! original, with the host paths translated and the Docker socket replaced.
//!
//! The expectation is computed here from the engine's own inspect, not from berth's
//! code: a reader of berth put back on its own JSON walk (the policy, the socket rewrite
//! or the path mappings) lets some spelling through unjudged or untranslated, and the
//! container's inspect then differs from the expectation.
//!
//! Exec create bodies (`exec-bodies/`) the same way against a running container: the
//! exec's `ProcessConfig` (privileged, user) through berth is what dockerd read directly,
//! or berth refused a privileged one.

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use berth_test::wire::{self, Response};
use berth_test::{BerthProcess, TestEngine};
use serde_json::{json, Value};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

struct Setup {
    engine: TestEngine,
    dir: tempfile::TempDir,
    /// Policy and path mappings.
    policed: BerthProcess,
    /// Path mappings only.
    mapped: BerthProcess,
}

impl Setup {
    fn host(&self) -> PathBuf {
        self.dir.path().join("host")
    }

    fn guest(&self) -> PathBuf {
        self.dir.path().join("guest")
    }

    fn policed_state(&self) -> PathBuf {
        self.dir.path().join("policed-state")
    }

    fn container_socket(&self) -> PathBuf {
        self.policed_state().join("sockets/containers.sock")
    }
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();
    berth_test::shared(&SETUP, || {
        let engine = TestEngine::with_busybox(
            &format!("bt-corpus-{}", std::process::id()),
            "busybox:latest",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("bt-corpus-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        for sub in ["host/data", "guest/data", "policed-state", "mapped-state"] {
            std::fs::create_dir_all(d.join(sub)).map_err(|e| e.to_string())?;
        }
        let engine_sock = engine.socket().display().to_string();
        let (host, guest) = (d.join("host"), d.join("guest"));
        let state = d.join("policed-state");
        let policy = format!(
            "default = \"allow\"\n\n[[limit]]\nname = \"corpus\"\nprivileged = false\ncap_add = [\"CHOWN\"]\ndevices = false\nhost_network = false\nhost_pid = false\nhost_ipc = false\nhost_uts = false\nhost_userns = false\nbind_roots = [\"{}\", \"/var/run/docker.sock\", \"/run/docker.sock\", \"{engine_sock}\"]\n",
            host.display()
        );
        std::fs::write(d.join("policy.toml"), policy).map_err(|e| e.to_string())?;
        let start = |name: &str, state: &Path, policy: bool| {
            let sock = d.join(format!("{name}.sock"));
            let config = format!(
                "hosts = [\"unix://{}\"]\n{}\n[[machines]]\nname = \"e\"\nkind = \"external\"\nendpoint = \"unix://{engine_sock}\"\npath_mappings = [{{ host = \"{}\", guest = \"{}\" }}, {{ host = \"{}\", guest = \"{}\" }}]\n",
                sock.display(),
                if policy {
                    format!("policy = \"{}\"\n", d.join("policy.toml").display())
                } else {
                    String::new()
                },
                host.display(),
                guest.display(),
                state.display(),
                state.display(),
            );
            let path = d.join(format!("{name}.toml"));
            std::fs::write(&path, config).map_err(|e| e.to_string())?;
            let (path, state) = (path.display().to_string(), state.display().to_string());
            BerthProcess::start_args(
                Path::new(BERTH),
                &["serve", "--config", &path, "--state-dir", &state],
                &sock,
            )
            .map_err(|e| format!("starting berth {name}: {e}"))
        };
        let policed = start("policed", &state, true)?;
        let mapped = start("mapped", &d.join("mapped-state"), false)?;
        Ok(Setup {
            engine,
            dir,
            policed,
            mapped,
        })
    })
}

/// The corpus: `(name, body)` with `@HOST@` and `@ENGINE@` filled in.
fn corpus(s: &Setup) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../berth-policy/tests/create-bodies");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("the corpus directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let text = text
                .replace("@HOST@", &s.host().display().to_string())
                .replace("@ENGINE@", &s.engine.socket().display().to_string());
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, text.into_bytes())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 40, "the corpus shrank: {}", out.len());
    out
}

fn create(socket: &Path, name: &str, body: &[u8]) -> Response {
    let path = format!("/v1.41/containers/create?name={name}");
    wire::request(
        socket,
        "POST",
        &path,
        &[("Content-Type", "application/json")],
        body,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The engine's inspect of `name`, or `None` if there is no such container.
fn inspect(s: &Setup, name: &str) -> Option<Value> {
    let res = wire::request(
        s.engine.socket(),
        "GET",
        &format!("/containers/{name}/json"),
        &[],
        b"",
    )
    .unwrap();
    (res.status == 200).then(|| serde_json::from_slice(&res.body).expect("inspect is JSON"))
}

fn remove(s: &Setup, name: &str) {
    let path = format!("/containers/{name}?force=1&v=1");
    let _ = wire::request(s.engine.socket(), "DELETE", &path, &[], b"");
}

/// Lexical cleaning, written here independently of berth's.
fn clean(path: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

fn within(path: &str, root: &Path) -> bool {
    let root = root.display().to_string();
    path == root || path.starts_with(&format!("{root}/"))
}

/// A host path the engine mounts, where it sits in the inspect's HostConfig.
enum HostPath {
    /// `Binds[i]`, its source.
    Bind(usize, String),
    /// `Mounts[i].Source` of a bind mount.
    Mount(usize, String),
    /// `Mounts[i]`'s local-volume `device` (`o=bind`).
    Device(usize, String),
}

impl HostPath {
    fn path(&self) -> &str {
        match self {
            Self::Bind(_, p) | Self::Mount(_, p) | Self::Device(_, p) => p,
        }
    }
}

fn host_paths(hc: &Value) -> Vec<HostPath> {
    let mut out = Vec::new();
    for (i, b) in hc["Binds"].as_array().into_iter().flatten().enumerate() {
        let spec = b.as_str().unwrap_or_default();
        if let Some((src, _)) = spec.split_once(':') {
            if src.starts_with('/') {
                out.push(HostPath::Bind(i, src.to_owned()));
            }
        }
    }
    for (i, m) in hc["Mounts"].as_array().into_iter().flatten().enumerate() {
        match m["Type"].as_str() {
            Some("bind") => out.push(HostPath::Mount(
                i,
                m["Source"].as_str().unwrap_or_default().to_owned(),
            )),
            Some("volume") => {
                let opts = &m["VolumeOptions"]["DriverConfig"]["Options"];
                let binds = opts["o"]
                    .as_str()
                    .is_some_and(|o| o.split(',').any(|x| x == "bind"));
                if let (true, Some(dev)) = (binds, opts["device"].as_str()) {
                    out.push(HostPath::Device(i, dev.to_owned()));
                }
            }
            _ => {}
        }
    }
    out
}

/// What the policy refuses in what the engine read; `None` if nothing.
fn forbidden(s: &Setup, hc: &Value) -> Option<String> {
    if hc["Privileged"] == json!(true) {
        return Some("privileged".into());
    }
    for cap in hc["CapAdd"].as_array().into_iter().flatten() {
        let cap = cap.as_str().unwrap_or_default().to_uppercase();
        let cap = if cap.starts_with("CAP_") || cap == "ALL" {
            cap
        } else {
            format!("CAP_{cap}")
        };
        if cap != "CAP_CHOWN" {
            return Some(format!("capability {cap}"));
        }
    }
    // Not CgroupnsMode: this engine's default is `host` (cgroup v1).
    for mode in ["NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode"] {
        if hc[mode]
            .as_str()
            .is_some_and(|m| m.eq_ignore_ascii_case("host"))
        {
            return Some(format!("{mode}=host"));
        }
    }
    if hc["Devices"].as_array().is_some_and(|d| !d.is_empty()) {
        return Some("devices".into());
    }
    let roots = [
        s.host(),
        PathBuf::from("/var/run/docker.sock"),
        PathBuf::from("/run/docker.sock"),
        s.engine.socket().to_owned(),
    ];
    host_paths(hc)
        .iter()
        .map(|p| clean(p.path()))
        .find(|p| !roots.iter().any(|r| within(p, r)))
        .map(|p| format!("host path {p}"))
}

fn is_docker_socket(s: &Setup, path: &str) -> bool {
    let path = clean(path);
    path == "/var/run/docker.sock"
        || path == "/run/docker.sock"
        || Path::new(&path) == s.engine.socket()
}

/// The engine's HostConfig with every host path as berth must send it: the Docker
/// socket replaced (when `socket`) and paths under the host prefix translated; `Err`
/// names a host path no mapping covers.
fn expected(s: &Setup, hc: &Value, socket: bool) -> Result<Value, String> {
    let mut want = hc.clone();
    for p in host_paths(hc) {
        let path = clean(p.path());
        let new = if socket && is_docker_socket(s, &path) {
            s.container_socket().display().to_string()
        } else if within(&path, &s.host()) {
            format!(
                "{}{}",
                s.guest().display(),
                &path[s.host().display().to_string().len()..]
            )
        } else {
            return Err(path);
        };
        match p {
            HostPath::Bind(i, src) => {
                let spec = want["Binds"][i].as_str().unwrap().to_owned();
                want["Binds"][i] = json!(format!("{new}{}", &spec[src.len()..]));
            }
            HostPath::Mount(i, _) => want["Mounts"][i]["Source"] = json!(new),
            HostPath::Device(i, _) => {
                want["Mounts"][i]["VolumeOptions"]["DriverConfig"]["Options"]["device"] = json!(new)
            }
        }
    }
    Ok(want)
}

/// The parts of an inspect that berth's readers act on, and a few it must keep.
fn compared(inspect: &Value) -> Value {
    let hc = &inspect["HostConfig"];
    let mut fields = serde_json::Map::new();
    for key in [
        "Privileged",
        "CapAdd",
        "NetworkMode",
        "PidMode",
        "IpcMode",
        "UTSMode",
        "UsernsMode",
        "CgroupnsMode",
        "Devices",
        "Binds",
        "Mounts",
        "Memory",
        "LogConfig",
    ] {
        fields.insert(key.to_owned(), hc[key].clone());
    }
    fields.insert("Labels".into(), inspect["Config"]["Labels"].clone());
    fields.insert("Env".into(), inspect["Config"]["Env"].clone());
    fields.insert("Image".into(), inspect["Config"]["Image"].clone());
    Value::Object(fields)
}

/// Sends `body` through `berth` as `name` and checks the outcome against `truth` (the
/// engine's inspect of the same body sent directly, or its refusal).
fn check_through(
    s: &Setup,
    berth: &BerthProcess,
    policed: bool,
    case: &str,
    name: &str,
    body: &[u8],
    truth: &Result<Value, Response>,
) -> Result<(), String> {
    let res = create(berth.socket(), name, body);
    let got = inspect(s, name);
    remove(s, name);
    let which = if policed {
        "policy + mappings"
    } else {
        "mappings only"
    };
    let refused = |why: &str| -> Result<(), String> {
        if res.status < 400 || got.is_some() {
            return Err(format!(
                "{case} ({which}): {why}, but berth answered {} and the engine has {:?}",
                res.status,
                got.as_ref().map(compared)
            ));
        }
        Ok(())
    };
    let truth = match truth {
        Err(direct) => return refused(&format!("dockerd itself refused it ({})", direct.status)),
        Ok(truth) => truth,
    };
    if case.starts_with("refused-") {
        return refused("berth refuses it as ambiguous");
    }
    let hc = &truth["HostConfig"];
    if policed {
        if let Some(what) = forbidden(s, hc) {
            refused(&format!("the engine would have given it {what}"))?;
            if res.status != 403 {
                return Err(format!("{case}: {what} must be a 403: {res}"));
            }
            return Ok(());
        }
    }
    let mut want = truth.clone();
    match expected(s, hc, policed) {
        Ok(hc) => want["HostConfig"] = hc,
        Err(path) => return refused(&format!("{path} is not mapped")),
    }
    let Some(got) = got else {
        return Err(format!(
            "{case} ({which}): expected a container, berth answered {res}"
        ));
    };
    if compared(&got) != compared(&want) {
        return Err(format!(
            "{case} ({which}): the engine got\n  {}\nwhere the original reads as\n  {}",
            compared(&got),
            compared(&want)
        ));
    }
    Ok(())
}

#[test]
fn every_spelling_of_a_create_body_gets_what_berth_judged_and_rewrote() {
    let s = setup();
    let mut failures = Vec::new();
    let mut refused_by_policy = 0;
    for (i, (case, body)) in corpus(s).iter().enumerate() {
        let direct = format!("bt-corpus-{i}-direct");
        let res = create(s.engine.socket(), &direct, body);
        let truth = match inspect(s, &direct) {
            Some(v) if res.status == 201 => Ok(v),
            _ => Err(res),
        };
        remove(s, &direct);
        if truth
            .as_ref()
            .is_ok_and(|t| forbidden(s, &t["HostConfig"]).is_some())
        {
            refused_by_policy += 1;
        }
        for (berth, policed, tag) in [(&s.policed, true, "pol"), (&s.mapped, false, "map")] {
            let name = format!("bt-corpus-{i}-{tag}");
            if let Err(e) = check_through(s, berth, policed, case, &name, body, &truth) {
                failures.push(e);
            }
        }
    }
    for volume in ["bt-corpus-vol", "bt-corpus-devvol"] {
        let _ = wire::request(
            s.engine.socket(),
            "DELETE",
            &format!("/volumes/{volume}"),
            &[],
            b"",
        );
    }
    // The corpus must keep both sides: bodies the policy refuses and bodies it passes.
    assert!(
        refused_by_policy >= 15,
        "only {refused_by_policy} forbidden bodies"
    );
    assert!(
        failures.is_empty(),
        "{} of the corpus:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The exec bodies (`crates/berth-policy/tests/exec-bodies/`).
fn exec_corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../berth-policy/tests/exec-bodies");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("the exec corpus directory")
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// `POST /containers/{container}/exec` with `body`; the exec's `ProcessConfig` as the
/// engine reports it, or the refusal.
fn exec_create(s: &Setup, socket: &Path, container: &str, body: &[u8]) -> Result<Value, Response> {
    let path = format!("/v1.41/containers/{container}/exec");
    let res = wire::request(
        socket,
        "POST",
        &path,
        &[("Content-Type", "application/json")],
        body,
    )
    .unwrap();
    if res.status != 201 {
        return Err(res);
    }
    let id = serde_json::from_slice::<Value>(&res.body).unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let inspect = wire::request(
        s.engine.socket(),
        "GET",
        &format!("/exec/{id}/json"),
        &[],
        b"",
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&inspect.body).unwrap();
    Ok(v["ProcessConfig"].clone())
}

#[test]
fn every_spelling_of_an_exec_body_gets_what_berth_judged() {
    let s = setup();
    let container = "bt-corpus-exec-target";
    let body = br#"{"Image":"busybox","Cmd":["sleep","3600"]}"#;
    let res = create(s.engine.socket(), container, body);
    assert_eq!(res.status, 201, "{res}");
    let path = format!("/containers/{container}/start");
    let res = wire::request(s.engine.socket(), "POST", &path, &[], b"").unwrap();
    assert_eq!(res.status, 204, "{res}");
    let mut failures = Vec::new();
    let (mut forbidden, mut passed) = (0, 0);
    for (case, body) in exec_corpus() {
        let truth = exec_create(s, s.engine.socket(), container, &body);
        let through = exec_create(s, s.policed.socket(), container, &body);
        let privileged = truth.as_ref().is_ok_and(|p| p["privileged"] == json!(true));
        let outcome = match (&truth, &through) {
            (Err(_), Err(_)) => Ok(()),
            (Ok(_), Err(res)) if case.starts_with("refused-") || privileged => {
                if privileged && res.status != 403 {
                    Err(format!("a privileged exec must be a 403: {res}"))
                } else {
                    Ok(())
                }
            }
            (Ok(want), Ok(got)) if !privileged && !case.starts_with("refused-") => {
                if want == got {
                    Ok(())
                } else {
                    Err(format!(
                        "the engine read {want} directly, {got} through berth"
                    ))
                }
            }
            _ => Err(format!("directly {truth:?}, through berth {through:?}")),
        };
        if let Err(e) = outcome {
            failures.push(format!("{case}: {e}"));
        }
        forbidden += usize::from(privileged);
        passed += usize::from(through.is_ok());
    }
    remove(s, container);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        forbidden >= 4 && passed >= 2,
        "{forbidden} forbidden, {passed} passed"
    );
}

/// Network aliases in every spelling (`crates/berth-policy/tests/endpoint-bodies/`: a
/// create's `NetworkingConfig.EndpointsConfig.*` and a connect's `EndpointConfig`, with
/// repeated, case-folded, `ſ`-folded and escaped `Aliases` keys, repeated endpoints and
/// `NetworkingConfig`s, nulls, wrong types), sent directly to dockerd and through a
/// tenant of berth on the same engine. The tenant's container must answer on exactly the
/// networks, to exactly the aliases dockerd read from the body, plus its tenant-visible
/// name (the alias berth adds, once); a body dockerd refuses berth refuses.
#[test]
fn every_spelling_of_network_aliases_is_what_dockerd_reads_through_a_tenant() {
    let s = setup();
    let dir = s.dir.path().join("tenant");
    let tenant_sock = dir.join("tc.sock");
    let config = format!(
        "shared_images = [\"busybox:latest\"]\n[[machines]]\nname = \"e\"\nkind = \"external\"\nendpoint = \"unix://{}\"\n[[tenants]]\nname = \"tc\"\nsocket = \"{}\"\n",
        s.engine.socket().display(),
        tenant_sock.display()
    );
    let _berth = BerthProcess::start_config(Path::new(BERTH), &dir, &config).unwrap();
    let engine = s.engine.socket();
    let send = |socket: &Path, method: &str, path: &str, body: &[u8]| {
        let headers = [("Content-Type", "application/json")];
        wire::request(socket, method, &format!("/v1.41{path}"), &headers, body).unwrap()
    };
    // The tenant's networks: `backend` is `tc.backend` on the engine.
    for net in ["backend", "front"] {
        let body = format!(r#"{{"Name":"{net}"}}"#);
        let res = send(&tenant_sock, "POST", "/networks/create", body.as_bytes());
        assert_eq!(res.status, 201, "{res}");
    }
    // The aliases of each network a container is on, as the engine reports them (but
    // its short ID, which dockerd adds at a connect).
    let networks = |name: &str| -> Option<Vec<(String, Vec<String>)>> {
        let v = inspect(s, name)?;
        let short = &v["Id"].as_str()?[..12];
        let map = v["NetworkSettings"]["Networks"].as_object()?.clone();
        Some(
            map.into_iter()
                .map(|(net, e)| {
                    let aliases = e["Aliases"].as_array().into_iter().flatten();
                    let aliases = aliases
                        .map(|a| a.as_str().unwrap().to_owned())
                        .filter(|a| a != short)
                        .collect();
                    (net, aliases)
                })
                .collect(),
        )
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../berth-policy/tests/endpoint-bodies");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "the corpus shrank: {}", cases.len());
    let (mut failures, mut refused) = (Vec::new(), 0);
    for (i, case) in cases.iter().enumerate() {
        let text = std::fs::read_to_string(case).unwrap();
        let case = case.file_stem().unwrap().to_string_lossy().into_owned();
        let local = format!("al-{i}");
        let (direct, through) = (format!("bt-al-{i}-direct"), format!("tc.{local}"));
        let fill = |net: &str, container: &str| {
            text.replace("@NET@", net)
                .replace("@NAME@", &local)
                .replace("@CONTAINER@", container)
        };
        let (truth, got) = if case.starts_with("connect-") {
            // A container on `front`, then connected to `backend` with the body.
            let on_front = |socket: &Path, name: &str, net: &str| {
                let body =
                    format!(r#"{{"Image":"busybox","HostConfig":{{"NetworkMode":"{net}"}}}}"#);
                let res = send(
                    socket,
                    "POST",
                    &format!("/containers/create?name={name}"),
                    body.as_bytes(),
                );
                assert_eq!(res.status, 201, "{case}: {res}");
            };
            on_front(engine, &direct, "tc.front");
            on_front(&tenant_sock, &local, "front");
            let d = send(
                engine,
                "POST",
                "/networks/tc.backend/connect",
                fill("", &direct).as_bytes(),
            );
            let t = send(
                &tenant_sock,
                "POST",
                "/networks/backend/connect",
                fill("", &local).as_bytes(),
            );
            (
                (d.status < 300)
                    .then(|| networks(&direct))
                    .flatten()
                    .ok_or(d),
                (t.status < 300)
                    .then(|| networks(&through))
                    .flatten()
                    .ok_or(t),
            )
        } else {
            let d = create(engine, &direct, fill("tc.backend", "").as_bytes());
            let t = create(&tenant_sock, &local, fill("backend", "").as_bytes());
            (
                (d.status == 201)
                    .then(|| networks(&direct))
                    .flatten()
                    .ok_or(d),
                (t.status == 201)
                    .then(|| networks(&through))
                    .flatten()
                    .ok_or(t),
            )
        };
        remove(s, &direct);
        remove(s, &through);
        let outcome = match (truth, got) {
            (Err(_), Err(_)) => {
                refused += 1;
                Ok(())
            }
            (Ok(truth), Ok(got)) => {
                // What dockerd read, plus the tenant's name, on the same networks.
                let want: Vec<(String, Vec<String>)> = truth
                    .into_iter()
                    .map(|(net, mut aliases)| {
                        if net != "tc.front" && !aliases.contains(&local) {
                            aliases.push(local.clone());
                        }
                        (net, aliases)
                    })
                    .collect();
                let got: Vec<_> = got
                    .into_iter()
                    .filter(|(net, _)| !case.starts_with("connect-") || net != "tc.front")
                    .collect();
                let want: Vec<_> = want
                    .into_iter()
                    .filter(|(net, _)| !case.starts_with("connect-") || net != "tc.front")
                    .collect();
                if got == want {
                    Ok(())
                } else {
                    Err(format!("the engine read {want:?} directly (+ the name), got {got:?} through the tenant"))
                }
            }
            (truth, got) => Err(format!("directly {truth:?}, through the tenant {got:?}")),
        };
        if let Err(e) = outcome {
            failures.push(format!("{case}: {e}"));
        }
    }
    for net in ["tc.backend", "tc.front"] {
        let _ = wire::request(engine, "DELETE", &format!("/networks/{net}"), &[], b"");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(refused >= 3, "only {refused} refused bodies");
}
