//! Endpoint: method + raw path → [`Section`] and, for requests whose body or query the
//! limits judge, an operation.
//!
//! The path is read the way dockerd reads it (gateway notes 1.8): percent-decoded once,
//! cleaned (`//`, `.`, `..`, trailing `/`), then a `/v{[0-9.]+}` prefix split off.
//! dockerd answers a path that is not clean with a redirect and does nothing, so judging
//! the cleaned path can only judge more, never less. Object names are greedy
//! (`/containers/web/db/exec` is exec in the link alias `web/db`), so operations are
//! recognised by their suffix.

use std::borrow::Cow;

use crate::hostpath::clean_path;

/// A group of Docker API endpoints, as docker socket proxies name them
/// (Tecnativa's `CONTAINERS=1`, `EXEC=0`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Section {
    /// `/_ping`
    Ping,
    /// `/version`
    Version,
    /// `/info`
    Info,
    /// `/events`
    Events,
    /// `/system/…` (`df`)
    System,
    /// `/auth`
    Auth,
    /// `/containers/…`, except exec create
    Containers,
    /// `POST /containers/{id}/exec` and `/exec/…`
    Exec,
    /// `/images/…`
    Images,
    /// `/build`, `/build/prune`, `/build/cancel`
    Build,
    /// `/session` (BuildKit)
    Session,
    /// `/grpc` (BuildKit)
    Grpc,
    /// `/commit`
    Commit,
    /// `/distribution/…`
    Distribution,
    /// `/volumes/…`
    Volumes,
    /// `/networks/…`
    Networks,
    /// `/plugins/…`
    Plugins,
    /// `/swarm/…`
    Swarm,
    /// `/nodes/…`
    Nodes,
    /// `/services/…`
    Services,
    /// `/tasks/…`
    Tasks,
    /// `/secrets/…`
    Secrets,
    /// `/configs/…`
    Configs,
    /// Any other path (dockerd answers 404).
    Other,
}

impl Section {
    /// Every section, in the order of their bits.
    pub const ALL: [Section; 24] = [
        Self::Ping,
        Self::Version,
        Self::Info,
        Self::Events,
        Self::System,
        Self::Auth,
        Self::Containers,
        Self::Exec,
        Self::Images,
        Self::Build,
        Self::Session,
        Self::Grpc,
        Self::Commit,
        Self::Distribution,
        Self::Volumes,
        Self::Networks,
        Self::Plugins,
        Self::Swarm,
        Self::Nodes,
        Self::Services,
        Self::Tasks,
        Self::Secrets,
        Self::Configs,
        Self::Other,
    ];

    /// The name used in policy files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Version => "version",
            Self::Info => "info",
            Self::Events => "events",
            Self::System => "system",
            Self::Auth => "auth",
            Self::Containers => "containers",
            Self::Exec => "exec",
            Self::Images => "images",
            Self::Build => "build",
            Self::Session => "session",
            Self::Grpc => "grpc",
            Self::Commit => "commit",
            Self::Distribution => "distribution",
            Self::Volumes => "volumes",
            Self::Networks => "networks",
            Self::Plugins => "plugins",
            Self::Swarm => "swarm",
            Self::Nodes => "nodes",
            Self::Services => "services",
            Self::Tasks => "tasks",
            Self::Secrets => "secrets",
            Self::Configs => "configs",
            Self::Other => "other",
        }
    }

    /// The section a policy file names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub(crate) fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A request whose body or query string the limits judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    /// `POST /containers/create`: JSON body.
    ContainerCreate,
    /// `POST /containers/{id}/start`: dockerd still reads a HostConfig body for API
    /// versions below 1.24 (`postContainersStart`), so a non-empty body is judged.
    ContainerStart,
    /// `POST /containers/{id}/update`: JSON body.
    ContainerUpdate,
    /// `POST /containers/{id}/exec`: JSON body.
    ExecCreate,
    /// `POST /volumes/create`: JSON body.
    VolumeCreate,
    /// `POST /images/create`: pull (`fromImage`) or import; judged on the query.
    ImageCreate,
    /// `POST /build`: judged on the query (`networkmode`).
    Build,
}

