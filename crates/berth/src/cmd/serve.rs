//! `berth serve`: build the engines and the gateway, bind the sockets, run until
//! SIGINT/SIGTERM, drain.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_gateway::{BoundSocket, Config, EngineRouter, Gateway, Guest, GuestTimeouts};
use berth_guest::{GuestConnector, GuestEndpoint};
use tokio::signal::unix::{signal, SignalKind};

use super::UsageError;
use crate::cli::ServeArgs;

pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let timeouts = GuestTimeouts {
        connect: secs("--connect-timeout", args.connect_timeout)?,
        verify: secs("--verify-timeout", args.verify_timeout)?,
        head: if args.head_timeout == 0.0 {
            Duration::MAX
        } else {
            secs("--head-timeout", args.head_timeout)?
        },
    };
    let Some(engine) = &args.engine else {
        return Err(UsageError(
            "no engine configured: pass --engine unix:///path/docker.sock".into(),
        )
        .into());
    };
    let endpoint: GuestEndpoint = engine
        .parse()
        .map_err(|e| UsageError(format!("--engine: {e}")))?;
    let guest = Guest::new(
        "default",
        GuestConnector::new(endpoint, timeouts.connect),
        timeouts,
        None,
    );
    let config = Config {
        drain_timeout: secs("--shutdown-timeout", args.shutdown_timeout)?,
        ..Config::default()
    };

    let mut sockets = Vec::new();
    let hosts = if args.hosts.is_empty() {
        vec![format!("unix://{}", default_socket().display())]
    } else {
        args.hosts.clone()
    };
    for host in &hosts {
        let path = host
            .strip_prefix("unix://")
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| {
                UsageError(format!(
                    "-H {host}: only unix:///absolute/path is supported"
                ))
            })?;
        let socket = BoundSocket::bind(path.as_ref(), 0o660)?;
        tracing::info!(socket = %socket.path().display(), engine = %engine, "berth listening");
        sockets.push(socket);
    }

    let gateway = Gateway::new(config, EngineRouter::new(vec![guest]));
    gateway.run(sockets, shutdown_signal()?).await;
    Ok(())
}

fn secs(flag: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| UsageError(format!("{flag}: {value} is not a number of seconds")).into())
}

/// `/run/berth/docker.sock` as root, `$XDG_RUNTIME_DIR/berth/docker.sock` otherwise.
fn default_socket() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/berth/docker.sock");
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("berth-{}", nix::unistd::getuid())));
    runtime.join("berth/docker.sock")
}

fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
