//! `PathTranslator`: host path ↔ guest path for bind mounts, for engines that see the
//! host's files under another path (as a VM does).
//!
//! Prefixes match whole path components (`/home` maps `/home/a`, not `/homework`);
//! the longest matching prefix wins. Paths are normalised lexically first (`.`, `..`,
//! repeated `/`), so `/srv/../etc` is judged as `/etc`.

use std::path::{Component, Path, PathBuf};

/// A set of host-prefix → guest-prefix mappings.
#[derive(Clone, Debug, Default)]
pub struct PathTranslator {
    /// Sorted longest host prefix first.
    mappings: Vec<(PathBuf, PathBuf)>,
}

impl PathTranslator {
    /// A translator over `(host prefix, guest prefix)` pairs (both absolute).
    pub fn new(mappings: impl IntoIterator<Item = (PathBuf, PathBuf)>) -> Self {
        let mut mappings: Vec<_> = mappings
            .into_iter()
            .map(|(h, g)| (normalize(&h), normalize(&g)))
            .collect();
        mappings.sort_by_key(|(h, _)| std::cmp::Reverse(h.components().count()));
        Self { mappings }
    }

    /// The guest path for host path `host`, or `None` if no mapping covers it.
    pub fn to_guest(&self, host: &str) -> Option<String> {
        let host = normalize(Path::new(host));
        self.mappings.iter().find_map(|(h, g)| {
            let rest = host.strip_prefix(h).ok()?;
            let guest = if rest.as_os_str().is_empty() {
                g.clone()
            } else {
                g.join(rest)
            };
            guest.to_str().map(str::to_owned)
        })
    }
}

/// Lexical normalisation: resolves `.` and `..` without touching the filesystem; `..`
/// at the root stays at the root, as the kernel does.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_whole_component_prefix_wins_after_normalisation() {
        let t = PathTranslator::new([
            ("/home".into(), "/mnt/host/home".into()),
            ("/home/alice/work".into(), "/work".into()),
            ("/srv/".into(), "/data".into()),
        ]);
        assert_eq!(
            t.to_guest("/home/bob/x").as_deref(),
            Some("/mnt/host/home/bob/x")
        );
        assert_eq!(t.to_guest("/home/alice/work/p").as_deref(), Some("/work/p"));
        assert_eq!(t.to_guest("/home").as_deref(), Some("/mnt/host/home"));
        assert_eq!(t.to_guest("/srv//a/./b").as_deref(), Some("/data/a/b"));
        assert_eq!(t.to_guest("/homework"), None);
        assert_eq!(t.to_guest("/srv/../etc/passwd"), None);
        assert_eq!(t.to_guest("/etc"), None);
    }
}
