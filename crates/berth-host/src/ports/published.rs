//! Inspect's `NetworkSettings.Ports` → the host listeners it asks for (gateway notes 12).
//!
//! `{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"::","HostPort":"8080"}],
//! "81/tcp":null}`: HostPort is a string, unpublished exposed ports are `null`, and the
//! IPv4 and IPv6 entries of one port may carry different HostPorts after a restart.
//!
//! The guest side of each binding is either the container itself (`container IP:port`,
//! when the whole inspect is known and the container is on exactly one network: the
//! address dockerd's own proxy forwards to) or, failing that, the engine's published
//! port on the namespace's loopback, where that proxy listens. The first saves the
//! proxy's hop (about 1 s of CPU per GiB); both reach the same process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde_json::Value;

use crate::{PortError, Proto};

/// One host listener and where its connections go inside the guest network.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Binding {
    pub(crate) proto: Proto,
    /// Where berth listens on the host: the entry's `HostIp:HostPort`.
    pub(crate) host: SocketAddr,
    /// Where the guest side connects inside the guest network: the container's
    /// address, or the engine's own listener (docker-proxy) for that entry, on
    /// loopback when it listens on all addresses.
    pub(crate) guest: SocketAddr,
    /// The container's port (`80` of `"80/tcp"`), for listings.
    pub(crate) container_port: u16,
}

impl Binding {
    /// Whether `self` and `other` are the same host listener (their guest side may
    /// differ: a re-apply moves it without closing the listener).
    pub(crate) fn same_listener(&self, other: &Binding) -> bool {
        self.proto == other.proto && self.host == other.host
    }

    /// Whether `self` and `other` cannot both be bound: same protocol and port, same
    /// family, and the same address or a wildcard on either side (IPv6 listeners are
    /// `IPV6_V6ONLY`, so the families never overlap).
    pub(crate) fn overlaps(&self, other: &Binding) -> bool {
        let (a, b) = (self.host, other.host);
        self.proto == other.proto
            && a.port() == b.port()
            && a.is_ipv4() == b.is_ipv4()
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
    }
}

/// Parses a `NetworkSettings.Ports` value. `null` and `{}` (a container that is not
/// running) ask for nothing; protocols other than TCP and UDP (sctp) are skipped.
/// With `container_ip`, every binding goes straight to `container_ip:<container port>`.
pub(crate) fn parse(
    ports: &Value,
    container_ip: Option<IpAddr>,
) -> Result<Vec<Binding>, PortError> {
    let invalid = |reason: String| PortError::InvalidPorts { reason };
    let map = match ports {
        Value::Null => return Ok(Vec::new()),
        Value::Object(map) => map,
        other => return Err(invalid(format!("expected an object, got {other}"))),
    };
    let mut explicit = Vec::new();
    // "" (all addresses) expands to both wildcards; an explicit entry for the same
    // address wins, so the two never ask for the same listener twice.
    let mut expanded = Vec::new();
    for (key, entries) in map {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let container_port: u16 = port
            .parse()
            .map_err(|_| invalid(format!("bad port key {key:?}")))?;
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => {
                tracing::debug!(key, "published port protocol not forwarded");
                continue;
            }
        };
        let entries = match entries {
            Value::Null => continue,
            Value::Array(entries) => entries,
            other => return Err(invalid(format!("{key}: expected a list, got {other}"))),
        };
        for entry in entries {
            let host_port = match &entry["HostPort"] {
                Value::String(s) if s.is_empty() => 0,
                Value::String(s) => s
                    .parse()
                    .map_err(|_| invalid(format!("{key}: bad HostPort {s:?}")))?,
                Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| invalid(format!("{key}: bad HostPort {n}")))?,
                Value::Null => 0,
                other => return Err(invalid(format!("{key}: bad HostPort {other}"))),
            };
            if host_port == 0 {
                // Not allocated (yet): nothing to bind.
                continue;
            }
            let direct = container_ip.map(|ip| SocketAddr::new(ip, container_port));
            let host_ip = entry["HostIp"].as_str().unwrap_or("");
            if host_ip.is_empty() {
                for ip in [Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()] {
                    expanded.push(Binding {
                        proto,
                        host: SocketAddr::new(ip, host_port),
                        guest: direct
                            .unwrap_or(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), host_port)),
                        container_port,
                    });
                }
                continue;
            }
            let ip: IpAddr = host_ip
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| invalid(format!("{key}: bad HostIp {host_ip:?}")))?;
            explicit.push(Binding {
                proto,
                host: SocketAddr::new(ip, host_port),
                guest: direct.unwrap_or(SocketAddr::new(proxy_ip(ip), host_port)),
                container_port,
            });
        }
    }
    let mut out: Vec<Binding> = Vec::with_capacity(explicit.len() + expanded.len());
    for b in explicit.into_iter().chain(expanded) {
        if !out.iter().any(|o| o.proto == b.proto && o.host == b.host) {
            out.push(b);
        }
    }
    Ok(out)
}

/// The container address dockerd's proxy forwards published ports to, from a whole
/// inspect: the address on the container's only network. `None` when there is no such
/// single answer (several networks: the proxy targets the first one joined, which
/// inspect does not tell; host or container network modes), and the guest side then
/// goes through the proxy.
pub(crate) fn container_ip(inspect: &Value) -> Option<IpAddr> {
    let settings = &inspect["NetworkSettings"];
    let ip = |v: &Value| v.as_str().filter(|s| !s.is_empty())?.parse::<IpAddr>().ok();
    match settings["Networks"].as_object() {
        Some(networks) if !networks.is_empty() => {
            // Networks without an address (host, none) count: they make it ambiguous.
            let mut each = networks.values().map(|n| ip(&n["IPAddress"]));
            match (each.next(), each.next()) {
                (Some(Some(ip)), None) => Some(ip),
                _ => None,
            }
        }
        _ => ip(&settings["IPAddress"]),
    }
}

