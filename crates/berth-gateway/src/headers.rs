//! Hop-by-hop headers (RFC 9110 §7.6.1) and the ones berth re-adds on upgrades.
//!
//! Everything else passes through untouched, repeated headers included
//! (BuildKit's `X-Docker-Expose-Session-Grpc-Method`, notes 1.7): berth moves the
//! whole `HeaderMap` and only removes entries from it.

use http::header::{self, HeaderMap, HeaderName};

/// Headers that describe one connection, not the message.
/// As strings: comparing names as `&str` is far cheaper than as `HeaderName`s, on
/// every header of every message.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes hop-by-hop headers, including every header named in `Connection`.
///
/// `Upgrade` is removed too; the upgrade path puts it back deliberately. On requests,
/// `Expect` is removed as well: hyper's server already answered `100 Continue` to the
/// client when the body was first polled (notes 1.5).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, is_request: bool) {
    // One pass over the few names present; nothing is allocated when none is
    // hop-by-hop (most Docker API messages), and only the names present are removed
    // (a `remove` hashes its name).
    let mut present: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name.as_str(), is_request))
        .cloned()
        .collect();
    if present.is_empty() {
        return;
    }
    present.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok()),
    );
    for name in present {
        headers.remove(name);
    }
}

/// Whether a head forwarded as bytes (`forward::framed`) drops the line named `name`
/// (any case): the hop-by-hop headers but `Transfer-Encoding` and `Trailer`, which
/// describe the framing the relayed body keeps, and `Upgrade` (upgrades are not
/// framed by berth).
pub(crate) fn drops_when_framed(name: &[u8]) -> bool {
    // By length first: this runs on every line of every framed head.
    let hop: &[&str] = match name.len() {
        2 => &["te"],
        7 => &["upgrade"],
        10 => &["connection", "keep-alive"],
        16 => &["proxy-connection"],
        18 => &["proxy-authenticate"],
        19 => &["proxy-authorization"],
        _ => return false,
    };
    debug_assert!(hop
        .iter()
        .all(|h| *h == "upgrade" || HOP_BY_HOP.contains(h)));
    hop.iter().any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// Whether a `Connection` header may name `name` to have it dropped: never one that
/// frames the message or says where it goes (`Connection: Content-Length` must not
/// make a framing proxy send a body without its length).
pub(crate) fn connection_may_drop(name: &[u8]) -> bool {
    !["content-length", "transfer-encoding", "host", "trailer"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

fn is_hop_by_hop(name: &str, is_request: bool) -> bool {
    HOP_BY_HOP.contains(&name) || name == "upgrade" || (is_request && name == "expect")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers_and_keeps_repeats() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, X-Private"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        h.insert("x-registry-auth", HeaderValue::from_static("abc"));
        h.append(
            "x-docker-expose-session-grpc-method",
            HeaderValue::from_static("a"),
        );
        h.append(
            "x-docker-expose-session-grpc-method",
            HeaderValue::from_static("b"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        strip_hop_by_hop(&mut h, true);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "content-length",
                "x-docker-expose-session-grpc-method",
                "x-registry-auth"
            ]
        );
        assert_eq!(
            h.get_all("x-docker-expose-session-grpc-method")
                .iter()
                .count(),
            2
        );
    }

    #[test]
    fn a_framed_head_drops_the_hop_by_hop_lines_but_its_framing() {
        for name in HOP_BY_HOP.iter().chain(&["upgrade"]) {
            let framing = matches!(*name, "transfer-encoding" | "trailer");
            assert_eq!(drops_when_framed(name.as_bytes()), !framing, "{name}");
            assert_eq!(
                drops_when_framed(name.to_ascii_uppercase().as_bytes()),
                !framing,
                "{name}"
            );
        }
        for kept in [
            "content-length",
            "host",
            "x-registry-auth",
            "tE-x",
            "expect",
        ] {
            assert!(!drops_when_framed(kept.as_bytes()), "{kept}");
        }
        assert!(!connection_may_drop(b"Content-Length"));
        assert!(connection_may_drop(b"x-private"));
    }
}
