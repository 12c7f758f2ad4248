//! Image references as dockerd reads them, and the `images` allow-list patterns.
//!
//! `busybox` is `docker.io/library/busybox:latest` (distribution/reference
//! `ParseNormalizedNamed` + `TagNameOnly`). dockerd also resolves a name that is not a
//! local tag as an image-ID prefix (`deadbeef`, `sha256:dead…`), so a reference made of
//! hex digits must be allowed both as a name and as an ID (`sha256:<hex>`).

use crate::pattern::Glob;

const DEFAULT_DOMAIN: &str = "docker.io";

/// The strings a reference must match, every one of them, to be allowed.
pub(crate) fn candidates(reference: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(1);
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let id_like = !hex.is_empty() && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if id_like {
        out.push(format!("sha256:{hex}"));
        // A full ID is only ever an ID; anything shorter is tried as a name first.
        if hex.len() == 64 {
            return Ok(out);
        }
    }
    match normalize(reference) {
        Ok(name) => out.push(name),
        Err(e) if !id_like => return Err(e),
        Err(_) => {}
    }
    Ok(out)
}

/// `busybox` → `docker.io/library/busybox:latest`; errors say why a reference is invalid.
pub(crate) fn normalize(reference: &str) -> Result<String, String> {
    if reference.is_empty() || reference.len() > 255 {
        return Err("an image reference must have 1 to 255 characters".to_owned());
    }
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => {
            check_digest(d)?;
            (n, Some(d))
        }
        None => (reference, None),
    };
    let (domain, remainder) = split_domain(name_tag);
    let (path, tag) = match remainder.rfind(':') {
        Some(i) => (&remainder[..i], Some(&remainder[i + 1..])),
        None => (remainder, None),
    };
    check_domain(domain)?;
    if path.is_empty() || !path.split('/').all(is_path_component) {
        return Err(format!("invalid repository name {path:?}"));
    }
    if let Some(t) = tag {
        check_tag(t)?;
    }
    let mut out = String::with_capacity(reference.len() + 24);
    out.push_str(domain);
    out.push('/');
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        out.push_str("library/");
    }
    out.push_str(path);
    match (tag, digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    Ok(out)
}

/// What `POST /images/create?fromImage=F&tag=T` pulls, as a string to match: `tag`
/// replaces the tag of `fromImage` (or adds a digest when it is one); with neither, every
/// tag is pulled, written `repo:*` (only a pattern that allows any tag matches it).
pub(crate) fn pull_reference(from_image: &str, tag: &str) -> Result<String, String> {
    let full = normalize(from_image)?;
    let name_only = !from_image.contains('@')
        && !from_image
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
    let repo = strip_tag(&full);
    if tag.is_empty() {
        return Ok(if name_only { format!("{repo}:*") } else { full });
    }
    let with = if tag.contains(':') {
        format!("{repo}@{tag}")
    } else {
        format!("{repo}:{tag}")
    };
    normalize(&with)
}

/// `domain/path[:tag][@digest]` → `domain/path`.
fn strip_tag(full: &str) -> &str {
    let no_digest = full.split('@').next().unwrap_or(full);
    let last_slash = no_digest.rfind('/').unwrap_or(0);
    match no_digest[last_slash..].rfind(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    }
}

/// distribution's `splitDockerDomain`.
fn split_domain(name: &str) -> (&str, &str) {
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    (domain, rest)
}

fn check_domain(domain: &str) -> Result<(), String> {
    let (host_ok, port) = if let Some(v6) = domain.strip_prefix('[') {
        match v6.split_once(']') {
            Some((inner, rest)) => (
                !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
                if rest.is_empty() {
                    None
                } else {
                    rest.strip_prefix(':').or(Some(""))
                },
            ),
            None => (false, None),
        }
    } else {
        let (host, port) = match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        };
        let ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        (ok, port)
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("invalid registry {domain:?}"))
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = tag.as_bytes();
    if !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
    {
        Ok(())
    } else {
        Err(format!("invalid tag {tag:?}"))
    }
}

fn check_digest(d: &str) -> Result<(), String> {
    let ok = d.split_once(':').is_some_and(|(algo, hex)| {
        !algo.is_empty()
            && algo
                .bytes()
                .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || b"+._-".contains(&x))
            && hex.len() >= 32
            && hex
                .bytes()
                .all(|x| x.is_ascii_alphanumeric() || b"=_-".contains(&x))
    });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid digest {d:?}"))
    }
}

