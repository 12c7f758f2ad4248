//! `--remote`: remote machines (issue "remote engines"). One dockerd serves mutual TLS on
//! a namespace address and is also reachable through a real sshd there; berth fronts it
//! as an SSH machine. Interleaved per round:
//!
//! - `docker ps` wall time: the CLI through berth's SSH machine against the CLI's own
//!   `docker -H ssh://…` to the same sshd and engine (a new SSH connection, login and
//!   remote `docker system dial-stdio` per run). Target: berth ≥ 10× faster.
//! - `GET /containers/json` p50 on a kept-alive connection, and a 512 MiB exec hijack
//!   (`head -c` of /dev/zero, read to EOF), through berth's SSH machine against straight
//!   to the engine's TLS port. Target: 0.8× to 1.3×. The same through a berth whose
//!   machine is that engine's TLS port (what berth's own TLS transport costs; no target).
//!   Two more sides split the SSH row (no target): an OpenSSH `ssh -N -L local.sock:
//!   remote.sock` forward to the same sshd with berth's cipher (what the sshd hop costs
//!   with OpenSSH instead of berth on this side), and the far engine's own Unix socket
//!   (dockerd without TLS or any hop: the floor of both). A sixth side is berth's own SSH
//!   client in the benchmark's process (`berth_guest`'s channel, no gateway and no hop
//!   between the client and sshd): what a GET costs with sshd in the path and nothing
//!   else, the floor of the SSH row. A seventh side is socat in front of that OpenSSH
//!   forward: sshd plus one forwarding process of its own on this side, the least any
//!   gateway in a process of its own can add to the SSH path.
//!
//!   CPU of each process on the path per GET and per MiB of the hijack (schedstat).
//!   `--only` picks rows (ps, json, hijack, create), `--sides` the sides of the json and
//!   hijack rows (the TLS port always runs: every ratio is against it).
//! - Placement: `POST /containers/create` (the CLI's body) naming no platform, through a
//!   berth with three machines (local, TLS, SSH; the image on all three, so placement asks
//!   every machine and keeps the default), against the same create naming the default
//!   machine's platform (no placement). Target ≤ 1.1×.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use berth_test::{link_addresses, BerthProcess, TestCerts, TestEngine, TestSshd};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client;
use crate::forwarders::Forwarder;
use crate::procfs;
use crate::stats::{median, percentile};

const IMAGE: &str = "bb-busybox:latest";

/// A create body as docker CLI 28 sends it (as `--policy-create` uses).
const CREATE_BODY: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":["true"],"Image":"bb-busybox:latest","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{"bench":"placement"},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"Devices":[],"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,"Ulimits":[],"Mounts":null},"NetworkingConfig":{"EndpointsConfig":{}}}"#;

/// What the scenario measures.
#[derive(Debug)]
pub(crate) struct RemoteParams {
    pub(crate) rounds: usize,
    /// `docker ps` runs per side and round.
    pub(crate) ps_runs: usize,
    /// `GET /containers/json` per side and round.
    pub(crate) requests: usize,
    /// Bytes through the exec hijack.
    pub(crate) hijack_bytes: u64,
    /// Creates per side and round.
    pub(crate) creates: usize,
    /// The rows to run (all when empty): ps, json, hijack, create.
    pub(crate) only: Vec<String>,
    /// The sides of the json and hijack rows (all when empty).
    pub(crate) sides: Vec<Side>,
}

