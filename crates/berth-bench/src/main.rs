//! berth-bench: berth's overhead against a direct connection to the same dockerd, and
//! against socat and HAProxy forwarding the same socket, interleaved in one run.
//!
//! ```text
//! client ──► direct ───────────────► dockerd (berth-test TestEngine, own netns)
//!        ──► berth serve ──────────►   │
//!        ──► socat (fork per conn) ─►   │
//!        ──► HAProxy (TCP mode) ────►   │
//!        ──► minimal, spin ─────────►   ┘  (reference forwarders: floor.rs)
//! ```
//!
//! Each round runs every scenario against every target, the target order rotating per
//! round and scenario so that drift hits all alike; the table shows medians of rounds.

mod client;
mod cold_start;
mod data;
mod engines;
mod floor;
mod forwarders;
mod policy;
mod ports;
mod procfs;
mod remote;
mod report;
mod scenarios;
mod stats;
mod tenants;
mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use berth_test::{BerthProcess, TestEngine};
use clap::Parser;
use http::Method;

use crate::floor::Floor;
use crate::forwarders::Forwarder;
use crate::report::Samples;
use crate::scenarios::{Params, Probe, Scenario, Target};

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
pub(crate) const TARGETS: [&str; 8] = [
    "direct",
    "berth",
    "socat",
    "haproxy",
    "berth-metrics",
    "berth-hyper",
    "minimal",
    "spin",
];

/// The targets that are the same berth started with more arguments: `berth-metrics`
/// records Prometheus metrics (its cost on the hot path is that column against
/// `berth`'s); `berth-hyper` passes every exchange through hyper instead of its own
/// framing (an interleaved A/B of the framed pass-through).
const VARIANTS: [(&str, &[&str]); 2] = [
    ("berth-metrics", &["--metrics-addr", "127.0.0.1:0"]),
    ("berth-hyper", &["--hyper-pass-through"]),
];