/// The address the engine's listener for `host_ip` answers on inside its namespace.
fn proxy_ip(host_ip: IpAddr) -> IpAddr {
    match host_ip {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addrs(v: &Value) -> Vec<(Proto, String, String, u16)> {
        parse(v, None)
            .unwrap()
            .into_iter()
            .map(|b| {
                (
                    b.proto,
                    b.host.to_string(),
                    b.guest.to_string(),
                    b.container_port,
                )
            })
            .collect()
    }

    #[test]
    fn wildcards_forward_to_the_guest_loopback_of_their_family() {
        let v = json!({"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"::","HostPort":"8081"}],"81/tcp":null});
        assert_eq!(
            addrs(&v),
            vec![
                (
                    Proto::Tcp,
                    "0.0.0.0:8080".into(),
                    "127.0.0.1:8080".into(),
                    80
                ),
                (Proto::Tcp, "[::]:8081".into(), "[::1]:8081".into(), 80),
            ]
        );
    }

    #[test]
    fn specific_addresses_and_udp_are_kept() {
        let v = json!({"53/udp":[{"HostIp":"127.0.0.1","HostPort":"5353"}]});
        assert_eq!(
            addrs(&v),
            vec![(
                Proto::Udp,
                "127.0.0.1:5353".into(),
                "127.0.0.1:5353".into(),
                53
            )]
        );
    }

    #[test]
    fn empty_host_ip_means_both_wildcards_without_duplicates() {
        let v =
            json!({"80/tcp":[{"HostIp":"","HostPort":"8080"},{"HostIp":"::","HostPort":"8080"}]});
        assert_eq!(
            addrs(&v),
            vec![
                (Proto::Tcp, "[::]:8080".into(), "[::1]:8080".into(), 80),
                (
                    Proto::Tcp,
                    "0.0.0.0:8080".into(),
                    "127.0.0.1:8080".into(),
                    80
                ),
            ]
        );
    }

    #[test]
    fn not_running_and_unallocated_ask_for_nothing() {
        assert!(parse(&Value::Null, None).unwrap().is_empty());
        assert!(parse(&json!({}), None).unwrap().is_empty());
        assert!(parse(
            &json!({"80/tcp":[{"HostIp":"0.0.0.0","HostPort":""}]}),
            None
        )
        .unwrap()
        .is_empty());
        assert!(parse(
            &json!({"80/sctp":[{"HostIp":"0.0.0.0","HostPort":"80"}]}),
            None
        )
        .unwrap()
        .is_empty());
    }

    #[test]
    fn malformed_maps_are_errors() {
        for v in [
            json!([]),
            json!({"x/tcp":[]}),
            json!({"80/tcp":{}}),
            json!({"80/tcp":[{"HostIp":"nope","HostPort":"1"}]}),
            json!({"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"70000"}]}),
        ] {
            assert!(
                matches!(parse(&v, None), Err(PortError::InvalidPorts { .. })),
                "{v}"
            );
        }
    }

    #[test]
    fn a_known_container_address_is_the_guest_side_of_every_binding() {
        let v = json!({"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"::","HostPort":"8081"}]});
        let got: Vec<String> = parse(&v, Some("172.17.0.2".parse().unwrap()))
            .unwrap()
            .iter()
            .map(|b| format!("{} {}", b.host, b.guest))
            .collect();
        assert_eq!(
            got,
            ["0.0.0.0:8080 172.17.0.2:80", "[::]:8081 172.17.0.2:80"]
        );
    }

    #[test]
    fn the_container_address_is_used_only_when_it_is_unambiguous() {
        let one = json!({"NetworkSettings": {"IPAddress": "",
            "Networks": {"app": {"IPAddress": "172.18.0.2"}}}});
        assert_eq!(container_ip(&one), Some("172.18.0.2".parse().unwrap()));
        let two = json!({"NetworkSettings": {"IPAddress": "172.17.0.3",
            "Networks": {"app": {"IPAddress": "172.18.0.2"}, "bridge": {"IPAddress": "172.17.0.3"}}}});
        assert_eq!(container_ip(&two), None);
        let host =
            json!({"NetworkSettings": {"IPAddress": "", "Networks": {"host": {"IPAddress": ""}}}});
        assert_eq!(container_ip(&host), None);
        let legacy = json!({"NetworkSettings": {"IPAddress": "172.17.0.2"}});
        assert_eq!(container_ip(&legacy), Some("172.17.0.2".parse().unwrap()));
    }

    #[test]
    fn overlap_follows_the_kernel_bind_rules() {
        let b = |proto, host: &str| Binding {
            proto,
            host: host.parse().unwrap(),
            guest: host.parse().unwrap(),
            container_port: 1,
        };
        let any4 = b(Proto::Tcp, "0.0.0.0:80");
        assert!(any4.overlaps(&b(Proto::Tcp, "127.0.0.1:80")));
        assert!(!any4.overlaps(&b(Proto::Udp, "127.0.0.1:80")));
        assert!(!any4.overlaps(&b(Proto::Tcp, "[::]:80")));
        assert!(!any4.overlaps(&b(Proto::Tcp, "0.0.0.0:81")));
        assert!(!b(Proto::Tcp, "127.0.0.1:80").overlaps(&b(Proto::Tcp, "127.0.0.2:80")));
    }
}
