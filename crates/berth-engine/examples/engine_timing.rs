//! Times a managed engine: cold start (empty state dir), warm restarts (after `stop`),
//! stop, and the cost of `ensure_running` on a running machine (the request-path check).
//!
//! ```text
//! cargo run --release -p berth-engine --example engine_timing -- [RUNS]
//! ```
//! Needs root, like any managed engine. Uses machine `be-timing` under
//! `/tmp/berth-engine-timing`, removed at the end.

use std::time::{Duration, Instant};

use berth_engine::{EngineSupervisor, MachineConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3);
    let dir = std::path::PathBuf::from("/tmp/berth-engine-timing");
    let _ = std::fs::remove_dir_all(&dir);
    let supervisor = EngineSupervisor::new(MachineConfig {
        name: "be-timing".to_owned(),
        state_dir: dir.clone(),
        ..MachineConfig::default()
    })?;

    for run in 0..runs {
        let begun = Instant::now();
        supervisor.ensure_running().await?;
        let start = begun.elapsed();
        let begun = Instant::now();
        supervisor.stop().await?;
        let stop = begun.elapsed();
        let kind = if run == 0 {
            "cold (empty data)"
        } else {
            "warm (after stop)"
        };
        println!("start {kind}: {start:?}   stop: {stop:?}");
    }

    supervisor.ensure_running().await?;
    let calls = 10_000_000u32;
    let begun = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(supervisor.ensure_running().await?);
    }
    let per_call = begun.elapsed() / calls;
    println!("ensure_running when running: {per_call:?} per call ({calls} calls)");
    assert!(per_call < Duration::from_micros(1));

    supervisor.teardown().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
