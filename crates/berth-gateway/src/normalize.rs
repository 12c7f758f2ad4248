//! Normalize: split the API version prefix off the path, once, without copying.
//!
//! dockerd registers every route twice, as `/v{version}/<path>` and bare `<path>`
//! (gateway notes 1.8). berth matches on the bare path but always forwards the
//! original URI unchanged (notes 2.3).

use http::Uri;

/// What berth learned from the request line; later stages read it, never re-parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestMeta {
    /// `Some((1, 41))` for `/v1.41/...`; `None` for unversioned paths.
    pub api_version: Option<(u16, u16)>,
    /// Byte offset in the URI path where the unversioned path starts.
    path_start: usize,
}

impl RequestMeta {
    /// The path with any `/vX.Y` prefix removed (it still starts with `/`).
    pub fn path<'a>(&self, uri: &'a Uri) -> &'a str {
        &uri.path()[self.path_start..]
    }
}

/// Splits the version prefix off the request path.
pub fn normalize(uri: &Uri) -> RequestMeta {
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(version) = parse_version(&rest[..end]) {
            // An exact `/v1.41` (nothing after) is not a route; leave it whole so it is
            // forwarded and answered by dockerd (404 page not found).
            if end < rest.len() {
                return RequestMeta {
                    api_version: Some(version),
                    path_start: 2 + end,
                };
            }
        }
    }
    RequestMeta {
        api_version: None,
        path_start: 0,
    }
}

/// dockerd's `{version:[0-9.]+}`: digits and dots; berth needs major.minor to compare.
fn parse_version(s: &str) -> Option<(u16, u16)> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let mut parts = s.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(p: &str) -> (Option<(u16, u16)>, String) {
        let uri: Uri = p.parse().unwrap();
        let m = normalize(&uri);
        (m.api_version, m.path(&uri).to_owned())
    }

    #[test]
    fn version_prefix_is_split_off_and_the_rest_kept() {
        assert_eq!(
            meta("/v1.41/containers/json?all=1"),
            (Some((1, 41)), "/containers/json".into())
        );
        assert_eq!(meta("/v1.24/_ping"), (Some((1, 24)), "/_ping".into()));
        assert_eq!(meta("/_ping"), (None, "/_ping".into()));
        assert_eq!(meta("/v1.41"), (None, "/v1.41".into()));
        assert_eq!(
            meta("/vx/containers/json"),
            (None, "/vx/containers/json".into())
        );
        assert_eq!(meta("/v1/x"), (Some((1, 0)), "/x".into()));
        assert_eq!(meta("/v99999999/x"), (None, "/v99999999/x".into()));
        assert_eq!(meta("/"), (None, "/".into()));
    }
}