/// Runs the scenario and returns its Markdown report.
pub(crate) fn run(berth_bin: &Path, p: &RemoteParams) -> Result<String> {
    let pid = std::process::id();
    let local = TestEngine::start(&format!("bb-rl{pid}")).context("local engine")?;
    local.import_busybox(IMAGE)?;
    let tls_name = format!("bb-rt{pid}");
    let tls_certs = TestCerts::make(&local.dir().join("tls-certs"), link_addresses(&tls_name).1)?;
    let tls = TestEngine::start_with(&tls_name, &tls_certs.dockerd_args()).context("TLS engine")?;
    tls.import_busybox(IMAGE)?;
    tls.link_to_host()?;
    let far_name = format!("bb-rs{pid}");
    let far_certs = TestCerts::make(&local.dir().join("far-certs"), link_addresses(&far_name).1)?;
    let far = TestEngine::start_with(&far_name, &far_certs.dockerd_args()).context("far engine")?;
    far.import_busybox(IMAGE)?;
    let far_addr = far.link_to_host()?;
    let sshd = TestSshd::start(&far, far_addr)?;

    let dir = local.dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let ssh_table = format!(
        "[[machines]]\nname = \"far\"\nkind = \"external\"\nendpoint = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\nremote_socket = \"{}\"\n",
        sshd.endpoint(),
        sshd.identity_file().display(),
        sshd.known_hosts().display(),
        far.socket().display()
    );
    let berth_ssh = start_berth(berth_bin, &dir, "ssh", std::slice::from_ref(&ssh_table))?;
    let berth_tls = start_berth(
        berth_bin,
        &dir,
        "tls",
        &[format!(
            "[[machines]]\nname = \"far\"\nkind = \"external\"\nendpoint = \"tcp://{far_addr}:2376\"\ntlsverify = true\ntls = \"{}\"\n",
            far_certs.dir().display()
        )],
    )?;
    let berth_three = start_berth(
        berth_bin,
        &dir,
        "three",
        &[
            format!(
                "[[machines]]\nname = \"local\"\nkind = \"external\"\nendpoint = \"{}\"\ndefault = true\nplatforms = [\"linux/amd64\"]\n",
                local.host()
            ),
            format!(
                "[[machines]]\nname = \"tls\"\nkind = \"external\"\nendpoint = \"tcp://{}:2376\"\ntlsverify = true\ntls = \"{}\"\n",
                tls.link_address(),
                tls_certs.dir().display()
            ),
            ssh_table,
        ],
    )?;
    // The CLI's own ssh:// with the same key and known_hosts: an `ssh` first on PATH
    // that adds them (the CLI runs `ssh` from PATH).
    let wrapper_dir = dir.join("bin");
    std::fs::create_dir_all(&wrapper_dir)?;
    let wrapper = wrapper_dir.join("ssh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec /usr/bin/ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o IdentitiesOnly=yes -i {} \"$@\"\n",
            sshd.known_hosts().display(),
            sshd.identity_file().display()
        ),
    )?;
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let path_env = format!(
        "{}:{}",
        wrapper_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let rows = Rows::of(&p.only)?;
    let sides = Side::chosen(&p.sides);
    let forward = if sides
        .iter()
        .any(|s| matches!(s, Side::SshL | Side::SocatSshL))
    {
        Some(OpenSshForward::start(
            &wrapper,
            &dir.join("forward.sock"),
            far.socket(),
            &format!("root@{far_addr}"),
        )?)
    } else {
        None
    };
    let socat = match &forward {
        Some(forward) if sides.contains(&Side::SocatSshL) => {
            let socat_dir = dir.join("socat");
            std::fs::create_dir_all(&socat_dir)?;
            Some(Forwarder::socat(&socat_dir, forward.socket())?)
        }
        _ => None,
    };

    let tls_client = Arc::new(tls_config(&far_certs)?);
    let far_tls = format!("{far_addr}:2376");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let in_process = in_process_ssh(&sshd, far_addr, far.socket())?;
        // A running container for the exec rows, on the far engine.
        let created = client::api_ok(
            far.socket(),
            Method::POST,
            "/v1.41/containers/create?name=bb-remote-exec",
            Some(serde_json::json!({"Image": IMAGE, "Cmd": ["sleep", "3600"]})),
        )
        .await?;
        let exec_box = created["Id"].as_str().context("no Id")?.to_owned();
        client::api_ok(
            far.socket(),
            Method::POST,
            &format!("/v1.41/containers/{exec_box}/start"),
            None,
        )
        .await?;

        let mut ps = (Vec::new(), Vec::new());
        let mut json = vec![Vec::new(); sides.len()];
        let mut hijack = vec![Vec::new(); sides.len()];
        let mut cpu_get: Vec<Vec<Cpu>> = vec![Vec::new(); sides.len()];
        let mut cpu_mib: Vec<Vec<Cpu>> = vec![Vec::new(); sides.len()];
        let mut create = (Vec::new(), Vec::new());
        let mib = p.hijack_bytes >> 20;
        for round in 0..p.rounds {
            let flip = round % 2 == 1;
            // docker ps: berth's SSH machine vs the CLI's ssh://.
            for side in order(flip).into_iter().filter(|_| rows.ps) {
                let host = if side == 0 {
                    berth_ssh.host()
                } else {
                    format!("ssh://root@{far_addr}")
                };
                let mut times = Vec::with_capacity(p.ps_runs);
                for _ in 0..p.ps_runs {
                    let t = Instant::now();
                    let out = Command::new("docker")
                        .args(["-H", &host, "ps"])
                        .env("PATH", &path_env)
                        .output()?;
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                    if !out.status.success() {
                        bail!("docker -H {host} ps: {}", String::from_utf8_lossy(&out.stderr));
                    }
                }
                let m = median(&times);
                eprintln!("[{}/{}] docker ps {} median {m:.1} ms", round + 1, p.rounds, ["berth ssh", "docker ssh://"][side]);
                [&mut ps.0, &mut ps.1][side].push(m);
            }
            // GET /containers/json and the exec hijack on every side; the order rotates
            // per round.
            for i in (0..sides.len()).map(|k| (k + round) % sides.len()).filter(|_| rows.json || rows.hijack) {
                let side = sides[i];
                let conn = || async {
                    Ok::<_, anyhow::Error>(match side {
                        Side::BerthSsh => Box::new(client::connect(berth_ssh.socket()).await?) as Box<dyn Io>,
                        Side::BerthTls => Box::new(client::connect(berth_tls.socket()).await?),
                        Side::TlsDirect => Box::new(connect_tls(&tls_client, &far_tls, far_addr).await?),
                        Side::SshL => Box::new(client::connect(forward.as_ref().context("no forward")?.socket()).await?),
                        Side::SocatSshL => Box::new(client::connect(socat.as_ref().context("no socat")?.socket()).await?),
                        Side::Unix => Box::new(client::connect(far.socket()).await?),
                        Side::InProcess => Box::new(in_process.connect().await?),
                    })
                };
                let procs = Processes {
                    berth: match side {
                        Side::BerthSsh => Some(berth_ssh.pid()),
                        Side::BerthTls => Some(berth_tls.pid()),
                        _ => None,
                    },
                    ssh: matches!(side, Side::SshL | Side::SocatSshL)
                        .then(|| forward.as_ref().map(OpenSshForward::pid))
                        .flatten(),
                    socat: (side == Side::SocatSshL)
                        .then(|| socat.as_ref().map(Forwarder::pid))
                        .flatten(),
                    netns: far.netns(),
                    dockerd: far.dockerd_pid(),
                };
                let mut line = format!("[{}/{}] {}:", round + 1, p.rounds, side.name());
                if rows.json {
                    // Connected first: the CPU counted is the GETs' alone.
                    let io = conn().await?;
                    let before = procs.cpu();
                    let (p50, io) = list_p50(io, p.requests).await?;
                    let spent = procs.cpu().since(&before, p.requests as f64);
                    drop(io);
                    line.push_str(&format!(" json p50 {p50:.0} µs (CPU per GET: {spent})"));
                    json[i].push(p50);
                    cpu_get[i].push(spent);
                }
                if rows.hijack {
                    let setup = conn().await?;
                    let mut io = conn().await?;
                    let before = procs.cpu();
                    let secs = exec_hijack(setup, &mut io, &exec_box, p.hijack_bytes).await?;
                    let spent = procs.cpu().since(&before, mib as f64);
                    drop(io);
                    line.push_str(&format!(
                        " hijack {:.0} MiB/s (CPU per MiB: {spent})",
                        mib as f64 / secs
                    ));
                    hijack[i].push(secs);
                    cpu_mib[i].push(spent);
                }
                eprintln!("{line}");
            }
            // Placement vs an explicit platform, same berth and machines.
            let create_body = Bytes::from_static(CREATE_BODY.as_bytes());
            for side in order(flip).into_iter().filter(|_| rows.create) {
                let query = if side == 0 { "" } else { "?platform=linux%2Famd64" };
                let p50 = client::create_p50(berth_three.socket(), berth_three.socket(), &|_| query.to_owned(), &create_body, p.creates).await?;
                eprintln!("[{}/{}] create {} p50 {p50:.0} µs", round + 1, p.rounds, ["placed", "platform"][side]);
                [&mut create.0, &mut create.1][side].push(p50);
            }
        }
        let ratio = |a: &[f64], b: &[f64]| median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>());
        let within = |r: f64| if (0.8..=1.3).contains(&r) { "pass" } else { "FAIL" };
        let mut out = String::from("| row | berth | other side | ratio | target | verdict |\n|---|---|---|---|---|---|\n");
        if rows.ps {
            let speedup = ratio(&ps.1, &ps.0);
            out.push_str(&format!(
                "| `docker ps` wall time, median of {} runs (ms): berth's SSH machine vs `docker -H ssh://` | {:.1} | {:.1} | berth {speedup:.1}× faster | ≥ 10× faster | {} |\n",
                p.ps_runs, median(&ps.0), median(&ps.1), if speedup >= 10.0 { "pass" } else { "FAIL" },
            ));
        }
        let tls = sides.iter().position(|s| *s == Side::TlsDirect).expect("always a side");
        for (what, samples, digits, on) in [
            ("`GET /containers/json` p50 µs", &json, 0, rows.json),
            (&*format!("{mib} MiB exec hijack (s)"), &hijack, 2, rows.hijack),
        ] {
            for (i, side) in sides.iter().enumerate().filter(|(_, s)| on && **s != Side::TlsDirect) {
                let r = ratio(&samples[i], &samples[tls]);
                let (target, verdict) = if *side == Side::BerthSsh {
                    ("0.8× to 1.3×", within(r))
                } else {
                    ("(none)", "")
                };
                out.push_str(&format!(
                    "| {}{what}: {} vs the engine's TLS port | {:.digits$} | {:.digits$} | {r:.2}× | {target} | {verdict} |\n",
                    if *side == Side::BerthSsh || *side == Side::BerthTls { "" } else { "split: " },
                    side.label(),
                    median(&samples[i]),
                    median(&samples[tls]),
                ));
            }
        }
        if rows.create {
            let r = ratio(&create.0, &create.1);
            out.push_str(&format!(
                "| `POST /containers/create` p50 µs: placed among three machines vs `platform=` | {:.0} | {:.0} | {r:.3}× | ≤ 1.1× | {} |\n",
                median(&create.0), median(&create.1), if r <= 1.1 { "pass" } else { "FAIL" },
            ));
        }
        if rows.json {
            out.push_str(&cpu_table("CPU per `GET /containers/json` (µs, median of rounds)", &sides, &cpu_get));
        }
        if rows.hijack {
            out.push_str(&cpu_table(&format!("CPU per MiB of the {mib} MiB hijack (µs, median of rounds)"), &sides, &cpu_mib));
        }
        out.push_str(&format!(
            "\nMedian over {} rounds of the per-round ratio ({} `docker ps` per side, {} GETs on one kept-alive connection, {} creates per side and round, each removed after it is timed).\n",
            p.rounds, p.ps_runs, p.requests, p.creates,
        ));
        Ok(out)
    })
}