/// Measures berth against a direct connection to the same dockerd, socat and HAProxy.
///
/// Build berth first: `cargo build --release -p berth` (or pass --build). Needs root,
/// dockerd, socat and haproxy (Debian packages docker.io, socat, haproxy).
#[derive(Debug, Parser)]
#[command(name = "berth-bench")]
struct Args {
    /// Fewer rounds and smaller sizes: about two minutes in all.
    #[arg(long)]
    quick: bool,
    /// Rounds (default: 3 with --quick, else 5).
    #[arg(long)]
    rounds: Option<usize>,
    /// Only these scenarios or groups, comma-separated: ping-ka, json-ka, ping-fresh,
    /// json-fresh (latency); rps-1, rps-16, rps-64, rps-256 (rps); download, load,
    /// archive (stream); hijack; idle. With --remote: its rows ps, json, hijack, create.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// With --remote: the sides of the json and hijack rows, comma-separated (all when
    /// absent; the engine's TLS port always runs): berth-ssh, berth-tls, tls, ssh-l,
    /// socat-ssh-l, unix, in-process-ssh.
    #[arg(long, value_delimiter = ',', requires = "remote")]
    sides: Vec<String>,
    /// Targets, comma-separated, in column order (`berth-metrics`: berth with
    /// `--metrics-addr`, for the cost of recording metrics; `berth-hyper`: berth with
    /// `--hyper-pass-through`, for the framed pass-through's A/B; `minimal` and `spin`:
    /// this benchmark's own byte forwarders, the floor of a process hop that sleeps and
    /// of one that busy-polls).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,berth,socat,haproxy"
    )]
    targets: Vec<String>,
    /// The berth binary [default: target/release/berth].
    #[arg(long)]
    berth: Option<PathBuf>,
    /// Build berth first (`cargo build --release -p berth` in this workspace).
    #[arg(long, conflicts_with = "berth")]
    build: bool,
    /// An extra argument for `berth serve` (repeatable).
    #[arg(long = "berth-arg", allow_hyphen_values = true)]
    berth_args: Vec<String>,
    /// Size of the download/upload streams in MiB (default: 64 with --quick, else 1024).
    #[arg(long)]
    stream_mib: Option<u64>,
    /// Bytes through the hijacked `cat`, in MiB (default: 64 with --quick, else 512).
    #[arg(long)]
    hijack_mib: Option<u64>,
    /// Idle hijacked sessions (default: 100 with --quick, else 500).
    #[arg(long)]
    idle: Option<usize>,
    /// Also write the report (Markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also print every round's samples.
    #[arg(long)]
    raw: bool,
    /// Also write every round's samples (JSON) to this file.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Instead of the rows above: the merged container list of two engines behind one
    /// berth against the same number of containers on one engine (issue "several
    /// engines"), with this many containers in all (500 for the issue's target).
    #[arg(long, conflicts_with_all = ["only", "from_samples"])]
    engines: Option<usize>,
    /// Instead of the rows above: `POST /containers/create` through a berth with a
    /// 50-rule access policy against one with none (issue "access control").
    #[arg(long, conflicts_with_all = ["only", "from_samples", "engines"])]
    policy_create: bool,
    /// Instead of the rows above: published ports of a managed machine (issue "host
    /// integration"): a TCP upload through berth's forward against the same from inside
    /// the machine's namespace, and this many concurrent forwarded connections (1000 for
    /// the issue's target).
    #[arg(long, conflicts_with_all = ["only", "from_samples", "engines", "policy_create"])]
    ports: Option<usize>,
    /// Instead of the rows above: the first `GET /version` of a stopped managed machine
    /// through berth against starting the same dockerd by hand (issue "managed engines").
    #[arg(long, conflicts_with_all = ["only", "from_samples", "engines", "policy_create", "ports"])]
    cold_start: bool,
    /// Instead of the rows above: a `kind = "vm"` machine against a namespace machine
    /// (issue "VM machines"): cold start, keep-alive latency, exec hijack, `docker cp`
    /// and reading a shared directory.
    #[arg(long, conflicts_with_all = ["only", "from_samples", "engines", "policy_create", "ports", "cold_start"])]
    vm: bool,
    /// Instead of the rows above: remote machines (issue "remote engines"): `docker ps`
    /// through berth's SSH machine vs `docker -H ssh://`, `GET /containers/json` and an
    /// exec hijack through it vs the engine's TLS port, and placed creates among three
    /// machines vs `platform=`.
    #[arg(long, conflicts_with_all = ["from_samples", "engines", "policy_create", "ports", "cold_start", "vm"])]
    remote: bool,
    /// Instead of the rows above: tenants (issue "tenants"): one tenant's container list
    /// (100 of 1000) against the same 100 on an engine alone, and a create through a
    /// tenant's socket against the admin's.
    #[arg(long, conflicts_with_all = ["only", "from_samples", "engines", "policy_create", "ports", "cold_start", "vm", "remote"])]
    tenants: bool,
    /// Run nothing: print the report of samples written by --samples.
    #[arg(long, conflicts_with_all = ["samples", "only", "build", "quick"])]
    from_samples: Option<PathBuf>,
    /// Be the reference forwarder of target `minimal` or `spin` (the benchmark starts
    /// itself so): listen on --floor-listen, forward to --floor-upstream.
    #[arg(long, hide = true, requires_all = ["floor_listen", "floor_upstream"])]
    floor: Option<floor::Floor>,
    #[arg(long, hide = true)]
    floor_listen: Option<PathBuf>,
    #[arg(long, hide = true)]
    floor_upstream: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    if let (Some(kind), Some(listen), Some(upstream)) =
        (args.floor, &args.floor_listen, &args.floor_upstream)
    {
        return floor::serve(kind, listen, upstream);
    }
    if args.vm {
        let params = vm::VmParams {
            rounds: args.rounds.unwrap_or(if args.quick { 2 } else { 3 }),
            requests: if args.quick { 100 } else { 300 },
            hijack_mib: args.hijack_mib.unwrap_or(if args.quick { 64 } else { 512 }),
            file_mib: args
                .stream_mib
                .unwrap_or(if args.quick { 128 } else { 1024 }),
        };
        let report = vm::run(&berth_binary(args)?, &params)?;
        println!("{report}");
        if let Some(out) = &args.out {
            std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        }
        return Ok(());
    }
    if args.remote {
        let params = remote::RemoteParams {
            rounds: args.rounds.unwrap_or(if args.quick { 3 } else { 5 }),
            ps_runs: 20,
            requests: if args.quick { 200 } else { 1000 },
            hijack_bytes: args.hijack_mib.unwrap_or(if args.quick { 64 } else { 512 }) << 20,
            creates: if args.quick { 50 } else { 200 },
            only: args.only.clone(),
            sides: args
                .sides
                .iter()
                .map(|s| remote::Side::parse(s))
                .collect::<Result<_>>()?,
        };
        let report = remote::run(&berth_binary(args)?, &params)?;
        println!("{report}");
        if let Some(out) = &args.out {
            std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        }
        return Ok(());
    }
    if args.cold_start {
        let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 5 });
        let report = cold_start::run(&berth_binary(args)?, rounds)?;
        println!("{report}");
        if let Some(out) = &args.out {
            std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        }
        return Ok(());
    }
    if let Some(connections) = args.ports {
        raise_nofile();
        let params = ports::PortsParams {
            // A transfer takes half a second and one side alone varies by ±20 % from
            // round to round on this machine: more rounds than elsewhere, for a median.
            rounds: args.rounds.unwrap_or(if args.quick { 3 } else { 11 }),
            mib: args
                .stream_mib
                .unwrap_or(if args.quick { 256 } else { 1024 }),
            connections,
        };
        let report = ports::run(&berth_binary(args)?, &params)?;
        println!("{report}");
        if let Some(out) = &args.out {
            std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        }
        return Ok(());
    }
    if args.tenants {
        let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 5 });
        let requests = if args.quick { 30 } else { 100 };
        let report = tenants::run(&berth_binary(args)?, rounds, requests)?;
        println!("{report}");
        if let Some(out) = &args.out {
            std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        }
        return Ok(());
    }
    if args.policy_create {
        let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 5 });
        let requests = if args.quick { 30 } else { 100 };
        let report = policy::run(&berth_binary(args)?, rounds, requests)?;
        println!("{report}");
        if let Some(out) = &args.out {
            std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        }
        return Ok(());
    }
    if let Some(containers) = args.engines {
        let params = engines::EnginesParams {
            containers,
            rounds: args.rounds.unwrap_or(if args.quick { 3 } else { 5 }),
            requests: if args.quick { 50 } else { 200 },
        };
        let report = engines::run(&berth_binary(args)?, &params)?;
        println!("{report}");
        if let Some(out) = &args.out {
            std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        }
        return Ok(());
    }
    if let Some(path) = &args.from_samples {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let (samples, head) = report::from_json(&text)?;
        let idle_n = head
            .split(" idle sessions")
            .next()
            .and_then(|h| h.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(500);
        let mut present: Vec<&'static str> = Vec::new();
        for t in TARGETS {
            if samples.keys().any(|(_, s)| *s == t) {
                present.push(t);
            }
        }
        let md = render(head, &samples, &present, idle_n);
        print!("{md}");
        if let Some(out) = &args.out {
            std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
        }
        return Ok(());
    }
    let mut params = if args.quick {
        Params::quick()
    } else {
        Params::full()
    };
    if let Some(r) = args.rounds {
        params.rounds = r.max(1);
    }
    if let Some(m) = args.stream_mib {
        params.stream_bytes = m.max(1) << 20;
    }
    if let Some(m) = args.hijack_mib {
        params.hijack_bytes = m.max(1) << 20;
    }
    if let Some(n) = args.idle {
        params.idle_n = n.max(1);
    }
    let scenarios = select(&args.only)?;
    let targets = targets(&args.targets)?;
    let want = |t: &str| targets.contains(&t);

    // Everything that can be missing is checked before anything starts.
    if want("socat") {
        forwarders::which("socat", "socat")?;
    }
    if want("haproxy") {
        forwarders::which("haproxy", "haproxy")?;
    }
    let berth_bin = if want("berth") || VARIANTS.iter().any(|(name, _)| want(name)) {
        Some(berth_binary(args)?)
    } else {
        None
    };
    raise_nofile();

    let started = Instant::now();
    let load_at_start = loadavg();
    let dir = tempfile::Builder::new().prefix("bb-bench-").tempdir()?;
    eprintln!("starting dockerd…");
    let engine = TestEngine::start(&format!("bb-{}", std::process::id()))
        .context("starting the engine (berth-test TestEngine; needs root and dockerd)")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let engine_sock = engine.socket().to_owned();
    let busybox = "bb-busybox";
    if scenarios.iter().any(|s| {
        matches!(
            s,
            Scenario::Archive | Scenario::Hijack { .. } | Scenario::Idle
        )
    }) {
        engine.import_busybox(busybox)?;
    }
    eprintln!("making fixtures…");
    let mut fixtures = rt.block_on(scenarios::fixtures(
        &engine_sock,
        &scenarios,
        &params,
        busybox,
    ))?;
    fixtures.engine = Probe::Process(engine.dockerd_pid());
    let version = rt.block_on(client::api_ok(&engine_sock, Method::GET, "/version", None))?;

    let extra: Vec<&str> = args.berth_args.iter().map(String::as_str).collect();
    let main = Forwarders::start(&targets, dir.path(), &engine, berth_bin.as_deref(), &extra)?;
    let list: Vec<Target> = targets
        .iter()
        .map(|&name| {
            let (socket, probe) = main.endpoint(name, &engine_sock);
            Target {
                name,
                idle_socket: socket.clone(),
                idle_probe: probe,
                socket,
                probe,
            }
        })
        .collect();
    // The idle sessions go to forwarders started for them, one per round, so that
    // their memory is the sessions' own and not what earlier rows (or rounds) left in
    // the heap, and "released" is measured against a clean start.
    let fresh = Fresh {
        dir: dir.path(),
        engine: &engine,
        berth_bin: berth_bin.as_deref(),
        berth_args: &extra,
    };
    eprintln!(
        "ready after {:.0?}; {} rounds",
        started.elapsed(),
        params.rounds
    );

    let samples = rt.block_on(async {
        tokio::select! {
            r = bench(&list, &scenarios, &params, &fixtures, &fresh) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    })?;

    let head = header(
        args,
        &params,
        &version,
        started,
        &load_at_start,
        berth_bin.as_deref(),
    );
    if let Some(path) = &args.samples {
        std::fs::write(path, report::to_json(&samples, &head))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let md = render(head, &samples, &targets, params.idle_n);
    println!("{md}");
    if args.raw {
        println!("Per-round samples:\n\n```\n{}```", report::raw(&samples));
    }
    if let Some(out) = &args.out {
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    }
    // Forwarders and berth go before the engine they forward to.
    drop(main);
    drop(engine);
    Ok(())
}

/// The report: header, table, CPU table, misses.
fn render(mut md: String, samples: &Samples, targets: &[&'static str], idle_n: usize) -> String {
    let verdict = report::table(samples, targets, idle_n);
    md.push_str(&verdict.table);
    let cpu = report::cpu_table(samples, targets);
    if !cpu.is_empty() {
        md.push('\n');
        md.push_str(&cpu);
    }
    if Floor::ALL.iter().any(|f| targets.contains(&f.name())) {
        md.push_str(
            "\n`minimal` and `spin` are berth-bench's own byte forwarders (no HTTP), each a \
             process of its own: `minimal` blocks a thread per direction in read(2), the least \
             a forwarder that sleeps does per message; `spin` polls non-blocking sockets and \
             never sleeps while a connection is open (no wake-up of its own, a core's CPU). \
             They are the floors of a process hop on this machine; berth is not judged \
             against them.\n",
        );
    }
    if !verdict.misses.is_empty() {
        md.push_str("\nWhere berth misses:\n\n");
        for m in &verdict.misses {
            md.push_str(&format!("- {m}\n"));
        }
    }
    md
}

/// berth, socat, HAProxy and the reference forwarders in front of one engine (those
/// among the targets).
#[derive(Debug)]
struct Forwarders {
    berth: Option<BerthProcess>,
    /// The [`VARIANTS`] started, by target name.
    variants: Vec<(&'static str, BerthProcess)>,
    socat: Option<Forwarder>,
    haproxy: Option<Forwarder>,
    /// `minimal` and `spin`, by target name.
    floors: Vec<(&'static str, Forwarder)>,
}

impl Forwarders {
    fn start(
        targets: &[&str],
        dir: &Path,
        engine: &TestEngine,
        berth_bin: Option<&Path>,
        berth_args: &[&str],
    ) -> Result<Self> {
        let berth = match berth_bin {
            Some(bin) if targets.contains(&"berth") => Some(
                BerthProcess::start(bin, &engine.host(), berth_args).context("starting berth")?,
            ),
            _ => None,
        };
        let mut variants = Vec::new();
        for (name, extra) in VARIANTS {
            if let Some(bin) = berth_bin.filter(|_| targets.contains(&name)) {
                let args: Vec<&str> = berth_args.iter().chain(extra).copied().collect();
                let berth = BerthProcess::start(bin, &engine.host(), &args)
                    .with_context(|| format!("starting {name}"))?;
                variants.push((name, berth));
            }
        }
        let socat = if targets.contains(&"socat") {
            Some(Forwarder::socat(dir, engine.socket())?)
        } else {
            None
        };
        let haproxy = if targets.contains(&"haproxy") {
            Some(Forwarder::haproxy(dir, engine.socket())?)
        } else {
            None
        };
        let mut floors = Vec::new();
        for kind in Floor::ALL {
            if targets.contains(&kind.name()) {
                floors.push((kind.name(), Forwarder::floor(kind, dir, engine.socket())?));
            }
        }
        Ok(Self {
            berth,
            variants,
            socat,
            haproxy,
            floors,
        })
    }

    /// The socket to connect to for `target`, and how to observe its process.
    fn endpoint(&self, target: &str, engine: &Path) -> (PathBuf, Probe) {
        match target {
            "berth" => {
                let b = self.berth.as_ref().expect("berth started");
                (b.socket().to_owned(), Probe::Process(b.pid()))
            }
            "berth-metrics" | "berth-hyper" => {
                let (_, b) = self
                    .variants
                    .iter()
                    .find(|(name, _)| *name == target)
                    .expect("variant started");
                (b.socket().to_owned(), Probe::Process(b.pid()))
            }
            "socat" => {
                let f = self.socat.as_ref().expect("socat started");
                (f.socket().to_owned(), Probe::Tree(f.pid()))
            }
            "haproxy" => {
                let f = self.haproxy.as_ref().expect("haproxy started");
                (f.socket().to_owned(), Probe::Process(f.pid()))
            }
            "minimal" | "spin" => {
                let (_, f) = self
                    .floors
                    .iter()
                    .find(|(name, _)| *name == target)
                    .expect("reference forwarder started");
                (f.socket().to_owned(), Probe::Process(f.pid()))
            }
            _ => (engine.to_owned(), Probe::None),
        }
    }
}

/// Starts a forwarder for one target, for the idle sessions.
#[derive(Debug)]
struct Fresh<'a> {
    dir: &'a Path,
    engine: &'a TestEngine,
    berth_bin: Option<&'a Path>,
    berth_args: &'a [&'a str],
}

impl Fresh<'_> {
    fn start(&self, t: &Target, round: usize) -> Result<(Forwarders, Target)> {
        let sub = self.dir.join(format!("idle-{round}-{}", t.name));
        std::fs::create_dir_all(&sub)?;
        let fwd = Forwarders::start(
            &[t.name],
            &sub,
            self.engine,
            self.berth_bin,
            self.berth_args,
        )?;
        let (idle_socket, idle_probe) = fwd.endpoint(t.name, self.engine.socket());
        let target = Target {
            idle_socket,
            idle_probe,
            ..t.clone()
        };
        Ok((fwd, target))
    }
}

async fn bench(
    targets: &[Target],
    scenarios: &[Scenario],
    p: &Params,
    f: &scenarios::Fixtures,
    fresh: &Fresh<'_>,
) -> Result<Samples> {
    let mut samples = Samples::new();
    for round in 0..p.rounds {
        for (k, s) in scenarios.iter().enumerate() {
            let mut order: Vec<&Target> = targets.iter().collect();
            order.rotate_left((round + k) % targets.len());
            let t0 = Instant::now();
            let mut line = String::new();
            for t in order {
                let (fwd, t) = if *s == Scenario::Idle {
                    let (fwd, t) = fresh.start(t, round)?;
                    (Some(fwd), t)
                } else {
                    (None, t.clone())
                };
                let metrics = scenarios::run(*s, &t, p, f)
                    .await
                    .with_context(|| format!("{} against {}", s.name(), t.name))?;
                drop(fwd);
                if let Some((key, v)) = metrics.first() {
                    line.push_str(&format!(
                        "  {}: {v:.1} ({})",
                        t.name,
                        key.rsplit('.').next().unwrap_or(key)
                    ));
                }
                for (key, v) in metrics {
                    samples.entry((key, t.name)).or_default().push(v);
                }
            }
            eprintln!(
                "[{}/{}] {:<10} {:>5.1}s {line}",
                round + 1,
                p.rounds,
                s.name(),
                t0.elapsed().as_secs_f64()
            );
        }
        // What the forwarders hold after a round of the other rows (the idle sessions
        // had instances of their own).
        if scenarios.iter().any(|s| *s != Scenario::Idle) {
            for t in targets {
                if let Some(kib) = t.probe.kib() {
                    samples
                        .entry(("mem.end".into(), t.name))
                        .or_default()
                        .push(kib as f64 / 1024.0);
                }
            }
        }
    }
    Ok(samples)
}

fn select(only: &[String]) -> Result<Vec<Scenario>> {
    let all = Scenario::all();
    if only.is_empty() {
        return Ok(all);
    }
    for o in only {
        if !all.iter().any(|s| s.name() == *o || s.group() == o) {
            let names: Vec<String> = all.iter().map(Scenario::name).collect();
            bail!(
                "unknown scenario {o:?}; scenarios: {}; groups: latency, rps, stream, hijack, idle",
                names.join(", ")
            );
        }
    }
    Ok(all
        .into_iter()
        .filter(|s| only.iter().any(|o| s.name() == *o || s.group() == o))
        .collect())
}

fn targets(list: &[String]) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for t in list {
        let Some(known) = TARGETS.iter().find(|k| **k == t.as_str()) else {
            bail!("unknown target {t:?}; targets: {}", TARGETS.join(", "));
        };
        if !out.contains(known) {
            out.push(*known);
        }
    }
    if out.is_empty() {
        bail!("no targets");
    }
    Ok(out)
}

fn berth_binary(args: &Args) -> Result<PathBuf> {
    let built = Path::new(WORKSPACE).join("target/release/berth");
    if args.build {
        eprintln!("cargo build --release -p berth…");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--release", "-p", "berth"])
            .current_dir(WORKSPACE)
            .status()
            .context("running cargo")?;
        if !status.success() {
            bail!("cargo build --release -p berth failed");
        }
        return Ok(built.canonicalize().unwrap_or(built));
    }
    let candidates = match &args.berth {
        Some(p) => vec![p.clone()],
        None => vec![PathBuf::from("target/release/berth"), built],
    };
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or(p))
        .with_context(|| {
            "berth binary not found: build it first with `cargo build --release -p berth`, \
         or pass --berth PATH (or --build, or leave berth out with --targets)"
        })
}

