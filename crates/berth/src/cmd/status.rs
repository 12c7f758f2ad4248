//! `berth status`: the daemon's listeners, machines and forwards.

use anyhow::{Context, Result};
use http::Method;
use serde_json::Value;

use super::client;
use super::format::{self, OutputFormat};
use super::UsageError;
use crate::cli::CommonArgs;
use crate::control;

/// The machine table's columns (fields of `MachineReport`), shared by `status` and
/// `machine ls`.
pub(crate) const MACHINE_COLUMNS: &[&str] = &[
    "name",
    "kind",
    "state",
    "state_secs",
    "pid",
    "uptime_secs",
    "engine_version",
    "running_containers",
    "endpoint",
];

/// The forward table's columns (fields of a forward in the report).
const FORWARD_COLUMNS: &[&str] = &["machine", "proto", "host", "container_port", "container_id"];

pub(crate) fn run(common: &CommonArgs, output: &OutputFormat) -> Result<()> {
    let report = daemon_report(common)?;
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Template(t) => {
            print!(
                "{}",
                format::template(t, std::slice::from_ref(&report)).map_err(UsageError)?
            );
        }
        OutputFormat::Table => {
            println!(
                "berth {} (pid {})",
                report["version"].as_str().unwrap_or("?"),
                report["pid"]
            );
            for l in records(&report["listeners"]) {
                println!("listening on {}", l.as_str().unwrap_or_default());
            }
            if let Some(addr) = report["metrics_addr"].as_str() {
                println!("metrics on http://{addr}/metrics");
            }
            print!(
                "{}",
                format::table(MACHINE_COLUMNS, records(&report["machines"]))
            );
            print_down_reasons(records(&report["machines"]));
            print_vm_facts(records(&report["machines"]));
            print_last_failures(records(&report["machines"]));
            let forwards = records(&report["forwards"]);
            if !forwards.is_empty() {
                print!("\n{}", format::table(FORWARD_COLUMNS, forwards));
            }
        }
    }
    Ok(())
}

/// The daemon's report (`GET /status` on the control socket), as the JSON it is: every
/// output format reads these same fields.
pub(crate) fn daemon_report(common: &CommonArgs) -> Result<Value> {
    let socket = client::api_socket(common)?;
    let body = client::runtime()?.block_on(control::request(
        &control::control_path(&socket),
        Method::GET,
        "/status",
    ))?;
    serde_json::from_slice(&body).context("reading the daemon's report")
}

/// The elements of a JSON array (none if it is not one).
pub(crate) fn records(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// Why each down machine is down, under the table (too long for a column).
pub(crate) fn print_down_reasons(machines: &[Value]) {
    for m in machines {
        if let Some(error) = m["last_error"].as_str() {
            println!(
                "{}: down for {}s: {error}",
                m["name"].as_str().unwrap_or("?"),
                m["state_secs"]
            );
        }
    }
}

/// A managed machine's last failure (a wedged engine killed, an exit, a failed
/// start), under the table.
pub(crate) fn print_last_failures(machines: &[Value]) {
    for m in machines {
        if let Some(failure) = m["last_failure"].as_str() {
            println!(
                "{}: last failure {}s ago: {failure}",
                m["name"].as_str().unwrap_or("?"),
                m["last_failure_secs"]
            );
        }
    }
}

/// A VM machine's vCPUs, memory, accelerator and machine type (with why), under the
/// table.
pub(crate) fn print_vm_facts(machines: &[Value]) {
    for m in machines {
        let (Some(vcpus), Some(memory)) = (m["vcpus"].as_u64(), m["memory_mib"].as_u64()) else {
            continue;
        };
        let accelerator = m["accelerator"].as_str().unwrap_or("not started yet");
        let note = m["accelerator_note"]
            .as_str()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let machine_type = match m["machine_type"].as_str() {
            Some(t) => format!(
                ", machine {t}{}",
                m["machine_type_note"]
                    .as_str()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
            None => String::new(),
        };
        println!(
            "vm {}: {vcpus} vCPUs, {memory} MiB, accelerator {accelerator}{note}{machine_type}",
            m["name"].as_str().unwrap_or("?")
        );
    }
}
