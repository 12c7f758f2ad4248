//! Platforms as clients write them (`--platform linux/arm64`, `arm64`, `x86_64`) and as
//! machines declare them, normalized the way containerd's `platforms.Normalize` does so
//! that `linux/arm64/v8` and `arm64` name the same machine.

use std::fmt;

/// `os/arch[/variant]`, normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    os: String,
    arch: Option<String>,
    variant: Option<String>,
}

/// A platform string that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64")]
pub struct InvalidPlatform(pub String);

impl Platform {
    /// Parses and normalizes `s`; an architecture alone means Linux.
    pub fn parse(s: &str) -> Result<Self, InvalidPlatform> {
        let bad = || InvalidPlatform(s.to_owned());
        let lower = s.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        if parts.iter().any(|p| {
            p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }) {
            return Err(bad());
        }
        let (os, arch, variant) = match parts.as_slice() {
            [one] if is_os(one) => (*one, None, None),
            [arch] => ("linux", Some(*arch), None),
            [os, arch] => (*os, Some(*arch), None),
            [os, arch, variant] => (*os, Some(*arch), Some(*variant)),
            _ => return Err(bad()),
        };
        let (arch, variant) = match arch {
            Some(arch) => {
                let (arch, variant) = normalize_arch(arch, variant);
                (Some(arch), variant)
            }
            None => (None, None),
        };
        Ok(Self {
            os: if os == "macos" { "darwin" } else { os }.to_owned(),
            arch,
            variant,
        })
    }

    /// Whether a request for `requested` may be served by a machine declaring `self`:
    /// a request that leaves the architecture or variant open matches any.
    pub fn serves(&self, requested: &Platform) -> bool {
        self.os == requested.os
            && (requested.arch.is_none() || self.arch == requested.arch)
            && (requested.variant.is_none() || self.variant == requested.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.os)?;
        if let Some(arch) = &self.arch {
            write!(f, "/{arch}")?;
        }
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

fn is_os(s: &str) -> bool {
    matches!(
        s,
        "linux" | "windows" | "darwin" | "macos" | "freebsd" | "netbsd" | "openbsd" | "solaris"
    )
}

/// containerd's architecture aliases and default variants.
fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let (arch, variant) = match (arch, variant) {
        ("i386" | "x86" | "i686", _) => ("386", None),
        ("x86_64" | "x86-64" | "amd64", Some("v1")) => ("amd64", None),
        ("x86_64" | "x86-64", v) => ("amd64", v),
        ("aarch64" | "arm64", Some("v8") | None) => ("arm64", None),
        ("aarch64", v) => ("arm64", v),
        ("armhf", _) => ("arm", Some("v7")),
        ("armel", _) => ("arm", Some("v6")),
        ("arm", None) => ("arm", Some("v7")),
        (a, v) => (a, v),
    };
    (arch.to_owned(), variant.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn aliases_and_default_variants_normalize() {
        assert_eq!(p("linux/arm64/v8"), p("arm64"));
        assert_eq!(p("aarch64"), p("linux/arm64"));
        assert_eq!(p("x86_64"), p("linux/amd64"));
        assert_eq!(p("linux/arm"), p("linux/arm/v7"));
        assert_eq!(p("armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("LINUX/AMD64").to_string(), "linux/amd64");
        assert_eq!(p("linux").to_string(), "linux");
    }

    #[test]
    fn open_requests_match_any_machine_of_that_os() {
        assert!(p("linux/amd64").serves(&p("linux")));
        assert!(p("linux/arm/v7").serves(&p("linux/arm")));
        assert!(!p("linux/arm/v6").serves(&p("linux/arm")));
        assert!(!p("linux/amd64").serves(&p("linux/arm64")));
        assert!(!p("windows/amd64").serves(&p("amd64")));
    }

    #[test]
    fn garbage_is_an_error() {
        for s in [
            "",
            "/",
            "linux//amd64",
            "a/b/c/d",
            "linux/amd 64",
            "linux/amd64?x",
        ] {
            assert!(Platform::parse(s).is_err(), "{s:?}");
        }
    }
}