/// Compiles an `images` pattern: normalized like a reference (registry, `library/`,
/// `:latest` when it has no tag, digest or wildcard in its last component; `docker.io/**`
/// stays all of Docker Hub), unless it starts with a wildcard or is an ID pattern
/// (`sha256:…`).
pub(crate) fn compile_pattern(pattern: &str) -> Result<Glob, String> {
    if pattern.is_empty() {
        return Err("empty image pattern".to_owned());
    }
    let text = if pattern.starts_with('*') || pattern.starts_with("sha256:") {
        pattern.to_owned()
    } else {
        let (domain, remainder) = split_domain(pattern);
        let last = remainder.rsplit('/').next().unwrap_or(remainder);
        let mut out = format!("{domain}/");
        if domain == DEFAULT_DOMAIN && !remainder.contains('/') && !remainder.contains("**") {
            out.push_str("library/");
        }
        out.push_str(remainder);
        if !last.contains([':', '@', '*']) {
            out.push_str(":latest");
        }
        out
    };
    Glob::new(&text, Some('/')).map_err(|e| format!("image pattern {pattern:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_distribution() {
        let rows = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
            ("acme/app:v1", "docker.io/acme/app:v1"),
            ("ghcr.io/acme/app", "ghcr.io/acme/app:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/ns/img:tag", "localhost:5000/ns/img:tag"),
            ("[::1]:5000/img", "[::1]:5000/img:latest"),
            ("[::1]/img", "[::1]/img:latest"),
            (
                "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ];
        for (input, want) in rows {
            assert_eq!(normalize(input).as_deref(), Ok(want), "{input}");
        }
        for bad in [
            "",
            "BusyBox",
            "busybox:",
            "a//b",
            "-x",
            "busybox@sha256:12",
            "x:5000:1/y",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hex_references_must_also_pass_as_image_ids() {
        assert_eq!(
            candidates("deadbeef").unwrap(),
            ["sha256:deadbeef", "docker.io/library/deadbeef:latest"]
        );
        assert_eq!(
            candidates("sha256:abc").unwrap(),
            ["sha256:abc", "docker.io/library/sha256:abc"]
        );
        let full = "a".repeat(64);
        assert_eq!(candidates(&full).unwrap(), [format!("sha256:{full}")]);
        assert_eq!(
            candidates("busybox").unwrap(),
            ["docker.io/library/busybox:latest"]
        );
    }

    #[test]
    fn pulls_combine_from_image_and_tag_like_dockerd() {
        let rows = [
            ("busybox", "latest", "docker.io/library/busybox:latest"),
            ("busybox:1.0", "", "docker.io/library/busybox:1.0"),
            ("busybox:1.0", "2.0", "docker.io/library/busybox:2.0"),
            ("busybox", "", "docker.io/library/busybox:*"),
            ("localhost:5000/app", "", "localhost:5000/app:*"),
            (
                "busybox",
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ];
        for (from, tag, want) in rows {
            assert_eq!(
                pull_reference(from, tag).as_deref(),
                Ok(want),
                "{from} {tag}"
            );
        }
        assert!(!compile_pattern("busybox")
            .unwrap()
            .matches("docker.io/library/busybox:*"));
        assert!(compile_pattern("busybox:*")
            .unwrap()
            .matches("docker.io/library/busybox:*"));
    }

    #[test]
    fn image_patterns_normalize_like_references() {
        let rows = [
            ("busybox", "docker.io/library/busybox:latest", true),
            ("busybox", "docker.io/library/busybox:1.36", false),
            ("busybox:*", "docker.io/library/busybox:1.36", true),
            ("docker.io/library/*", "docker.io/library/alpine:3", true),
            ("docker.io/library/*", "docker.io/acme/app:latest", false),
            ("docker.io/**", "docker.io/acme/app:latest", true),
            ("ghcr.io/acme/**", "ghcr.io/acme/team/app:v2", true),
            ("ghcr.io/acme/*", "ghcr.io/evil/app:v2", false),
            ("**", "quay.io/x/y:z", true),
            ("sha256:*", "sha256:deadbeef", true),
        ];
        for (pattern, reference, want) in rows {
            let g = compile_pattern(pattern).unwrap();
            assert_eq!(g.matches(reference), want, "{pattern} on {reference}");
        }
    }
}