/// The rows `--only` picks.
struct Rows {
    ps: bool,
    json: bool,
    hijack: bool,
    create: bool,
}

impl Rows {
    fn of(only: &[String]) -> Result<Self> {
        for o in only {
            if !["ps", "json", "hijack", "create"].contains(&o.as_str()) {
                bail!("--only with --remote: ps, json, hijack or create, not {o:?}");
            }
        }
        let on = |row: &str| only.is_empty() || only.iter().any(|o| o == row);
        Ok(Self {
            ps: on("ps"),
            json: on("json"),
            hijack: on("hijack"),
            create: on("create"),
        })
    }
}

/// A side of the json and hijack rows; each is measured against [`Side::TlsDirect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// berth whose machine is the far engine over SSH (the row with the target).
    BerthSsh,
    /// berth whose machine is the far engine's TLS port.
    BerthTls,
    /// Straight to the engine's TLS port.
    TlsDirect,
    /// OpenSSH's `ssh -L` forward to the same sshd.
    SshL,
    /// socat in front of that forward.
    SocatSshL,
    /// The far engine's own Unix socket.
    Unix,
    /// berth's SSH client in the benchmark's process.
    InProcess,
}

impl Side {
    const ALL: [Side; 7] = [
        Side::BerthSsh,
        Side::BerthTls,
        Side::TlsDirect,
        Side::SshL,
        Side::SocatSshL,
        Side::Unix,
        Side::InProcess,
    ];

