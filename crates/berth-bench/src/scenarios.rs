//! The measured scenarios. Each runs against one target and yields named metrics; the
//! same code runs for every target.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request, Uri};
use http_body_util::Empty;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{self, Demux, HOST_VALUE};
use crate::data::{ChunkBody, Pattern, MAX_CHUNK};
use crate::procfs;
use crate::stats::percentile;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Latency of `GET /_ping` (`json: false`) or `GET /containers/json`, on one
    /// keep-alive connection or a fresh connection per request.
    Latency { json: bool, fresh: bool },
    /// Requests per second (`GET /_ping`) with this many keep-alive connections.
    Rps(usize),
    /// `GET /images/{big}/get`.
    Download,
    /// `POST /images/load` of the big image.
    Load,
    /// `PUT /containers/{id}/archive` of a tar with one big file.
    Archive,
    /// Bytes through `cat`, checked: in an exec'd process, or the main process of a
    /// container attached to (`attach`).
    Hijack { attach: bool },
    /// Many idle attach sessions: the forwarder's memory.
    Idle,
}

impl Scenario {
    pub(crate) fn all() -> Vec<Self> {
        let mut v = Vec::new();
        for fresh in [false, true] {
            for json in [false, true] {
                v.push(Self::Latency { json, fresh });
            }
        }
        v.extend([1, 16, 64, 256].map(Self::Rps));
        v.extend([
            Self::Download,
            Self::Load,
            Self::Archive,
            Self::Hijack { attach: false },
            Self::Hijack { attach: true },
            Self::Idle,
        ]);
        v
    }

    pub(crate) fn name(&self) -> String {
        match self {
            Self::Latency { json, fresh } => format!(
                "{}-{}",
                if *json { "json" } else { "ping" },
                if *fresh { "fresh" } else { "ka" }
            ),
            Self::Rps(n) => format!("rps-{n}"),
            Self::Download => "download".into(),
            Self::Load => "load".into(),
            Self::Archive => "archive".into(),
            Self::Hijack { attach: false } => "hijack".into(),
            Self::Hijack { attach: true } => "hijack-attach".into(),
            Self::Idle => "idle".into(),
        }
    }

    pub(crate) fn group(&self) -> &'static str {
        match self {
            Self::Latency { .. } => "latency",
            Self::Rps(_) => "rps",
            Self::Download | Self::Load | Self::Archive => "stream",
            Self::Hijack { .. } => "hijack",
            Self::Idle => "idle",
        }
    }
}

/// How much of everything.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) rounds: usize,
    pub(crate) ping_n: usize,
    pub(crate) json_n: usize,
    pub(crate) fresh_ping_n: usize,
    pub(crate) fresh_json_n: usize,
    pub(crate) warmup: usize,
    pub(crate) rps_warm: Duration,
    pub(crate) rps_dur: Duration,
    pub(crate) stream_bytes: u64,
    pub(crate) hijack_bytes: u64,
    pub(crate) idle_n: usize,
}

impl Params {
    pub(crate) fn quick() -> Self {
        Self {
            rounds: 3,
            ping_n: 1000,
            json_n: 200,
            fresh_ping_n: 300,
            fresh_json_n: 150,
            warmup: 50,
            rps_warm: Duration::from_millis(150),
            rps_dur: Duration::from_millis(500),
            stream_bytes: 64 << 20,
            hijack_bytes: 64 << 20,
            idle_n: 100,
        }
    }

    pub(crate) fn full() -> Self {
        Self {
            rounds: 5,
            ping_n: 5000,
            json_n: 1000,
            fresh_ping_n: 2000,
            fresh_json_n: 500,
            warmup: 200,
            rps_warm: Duration::from_millis(500),
            rps_dur: Duration::from_secs(3),
            stream_bytes: 1 << 30,
            hijack_bytes: 512 << 20,
            idle_n: 500,
        }
    }
}

/// How a target's forwarding process is observed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum Probe {
    /// Nothing in between (direct).
    #[default]
    None,
    /// One process (berth, HAProxy): its `VmRSS` and CPU time.
    Process(u32),
    /// A process and its children (socat forks per connection): summed `Pss` (shared
    /// pages divided among them) and CPU time, reaped children included.
    Tree(u32),
}

