//! `--tenants`: what tenancy costs (issue "tenants"). `GET /containers/json?all=1` for
//! one tenant owning 100 of 1000 containers (10 tenants) on one engine, through berth,
//! against the same 100 containers listed directly on an engine that holds only them
//! (target ≤ 1.2×); `POST /containers/create` through a tenant's socket against the same
//! berth's untenanted (admin) socket (target ≤ 1.05×). Interleaved per round. Split
//! sides ask the engine directly what berth asks it (the list by the tenant's IDs, the
//! create's scoped body), and each side's CPU per request of berth and dockerd is counted.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use berth_test::{BerthProcess, TestEngine};
use bytes::Bytes;
use http::{Method, Uri};
use http_body_util::Empty;

use crate::stats::{median, percentile};
use crate::{client, procfs};

const TENANTS: usize = 10;
const OWNED: usize = 100;
const IMAGE: &str = "bb-busybox:latest";

/// Runs the scenario and returns its Markdown report.
pub(crate) fn run(berth_bin: &Path, rounds: usize, requests: usize) -> Result<String> {
    let shared = TestEngine::start(&format!("bb-te{}", std::process::id()))?;
    shared.import_busybox(IMAGE)?;
    let alone = TestEngine::start(&format!("bb-ta{}", std::process::id()))?;
    alone.import_busybox(IMAGE)?;
    let dir = tempfile::tempdir()?;
    let mut config = format!("shared_images = [\"{IMAGE}\"]\n");
    for t in 0..TENANTS {
        config.push_str(&format!(
            "[[tenants]]\nname = \"t{t}\"\nsocket = \"{}\"\n",
            dir.path().join(format!("t{t}.sock")).display()
        ));
    }
    std::fs::write(dir.path().join("berth.toml"), config)?;
    let berth = BerthProcess::start(
        berth_bin,
        &shared.host(),
        &[
            "--config",
            dir.path().join("berth.toml").to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
    )?;
    let tenant0 = dir.path().join("t0.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // What berth would have made for each tenant, made directly (faster): the
        // owner label and the namespaced name.
        eprintln!("creating {} containers…", TENANTS * OWNED + OWNED);
        for t in 0..TENANTS {
            populate(shared.socket(), &format!("t{t}"), OWNED).await?;
        }
        populate(alone.socket(), "t0", OWNED).await?;
        let list: Uri = "/v1.41/containers/json?all=1".parse()?;
        // The same list, label-filtered (what berth asked before it kept the tenant's
        // container IDs).
        let label = r#"{"label":{"berth.tenant=t0":true}}"#;
        let query = |filters: &str| {
            let f: String = filters
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("/v1.41/containers/json?all=1&filters={f}")
        };
        let filtered: Uri = query(label).parse()?;
        // What berth asks now: by the tenant's IDs, the label kept as the guard.
        let owned = client::api_ok(shared.socket(), Method::GET, &filtered.to_string(), None).await?;
        let ids: serde_json::Map<String, serde_json::Value> = owned
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["Id"].as_str()?.to_owned(), true.into())))
            .collect();
        let by_ids = serde_json::json!({"label": {"berth.tenant=t0": true}, "id": ids});
        let by_ids: Uri = query(&by_ids.to_string()).parse()?;
        let mut list_sides = Sides::new(["tenant", "direct", "filter", "ids"]);
        for round in 0..rounds {
            // Four sides, in an order that turns each round.
            for side in 0..4 {
                let i = (side + round) % 4;
                let (socket, uri, engine) = match i {
                    0 => (tenant0.as_path(), &list, &shared),
                    1 => (alone.socket(), &list, &alone),
                    2 => (shared.socket(), &filtered, &shared),
                    _ => (shared.socket(), &by_ids, &shared),
                };
                let cpu = Cpu::of(berth.pid(), engine.dockerd_pid());
                let p50 = list_p50(socket, uri, requests).await?;
                list_sides.add(i, p50, cpu.since(berth.pid(), engine.dockerd_pid()));
                eprintln!("[{}/{rounds}] list {:7} p50 {p50:.0} µs", round + 1, list_sides.names[i]);
            }
        }
        let body = Bytes::from(serde_json::json!({"Image": IMAGE, "Cmd": ["true"]}).to_string());
        let unnamed = |_| String::new();
        // Creates are removed on the engine directly.
        let remover = shared.socket();
        // The tenant's first create makes its default network: not timed.
        client::create_p50(&tenant0, remover, &unnamed, &body, 1).await?;
        // What berth sends the engine for the tenant's create (its default network with
        // the tenant's name as an alias, the owner label, a namespaced name).
        let network = "t0.bridge";
        let scoped = Bytes::from(
            serde_json::json!({
                "Image": IMAGE, "Cmd": ["true"], "Labels": {"berth.tenant": "t0"},
                "HostConfig": {"NetworkMode": network},
                "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": ["bench"]}}},
            })
            .to_string(),
        );
        let mut create_sides = Sides::new(["tenant", "admin", "engine"]);
        for round in 0..rounds {
            for side in 0..3 {
                let i = (side + round) % 3;
                let (socket, body, named) = match i {
                    0 => (tenant0.as_path(), &body, None),
                    1 => (berth.socket(), &body, None),
                    _ => (shared.socket(), &scoped, Some(format!("t0.b{round}"))),
                };
                let cpu = Cpu::of(berth.pid(), shared.dockerd_pid());
                let query = |i| named.as_ref().map(|n| format!("?name={n}-{i}")).unwrap_or_default();
                let p50 = client::create_p50(socket, remover, &query, body, requests).await?;
                create_sides.add(i, p50, cpu.since(berth.pid(), shared.dockerd_pid()));
                eprintln!("[{}/{rounds}] create {:6} p50 {p50:.0} µs", round + 1, create_sides.names[i]);
            }
        }
        let n = (rounds * requests) as f64;
        let (l, c) = (&list_sides, &create_sides);
        let row = |what: &str, (a, b): (usize, usize), s: &Sides, target: Option<f64>| {
            let r = s.ratio(b, a);
            let verdict = match target {
                None => " | |".to_owned(),
                Some(t) if r <= t => format!(" ≤ {t}× | pass |"),
                Some(t) => format!(" ≤ {t}× | FAIL (> {t}×) |"),
            };
            format!(
                "| {what} | {:.0} | {:.0} | {r:.3}× |{verdict}\n",
                median(&s.p50[a]),
                median(&s.p50[b])
            )
        };
        let mut out = String::from("| row | baseline | tenant | ratio | target | verdict |\n|---|---|---|---|---|---|\n");
        out += &row("`GET /containers/json?all=1`, p50 µs (100 of 1000, 10 tenants, vs an engine with only the 100)", (1, 0), l, Some(1.2));
        out += &row("split: the engine's label-filtered list of the 1000 (what berth asked before), p50 µs, vs the engine with only the 100", (1, 2), l, None);
        out += &row("split: the engine's list of the 1000 by the tenant's IDs + label (what berth asks), p50 µs, vs the engine with only the 100", (1, 3), l, None);
        out += &row("split: through berth vs that list asked directly", (3, 0), l, None);
        out += &row("`POST /containers/create`, p50 µs (tenant socket vs the same berth's admin socket)", (1, 0), c, Some(1.05));
        out += &row("split: the engine asked directly what berth asks for the tenant (its network, alias, label, name) vs the admin socket", (1, 2), c, None);
        out += &row("split: through the tenant's socket vs that asked directly", (2, 0), c, None);
        out += &format!(
            "\nMedian over {rounds} rounds of the per-round ratio of p50s ({requests} requests per round and side; each create removed, untimed, on the engine directly).\n\n\
             CPU per request, µs (all rounds; /proc schedstat of berth's and the engine's dockerd's threads):\n\n\
             | side | berth | dockerd |\n|---|---|---|\n"
        );
        for (what, s) in [("list", l), ("create", c)] {
            for (i, name) in s.names.iter().enumerate() {
                out += &format!("| {what} {name} | {:.0} | {:.0} |\n", s.cpu[i].0 * 1e6 / n, s.cpu[i].1 * 1e6 / n);
            }
        }
        Ok(out)
    })
}