    /// The name `--sides` takes.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::BerthSsh => "berth-ssh",
            Side::BerthTls => "berth-tls",
            Side::TlsDirect => "tls",
            Side::SshL => "ssh-l",
            Side::SocatSshL => "socat-ssh-l",
            Side::Unix => "unix",
            Side::InProcess => "in-process-ssh",
        }
    }

    /// What the side is, in the report.
    fn label(self) -> &'static str {
        match self {
            Side::BerthSsh => "berth's SSH machine",
            Side::BerthTls => "berth's TLS machine",
            Side::TlsDirect => "the engine's TLS port",
            Side::SshL => "OpenSSH `ssh -L` forward (no berth)",
            Side::SocatSshL => {
                "socat in front of the OpenSSH `ssh -L` forward (sshd and one forwarding process, no berth)"
            }
            Side::Unix => "the engine's own Unix socket",
            Side::InProcess => {
                "berth's SSH client in the benchmark's process (sshd, no gateway)"
            }
        }
    }

    pub(crate) fn parse(name: &str) -> Result<Side> {
        Side::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .with_context(|| {
                format!(
                    "--sides: one of {}, not {name:?}",
                    Side::ALL.map(Side::name).join(", ")
                )
            })
    }

    /// The sides to run, in [`Side::ALL`]'s order, the TLS port always among them.
    fn chosen(wanted: &[Side]) -> Vec<Side> {
        Side::ALL
            .into_iter()
            .filter(|s| wanted.is_empty() || *s == Side::TlsDirect || wanted.contains(s))
            .collect()
    }
}

