//! Host paths of bind mounts: lexical cleaning (here) and symlink resolution (through a
//! [`PathResolver`], because it needs the filesystem).
//!
//! dockerd cleans a bind source lexically (`path.Clean`, moby `linux_parser.go`) and
//! the kernel then follows symlinks in what is left, so a source is inside the allowed
//! roots only if both its clean form and its resolved form are.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Resolves symlinks in host paths, as the kernel will when it mounts them.
pub trait PathResolver: fmt::Debug + Send + Sync {
    /// Resolves an absolute, lexically clean path. Components that do not exist yet are
    /// kept as written (dockerd creates missing `Binds` sources). An error refuses the
    /// bind mount.
    fn resolve(&self, path: &str) -> io::Result<String>;
}

/// The real resolver: `std::fs::canonicalize` on the longest prefix that exists, the
/// rest appended as written.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsPathResolver;

impl PathResolver for FsPathResolver {
    fn resolve(&self, path: &str) -> io::Result<String> {
        let mut prefix = PathBuf::from(path);
        let mut rest: Vec<std::ffi::OsString> = Vec::new();
        loop {
            match std::fs::canonicalize(&prefix) {
                Ok(mut real) => {
                    for part in rest.iter().rev() {
                        real.push(part);
                    }
                    return real.into_os_string().into_string().map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, "path is not UTF-8")
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // A symlink that exists but points nowhere would be followed once its
                    // target appears: refuse instead of guessing.
                    if std::fs::symlink_metadata(&prefix).is_ok() {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{} is a dangling symlink", prefix.display()),
                        ));
                    }
                    let Some(name) = prefix.file_name().map(ToOwned::to_owned) else {
                        return Err(e);
                    };
                    rest.push(name);
                    if !prefix.pop() {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Go's `path.Clean`, rooted: no empty, `.` or `..` segments, no trailing `/`; `..` at
/// the root stays at the root, as the kernel does. berth's one lexical path cleaner (for
/// request paths and host paths), never touching the filesystem.
pub fn clean_path(path: &str) -> Cow<'_, str> {
    if is_clean(path) {
        return Cow::Borrowed(path);
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

fn is_clean(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    if !path.starts_with('/') || path.ends_with('/') {
        return false;
    }
    path[1..]
        .split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// [`clean_path`] of an absolute path; `None` for a relative one (a volume name).
pub(crate) fn clean_absolute(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    Some(clean_path(path).into_owned())
}

/// Whether the clean absolute `path` is `root` or below it (by whole components).
pub fn is_within(path: &str, root: &str) -> bool {
    if root == "/" {
        return true;
    }
    match path.strip_prefix(root) {
        Some("") => true,
        Some(rest) => rest.starts_with('/'),
        None => false,
    }
}

/// How a bind source fared against the allowed roots.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Inside,
    /// Outside; the text says how (`/etc`, `/srv/x (resolves to /etc)`).
    Outside(String),
}

/// Judges a bind source against `roots` (clean absolute paths), lexically and resolved.
pub(crate) fn judge(source: &str, roots: &[String], resolver: &dyn PathResolver) -> Verdict {
    let Some(clean) = clean_absolute(source) else {
        return Verdict::Outside(format!("{source} (not an absolute path)"));
    };
    if !roots.iter().any(|r| is_within(&clean, r)) {
        return Verdict::Outside(clean);
    }
    let real = match resolver.resolve(&clean) {
        Ok(real) => real,
        Err(e) => return Verdict::Outside(format!("{clean} (cannot resolve: {e})")),
    };
    let inside = roots.iter().any(|r| match resolver.resolve(r) {
        Ok(real_root) => is_within(&real, &real_root),
        Err(_) => false,
    });
    if inside {
        Verdict::Inside
    } else {
        Verdict::Outside(format!("{clean} (resolves to {real})"))
    }
}

/// A resolver over a fixed table of symlinks, for tests: no filesystem.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FakeResolver {
    pub(crate) links: Vec<(String, String)>,
}

#[cfg(test)]
impl PathResolver for FakeResolver {
    fn resolve(&self, path: &str) -> io::Result<String> {
        let mut out = String::from("/");
        let mut hops = 0;
        let mut todo: Vec<String> = path.split('/').rev().map(str::to_owned).collect();
        while let Some(part) = todo.pop() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    out = std::path::Path::new(&out)
                        .parent()
                        .map_or("/".to_owned(), |p| p.to_str().unwrap().to_owned());
                    continue;
                }
                _ => {}
            }
            let next = if out == "/" {
                format!("/{part}")
            } else {
                format!("{out}/{part}")
            };
            if let Some((_, target)) = self.links.iter().find(|(l, _)| *l == next) {
                hops += 1;
                if hops > 40 {
                    return Err(io::Error::other("too many symlinks"));
                }
                todo.extend(target.split('/').rev().map(str::to_owned));
                if target.starts_with('/') {
                    out = "/".to_owned();
                }
            } else {
                out = next;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_absolute_follows_go_path_clean() {
        let rows = [
            ("/srv/data", Some("/srv/data")),
            ("/srv/data/", Some("/srv/data")),
            ("//srv//data", Some("/srv/data")),
            ("/srv/../etc", Some("/etc")),
            ("/srv/./a/..", Some("/srv")),
            ("/../../etc", Some("/etc")),
            ("/", Some("/")),
            ("data", None),
            ("./data", None),
            ("", None),
        ];
        for (input, want) in rows {
            assert_eq!(clean_absolute(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn within_compares_whole_components() {
        assert!(is_within("/srv", "/srv"));
        assert!(is_within("/srv/a", "/srv"));
        assert!(!is_within("/srvx", "/srv"));
        assert!(is_within("/etc", "/"));
    }

    #[test]
    fn symlinks_must_not_escape_the_roots() {
        let r = FakeResolver {
            links: vec![
                ("/srv/escape".into(), "/etc".into()),
                ("/srv/inner".into(), "data".into()),
            ],
        };
        let roots = ["/srv".to_owned()];
        assert_eq!(judge("/srv/data/x", &roots, &r), Verdict::Inside);
        assert_eq!(judge("/srv/inner/x", &roots, &r), Verdict::Inside);
        assert_eq!(
            judge("/srv/escape/shadow", &roots, &r),
            Verdict::Outside("/srv/escape/shadow (resolves to /etc/shadow)".into())
        );
        assert_eq!(
            judge("/srv/../etc", &roots, &r),
            Verdict::Outside("/etc".into())
        );
    }

    #[test]
    fn fs_resolver_canonicalizes_the_existing_prefix_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let base = base.to_str().unwrap();
        std::fs::create_dir(format!("{base}/srv")).unwrap();
        std::os::unix::fs::symlink("/etc", format!("{base}/srv/escape")).unwrap();
        std::os::unix::fs::symlink(format!("{base}/nowhere"), format!("{base}/srv/dangling"))
            .unwrap();
        let r = FsPathResolver;
        assert_eq!(
            r.resolve(&format!("{base}/srv/new/dir")).unwrap(),
            format!("{base}/srv/new/dir")
        );
        assert_eq!(
            r.resolve(&format!("{base}/srv/escape/x")).unwrap(),
            "/etc/x"
        );
        assert!(r.resolve(&format!("{base}/srv/dangling/x")).is_err());
        let roots = [format!("{base}/srv")];
        assert!(matches!(
            judge(&format!("{base}/srv/escape"), &roots, &r),
            Verdict::Outside(_)
        ));
        assert_eq!(judge(&format!("{base}/srv/x"), &roots, &r), Verdict::Inside);
    }
}
