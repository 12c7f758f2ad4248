use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a guest engine listens, written as dockerd's `-H` values are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GuestEndpoint {
    /// `unix:///path/to/docker.sock`
    Unix(PathBuf),
    /// `tcp://host:port`
    Tcp(String),
    /// `ssh://[user@]host[:port]`: reached through an SSH connection berth holds.
    Ssh(SshDestination),
    /// A TCP address inside a network namespace: a VM machine's dockerd on its tap
    /// device, which only processes in that namespace (berth's sockets made there) can
    /// reach. Chosen by berth, never parsed from configuration.
    NetnsTcp {
        /// The namespace's path (`/var/run/netns/berth-<name>`).
        netns: PathBuf,
        /// The engine's address inside it.
        addr: SocketAddr,
    },
}

/// The user, host and port of an `ssh://` endpoint, as `docker -H ssh://` reads them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SshDestination {
    /// The remote user; ssh's default (the local user or ssh config) when `None`.
    pub user: Option<String>,
    /// A host name or address (IPv6 without brackets).
    pub host: String,
    /// The port; ssh's default (22 or ssh config) when `None`.
    pub port: Option<u16>,
}

impl GuestEndpoint {
    /// The host of a `tcp://` endpoint (what its TLS certificate must name).
    pub fn tcp_host(&self) -> Option<&str> {
        match self {
            Self::Tcp(addr) => addr
                .rsplit_once(':')
                .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']')),
            _ => None,
        }
    }
}

/// Why an endpoint string was not understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid engine endpoint {input:?}: {reason}")]
pub struct EndpointParseError {
    input: String,
    reason: &'static str,
}

impl FromStr for GuestEndpoint {
    type Err = EndpointParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| EndpointParseError {
            input: s.to_owned(),
            reason,
        };
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(err("a unix socket path must be absolute (unix:///path)"));
            }
            Ok(Self::Unix(PathBuf::from(path)))
        } else if let Some(addr) = s.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(Self::Tcp(addr.to_owned()))
                }
                _ => Err(err("expected tcp://host:port")),
            }
        } else if let Some(rest) = s.strip_prefix("ssh://") {
            parse_ssh(rest.trim_end_matches('/')).map(Self::Ssh).ok_or_else(|| {
                err("expected ssh://[user@]host[:port] (no path: the engine's socket is the machine's `socket`)")
            })
        } else if s.starts_with('/') {
            Ok(Self::Unix(PathBuf::from(s)))
        } else {
            Err(err(
                "expected unix:///path, tcp://host:port or ssh://user@host[:port]",
            ))
        }
    }
}

impl fmt::Display for GuestEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
            Self::Ssh(d) => write!(f, "ssh://{d}"),
            Self::NetnsTcp { netns, addr } => {
                let ns = netns.file_name().unwrap_or(netns.as_os_str());
                write!(f, "tcp://{addr} (netns {})", ns.to_string_lossy())
            }
        }
    }
}

impl fmt::Display for SshDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// `[user@]host[:port]`, `[user@][v6]:port`; no path, no options smuggled to ssh.
fn parse_ssh(s: &str) -> Option<SshDestination> {
    let (user, hostport) = match s.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, s),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?.parse().ok()?)),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p.parse().ok()?)),
            None => (hostport, None),
        }
    };
    let plain = |t: &str| {
        !t.is_empty()
            && !t.starts_with('-')
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:%".contains(&b))
    };
    if !plain(host) || user.is_some_and(|u| !plain(u) || u.contains(':')) {
        return None;
    }
    Some(SshDestination {
        user: user.map(str::to_owned),
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_and_tcp_endpoints() {
        assert_eq!(
            "unix:///run/d.sock".parse::<GuestEndpoint>().unwrap(),
            GuestEndpoint::Unix("/run/d.sock".into())
        );
        assert_eq!(
            "tcp://127.0.0.1:2375".parse::<GuestEndpoint>().unwrap(),
            GuestEndpoint::Tcp("127.0.0.1:2375".into())
        );
        assert!("tcp://nohost".parse::<GuestEndpoint>().is_err());
        assert!("unix://relative".parse::<GuestEndpoint>().is_err());
        assert!("http://x".parse::<GuestEndpoint>().is_err());
    }

    #[test]
    fn parses_ssh_endpoints_as_docker_does() {
        let e: GuestEndpoint = "ssh://core@10.0.0.2:2222".parse().unwrap();
        assert_eq!(
            e,
            GuestEndpoint::Ssh(SshDestination {
                user: Some("core".into()),
                host: "10.0.0.2".into(),
                port: Some(2222),
            })
        );
        assert_eq!(e.to_string(), "ssh://core@10.0.0.2:2222");
        let e: GuestEndpoint = "ssh://[fd00::2]:22".parse().unwrap();
        assert_eq!(e.to_string(), "ssh://[fd00::2]:22");
        assert_eq!(
            "ssh://host".parse::<GuestEndpoint>().unwrap().to_string(),
            "ssh://host"
        );
        // Nothing that ssh would read as an option or a remote command.
        assert!("ssh://-oProxyCommand=x".parse::<GuestEndpoint>().is_err());
        assert!("ssh://u@host/var/run/docker.sock"
            .parse::<GuestEndpoint>()
            .is_err());
        assert!("ssh://u@host:port".parse::<GuestEndpoint>().is_err());
        assert!("ssh://".parse::<GuestEndpoint>().is_err());
        assert_eq!(
            "tcp://[::1]:2376"
                .parse::<GuestEndpoint>()
                .unwrap()
                .tcp_host(),
            Some("::1")
        );
    }
}
