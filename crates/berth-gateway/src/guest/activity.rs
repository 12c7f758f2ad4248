//! Long exchanges open on one guest (hijacks, upgrades, streamed uploads), so a managed
//! engine is not stopped as idle under a user's `docker attach` or `docker build`.
//!
//! Only the long exchanges touch it (two atomic operations each, at start and end):
//! ordinary requests never do, so the plain request path costs nothing more.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How many long exchanges are open, and when the last one ended.
#[derive(Debug, Default)]
pub struct Activity {
    open: AtomicUsize,
    /// Milliseconds since [`epoch`] at which the last exchange ended (0: none yet).
    last_ended_ms: AtomicU64,
}

/// Counts one open exchange until dropped.
#[derive(Debug)]
#[must_use = "the exchange counts as open only while the guard lives"]
pub struct ActivityGuard(Arc<Activity>);

impl Activity {
    /// Counts an exchange as open until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        ActivityGuard(Arc::clone(self))
    }

    /// Long exchanges open right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// When the last long exchange ended, if one ever did.
    pub fn last_ended(&self) -> Option<Instant> {
        match self.last_ended_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(epoch() + Duration::from_millis(ms)),
        }
    }
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        // +1 so that an exchange ending within the first millisecond still counts.
        let ms = epoch().elapsed().as_millis() as u64 + 1;
        self.0.last_ended_ms.store(ms, Ordering::Relaxed);
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A fixed instant the end times are measured from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_open_exchanges_and_record_the_last_end() {
        let activity = Arc::new(Activity::default());
        assert_eq!(activity.open(), 0);
        assert!(activity.last_ended().is_none());
        let a = activity.begin();
        let b = activity.begin();
        assert_eq!(activity.open(), 2);
        drop(a);
        assert_eq!(activity.open(), 1);
        let first_end = activity.last_ended().expect("an exchange ended");
        std::thread::sleep(Duration::from_millis(5));
        drop(b);
        assert_eq!(activity.open(), 0);
        assert!(activity.last_ended().unwrap() > first_end);
        assert!(activity.last_ended().unwrap() <= Instant::now() + Duration::from_millis(2));
    }
}
