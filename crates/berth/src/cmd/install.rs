//! `berth install` / `berth uninstall`: berth as a systemd service, the way dockerd is
//! one. `berth.socket` holds the configuration's API sockets (so clients can connect
//! while the service restarts) and hands them to `berth.service`, which runs
//! `berth serve -H fd://` with the same configuration and tells systemd when it is
//! ready and when it stops (`Type=notify`).
//!
//! A restart of the service is a berth restart: berth stops its managed engines cleanly
//! (their data stays) and starts the ones that were running again when it comes back.
//! `KillMode=mixed` lets berth do that itself: only berth gets SIGTERM; what is left in
//! the unit's cgroup after it exits is killed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::UsageError;
use crate::cli::{InstallArgs, UninstallArgs};
use crate::config::{self, FileConfig, HostAddr};
use crate::service;

const SERVICE: &str = "berth.service";
const SOCKET: &str = "berth.socket";

/// The unit directory when none is given.
const SYSTEM_UNITS: &str = "/etc/systemd/system";

pub(crate) fn install(args: &InstallArgs) -> Result<()> {
    let config = config_in_use(args.config.as_deref())?;
    let file = FileConfig::load(config.as_deref())?;
    let binary = std::env::current_exe().context("finding the berth binary")?;
    let units = Units::render(&binary, config.as_deref(), &file)?;
    if args.print {
        print!(
            "# {SOCKET}\n{}\n# {SERVICE}\n{}",
            units.socket, units.service
        );
        return Ok(());
    }
    let systemd = service::systemd_running();
    let dir = match (&args.unit_dir, systemd) {
        (Some(dir), _) => dir.clone(),
        (None, true) => PathBuf::from(SYSTEM_UNITS),
        (None, false) => bail!(
            "systemd is not running on this machine (no /run/systemd/system): nothing was installed. Run berth in the foreground with `berth serve{}`; `berth install --print` shows the units it would write",
            config_flag(config.as_deref())
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in [(SOCKET, &units.socket), (SERVICE, &units.service)] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if !systemd {
        println!(
            "systemd is not running on this machine (no /run/systemd/system): the units were written but not enabled or started"
        );
        return Ok(());
    }
    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", "--now", SOCKET])?;
    systemctl(&["enable", "--now", SERVICE])?;
    println!("berth is running as {SERVICE} (its sockets held by {SOCKET}); `systemctl status berth` shows it");
    Ok(())
}

pub(crate) fn uninstall(args: &UninstallArgs) -> Result<()> {
    let systemd = service::systemd_running();
    if systemd {
        systemctl(&["disable", "--now", SERVICE, SOCKET])?;
    }
    let dir = args
        .unit_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_UNITS));
    let mut removed = 0;
    for name in [SERVICE, SOCKET] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                println!("removed {}", path.display());
                removed += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    if systemd {
        systemctl(&["daemon-reload"])?;
        println!("berth is no longer a service; its machines' data is kept");
    } else {
        println!(
            "systemd is not running on this machine (no /run/systemd/system): nothing to stop or disable{}",
            if removed == 0 { "; no unit files found" } else { "" }
        );
    }
    Ok(())
}

/// The two units for one configuration.
#[derive(Debug)]
struct Units {
    socket: String,
    service: String,
}

