//! The command line (clap derive). Flags that mean what a dockerd flag means use
//! dockerd's name (`-H/--host`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// berth: a Docker Engine API gateway in front of one or more guest engines.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the Docker Engine API on a local socket.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Socket to listen on, as dockerd's -H (unix:///path); repeatable.
    #[arg(short = 'H', long = "host", value_name = "URL")]
    pub(crate) hosts: Vec<String>,

    /// The guest engine to forward to (unix:///path/docker.sock or tcp://host:port).
    #[arg(long, value_name = "URL")]
    pub(crate) engine: Option<String>,

    /// Seconds allowed to open a connection to the engine.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub(crate) connect_timeout: f64,

    /// Seconds allowed for the engine's readiness ping (GET /_ping) to answer.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) verify_timeout: f64,

    /// Seconds allowed for the response head of quick reads (0 disables).
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    pub(crate) head_timeout: f64,

    /// Seconds in-flight requests may run on after SIGINT/SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) shutdown_timeout: f64,

    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}