impl Probe {
    /// Resident memory in KiB.
    pub(crate) fn kib(self) -> Option<u64> {
        match self {
            Self::None => None,
            Self::Process(pid) => procfs::vm_rss_kib(pid),
            Self::Tree(pid) => Some(
                std::iter::once(pid)
                    .chain(procfs::children(pid))
                    .filter_map(procfs::pss_kib)
                    .sum(),
            ),
        }
    }

    /// CPU time (user + system) in seconds.
    fn cpu(self) -> Option<f64> {
        match self {
            Self::None => None,
            Self::Process(pid) => procfs::cpu_secs(pid, true),
            Self::Tree(pid) => {
                let kids: f64 = procfs::children(pid)
                    .into_iter()
                    .filter_map(|c| procfs::cpu_secs(c, false))
                    .sum();
                Some(procfs::cpu_secs(pid, true)? + kids)
            }
        }
    }
}

/// Reads CPU time around a measurement: the forwarder's, dockerd's and this client's.
#[derive(Debug, Clone, Copy)]
struct CpuMeter {
    probes: [Probe; 3],
    start: [Option<f64>; 3],
}

impl CpuMeter {
    fn start(forwarder: Probe, engine: Probe) -> Self {
        let probes = [forwarder, engine, Probe::Process(std::process::id())];
        Self {
            probes,
            start: probes.map(Probe::cpu),
        }
    }

    fn restart(&mut self) {
        self.start = self.probes.map(Probe::cpu);
    }

    /// CPU seconds spent since `start` by the forwarder, dockerd and the client (NaN
    /// where not measured).
    fn spent(&self) -> [f64; 3] {
        let mut out = [f64::NAN; 3];
        for (i, p) in self.probes.iter().enumerate() {
            if let (Some(now), Some(then)) = (p.cpu(), self.start[i]) {
                out[i] = now - then;
            }
        }
        out
    }
}

/// CPU metrics `{name}.cpu` (forwarder), `{name}.cpu.dockerd` and `{name}.cpu.client`,
/// in µs per request.
fn cpu_metrics(name: &str, spent: [f64; 3], requests: u64) -> Vec<Metric> {
    let per = |secs: f64| secs * 1e6 / requests.max(1) as f64;
    vec![
        (format!("{name}.cpu"), per(spent[0])),
        (format!("{name}.cpu.dockerd"), per(spent[1])),
        (format!("{name}.cpu.client"), per(spent[2])),
    ]
}

/// One socket to measure.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) socket: PathBuf,
    pub(crate) probe: Probe,
    /// Where the idle sessions go: a forwarder that served nothing else.
    pub(crate) idle_socket: PathBuf,
    pub(crate) idle_probe: Probe,
}

/// What the scenarios work on, made once through the direct socket.
#[derive(Debug, Default)]
pub(crate) struct Fixtures {
    pub(crate) pattern: Option<Pattern>,
    /// The big image's name, its `docker save` tar, for download and load.
    pub(crate) big_image: Option<(String, Bytes)>,
    /// A created (not started) container for `PUT /archive`.
    pub(crate) archive_container: Option<String>,
    /// A running `cat` with stdin open: exec'd into, and attached to by the idle sessions.
    pub(crate) cat_container: Option<String>,
    /// A running `cat` with stdin open and no log driver, for the attach hijack.
    pub(crate) attach_container: Option<String>,
    /// dockerd, for its CPU time.
    pub(crate) engine: Probe,
}

/// One metric of one run.
pub(crate) type Metric = (String, f64);

