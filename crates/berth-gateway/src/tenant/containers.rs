//! The containers each tenant has, by ID, so that its container list asks dockerd for
//! those IDs: dockerd then looks up only them (moby's `filterByNameIDMatches`) instead
//! of walking every container of the engine through the label filter. The owner label
//! stays on every list as the guard, so the set only has to hold at least the tenant's
//! containers: IDs of containers gone are harmless (dockerd ignores an ID it does not
//! know) and are dropped when a whole list shows them gone.
//!
//! The set is the last seed (one label-filtered list, at first use and again when it is
//! [`RESEED`] old) with the tenant's creates answered since that list was asked: a
//! container given the tenant's label elsewhere (by the admin, or on the engine
//! directly) shows in the tenant's list from the next seed on, and the IDs of removed
//! containers go at the next seed at the latest.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a seed holds before the next list seeds again.
pub(crate) const RESEED: Duration = Duration::from_secs(10);

/// Above this many IDs a list asks by label alone (the query would grow large).
const MAX_IDS: usize = 2048;

#[derive(Debug, Default)]
pub(crate) struct ContainerIds {
    tenants: Mutex<HashMap<String, Known>>,
}

#[derive(Debug)]
struct Known {
    ids: HashSet<String>,
    /// When the list of the last seed was asked (`None`: never seeded).
    seeded: Option<Instant>,
    /// Creates answered lately, and when: those after a seed's list was asked stay.
    recent: Vec<(Instant, String)>,
    /// What a list asks by, made at the first list after `ids` changed.
    asking: Option<Arc<IdFilter>>,
}

/// The IDs a list asks by, and their `id` filter as a query value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct IdFilter {
    /// The set's IDs, or the one no container has (`none`, not hex) when it is empty:
    /// an empty filter is no filter to dockerd.
    pub(crate) ids: Vec<String>,
    /// `query::ids_value` of `ids`.
    pub(crate) value: String,
}

/// What a tenant's list can ask by.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Asking {
    Ids(Arc<IdFilter>),
    /// Never seeded, or too long ago: seed it.
    Unseeded,
    /// More than a query should carry: ask by label alone.
    TooMany,
}

impl ContainerIds {
    /// What tenant `name`'s list can ask by.
    pub(crate) fn known(&self, name: &str) -> Asking {
        let mut tenants = self.lock();
        let Some(known) = tenants.get_mut(name) else {
            return Asking::Unseeded;
        };
        if known.seeded.is_none_or(|at| at.elapsed() >= RESEED) {
            return Asking::Unseeded;
        }
        if known.ids.len() > MAX_IDS {
            return Asking::TooMany;
        }
        let asking = known.asking.get_or_insert_with(|| {
            let mut ids: Vec<String> = known.ids.iter().cloned().collect();
            if ids.is_empty() {
                ids.push("none".to_owned());
            }
            let value = super::query::ids_value(&ids);
            Arc::new(IdFilter { ids, value })
        });
        Asking::Ids(Arc::clone(asking))
    }

    /// The set is what a label-filtered list asked at `asked` found, with the creates
    /// answered since.
    pub(crate) fn seed(&self, name: &str, asked: Instant, ids: impl IntoIterator<Item = String>) {
        let mut tenants = self.lock();
        let known = entry(&mut tenants, name);
        known.recent.retain(|(at, _)| at.elapsed() < RESEED * 6);
        known.ids = ids.into_iter().collect();
        let since = known.recent.iter().filter(|(at, _)| *at >= asked);
        known
            .ids
            .extend(since.map(|(_, id)| id.clone()).collect::<Vec<_>>());
        known.seeded = Some(asked);
        known.asking = None;
    }

    /// Container `id` was created by tenant `name`.
    pub(crate) fn add(&self, name: &str, id: &str) {
        let mut tenants = self.lock();
        let known = entry(&mut tenants, name);
        if known.ids.insert(id.to_owned()) {
            known.asking = None;
        }
        known.recent.push((Instant::now(), id.to_owned()));
    }

    /// A whole list asked for `asked` and found `present`: the others are gone.
    pub(crate) fn keep_found(&self, name: &str, asked: &[String], present: &HashSet<&str>) {
        if let Some(known) = self.lock().get_mut(name) {
            for id in asked.iter().filter(|id| !present.contains(id.as_str())) {
                if known.ids.remove(id) {
                    known.asking = None;
                }
            }
        }
    }

    /// Forgets tenant `name` (it is removed).
    pub(crate) fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn entry<'m>(tenants: &'m mut HashMap<String, Known>, name: &str) -> &'m mut Known {
    tenants.entry(name.to_owned()).or_insert_with(|| Known {
        ids: HashSet::new(),
        seeded: None,
        recent: Vec::new(),
        asking: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_asked_by_its_ids_once_seeded() {
        let sorted = |k: Asking| match k {
            Asking::Ids(f) => {
                let mut v = f.ids.clone();
                v.sort();
                v
            }
            other => panic!("{other:?}"),
        };
        let ids = ContainerIds::default();
        let before = Instant::now();
        ids.add("ci", "c1");
        // Creates alone are not all of it (the engine may hold older ones).
        assert_eq!(ids.known("ci"), Asking::Unseeded);
        // A seed asked before c1's create was answered keeps it; one asked after is
        // the engine's word (c1 is gone).
        ids.seed("ci", before, ["c0".to_owned()]);
        assert_eq!(sorted(ids.known("ci")), ["c0", "c1"]);
        ids.seed("ci", Instant::now(), ["c0".to_owned()]);
        assert_eq!(sorted(ids.known("ci")), ["c0"]);
        // The filter is made once per change of the set.
        let (Asking::Ids(a), Asking::Ids(b)) = (ids.known("ci"), ids.known("ci")) else {
            panic!("not asked by IDs")
        };
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.value, super::super::query::ids_value(&["c0".to_owned()]));
        ids.keep_found("ci", &a.ids, &HashSet::new());
        assert_eq!(sorted(ids.known("ci")), ["none"]);
        ids.seed("ci", Instant::now(), ["c0".to_owned()]);
        ids.add("ci", "c2");
        let asked = sorted(ids.known("ci"));
        ids.keep_found("ci", &asked, &HashSet::from(["c2"]));
        assert_eq!(sorted(ids.known("ci")), ["c2"]);
        // A create answered after the list was asked is kept.
        ids.add("ci", "c3");
        ids.keep_found("ci", &["c2".to_owned()], &HashSet::from(["c2"]));
        assert_eq!(sorted(ids.known("ci")), ["c2", "c3"]);
        ids.seed("ci", Instant::now(), (0..=MAX_IDS).map(|i| i.to_string()));
        assert_eq!(ids.known("ci"), Asking::TooMany);
        assert_eq!(ids.known("cd"), Asking::Unseeded);
        ids.forget("ci");
        assert_eq!(ids.known("ci"), Asking::Unseeded);
    }
}