impl Operation {
    /// Whether the judged facts are in the body (else in the query string).
    pub(crate) fn reads_body(self) -> bool {
        matches!(
            self,
            Self::ContainerCreate
                | Self::ContainerStart
                | Self::ContainerUpdate
                | Self::ExecCreate
                | Self::VolumeCreate
        )
    }
}

/// A request as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified<'a> {
    /// The section.
    pub section: Section,
    /// The decoded, cleaned path without version prefix (borrowed when the request
    /// path was already clean).
    pub path: Cow<'a, str>,
    pub(crate) operation: Option<Operation>,
    /// The path had a `%` not followed by two hex digits; dockerd refuses such requests.
    pub malformed: bool,
}

/// Classifies a request from its method and raw (percent-encoded) path.
pub fn classify<'a>(method: &str, raw_path: &'a str) -> Classified<'a> {
    let (decoded, malformed) = decode_path(raw_path);
    let cleaned = match decoded {
        Cow::Borrowed(p) => clean_path(p),
        Cow::Owned(p) => Cow::Owned(clean_path(&p).into_owned()),
    };
    let path = match cleaned {
        Cow::Borrowed(p) => Cow::Borrowed(split_version(p).1),
        Cow::Owned(p) => Cow::Owned(split_version(&p).1.to_owned()),
    };
    let (section, operation) = section_of(method, &path);
    Classified {
        section,
        path,
        operation,
        malformed,
    }
}

/// Splits a `/v{[0-9.]+}` prefix off `path`, as dockerd's router does (a prefix is one
/// only when another `/` follows it). Returns the version text and the rest.
pub fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(end) = rest.find('/') {
            let version = &rest[..end];
            if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return (Some(version), &rest[end..]);
            }
        }
    }
    (None, path)
}

/// Percent-decodes once, as Go's `URL.Path`; invalid escapes are kept and reported.
fn decode_path(raw: &str) -> (Cow<'_, str>, bool) {
    if !raw.contains('%') {
        return (Cow::Borrowed(raw), false);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut malformed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            malformed = true;
        }
        out.push(bytes[i]);
        i += 1;
    }
    let text = match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    (Cow::Owned(text), malformed)
}

