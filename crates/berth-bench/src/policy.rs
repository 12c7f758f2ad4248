//! `--policy-create`: what an access policy costs (issue "access control"): `docker
//! create` (the CLI's create body) through a berth judging a 50-rule policy, against a
//! berth with no policy in front of the same engine. Interleaved per round; each
//! create is removed again so the engine's state stays the same. Target ≤ 1.05×.

use std::path::Path;

use anyhow::Result;
use berth_test::{BerthProcess, TestEngine};
use bytes::Bytes;

use crate::client;
use crate::stats::median;

const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../berth-policy/examples/bench-50-rules.toml"
);

/// A create body as docker CLI 28 sends it for `docker create bb-busybox true`.
const CREATE_BODY: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":["true"],"Image":"bb-busybox:latest","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{"bench":"policy"},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"Devices":[],"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,"Ulimits":[],"Mounts":null},"NetworkingConfig":{"EndpointsConfig":{}}}"#;

/// Runs the scenario and returns its Markdown report.
pub(crate) fn run(berth_bin: &Path, rounds: usize, requests: usize) -> Result<String> {
    let engine = TestEngine::start(&format!("bb-po{}", std::process::id()))?;
    engine.import_busybox("bb-busybox:latest")?;
    let dir = tempfile::tempdir()?;
    let plain = BerthProcess::start(
        berth_bin,
        &engine.host(),
        &["--state-dir", dir.path().join("plain").to_str().unwrap()],
    )?;
    let judged = BerthProcess::start(
        berth_bin,
        &engine.host(),
        &[
            "--policy",
            POLICY,
            "--state-dir",
            dir.path().join("judged").to_str().unwrap(),
        ],
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let body = Bytes::from_static(CREATE_BODY.as_bytes());
        let mut plain_p50 = Vec::new();
        let mut judged_p50 = Vec::new();
        for round in 0..rounds {
            let order: [(&str, &Path); 2] = if round % 2 == 0 {
                [("no policy", plain.socket()), ("50 rules", judged.socket())]
            } else {
                [("50 rules", judged.socket()), ("no policy", plain.socket())]
            };
            for (which, socket) in order {
                let p50 = client::create_p50(socket, socket, &|_| String::new(), &body, requests).await?;
                eprintln!("[{}/{rounds}] {which:9} create p50 {p50:.0} µs", round + 1);
                if which == "no policy" {
                    plain_p50.push(p50);
                } else {
                    judged_p50.push(p50);
                }
            }
        }
        let ratios: Vec<f64> = judged_p50
            .iter()
            .zip(&plain_p50)
            .map(|(j, p)| j / p)
            .collect();
        let ratio = median(&ratios);
        let verdict = if ratio <= 1.05 { "pass" } else { "FAIL (> 1.05×)" };
        Ok(format!(
            "| row | berth, no policy | berth, 50-rule policy | ratio | target | verdict |\n|---|---|---|---|---|---|\n| `POST /containers/create` (CLI body), p50 µs | {:.0} | {:.0} | {ratio:.3}× | ≤ 1.05× | {verdict} |\n\nMedian over {rounds} rounds of the per-round ratio of p50s ({requests} creates per round and side, each removed after it is timed); policy: crates/berth-policy/examples/bench-50-rules.toml.\n",
            median(&plain_p50),
            median(&judged_p50),
        ))
    })
}
