//! `berth status`: the daemon's listeners, machines and forwards.

use anyhow::Result;
use http::Method;

use super::client;
use crate::cli::CommonArgs;
use crate::control::{self, DaemonReport};

pub(crate) fn run(common: &CommonArgs, as_json: bool) -> Result<()> {
    let socket = client::api_socket(common)?;
    let body = client::runtime()?.block_on(control::request(
        &control::control_path(&socket),
        Method::GET,
        "/status",
    ))?;
    if as_json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let report: DaemonReport = serde_json::from_slice(&body)?;
    println!("berth {} (pid {})", report.version, report.pid);
    for l in &report.listeners {
        println!("listening on {l}");
    }
    print_machines(&report);
    if !report.forwards.is_empty() {
        println!(
            "\n{:<12} {:<5} {:<24} {:<12}  CONTAINER",
            "MACHINE", "PROTO", "HOST", "CONTAINER PORT"
        );
        for f in &report.forwards {
            let host_ip = f["host_ip"].as_str().unwrap_or("?");
            let host = if host_ip.contains(':') {
                format!("[{host_ip}]:{}", f["host_port"])
            } else {
                format!("{host_ip}:{}", f["host_port"])
            };
            let id = f["container_id"].as_str().unwrap_or("");
            println!(
                "{:<12} {:<5} {:<24} {:<12}  {}",
                f["machine"].as_str().unwrap_or(""),
                f["proto"].as_str().unwrap_or(""),
                host,
                f["container_port"],
                &id[..id.len().min(12)]
            );
        }
    }
    Ok(())
}

/// The machine table shared by `status` and `machine ls`.
pub(crate) fn print_machines(report: &DaemonReport) {
    println!(
        "{:<12} {:<9} {:<10} {:>8} {:>9} {:<16} {:>7}  ENDPOINT",
        "MACHINE", "KIND", "STATE", "PID", "UPTIME", "ENGINE", "RUNNING"
    );
    for m in &report.machines {
        let dash = || "-".to_owned();
        println!(
            "{:<12} {:<9} {:<10} {:>8} {:>9} {:<16} {:>7}  {}",
            m.name,
            m.kind,
            m.state,
            m.pid.map_or_else(dash, |p| p.to_string()),
            m.uptime_secs.map_or_else(dash, |s| format!("{s}s")),
            m.engine_version.clone().unwrap_or_else(dash),
            m.running_containers.map_or_else(dash, |n| n.to_string()),
            m.endpoint
        );
    }
}