fn section_of(method: &str, path: &str) -> (Section, Option<Operation>) {
    use Operation as O;
    use Section as S;
    let post = method == "POST";
    let first = path[1..].split('/').next().unwrap_or("");
    let section = match first {
        "_ping" => S::Ping,
        "version" => S::Version,
        "info" => S::Info,
        "events" => S::Events,
        "system" => S::System,
        "auth" => S::Auth,
        "containers" => S::Containers,
        "exec" => S::Exec,
        "images" => S::Images,
        "build" => S::Build,
        "session" => S::Session,
        "grpc" => S::Grpc,
        "commit" => S::Commit,
        "distribution" => S::Distribution,
        "volumes" => S::Volumes,
        "networks" => S::Networks,
        "plugins" => S::Plugins,
        "swarm" => S::Swarm,
        "nodes" => S::Nodes,
        "services" => S::Services,
        "tasks" => S::Tasks,
        "secrets" => S::Secrets,
        "configs" => S::Configs,
        _ => S::Other,
    };
    if !post {
        return (section, None);
    }
    let operation = match path {
        "/containers/create" => Some(O::ContainerCreate),
        "/volumes/create" => Some(O::VolumeCreate),
        "/images/create" => Some(O::ImageCreate),
        "/build" => Some(O::Build),
        _ => {
            // `/containers/{name}/exec|update`, the name greedy and non-empty.
            let named = |suffix: &str| {
                path.strip_prefix("/containers/")
                    .and_then(|rest| rest.strip_suffix(suffix))
                    .is_some_and(|name| !name.is_empty())
            };
            if named("/exec") {
                return (S::Exec, Some(O::ExecCreate));
            }
            if named("/start") {
                Some(O::ContainerStart)
            } else {
                named("/update").then_some(O::ContainerUpdate)
            }
        }
    };
    (section, operation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_cleaned_and_unversioned_before_classifying() {
        let rows: &[(&str, &str, Section, Option<Operation>, &str)] = &[
            (
                "POST",
                "/containers/create",
                Section::Containers,
                Some(Operation::ContainerCreate),
                "/containers/create",
            ),
            (
                "POST",
                "/v1.41/containers/create",
                Section::Containers,
                Some(Operation::ContainerCreate),
                "/containers/create",
            ),
            (
                "POST",
                "/v..../containers/create",
                Section::Containers,
                Some(Operation::ContainerCreate),
                "/containers/create",
            ),
            (
                "POST",
                "/containers%2Fcreate",
                Section::Containers,
                Some(Operation::ContainerCreate),
                "/containers/create",
            ),
            (
                "POST",
                "//containers//create/",
                Section::Containers,
                Some(Operation::ContainerCreate),
                "/containers/create",
            ),
            (
                "POST",
                "/x/../containers/./create",
                Section::Containers,
                Some(Operation::ContainerCreate),
                "/containers/create",
            ),
            (
                "POST",
                "/v1.41%2Fcontainers/create",
                Section::Containers,
                Some(Operation::ContainerCreate),
                "/containers/create",
            ),
            (
                "POST",
                "/containers/web/exec",
                Section::Exec,
                Some(Operation::ExecCreate),
                "/containers/web/exec",
            ),
            (
                "POST",
                "/containers/web/db/exec",
                Section::Exec,
                Some(Operation::ExecCreate),
                "/containers/web/db/exec",
            ),
            (
                "POST",
                "/containers/create/exec",
                Section::Exec,
                Some(Operation::ExecCreate),
                "/containers/create/exec",
            ),
            (
                "POST",
                "/containers/a/exec/start",
                Section::Containers,
                Some(Operation::ContainerStart),
                "/containers/a/exec/start",
            ),
            (
                "POST",
                "/exec/abc/start",
                Section::Exec,
                None,
                "/exec/abc/start",
            ),
            (
                "POST",
                "/containers/c1/update",
                Section::Containers,
                Some(Operation::ContainerUpdate),
                "/containers/c1/update",
            ),
            (
                "GET",
                "/containers/create",
                Section::Containers,
                None,
                "/containers/create",
            ),
            (
                "post",
                "/containers/create",
                Section::Containers,
                None,
                "/containers/create",
            ),
            (
                "POST",
                "/volumes/create",
                Section::Volumes,
                Some(Operation::VolumeCreate),
                "/volumes/create",
            ),
            (
                "POST",
                "/images/create",
                Section::Images,
                Some(Operation::ImageCreate),
                "/images/create",
            ),
            (
                "POST",
                "/build",
                Section::Build,
                Some(Operation::Build),
                "/build",
            ),
            ("GET", "/_ping", Section::Ping, None, "/_ping"),
            ("GET", "/v1.41/version", Section::Version, None, "/version"),
            ("GET", "/v1.41", Section::Other, None, "/v1.41"),
            (
                "GET",
                "/containersx/json",
                Section::Other,
                None,
                "/containersx/json",
            ),
            ("GET", "", Section::Other, None, "/"),
            ("GET", "/../../..", Section::Other, None, "/"),
        ];
        for (method, raw, section, op, path) in rows {
            let c = classify(method, raw);
            assert_eq!(
                (c.section, c.operation, c.path.as_ref()),
                (*section, *op, *path),
                "{method} {raw}"
            );
        }
    }

    #[test]
    fn clean_paths_are_borrowed_not_copied() {
        assert!(matches!(
            classify("GET", "/v1.41/containers/json").path,
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn bad_percent_escapes_are_reported() {
        assert!(classify("GET", "/containers/%zz/json").malformed);
        assert!(!classify("GET", "/containers/%41/json").malformed);
    }

    #[test]
    fn version_prefix_needs_digits_and_a_following_slash() {
        assert_eq!(split_version("/v1.41/info"), (Some("1.41"), "/info"));
        assert_eq!(split_version("/v1.41"), (None, "/v1.41"));
        assert_eq!(split_version("/v/info"), (None, "/v/info"));
        assert_eq!(split_version("/vx/info"), (None, "/vx/info"));
        assert_eq!(split_version("/v1.2.3.4/info"), (Some("1.2.3.4"), "/info"));
    }
}
