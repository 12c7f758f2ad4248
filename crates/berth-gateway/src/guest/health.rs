//! Health of a remote engine: up or down, since when, and the last error, from a
//! periodic `GET /_ping` (`Guest::check_health`, driven by the daemon for machines it
//! does not run). Merged views and owner look-ups leave out an engine known to be down
//! instead of failing for it; requests that name its objects get a 502 naming it.

use std::sync::Mutex;
use std::time::SystemTime;

/// Up or down, as last checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HealthState {
    /// Not checked yet (engines berth runs itself are never checked this way).
    #[default]
    Unknown,
    /// Answered its last ping.
    Up { since: SystemTime },
    /// Did not; `error` says why.
    Down { since: SystemTime, error: String },
}

/// One engine's health.
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<HealthState>,
}

impl Health {
    /// The state now.
    pub fn state(&self) -> HealthState {
        self.lock().clone()
    }

    /// Known to be down (a check failed and none succeeded since).
    pub fn is_down(&self) -> bool {
        matches!(*self.lock(), HealthState::Down { .. })
    }

    /// Records a ping answered; `true` when the engine was down before.
    pub fn up(&self) -> bool {
        let mut state = self.lock();
        let was_down = matches!(*state, HealthState::Down { .. });
        if !matches!(*state, HealthState::Up { .. }) {
            *state = HealthState::Up {
                since: SystemTime::now(),
            };
        }
        was_down
    }

    /// Records a failure; `true` when the engine was not down before. The first
    /// failure's time is kept while it stays down; the error is the latest.
    pub fn down(&self, error: String) -> bool {
        let mut state = self.lock();
        match &mut *state {
            HealthState::Down { error: last, .. } => {
                *last = error;
                false
            }
            _ => {
                *state = HealthState::Down {
                    since: SystemTime::now(),
                    error,
                };
                true
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_keeps_its_first_time_and_latest_error() {
        let h = Health::default();
        assert!(!h.is_down());
        assert!(h.down("refused".into()));
        let HealthState::Down { since, .. } = h.state() else {
            panic!("down")
        };
        assert!(!h.down("timed out".into()));
        assert_eq!(
            h.state(),
            HealthState::Down {
                since,
                error: "timed out".into()
            }
        );
        assert!(h.up());
        assert!(!h.is_down());
        assert!(!h.up());
    }
}