/// Each side's p50s per round and CPU seconds (berth, dockerd) over all rounds.
struct Sides {
    names: Vec<&'static str>,
    p50: Vec<Vec<f64>>,
    cpu: Vec<(f64, f64)>,
}

impl Sides {
    fn new<const N: usize>(names: [&'static str; N]) -> Self {
        Self {
            names: names.to_vec(),
            p50: vec![Vec::new(); N],
            cpu: vec![(0.0, 0.0); N],
        }
    }

    fn add(&mut self, side: usize, p50: f64, cpu: (f64, f64)) {
        self.p50[side].push(p50);
        self.cpu[side].0 += cpu.0;
        self.cpu[side].1 += cpu.1;
    }

    /// Median of the per-round ratios of side `a`'s p50 to side `b`'s.
    fn ratio(&self, a: usize, b: usize) -> f64 {
        let r: Vec<f64> = self.p50[a]
            .iter()
            .zip(&self.p50[b])
            .map(|(x, y)| x / y)
            .collect();
        median(&r)
    }
}

/// CPU seconds of berth and a dockerd at one moment.
struct Cpu(f64, f64);

impl Cpu {
    fn of(berth: u32, dockerd: u32) -> Self {
        let of = |pid| procfs::cpu_secs(pid, false).unwrap_or(0.0);
        Self(of(berth), of(dockerd))
    }

    /// What each used since `self`.
    fn since(&self, berth: u32, dockerd: u32) -> (f64, f64) {
        let now = Self::of(berth, dockerd);
        (now.0 - self.0, now.1 - self.1)
    }
}

/// `n` containers of tenant `t` on the engine behind `socket`, eight at a time.
async fn populate(socket: &Path, t: &str, n: usize) -> Result<()> {
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let mut set = tokio::task::JoinSet::new();
        for i in chunk {
            let socket = socket.to_owned();
            let body = serde_json::json!({
                "Image": IMAGE, "Cmd": ["true"], "Labels": { "berth.tenant": t },
            });
            let uri = format!("/v1.41/containers/create?name={t}.c{i}");
            set.spawn(async move { client::api_ok(&socket, Method::POST, &uri, Some(body)).await });
        }
        while let Some(done) = set.join_next().await {
            done??;
        }
    }
    Ok(())
}

/// p50 (µs) of `n` container lists on one keep-alive connection.
async fn list_p50(socket: &Path, uri: &Uri, n: usize) -> Result<f64> {
    let (mut sender, _conn) = client::http::<Empty<Bytes>>(socket).await?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let len = client::get(&mut sender, uri).await?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if len < 1000 {
            bail!("a list of {len} bytes: not the containers");
        }
    }
    Ok(percentile(&mut times, 50.0))
}
