//! What the client-side commands share: finding the daemon that `berth serve` with the
//! same `--config` runs.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::CommonArgs;
use crate::config::{self, FileConfig};

/// The API socket of the daemon for these arguments.
pub(crate) fn api_socket(common: &CommonArgs) -> Result<PathBuf> {
    if let Some(socket) = &common.socket {
        return config::unix_host_path(socket);
    }
    let file = FileConfig::load(common.config.as_deref())?;
    match file.hosts.first() {
        Some(host) => config::unix_host_path(host),
        None => Ok(config::default_socket()),
    }
}

/// A current-thread runtime for one client request.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
