//! `berth tenant add | ls | rm`: the daemon's tenants, changed without a restart.

use anyhow::Result;
use bytes::Bytes;
use http::Method;
use serde_json::Value;

use super::client;
use super::format::{self, OutputFormat};
use crate::cli::{CommonArgs, TenantCommand};
use crate::control;

/// The columns of `berth tenant ls` (fields of a tenant report).
const COLUMNS: &[&str] = &[
    "name",
    "clients",
    "socket",
    "containers",
    "running",
    "networks",
    "volumes",
    "images",
];

pub(crate) fn run(common: &CommonArgs, command: &TenantCommand) -> Result<()> {
    let control = control::control_path(&client::api_socket(common)?);
    let rt = client::runtime()?;
    let body = match command {
        TenantCommand::Add {
            name,
            socket,
            uid,
            gid,
            tls,
            quotas,
        } => {
            let clients: Vec<String> = uid
                .iter()
                .map(|n| format!("uid:{n}"))
                .chain(gid.iter().map(|n| format!("gid:{n}")))
                .chain(tls.iter().map(|s| format!("tls:{s}")))
                .collect();
            let socket = socket.as_ref().map(std::path::absolute).transpose()?;
            let mut entry =
                serde_json::json!({ "name": name, "clients": clients, "socket": socket });
            if let (Value::Object(entry), Value::Object(quotas)) =
                (&mut entry, serde_json::to_value(quotas)?)
            {
                entry.extend(quotas.into_iter().filter(|(_, v)| !v.is_null()));
            }
            rt.block_on(control::request_with(
                &control,
                Method::POST,
                "/tenants",
                Bytes::from(entry.to_string()),
            ))?
        }
        TenantCommand::Rm { name } => rt.block_on(control::request(
            &control,
            Method::DELETE,
            &format!("/tenants/{name}"),
        ))?,
        TenantCommand::Ls { format } => {
            let body = rt.block_on(control::request(&control, Method::GET, "/tenants"))?;
            let tenants: Value = serde_json::from_slice(&body)?;
            let records = tenants.as_array().map(Vec::as_slice).unwrap_or_default();
            match format.as_ref().unwrap_or(&OutputFormat::Table) {
                OutputFormat::Table => print!("{}", format::table(COLUMNS, records)),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(records)?),
                OutputFormat::Template(t) => print!(
                    "{}",
                    format::template(t, records).map_err(super::UsageError)?
                ),
            }
            return Ok(());
        }
    };
    let msg = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    println!("{msg}");
    Ok(())
}