/// Hundreds of connections need file descriptors: soft limit up to the hard one.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The 1-minute load average (other work on the machine skews every row).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let all = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&all)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn header(
    args: &Args,
    p: &Params,
    version: &serde_json::Value,
    started: Instant,
    load_at_start: &str,
    berth_bin: Option<&Path>,
) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let model = Command::new("lscpu")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("Model name:").map(|m| m.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let nproc = std::thread::available_parallelism().map_or(0, usize::from);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let cmdline: Vec<String> = std::env::args().skip(1).collect();
    let commit = first_line("git", &["-C", WORKSPACE, "describe", "--always", "--dirty"]);
    let socat = first_line("sh", &["-c", "socat -V | grep 'socat version'"]);
    let haproxy = first_line(
        "sh",
        &["-c", "haproxy -v 2>/dev/null || /usr/sbin/haproxy -v"],
    );
    let haproxy = haproxy.split(" - ").next().unwrap_or_default();
    let berth = berth_bin.map_or_else(
        || "not measured".to_owned(),
        |b| {
            let built = std::fs::metadata(b)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| {
                    first_line(
                        "date",
                        &[
                            "-u",
                            "-d",
                            &format!("@{}", d.as_secs()),
                            "+%Y-%m-%d %H:%M UTC",
                        ],
                    )
                })
                .unwrap_or_default();
            format!("`{}` built {built}", b.display())
        },
    );
    format!(
        "## berth-bench: {mode}, {rounds} rounds\n\n\
         - date: {date}\n\
         - machine: {nproc} CPUs (`nproc`), {model}, {mem_gib:.0} GiB\n\
         - dockerd: {dv} (API {api}); {socat}; {haproxy}\n\
         - berth: {berth}, workspace at `{commit}`\n\
         - command: `cargo run --release -p berth-bench -- {cmd}`\n\
         - sizes: streams {stream} MiB, hijack {hijack} MiB, {idle} idle sessions; \
         latency over {ping}/{json} keep-alive and {fping}/{fjson} fresh requests \
         (`/_ping` / `/containers/json`) per round; req/s over {rps:.1} s per round\n\
         - wall time: {wall:.0} s; load average {load_at_start} at the start, {load_end} at the end\n\n",
        mode = if args.quick { "quick" } else { "full" },
        rounds = p.rounds,
        dv = version["Version"].as_str().unwrap_or("?"),
        api = version["ApiVersion"].as_str().unwrap_or("?"),
        cmd = cmdline.join(" "),
        stream = p.stream_bytes >> 20,
        hijack = p.hijack_bytes >> 20,
        idle = p.idle_n,
        ping = p.ping_n,
        json = p.json_n,
        fping = p.fresh_ping_n,
        fjson = p.fresh_json_n,
        rps = p.rps_dur.as_secs_f64(),
        wall = started.elapsed().as_secs_f64(),
        load_end = loadavg(),
    )
}
