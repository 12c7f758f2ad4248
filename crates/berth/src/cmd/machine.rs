//! `berth machine ls | start | stop | restart | rm | logs NAME`: talk to the daemon.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use http::Method;

use super::client;
use super::format::OutputFormat;
use crate::cli::{CommonArgs, MachineCommand};
use crate::control;

pub(crate) fn run(common: &CommonArgs, command: &MachineCommand) -> Result<()> {
    let control = control::control_path(&client::api_socket(common)?);
    let rt = client::runtime()?;
    let (name, action) = match command {
        MachineCommand::Ls { format } => {
            let report = super::status::daemon_report(common)?;
            let machines = super::status::records(&report["machines"]);
            match format.as_ref().unwrap_or(&OutputFormat::Table) {
                OutputFormat::Table => print!(
                    "{}",
                    super::format::table(super::status::MACHINE_COLUMNS, machines)
                ),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(machines)?),
                OutputFormat::Template(t) => print!(
                    "{}",
                    super::format::template(t, machines).map_err(super::UsageError)?
                ),
            }
            return Ok(());
        }
        MachineCommand::Logs { name } => {
            let body = rt.block_on(control::request(
                &control,
                Method::GET,
                &format!("/machines/{name}/logs"),
            ))?;
            print!("{}", String::from_utf8_lossy(&body));
            return Ok(());
        }
        MachineCommand::Start { name } => (name, "start"),
        MachineCommand::Stop { name } => (name, "stop"),
        MachineCommand::Restart { name } => (name, "restart"),
        MachineCommand::Rm { name } => (name, "rm"),
    };
    let path = format!("/machines/{name}/{action}");
    let request = control::request(&control, Method::POST, &path);
    let body = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("{action}: machine {name}"));
        bar.enable_steady_tick(Duration::from_millis(100));
        let r = rt.block_on(request);
        bar.finish_and_clear();
        r?
    } else {
        eprintln!("{action}: machine {name}…");
        rt.block_on(request)?
    };
    let msg = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    println!("{msg}");
    Ok(())
}
