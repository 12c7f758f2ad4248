use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a guest engine listens, written as dockerd's `-H` values are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GuestEndpoint {
    /// `unix:///path/to/docker.sock`
    Unix(PathBuf),
    /// `tcp://host:port`
    Tcp(String),
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
        } else if s.starts_with('/') {
            Ok(Self::Unix(PathBuf::from(s)))
        } else {
            Err(err("expected unix:///path or tcp://host:port"))
        }
    }
}

impl fmt::Display for GuestEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
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
}