pub(crate) async fn run(s: Scenario, t: &Target, p: &Params, f: &Fixtures) -> Result<Vec<Metric>> {
    let sock = t.socket.as_path();
    if matches!(
        s,
        Scenario::Download | Scenario::Load | Scenario::Archive | Scenario::Hijack { .. }
    ) {
        // The previous transfer's dirty pages are written back now, not during this one.
        nix::unistd::sync();
    }
    let name = s.name();
    let meter = CpuMeter::start(t.probe, f.engine);
    let mib = |bytes: u64| (bytes >> 20).max(1);
    let (mut m, streamed) = match s {
        Scenario::Latency { .. } | Scenario::Rps(_) | Scenario::Idle => (Vec::new(), 0),
        Scenario::Download | Scenario::Load => {
            let (_, tar) = f.big_image.as_ref().context("no big image")?;
            (Vec::new(), mib(tar.len() as u64))
        }
        Scenario::Archive => (Vec::new(), mib(p.stream_bytes)),
        Scenario::Hijack { .. } => (Vec::new(), mib(p.hijack_bytes)),
    };
    m.extend(match s {
        Scenario::Latency { json, fresh } => {
            let uri = Uri::from_static(if json { "/containers/json" } else { "/_ping" });
            let n = match (json, fresh) {
                (false, false) => p.ping_n,
                (true, false) => p.json_n,
                (false, true) => p.fresh_ping_n,
                (true, true) => p.fresh_json_n,
            };
            let meter = CpuMeter::start(t.probe, f.engine);
            let ([p50, p99, mean], spent) = latency(sock, meter, &uri, fresh, n, p.warmup).await?;
            let mut m = vec![
                (format!("{name}.p50"), p50),
                (format!("{name}.p99"), p99),
                (format!("{name}.mean"), mean),
            ];
            m.extend(cpu_metrics(&name, spent, n as u64));
            m
        }
        Scenario::Rps(conns) => {
            let meter = CpuMeter::start(t.probe, f.engine);
            let (requests, spent) = rps(sock, meter, conns, p.rps_warm, p.rps_dur).await?;
            let mut m = vec![(name.clone(), requests as f64 / p.rps_dur.as_secs_f64())];
            m.extend(cpu_metrics(&name, spent, requests));
            m
        }
        Scenario::Download => {
            let (image, tar) = f.big_image.as_ref().context("no big image")?;
            vec![(name.clone(), download(sock, image, tar.len() as u64).await?)]
        }
        Scenario::Load => {
            let (_, tar) = f.big_image.as_ref().context("no big image")?;
            let chunks = (0..tar.len())
                .step_by(MAX_CHUNK)
                .map(|i| tar.slice(i..(i + MAX_CHUNK).min(tar.len())))
                .collect();
            let (rate, resp) = upload(sock, Method::POST, "/images/load?quiet=1", chunks).await?;
            let text = String::from_utf8_lossy(&resp);
            if !text.contains("Loaded image") || text.contains("errorDetail") {
                bail!("images/load answered {text}");
            }
            vec![(name.clone(), rate)]
        }
        Scenario::Archive => {
            let id = f
                .archive_container
                .as_ref()
                .context("no archive container")?;
            let pattern = f.pattern.as_ref().context("no pattern")?;
            let chunks = crate::data::tar_one_file(pattern, "big.bin", p.stream_bytes);
            let uri = format!("/containers/{id}/archive?path=/tmp");
            vec![(
                name.clone(),
                upload(sock, Method::PUT, &uri, chunks).await?.0,
            )]
        }
        Scenario::Hijack { attach } => {
            let pattern = f.pattern.as_ref().context("no pattern")?;
            let via = if attach {
                let id = f.attach_container.as_ref().context("no attach container")?;
                HijackVia::Attach(id)
            } else {
                let id = f.cat_container.as_ref().context("no cat container")?;
                HijackVia::Exec(id)
            };
            vec![(
                name.clone(),
                hijack(sock, via, pattern, p.hijack_bytes).await?,
            )]
        }
        Scenario::Idle => {
            let id = f.cat_container.as_ref().context("no cat container")?;
            match idle(&t.idle_socket, t.idle_probe, id, p.idle_n).await? {
                None => Vec::new(),
                Some([before, during, after]) => vec![
                    ("idle.rss".into(), during),
                    ("idle.before".into(), before),
                    ("idle.after".into(), after),
                    ("idle.growth".into(), during - before),
                    ("idle.retained".into(), after - before),
                ],
            }
        }
    });
    if streamed > 0 {
        // Streams: CPU µs per MiB.
        m.extend(cpu_metrics(&name, meter.spent(), streamed));
    }
    Ok(m)
}

fn mib_per_s(bytes: u64, dt: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / dt.as_secs_f64()
}