/// berth's SSH client in this process: a channel per connection to the far engine's
/// socket over one SSH connection, as berth's SSH machine opens them.
fn in_process_ssh(
    sshd: &TestSshd,
    addr: std::net::Ipv4Addr,
    remote_socket: &Path,
) -> Result<berth_guest::GuestConnector> {
    use berth_guest::ssh::{SshSettings, SshTunnel};
    let destination = berth_guest::SshDestination {
        user: Some("root".into()),
        host: addr.to_string(),
        port: None,
    };
    let timeout = std::time::Duration::from_secs(10);
    let tunnel = SshTunnel::start(SshSettings {
        machine: "bench".into(),
        destination: destination.clone(),
        identity_file: Some(sshd.identity_file()),
        known_hosts: Some(sshd.known_hosts()),
        remote_socket: remote_socket.to_owned(),
        dial_stdio: false,
        connect_timeout: timeout,
    })?;
    Ok(berth_guest::GuestConnector::over_ssh(
        berth_guest::GuestEndpoint::Ssh(destination),
        tunnel,
        timeout,
    ))
}

/// The processes a GET passes through besides the benchmark's own.
struct Processes<'a> {
    berth: Option<u32>,
    /// The OpenSSH forward's local `ssh`.
    ssh: Option<u32>,
    /// socat's listener; its per-connection children are counted while they live.
    socat: Option<u32>,
    /// The far engine's namespace: its sshd processes.
    netns: &'a str,
    dockerd: u32,
}

