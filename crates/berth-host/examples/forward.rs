//! Forwards one container's published ports from an engine's network namespace to the
//! host until interrupted; with an engine socket, follows it with PortSync instead.
//! For trying forwards by hand and for throughput measurements:
//!
//! ```text
//! forward /var/run/netns/NS CONTAINER_ID '{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"}]}'
//! forward /var/run/netns/NS --sync /path/to/docker.sock
//! ```

use std::path::PathBuf;
use std::time::Duration;

use berth_guest::{GuestConnector, GuestEndpoint};
use berth_host::{GuestNet, PortForwarder, PortSync};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [netns, what, value] = args.as_slice() else {
        eprintln!("usage: forward NETNS_PATH (CONTAINER_ID PORTS_JSON | --sync ENGINE_SOCKET)");
        std::process::exit(2);
    };
    // One forwarded connection holds two sockets and up to two pipes.
    if let Ok((soft, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        if soft < hard {
            let _ = nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_NOFILE,
                hard,
                hard,
            );
        }
    }
    let forwarder = PortForwarder::new(GuestNet::Namespace(PathBuf::from(netns))).unwrap();
    if what == "--sync" {
        let engine = GuestConnector::new(GuestEndpoint::Unix(value.into()), Duration::from_secs(5));
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let listing = forwarder.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                eprintln!("{}", serde_json::to_string(&listing.list()).unwrap());
            }
        });
        PortSync::run(forwarder, engine, stop).await;
        return;
    }
    let ports: serde_json::Value = serde_json::from_str(value).unwrap();
    if let Err(e) = forwarder.apply(what, &ports).await {
        eprintln!("{e}");
        std::process::exit(1);
    }
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&forwarder.list()).unwrap()
    );
    let _ = tokio::signal::ctrl_c().await;
}
