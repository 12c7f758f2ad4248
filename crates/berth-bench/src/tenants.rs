//! `--tenants`: what tenancy costs (issue "tenants"). `GET /containers/json?all=1` for
//! one tenant owning 100 of 1000 containers (10 tenants) on one engine, through berth,
//! against the same 100 containers listed directly on an engine that holds only them
//! (target ≤ 1.2×); `POST /containers/create` through a tenant's socket against the same
//! berth's untenanted (admin) socket (target ≤ 1.05×). Interleaved per round.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use berth_test::{BerthProcess, TestEngine};
use bytes::Bytes;
use http::{Method, Uri};
use http_body_util::Empty;

use crate::client;
use crate::stats::{median, percentile};

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
        let mut through = Vec::new();
        let mut direct = Vec::new();
        let mut engine_filtered = Vec::new();
        let mut engine_ids = Vec::new();
        for round in 0..rounds {
            // Four sides, in an order that turns each round.
            for side in 0..4 {
                let (which, socket, uri, out) = match (side + round) % 4 {
                    0 => ("tenant", tenant0.as_path(), &list, &mut through),
                    1 => ("direct", alone.socket(), &list, &mut direct),
                    2 => ("filter", shared.socket(), &filtered, &mut engine_filtered),
                    _ => ("ids", shared.socket(), &by_ids, &mut engine_ids),
                };
                let p50 = list_p50(socket, uri, requests).await?;
                eprintln!("[{}/{rounds}] list {which:7} p50 {p50:.0} µs", round + 1);
                out.push(p50);
            }
        }
        let body = Bytes::from(format!(r#"{{"Image":"{IMAGE}","Cmd":["true"]}}"#));
        // The tenant's first create makes its default network: not timed.
        client::create_p50(&tenant0, berth.socket(), "", &body, 1).await?;
        let mut tenanted = Vec::new();
        let mut plain = Vec::new();
        for round in 0..rounds {
            for first in [round % 2 == 0, round % 2 != 0] {
                let (which, socket) = if first {
                    ("tenant", tenant0.as_path())
                } else {
                    ("admin", berth.socket())
                };
                let p50 = client::create_p50(socket, berth.socket(), "", &body, requests).await?;
                eprintln!("[{}/{rounds}] create {which:6} p50 {p50:.0} µs", round + 1);
                if first { &mut tenanted } else { &mut plain }.push(p50);
            }
        }
        let ratio = |a: &[f64], b: &[f64]| {
            median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>())
        };
        let (list_ratio, create_ratio) = (ratio(&through, &direct), ratio(&tenanted, &plain));
        let (filter_ratio, ids_ratio, berth_ratio) = (
            ratio(&engine_filtered, &direct),
            ratio(&engine_ids, &direct),
            ratio(&through, &engine_ids),
        );
        let verdict = |r: f64, target: f64| {
            if r <= target {
                "pass".to_owned()
            } else {
                format!("FAIL (> {target}×)")
            }
        };
        Ok(format!(
            "| row | baseline | tenant | ratio | target | verdict |\n|---|---|---|---|---|---|\n\
             | `GET /containers/json?all=1`, p50 µs (100 of 1000, 10 tenants, vs an engine with only the 100) | {:.0} | {:.0} | {list_ratio:.3}× | ≤ 1.2× | {} |\n\
             | split: the engine's label-filtered list of the 1000 (what berth asked before), p50 µs, vs the engine with only the 100 | {:.0} | {:.0} | {filter_ratio:.3}× | | |\n\
             | split: the engine's list of the 1000 by the tenant's IDs + label (what berth asks), p50 µs, vs the engine with only the 100 | {:.0} | {:.0} | {ids_ratio:.3}× | | |\n\
             | split: through berth vs that list asked directly | {:.0} | {:.0} | {berth_ratio:.3}× | | |\n\
             | `POST /containers/create`, p50 µs (tenant socket vs the same berth's admin socket) | {:.0} | {:.0} | {create_ratio:.3}× | ≤ 1.05× | {} |\n\n\
             Median over {rounds} rounds of the per-round ratio of p50s ({requests} requests per round and side; each create removed after it is timed).\n",
            median(&direct),
            median(&through),
            verdict(list_ratio, 1.2),
            median(&direct),
            median(&engine_filtered),
            median(&direct),
            median(&engine_ids),
            median(&engine_ids),
            median(&through),
            median(&plain),
            median(&tenanted),
            verdict(create_ratio, 1.05),
        ))
    })
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