impl Units {
    fn render(binary: &Path, config: Option<&Path>, file: &FileConfig) -> Result<Self> {
        let hosts = if file.hosts.is_empty() {
            vec![HostAddr::Unix(config::default_socket())]
        } else {
            file.hosts
                .iter()
                .map(|h| config::parse_host(h))
                .collect::<Result<Vec<_>>>()?
        };
        let mut listen = String::new();
        for host in &hosts {
            match host {
                HostAddr::Unix(path) => listen.push_str(&format!("ListenStream={}\n", path.display())),
                HostAddr::Tcp(addr) => listen.push_str(&format!("ListenStream={addr}\n")),
                HostAddr::Fd(_) => {
                    return Err(UsageError(
                        "hosts: fd:// is what the service is given; list the sockets themselves (unix:///path, tcp://host:port) for berth install".into(),
                    )
                    .into())
                }
            }
        }
        let group = file
            .group
            .as_deref()
            .map(|g| format!("SocketGroup={g}\n"))
            .unwrap_or_default();
        let socket = format!(
            "[Unit]
Description=berth Docker Engine API gateway (API sockets)
PartOf={SERVICE}

[Socket]
{listen}SocketMode=0660
SocketUser=root
{group}
[Install]
WantedBy=sockets.target
"
        );
        let service = format!(
            "[Unit]
Description=berth Docker Engine API gateway
After=network-online.target {SOCKET}
Wants=network-online.target
Requires={SOCKET}

[Service]
Type=notify
ExecStart={binary} serve{config} -H fd://
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
TimeoutStopSec=120
Restart=always
RestartSec=2
LimitNOFILE=infinity
LimitNPROC=infinity
Delegate=yes

[Install]
WantedBy=multi-user.target
",
            binary = binary.display(),
            config = config_flag(config),
        );
        Ok(Self { socket, service })
    }
}

/// The configuration file berth runs with: the one given (made absolute), else the
/// default path if it exists, else none (the built-in default).
fn config_in_use(given: Option<&Path>) -> Result<Option<PathBuf>> {
    match given {
        Some(path) => {
            Ok(Some(std::path::absolute(path).with_context(|| {
                format!("resolving {}", path.display())
            })?))
        }
        None => {
            let default = config::default_config_path();
            Ok(default.exists().then_some(default))
        }
    }
}

/// ` --config PATH`, or nothing for the built-in default.
fn config_flag(config: Option<&Path>) -> String {
    config.map_or_else(String::new, |c| format!(" --config {}", c.display()))
}

fn systemctl(args: &[&str]) -> Result<()> {
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .context("running systemctl")?;
    if !status.success() {
        bail!("systemctl {} failed ({status})", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_hold_the_configured_sockets_and_run_berth_on_them() {
        let file = FileConfig::parse(
            "hosts = [\"unix:///run/b/docker.sock\", \"tcp://0.0.0.0:2376\"]\ngroup = \"docker\"\ntlsverify = true\n",
            Path::new("b.toml"),
        )
        .unwrap();
        let units = Units::render(
            Path::new("/usr/local/bin/berth"),
            Some(Path::new("/etc/berth/berth.toml")),
            &file,
        )
        .unwrap();
        let socket = &units.socket;
        assert!(
            socket.contains("\nListenStream=/run/b/docker.sock\nListenStream=0.0.0.0:2376\n"),
            "{socket}"
        );
        assert!(
            socket.contains("SocketMode=0660") && socket.contains("SocketGroup=docker"),
            "{socket}"
        );
        assert!(
            socket.contains("PartOf=berth.service") && socket.contains("WantedBy=sockets.target"),
            "{socket}"
        );
        let service = &units.service;
        assert!(service.contains("\nType=notify\n"), "{service}");
        assert!(
            service.contains(
                "\nExecStart=/usr/local/bin/berth serve --config /etc/berth/berth.toml -H fd://\n"
            ),
            "{service}"
        );
        assert!(
            service.contains("Requires=berth.socket") && service.contains("KillMode=mixed"),
            "{service}"
        );

        let default = Units::render(Path::new("/b"), None, &FileConfig::default()).unwrap();
        assert!(
            default.service.contains("ExecStart=/b serve -H fd://\n"),
            "{}",
            default.service
        );
        assert!(
            default.socket.contains(&format!(
                "ListenStream={}\n",
                config::default_socket().display()
            )),
            "{}",
            default.socket
        );
        let fd = FileConfig::parse("hosts = [\"fd://\"]\n", Path::new("b.toml")).unwrap();
        assert!(Units::render(Path::new("/b"), None, &fd).is_err());
    }
}