/// p50, p99 and mean in µs, and the CPU spent over the measured requests.
async fn latency(
    sock: &Path,
    mut meter: CpuMeter,
    uri: &Uri,
    fresh: bool,
    n: usize,
    warmup: usize,
) -> Result<([f64; 3], [f64; 3])> {
    let mut us = Vec::with_capacity(n);
    if fresh {
        for i in 0..warmup + n {
            if i == warmup {
                meter.restart();
            }
            let t = Instant::now();
            let (mut s, conn) = client::http::<Empty<Bytes>>(sock).await?;
            client::get(&mut s, uri).await?;
            let dt = t.elapsed();
            drop(s);
            // The connection closes before the next one opens.
            let _ = conn.await;
            if i >= warmup {
                us.push(dt.as_secs_f64() * 1e6);
            }
        }
    } else {
        let (mut s, _conn) = client::http::<Empty<Bytes>>(sock).await?;
        for i in 0..warmup + n {
            if i == warmup {
                meter.restart();
            }
            let t = Instant::now();
            client::get(&mut s, uri).await?;
            let dt = t.elapsed();
            if i >= warmup {
                us.push(dt.as_secs_f64() * 1e6);
            }
        }
    }
    let mean = us.iter().sum::<f64>() / us.len().max(1) as f64;
    let spent = meter.spent();
    Ok((
        [percentile(&mut us, 50.0), percentile(&mut us, 99.0), mean],
        spent,
    ))
}

/// `GET /_ping` requests completed over `conns` keep-alive connections within `dur`
/// after `warm`, and the CPU spent meanwhile.
async fn rps(
    sock: &Path,
    mut meter: CpuMeter,
    conns: usize,
    warm: Duration,
    dur: Duration,
) -> Result<(u64, [f64; 3])> {
    let barrier = Arc::new(tokio::sync::Barrier::new(conns + 1));
    let (tx, rx) = tokio::sync::watch::channel(None::<(Instant, Instant)>);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let sock = sock.to_owned();
        let barrier = barrier.clone();
        let mut rx = rx.clone();
        tasks.spawn(async move {
            let uri = Uri::from_static("/_ping");
            let ready = async {
                let (mut s, _conn) = client::http::<Empty<Bytes>>(&sock).await?;
                client::get(&mut s, &uri).await?;
                anyhow::Ok(s)
            }
            .await;
            barrier.wait().await;
            let mut s = ready?;
            let (start, end) = loop {
                if let Some(w) = *rx.borrow_and_update() {
                    break w;
                }
                rx.changed().await?;
            };
            let mut n = 0u64;
            loop {
                client::get(&mut s, &uri).await?;
                let now = Instant::now();
                if now >= end {
                    break;
                }
                if now >= start {
                    n += 1;
                }
            }
            anyhow::Ok(n)
        });
    }
    barrier.wait().await;
    let t0 = Instant::now();
    let (start, end) = (t0 + warm, t0 + warm + dur);
    let _ = tx.send(Some((start, end)));
    tokio::time::sleep_until(start.into()).await;
    meter.restart();
    tokio::time::sleep_until(end.into()).await;
    let spent = meter.spent();
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    Ok((total, spent))
}

/// MiB/s of `GET /images/{image}/get`, checking the length.
async fn download(sock: &Path, image: &str, expect: u64) -> Result<f64> {
    let (mut s, _conn) = client::http::<Empty<Bytes>>(sock).await?;
    let uri: Uri = format!("/images/{image}/get").parse()?;
    let t = Instant::now();
    let n = client::get(&mut s, &uri).await?;
    let dt = t.elapsed();
    if n != expect {
        bail!("GET {uri}: {n} bytes, {expect} expected");
    }
    Ok(mib_per_s(n, dt))
}

