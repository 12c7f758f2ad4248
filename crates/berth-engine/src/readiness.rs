//! Readiness: the machine's state as data (`MachineState`, `MachineStatus`,
//! `Generation`), the one-word atomic the request path reads, and the `/_ping` probe.
//!
//! The state and the generation share one `AtomicU64` (generation in the high 56 bits,
//! phase in the low 8), so `ensure_running` on a running machine is a single atomic load
//! that sees a consistent pair, and the exit watcher can retire exactly the generation
//! it watched with one compare-and-swap.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Counts dockerd runs: 0 before the first start, +1 at every (re)start or adoption.
/// Connections made to an older generation point at a dockerd that is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(u64);

impl Generation {
    /// The raw counter.
    pub fn get(self) -> u64 {
        self.0
    }

    pub(crate) fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a machine is in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MachineState {
    /// No dockerd; the next `ensure_running` starts one.
    Stopped,
    /// A start is under way; callers of `ensure_running` wait for it.
    Starting,
    /// dockerd answered `/_ping` and has not been seen exiting since.
    Running,
    /// `stop` is under way.
    Stopping,
    /// Too many consecutive failures; `ensure_running` fails at once until `stop`.
    Failed {
        /// The last failure.
        reason: String,
    },
}

impl fmt::Display for MachineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stopped => f.write_str("stopped"),
            Self::Starting => f.write_str("starting"),
            Self::Running => f.write_str("running"),
            Self::Stopping => f.write_str("stopping"),
            Self::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// A snapshot of a machine, for `berth status` and `machine ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MachineStatus {
    /// Lifecycle state.
    pub state: MachineState,
    /// dockerd's pid while one runs.
    pub pid: Option<u32>,
    /// When the current dockerd became ready (or was adopted).
    pub started_at: Option<SystemTime>,
    /// Time since `started_at`.
    pub uptime: Option<Duration>,
    /// The current generation.
    pub generation: Generation,
    /// The current dockerd was left by an earlier berth and adopted, not spawned.
    pub adopted: bool,
    /// Consecutive failures counted towards giving up.
    pub consecutive_failures: u32,
    /// The last failure since the machine was started (a failed start, an exit nobody
    /// asked for, a wedge), and how long ago.
    pub last_failure: Option<(String, Duration)>,
}

/// The phase part of the packed state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    Stopped = 0,
    Starting = 1,
    Running = 2,
    Stopping = 3,
    Failed = 4,
}

impl Phase {
    fn from_bits(bits: u8) -> Self {
        match bits {
            1 => Self::Starting,
            2 => Self::Running,
            3 => Self::Stopping,
            4 => Self::Failed,
            _ => Self::Stopped,
        }
    }
}

/// Generation and phase in one atomic word.
#[derive(Debug, Default)]
pub(crate) struct StateCell(AtomicU64);

impl StateCell {
    fn pack(generation: Generation, phase: Phase) -> u64 {
        (generation.0 << 8) | phase as u64
    }

    fn unpack(word: u64) -> (Generation, Phase) {
        (Generation(word >> 8), Phase::from_bits(word as u8))
    }

    /// The fast path: the generation if running. One atomic load, no syscall.
    #[inline]
    pub(crate) fn running_generation(&self) -> Option<Generation> {
        match Self::unpack(self.0.load(Ordering::Acquire)) {
            (generation, Phase::Running) => Some(generation),
            _ => None,
        }
    }

    pub(crate) fn load(&self) -> (Generation, Phase) {
        Self::unpack(self.0.load(Ordering::Acquire))
    }

    pub(crate) fn store(&self, generation: Generation, phase: Phase) {
        self.0
            .store(Self::pack(generation, phase), Ordering::Release);
    }

    /// Moves from exactly `(generation, from)` to `(generation, to)`; false if the
    /// state was anything else.
    pub(crate) fn transition(&self, generation: Generation, from: Phase, to: Phase) -> bool {
        self.0
            .compare_exchange(
                Self::pack(generation, from),
                Self::pack(generation, to),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

/// `GET /_ping` on dockerd's socket: true on a 200 within `timeout`. A missing socket or
/// a refused connection fails at once, so polling this is cheap while dockerd starts.
pub(crate) async fn ping(socket: &Path, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, ping_once(socket))
        .await
        .unwrap_or(false)
}

async fn ping_once(socket: &Path) -> bool {
    let Ok(stream) = UnixStream::connect(socket).await else {
        return false;
    };
    ping_stream(stream).await
}

/// `GET /_ping` on a stream already connected to dockerd.
pub(crate) async fn ping_stream<S>(mut stream: S) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    // The status line is all we need.
    let mut head = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    head.starts_with(b"HTTP/1.1 200 ") || head.starts_with(b"HTTP/1.0 200 ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_word_round_trips_and_transitions_only_from_the_expected_pair() {
        let cell = StateCell::default();
        assert_eq!(cell.load(), (Generation(0), Phase::Stopped));
        assert_eq!(cell.running_generation(), None);
        cell.store(Generation(7), Phase::Running);
        assert_eq!(cell.running_generation(), Some(Generation(7)));
        // An exit watcher of generation 6 must not stop generation 7.
        assert!(!cell.transition(Generation(6), Phase::Running, Phase::Stopped));
        assert!(cell.transition(Generation(7), Phase::Running, Phase::Stopped));
        assert_eq!(cell.load(), (Generation(7), Phase::Stopped));
        cell.store(Generation(1 << 40), Phase::Failed);
        assert_eq!(cell.load(), (Generation(1 << 40), Phase::Failed));
    }

    #[tokio::test]
    async fn ping_answers_false_without_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!ping(&dir.path().join("none.sock"), Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn ping_reads_the_status_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            for answer in ["HTTP/1.1 200 OK\r\n\r\nOK", "HTTP/1.1 500 Internal\r\n\r\n"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        assert!(ping(&path, Duration::from_secs(2)).await);
        assert!(!ping(&path, Duration::from_secs(2)).await);
        server.await.unwrap();
    }
}
