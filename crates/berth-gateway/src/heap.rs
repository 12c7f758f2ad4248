//! Giving freed heap back to the system when a burst of connections or sessions ends.
//!
//! glibc keeps memory freed in the middle of its heap for reuse: after 256 client
//! connections at once berth stayed at 22 MiB resident (6 MiB before them) though it
//! was nearly all free, and `malloc_trim(0)` gave 12 MiB of it back; 500 idle attach
//! sessions left as much behind. Trimming walks the heap, and pages given back fault in
//! again when used, so it is done when a burst has ended, not on every close: when what
//! is open falls to a quarter of the peak since the last trim, and that peak was at
//! least [`BURST`]. One docker CLI connection at a time never trims.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The smallest peak worth a trim.
const BURST: usize = 32;

/// Client connections open now (from accept to close or upgrade).
pub(crate) static CLIENT_CONNECTIONS: BurstGauge = BurstGauge::new();

/// Spliced sessions (upgrades, hijacks) open now.
pub(crate) static BRIDGES: BurstGauge = BurstGauge::new();

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
        self.open_one();
        Held(self)
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
    }
}

#[allow(unsafe_code)]
fn release_free_heap() {
    // SAFETY: malloc_trim only walks glibc's own free lists (thread-safe, no pointers
    // of ours involved).
    unsafe {
        libc::malloc_trim(0);
    }
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

    #[test]
    fn a_burst_on_top_of_long_lived_connections_is_trimmed() {
        let gauge = BurstGauge::new();
        (0..8).for_each(|_| gauge.open_one());
        // 8 stay open (a client's keep-alive pool); 120 more come and go: peak 128,
        // trims at 32 open (24 of the burst) and at 8 (none of it).
        assert_eq!(trims_while_closing(&gauge, 120), vec![24, 0]);
    }
}
