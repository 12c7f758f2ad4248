//! `PathTranslator`: host path ↔ guest path for bind mounts, for engines that see the
//! host's files under another path (as a VM does).
//!
//! Prefixes match whole path components (`/home` maps `/home/a`, not `/homework`);
//! the longest matching prefix wins. Paths are cleaned lexically first
//! ([`berth_policy::clean_path`]: `.`, `..`, repeated `/`), so `/srv/../etc` is judged
//! as `/etc`.

use std::path::PathBuf;

use berth_policy::{clean_path, is_within};

/// A set of host-prefix → guest-prefix mappings.
#[derive(Clone, Debug, Default)]
pub struct PathTranslator {
    /// Clean absolute prefixes, the longest host prefix first.
    mappings: Vec<(String, String)>,
}

impl PathTranslator {
    /// A translator over `(host prefix, guest prefix)` pairs (both absolute).
    pub fn new(mappings: impl IntoIterator<Item = (PathBuf, PathBuf)>) -> Self {
        let clean = |p: PathBuf| clean_path(&p.to_string_lossy()).into_owned();
        let mut mappings: Vec<_> = mappings
            .into_iter()
            .map(|(h, g)| (clean(h), clean(g)))
            .collect();
        mappings.sort_by_key(|(h, _)| {
            std::cmp::Reverse(h.split('/').filter(|s| !s.is_empty()).count())
        });
        Self { mappings }
    }

    /// The guest path for the absolute host path `host`, or `None` if it is relative or
    /// no mapping covers it.
    pub fn to_guest(&self, host: &str) -> Option<String> {
        if !host.starts_with('/') {
            return None;
        }
        let host = clean_path(host);
        self.mappings.iter().find_map(|(h, g)| {
            if !is_within(&host, h) {
                return None;
            }
            let rest = host[h.len()..].trim_start_matches('/');
            Some(match (rest.is_empty(), g.as_str()) {
                (true, _) => g.clone(),
                (false, "/") => format!("/{rest}"),
                (false, _) => format!("{g}/{rest}"),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_whole_component_prefix_wins_after_cleaning() {
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
        assert_eq!(t.to_guest("home/x"), None);
    }

    #[test]
    fn the_root_maps_everything() {
        let t = PathTranslator::new([("/".into(), "/host".into())]);
        assert_eq!(t.to_guest("/etc/x").as_deref(), Some("/host/etc/x"));
        assert_eq!(t.to_guest("/").as_deref(), Some("/host"));
        let t = PathTranslator::new([("/srv".into(), "/".into())]);
        assert_eq!(t.to_guest("/srv/a").as_deref(), Some("/a"));
    }
}
