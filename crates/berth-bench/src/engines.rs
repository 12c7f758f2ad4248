//! `--engines`: the merged container list of several engines (issue "several
//! engines"): `GET /containers/json?all=1` with N containers spread over two engines
//! behind one berth, against the same N containers on one engine asked directly.
//! Interleaved per round, on one keep-alive connection each; target ≤ 1.3×.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use berth_test::{BerthProcess, TestEngine};
use bytes::Bytes;
use http::{Method, Uri};
use http_body_util::Empty;

use crate::client;
use crate::stats::{median, percentile};

/// What the engines scenario is asked to do.
#[derive(Debug)]
pub(crate) struct EnginesParams {
    pub(crate) containers: usize,
    pub(crate) rounds: usize,
    pub(crate) requests: usize,
}

/// Runs the scenario and returns its Markdown report.
pub(crate) fn run(berth_bin: &Path, params: &EnginesParams) -> Result<String> {
    let pid = std::process::id();
    eprintln!("starting three dockerd (one direct, two behind berth)…");
    let single = TestEngine::start(&format!("bb-1e{pid}"))?;
    let left = TestEngine::start(&format!("bb-2a{pid}"))?;
    let right = TestEngine::start(&format!("bb-2b{pid}"))?;
    for e in [&single, &left, &right] {
        e.import_busybox("bb-busybox:latest")?;
    }
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("berth.sock");
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "hosts = [\"unix://{}\"]\nstate_dir = \"{}\"\n\n[[machines]]\nname = \"left\"\nkind = \"external\"\nendpoint = \"unix://{}\"\nplatforms = [\"linux/amd64\"]\n\n[[machines]]\nname = \"right\"\nkind = \"external\"\nendpoint = \"unix://{}\"\nplatforms = [\"linux/arm64\"]\n",
            socket.display(),
            dir.path().join("state").display(),
            left.socket().display(),
            right.socket().display()
        ),
    )?;
    let _berth = BerthProcess::start_args(
        berth_bin,
        &["serve", "--config", config.to_str().unwrap()],
        &socket,
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        eprintln!("creating {} containers on each side…", params.containers);
        let half = params.containers / 2;
        create(single.socket(), params.containers).await?;
        create(left.socket(), half).await?;
        create(right.socket(), params.containers - half).await?;

        let uri: Uri = "/v1.41/containers/json?all=1".parse()?;
        let mut direct_p50 = Vec::new();
        let mut berth_p50 = Vec::new();
        let mut sizes = (0, 0);
        for round in 0..params.rounds {
            // Alternate which side goes first, so drift hits both alike.
            let order: [(&str, &Path); 2] = if round % 2 == 0 {
                [("direct", single.socket()), ("berth", &socket)]
            } else {
                [("berth", &socket), ("direct", single.socket())]
            };
            for (which, path) in order {
                let (p50, len) = measure(path, &uri, params.requests).await?;
                eprintln!("[{}/{}] {which:6} p50 {p50:.0} µs ({len} bytes)", round + 1, params.rounds);
                if which == "direct" {
                    direct_p50.push(p50);
                    sizes.0 = len;
                } else {
                    berth_p50.push(p50);
                    sizes.1 = len;
                }
            }
        }
        let ratios: Vec<f64> = berth_p50
            .iter()
            .zip(&direct_p50)
            .map(|(b, d)| b / d)
            .collect();
        let ratio = median(&ratios);
        let verdict = if ratio <= 1.3 { "pass" } else { "FAIL (> 1.30×)" };
        Ok(format!(
            "| row | direct (one engine) | berth (two engines) | ratio | target | verdict |\n|---|---|---|---|---|---|\n| `GET /containers/json?all=1`, {} containers, p50 µs | {:.0} | {:.0} | {:.2}× | ≤ 1.30× | {verdict} |\n\nMedians of {} rounds × {} requests on one keep-alive connection; answers of {} and {} bytes.\n",
            params.containers,
            median(&direct_p50),
            median(&berth_p50),
            ratio,
            params.rounds,
            params.requests,
            sizes.0,
            sizes.1,
        ))
    })
}

/// Creates `n` stopped containers through the API.
async fn create(socket: &Path, n: usize) -> Result<()> {
    let body = serde_json::json!({
        "Image": "bb-busybox:latest",
        "Cmd": ["true"],
        "Labels": {"bench": "engines"}
    });
    for _ in 0..n {
        client::api_ok(
            socket,
            Method::POST,
            "/v1.41/containers/create",
            Some(body.clone()),
        )
        .await
        .context("creating a container")?;
    }
    Ok(())
}

/// p50 (µs) of `n` GETs on one keep-alive connection, after 20 warm-up requests.
async fn measure(socket: &Path, uri: &Uri, n: usize) -> Result<(f64, u64)> {
    let (mut sender, _conn) = client::http::<Empty<Bytes>>(socket).await?;
    let mut len = 0;
    for _ in 0..20 {
        len = client::get(&mut sender, uri).await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client::get(&mut sender, uri).await?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok((percentile(&mut times, 50.0), len))
}