/// CPU time (s), or per unit (µs) once [`Cpu::since`] made it so.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    /// The benchmark's own process (the client; berth's SSH client on the in-process side).
    bench: f64,
    berth: f64,
    socat: f64,
    ssh: f64,
    sshd: f64,
    dockerd: f64,
}

impl Processes<'_> {
    fn cpu(&self) -> Cpu {
        let of = |pid: Option<u32>| pid.and_then(|p| procfs::cpu_secs(p, false)).unwrap_or(0.0);
        Cpu {
            bench: of(Some(std::process::id())),
            berth: of(self.berth),
            socat: self.socat.map_or(0.0, |p| {
                procfs::cpu_secs(p, true).unwrap_or(0.0)
                    + procfs::children(p)
                        .into_iter()
                        .filter_map(|c| procfs::cpu_secs(c, false))
                        .sum::<f64>()
            }),
            ssh: of(self.ssh),
            sshd: sshd_pids(self.netns)
                .into_iter()
                .filter_map(|p| procfs::cpu_secs(p, false))
                .sum(),
            dockerd: of(Some(self.dockerd)),
        }
    }
}

impl Cpu {
    /// µs per unit (a GET, a MiB) between `before` and now (`self`).
    fn since(&self, before: &Cpu, units: f64) -> Cpu {
        let per = |now: f64, then: f64| (now - then).max(0.0) * 1e6 / units;
        Cpu {
            bench: per(self.bench, before.bench),
            berth: per(self.berth, before.berth),
            socat: per(self.socat, before.socat),
            ssh: per(self.ssh, before.ssh),
            sshd: per(self.sshd, before.sshd),
            dockerd: per(self.dockerd, before.dockerd),
        }
    }
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bench {:.0} µs, berth {:.0}, socat {:.0}, ssh {:.0}, sshd {:.0}, dockerd {:.0}",
            self.bench, self.berth, self.socat, self.ssh, self.sshd, self.dockerd
        )
    }
}

/// The CPU split per side, medians over the rounds.
fn cpu_table(title: &str, sides: &[Side], cpu: &[Vec<Cpu>]) -> String {
    let mut out = format!(
        "\n| {title} | benchmark (client) | berth | socat | local `ssh` | sshd | dockerd |\n|---|---|---|---|---|---|---|\n"
    );
    for (side, rounds) in sides.iter().zip(cpu) {
        let m = |f: fn(&Cpu) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
            side.name(),
            m(|c| c.bench),
            m(|c| c.berth),
            m(|c| c.socat),
            m(|c| c.ssh),
            m(|c| c.sshd),
            m(|c| c.dockerd)
        ));
    }
    out
}

/// The sshd processes of a namespace (the listener and the per-connection ones).
fn sshd_pids(netns: &str) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(ns) = std::fs::metadata(format!("/var/run/netns/{netns}")) else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.ino() == ns.ino() && m.dev() == ns.dev())
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sshd")
        })
        .collect()
}