/// MiB/s of a tar upload (request sent until the response is complete), and the
/// response body.
async fn upload(
    sock: &Path,
    method: Method,
    uri: &str,
    chunks: Vec<Bytes>,
) -> Result<(f64, Bytes)> {
    let body = ChunkBody::new(chunks);
    let len = body.len();
    let (mut s, _conn) = client::http::<ChunkBody>(sock).await?;
    let req = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(HOST, HOST_VALUE)
        .header(CONTENT_TYPE, "application/x-tar")
        .header(CONTENT_LENGTH, len)
        .body(body)?;
    let t = Instant::now();
    let (status, resp) = client::send(&mut s, req).await?;
    let dt = t.elapsed();
    if !status.is_success() {
        bail!(
            "{method} {uri}: {status}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    Ok((mib_per_s(len, dt), resp))
}

/// Which `cat` a hijack streams through.
#[derive(Debug, Clone, Copy)]
enum HijackVia<'a> {
    /// A new `cat` exec'd (non-TTY) in this running container.
    Exec(&'a str),
    /// This container's own `cat` (non-TTY, stdin open), attached to.
    Attach(&'a str),
}

/// MiB/s of `size` pattern bytes through a hijacked `cat`, every byte compared on the
/// way back.
async fn hijack(sock: &Path, via: HijackVia<'_>, pattern: &Pattern, size: u64) -> Result<f64> {
    const CHUNK: usize = 256 * 1024;
    let (stream, early) = match via {
        HijackVia::Exec(container) => {
            let exec = client::api_ok(
                sock,
                Method::POST,
                &format!("/containers/{container}/exec"),
                Some(json!({
                    "AttachStdin": true, "AttachStdout": true, "AttachStderr": true,
                    "Tty": false, "Cmd": ["cat"],
                })),
            )
            .await?;
            let id = exec["Id"].as_str().context("exec create: no Id")?;
            client::hijack(
                sock,
                &format!("/exec/{id}/start"),
                r#"{"Detach":false,"Tty":false}"#,
            )
            .await?
        }
        HijackVia::Attach(container) => {
            let uri = format!("/containers/{container}/attach?stream=1&stdin=1&stdout=1&stderr=1");
            client::hijack(sock, &uri, "").await?
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    let t = Instant::now();
    let out = pattern.clone();
    let writer = tokio::spawn(async move {
        let mut pos = 0u64;
        while pos < size {
            let n = (size - pos).min(CHUNK as u64) as usize;
            wr.write_all(out.bytes(pos, n)).await?;
            pos += n as u64;
        }
        // The write half stays open (no EOF to cat) until every byte is back.
        std::io::Result::Ok(wr)
    });
    let mut demux = Demux::default();
    let mut check = Checker {
        pattern,
        got: 0,
        size,
    };
    demux.feed(&early, |s, d| check.check(s, d))?;
    let mut buf = vec![0u8; CHUNK];
    while check.got < size {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            bail!("hijacked stream closed after {} of {size} bytes", check.got);
        }
        demux.feed(&buf[..n], |s, d| check.check(s, d))?;
    }
    let dt = t.elapsed();
    drop(writer.await??);
    Ok(mib_per_s(size, dt))
}

/// Compares what comes back from `cat` with what was sent.
struct Checker<'a> {
    pattern: &'a Pattern,
    got: u64,
    size: u64,
}

impl Checker<'_> {
    fn check(&mut self, stream: u8, data: &[u8]) -> Result<()> {
        if stream != 1 {
            bail!(
                "cat wrote to stream {stream}: {}",
                String::from_utf8_lossy(data)
            );
        }
        if self.got + data.len() as u64 > self.size {
            bail!("cat sent more than {} bytes", self.size);
        }
        for piece in data.chunks(MAX_CHUNK) {
            if piece != self.pattern.bytes(self.got, piece.len()) {
                bail!("hijacked bytes differ at offset {}", self.got);
            }
            self.got += piece.len() as u64;
        }
        Ok(())
    }
}

/// Opens `n` idle attach sessions to `container`; returns the target's memory (MiB)
/// before, with them open, and after closing them (None when not measured).
async fn idle(sock: &Path, mem: Probe, container: &str, n: usize) -> Result<Option<[f64; 3]>> {
    const LINE: &[u8] = b"berth-bench idle check\n";
    let Some(_) = mem.kib() else {
        return Ok(None);
    };
    let sample = || mem.kib().map_or(f64::NAN, |k| k as f64 / 1024.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = sample();
    let uri = format!("/containers/{container}/attach?stream=1&stdin=1&stdout=1&stderr=1");
    let mut sessions = Vec::with_capacity(n);
    for _ in 0..n {
        sessions.push(client::hijack(sock, &uri, "").await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = sample();
    // Every session is live: a line written to the first comes back on all of them.
    sessions[0].0.write_all(LINE).await?;
    let check = async {
        for (i, (s, early)) in sessions.iter_mut().enumerate() {
            let mut demux = Demux::default();
            let mut got = Vec::new();
            demux.feed(early, |_, d| {
                got.extend_from_slice(d);
                Ok(())
            })?;
            let mut buf = [0u8; 256];
            while got.len() < LINE.len() {
                let k = s.read(&mut buf).await?;
                if k == 0 {
                    bail!("idle session {i} closed");
                }
                demux.feed(&buf[..k], |_, d| {
                    got.extend_from_slice(d);
                    Ok(())
                })?;
            }
            if got != LINE {
                bail!("idle session {i} got {:?}", String::from_utf8_lossy(&got));
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(30), check)
        .await
        .context("idle sessions did not all echo within 30 s")??;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = idle_rss.max(sample());
    drop(sessions);
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = sample();
        if now <= before + 1.0 || Instant::now() > deadline {
            break now;
        }
    };
    Ok(Some([before, during, after]))
}

/// Creates what the selected scenarios need, through `sock` (the engine itself).
pub(crate) async fn fixtures(
    sock: &Path,
    scenarios: &[Scenario],
    p: &Params,
    busybox: &str,
) -> Result<Fixtures> {
    let has = |s: Scenario| scenarios.contains(&s);
    let mut f = Fixtures::default();
    if has(Scenario::Download)
        || has(Scenario::Load)
        || has(Scenario::Archive)
        || has(Scenario::Hijack { attach: false })
        || has(Scenario::Hijack { attach: true })
    {
        f.pattern = Some(Pattern::new());
    }
    if has(Scenario::Hijack { attach: false }) || has(Scenario::Idle) {
        let host = json!({"NetworkMode": "none"});
        f.cat_container = Some(running_cat(sock, busybox, "bb-cat", host).await?);
    }
    if has(Scenario::Hijack { attach: true }) {
        // Its own container: the idle sessions' attaches to `bb-cat` must not get these
        // bytes, and no log driver copies them (dockerd would spend more on the log
        // file than on the stream).
        let host = json!({"NetworkMode": "none", "LogConfig": {"Type": "none"}});
        f.attach_container = Some(running_cat(sock, busybox, "bb-attach", host).await?);
    }
    if has(Scenario::Archive) {
        let name = "bb-archive";
        client::api_ok(
            sock,
            Method::POST,
            &format!("/containers/create?name={name}"),
            Some(json!({"Image": busybox, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}})),
        )
        .await?;
        f.archive_container = Some(name.into());
    }
    if has(Scenario::Download) || has(Scenario::Load) {
        let pattern = f.pattern.as_ref().context("no pattern")?;
        let image = "bb-big";
        let tar = crate::data::tar_one_file(pattern, "big.bin", p.stream_bytes);
        let (_, resp) = upload(
            sock,
            Method::POST,
            &format!("/images/create?fromSrc=-&repo={image}&tag=latest"),
            tar,
        )
        .await
        .context("docker import of the big image")?;
        let text = String::from_utf8_lossy(&resp);
        if text.contains("errorDetail") {
            bail!("docker import of the big image: {text}");
        }
        let (mut s, _conn) = client::http::<Empty<Bytes>>(sock).await?;
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = format!("/images/{image}/get").parse()?;
        req.headers_mut().insert(HOST, HOST_VALUE);
        let (status, saved) = client::send(&mut s, req).await?;
        if !status.is_success() || saved.len() as u64 <= p.stream_bytes {
            bail!(
                "docker save of the big image: {status}, {} bytes",
                saved.len()
            );
        }
        f.big_image = Some((image.into(), saved));
    }
    Ok(f)
}

/// Creates and starts `name`: a non-TTY `cat` with stdin open; returns its name.
async fn running_cat(
    sock: &Path,
    busybox: &str,
    name: &str,
    host_config: serde_json::Value,
) -> Result<String> {
    client::api_ok(
        sock,
        Method::POST,
        &format!("/containers/create?name={name}"),
        Some(json!({
            "Image": busybox, "Cmd": ["cat"], "OpenStdin": true, "StdinOnce": false,
            "Tty": false, "HostConfig": host_config,
        })),
    )
    .await?;
    client::api_ok(
        sock,
        Method::POST,
        &format!("/containers/{name}/start"),
        None,
    )
    .await?;
    Ok(name.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_catches_wrong_bytes() {
        let p = Pattern::new();
        let mut c = Checker {
            pattern: &p,
            got: 0,
            size: 10_000,
        };
        c.check(1, p.bytes(0, 4000).to_vec().as_slice()).unwrap();
        assert!(c.check(2, b"oops").is_err(), "stderr is not stdout");
        let mut bad = p.bytes(4000, 100).to_vec();
        bad[50] ^= 1;
        assert!(c.check(1, &bad).is_err());
        let mut c = Checker {
            pattern: &p,
            got: 0,
            size: 10,
        };
        assert!(c.check(1, p.bytes(0, 11)).is_err(), "more than sent");
    }

    #[test]
    fn scenario_names_are_unique() {
        let names: Vec<String> = Scenario::all().iter().map(Scenario::name).collect();
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(names.len(), dedup.len());
    }
}
