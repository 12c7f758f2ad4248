//! Giving freed heap back to the system when a burst of connections or sessions ends,
//! and when berth goes quiet.
//!
//! What is counted is in-flight work: whatever holds a `DrainGuard` (client
//! connections and upgraded sessions; a raw hijack runs inside its connection).
//!
//! glibc keeps memory freed in the middle of its heap for reuse: after a burst of
//! client connections, idle attach sessions or the body buffers of a `docker load`,
//! berth stayed several times its resting size though that memory was nearly all free,
//! and `malloc_trim(0)` gives it back (figures: docs/benchmarks.md). Trimming walks
//! the heap, and pages given back fault in again when used, so it is not done on every
//! close but
//! - when what is open falls to a quarter of the peak since the last trim, and that
//!   peak was at least [`BURST`] (a burst ending beside long-lived connections), and
//! - by [`trim_when_quiet`], once nothing has been open or opened for [`QUIET_FOR`]
//!   (off the request path: a connection that closes never waits for a trim).
//!
//! One docker CLI connection at a time never trims on close.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The smallest peak worth a trim.
const BURST: usize = 32;

/// How long berth must have had nothing open, and opened nothing, before it trims.
const QUIET_FOR: Duration = Duration::from_secs(1);

/// Connections and sessions opened so far (to tell whether a quiet spell was quiet).
static OPENED: AtomicU64 = AtomicU64::new(0);

/// Trims done so far (for debug logs and tests).
static TRIMS: AtomicU64 = AtomicU64::new(0);

/// Signalled when the last open connection or session closes.
static ALL_CLOSED: Notify = Notify::const_new();

/// Client connections and upgraded sessions open now.
pub(crate) static IN_FLIGHT: BurstGauge = BurstGauge::new();

/// How many of one kind of thing are open, and the most that were since the last trim.
#[derive(Debug)]
pub(crate) struct BurstGauge {
    open: AtomicUsize,
    peak: AtomicUsize,
}

impl BurstGauge {
    const fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Counts one more open until the returned guard is dropped.
    pub(crate) fn hold(&'static self) -> Held {
        OPENED.fetch_add(1, Ordering::Relaxed);
        self.open_one();
        Held(self)
    }

    fn is_empty(&self) -> bool {
        self.open.load(Ordering::Relaxed) == 0
    }

    fn open_one(&self) {
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Counts one fewer; true when a burst has just ended (and the peak starts over).
    /// Races between threads can only cost or save one trim.
    fn close_one(&self) -> bool {
        let now = self.open.fetch_sub(1, Ordering::Relaxed) - 1;
        let peak = self.peak.load(Ordering::Relaxed);
        peak >= BURST
            && now <= peak / 4
            && self
                .peak
                .compare_exchange(peak, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// One open connection or session; dropping it may give freed heap back.
#[derive(Debug)]
pub(crate) struct Held(&'static BurstGauge);

impl Drop for Held {
    fn drop(&mut self) {
        if self.0.close_one() {
            release_free_heap();
        }
        if all_closed() {
            // Stores a permit when `trim_when_quiet` is not waiting: no wake-up.
            ALL_CLOSED.notify_one();
        }
    }
}

fn all_closed() -> bool {
    IN_FLIGHT.is_empty()
}

/// Trims once berth has been quiet for [`QUIET_FOR`] after its last connection or
/// session closed (checked once per [`QUIET_FOR`], so within two of them); runs for as
/// long as the gateway serves. Wakes at most once per [`QUIET_FOR`] under steady
/// traffic.
pub(crate) async fn trim_when_quiet() {
    // What had been opened at the last trim: nothing new since, nothing to give back.
    let mut trimmed_at = None;
    loop {
        ALL_CLOSED.notified().await;
        let quiet_since = loop {
            let opened = OPENED.load(Ordering::Relaxed);
            tokio::time::sleep(QUIET_FOR).await;
            if OPENED.load(Ordering::Relaxed) == opened {
                break opened;
            }
        };
        if all_closed() && trimmed_at != Some(quiet_since) {
            release_free_heap();
            trimmed_at = Some(quiet_since);
        }
    }
}

#[allow(unsafe_code)]
fn release_free_heap() {
    // SAFETY: malloc_trim only walks glibc's own free lists (thread-safe, no pointers
    // of ours involved).
    let released = unsafe { libc::malloc_trim(0) } == 1;
    let trims = TRIMS.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::debug!(trims, released, "freed heap given back to the system");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens `n`, then closes them all; the open counts at which a trim came.
    fn trims_while_closing(gauge: &BurstGauge, n: usize) -> Vec<usize> {
        (0..n).for_each(|_| gauge.open_one());
        (0..n)
            .filter_map(|i| gauge.close_one().then_some(n - i - 1))
            .collect()
    }

    #[test]
    fn one_connection_at_a_time_never_trims() {
        let gauge = BurstGauge::new();
        for _ in 0..1000 {
            assert!(trims_while_closing(&gauge, 1).is_empty());
        }
        assert!(trims_while_closing(&gauge, BURST - 1).is_empty());
    }

    #[test]
    fn a_burst_trims_at_a_quarter_of_its_peak_and_again_while_large() {
        let gauge = BurstGauge::new();
        // 256 → trim at 64 (peak 64) → trim at 16 (peak 16: below BURST, no more).
        assert_eq!(trims_while_closing(&gauge, 256), vec![64, 16]);
        // The peak started over: the next burst trims again.
        assert_eq!(trims_while_closing(&gauge, 500), vec![125, 31]);
    }

    /// The only test that uses the process-wide gauge.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_second_after_the_last_close_trims_once() {
        tokio::spawn(trim_when_quiet());
        let trims = || TRIMS.load(Ordering::Relaxed);
        let before = trims();
        let step = QUIET_FOR / 4;

        // A connection that stays open: no trim, however long.
        let open = IN_FLIGHT.hold();
        tokio::time::sleep(QUIET_FOR * 3).await;
        assert_eq!(trims(), before);

        // Closed, then a session opens and closes within the quiet spell: it starts over.
        drop(open);
        tokio::time::sleep(step * 3).await;
        drop(IN_FLIGHT.hold());
        tokio::time::sleep(step * 3).await;
        assert_eq!(trims(), before, "trimmed before a quiet spell");

        // Checked once per spell: the trim comes within two spells of the last open.
        tokio::time::sleep(step * 3).await;
        assert_eq!(trims(), before + 1, "no trim after a quiet spell");
        tokio::time::sleep(QUIET_FOR * 5).await;
        assert_eq!(trims(), before + 1, "trimmed again with nothing new");
    }

    #[test]
    fn a_burst_on_top_of_long_lived_connections_is_trimmed() {
        let gauge = BurstGauge::new();
        (0..8).for_each(|_| gauge.open_one());
        // 8 stay open (a client's keep-alive pool); 120 more come and go: peak 128,
        // trims at 32 open (24 of the burst) and at 8 (none of it).
        assert_eq!(trims_while_closing(&gauge, 120), vec![24, 0]);
    }
}