/// `ssh -N -L local.sock:remote.sock` with the options of the CLI's `ssh` wrapper and
/// berth's cipher (AES-128-GCM); killed when dropped.
struct OpenSshForward {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl OpenSshForward {
    fn start(ssh: &Path, socket: &Path, remote: &Path, destination: &str) -> Result<Self> {
        let _ = std::fs::remove_file(socket);
        let child = Command::new(ssh)
            .args([
                "-N",
                "-c",
                "aes128-gcm@openssh.com",
                "-o",
                "ExitOnForwardFailure=yes",
                "-L",
            ])
            .arg(format!("{}:{}", socket.display(), remote.display()))
            .arg(destination)
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("ssh -L")?;
        let mut forward = Self {
            child,
            socket: socket.to_owned(),
        };
        let started = Instant::now();
        while !socket.exists() {
            if let Some(status) = forward.child.try_wait()? {
                bail!("ssh -L exited ({status})");
            }
            if started.elapsed() > std::time::Duration::from_secs(10) {
                bail!("ssh -L did not listen within 10 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(forward)
    }

    fn socket(&self) -> &Path {
        &self.socket
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for OpenSshForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The side order of a round (0 = berth), alternating.
fn order(flip: bool) -> [usize; 2] {
    if flip {
        [1, 0]
    } else {
        [0, 1]
    }
}

fn start_berth(bin: &Path, dir: &Path, tag: &str, machines: &[String]) -> Result<BerthProcess> {
    Ok(BerthProcess::start_config(
        bin,
        &dir.join(tag),
        &format!("\n{}", machines.join("\n")),
    )?)
}

/// A byte stream to either side.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn tls_config(certs: &TestCerts) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.file("ca.pem"))? {
        roots.add(cert?)?;
    }
    let chain =
        CertificateDer::pem_file_iter(certs.file("cert.pem"))?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(certs.file("key.pem"))?;
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?)
}

async fn connect_tls(
    config: &Arc<rustls::ClientConfig>,
    addr: &str,
    ip: std::net::Ipv4Addr,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V4(ip).into());
    Ok(tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await?)
}

/// p50 (µs) of `n` `GET /containers/json` on one kept-alive connection, and the
/// connection (still open, so its processes are still there to be counted).
async fn list_p50(io: Box<dyn Io>, n: usize) -> Result<(f64, OpenConnection)> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let uri: http::Uri = "/v1.41/containers/json".parse()?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sender.ready().await?;
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = uri.clone();
        req.headers_mut().insert(HOST, client::HOST_VALUE);
        let res = sender.send_request(req).await?;
        if !res.status().is_success() {
            bail!("GET /containers/json: {}", res.status());
        }
        res.into_body().collect().await?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok((
        percentile(&mut times, 50.0),
        OpenConnection {
            task: conn,
            _sender: sender,
        },
    ))
}

/// A client connection kept open; closed when dropped.
struct OpenConnection {
    task: tokio::task::JoinHandle<()>,
    _sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Seconds for `bytes` of an exec's stdout through a hijacked `exec start` on `io`
/// (the exec is created on `setup`).
async fn exec_hijack(
    setup: Box<dyn Io>,
    io: &mut Box<dyn Io>,
    container: &str,
    bytes: u64,
) -> Result<f64> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(setup)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = serde_json::json!({"AttachStdout": true, "AttachStderr": true, "Cmd": ["head", "-c", bytes.to_string(), "/dev/zero"]}).to_string();
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1.41/containers/{container}/exec"))
        .header(HOST, client::HOST_VALUE)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, body.len())
        .body(Full::new(Bytes::from(body)))?;
    let (status, answer) = client::send(&mut sender, req).await?;
    if !status.is_success() {
        bail!(
            "exec create: {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let id = serde_json::from_slice::<serde_json::Value>(&answer)?["Id"]
        .as_str()
        .context("no exec Id")?
        .to_owned();
    let start = r#"{"Detach":false,"Tty":false}"#;
    let head = format!(
        "POST /v1.41/exec/{id}/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {}\r\n\r\n{start}",
        start.len()
    );
    let t = Instant::now();
    io.write_all(head.as_bytes()).await?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    // Stream headers (8 bytes per frame) and the response head come on top.
    if total < bytes {
        bail!("exec hijack: {total} bytes of {bytes}");
    }
    Ok(secs)
}
