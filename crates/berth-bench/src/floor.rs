//! Two reference forwarders for the floor of a process hop (targets `minimal` and
//! `spin`). Each runs as a process of its own (this binary re-executed with the hidden
//! `--floor`), listens on a Unix socket and copies bytes between each connection and
//! one of its own to the engine: no HTTP, nothing parsed.
//!
//! - `minimal`: a thread per direction per connection, blocked in read(2) until its
//!   side sends, then one write(2): the least work per message a forwarder that sleeps
//!   can do (no poll or epoll call, one wake-up per message).
//! - `spin`: one thread polling non-blocking sockets in a loop that never sleeps while a
//!   connection is open: the hop without the forwarder's wake-ups, at the price of a
//!   core. With no connection open it waits in accept(2), so it spins only while it is
//!   the side being measured.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{Context as _, Result};

/// Which reference forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Floor {
    Minimal,
    Spin,
}

impl Floor {
    pub(crate) const ALL: [Floor; 2] = [Floor::Minimal, Floor::Spin];

    /// The target's name in `--targets` and in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Spin => "spin",
        }
    }
}

/// Bytes read at once, per direction.
const BUF: usize = 64 << 10;

/// Listens on `listen` and forwards every connection to `upstream`, until killed.
pub(crate) fn serve(kind: Floor, listen: &Path, upstream: &Path) -> Result<()> {
    let _ = std::fs::remove_file(listen);
    let listener =
        UnixListener::bind(listen).with_context(|| format!("binding {}", listen.display()))?;
    forward(kind, &listener, upstream)
}

fn forward(kind: Floor, listener: &UnixListener, upstream: &Path) -> Result<()> {
    match kind {
        Floor::Minimal => minimal(listener, upstream),
        Floor::Spin => spin(listener, upstream),
    }
}

fn minimal(listener: &UnixListener, upstream: &Path) -> Result<()> {
    let pool = Pool::new();
    loop {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let engine = match UnixStream::connect(upstream) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("connecting to {}: {e}", upstream.display());
                continue;
            }
        };
        match (client.try_clone(), engine.try_clone()) {
            (Ok(client2), Ok(engine2)) => {
                pool.run(Box::new(move |buf| copy(client, engine, buf)));
                pool.run(Box::new(move |buf| copy(engine2, client2, buf)));
            }
            (Err(e), _) | (_, Err(e)) => eprintln!("cloning a socket: {e}"),
        }
    }
}

/// Copies `from` to `to` until `from` ends (passed on as a half-close) or either fails
/// (then both sockets are shut, which also ends the other direction's thread).
fn copy(mut from: UnixStream, mut to: UnixStream, buf: &mut [u8]) {
    loop {
        match from.read(buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

type Job = Box<dyn FnOnce(&mut [u8]) + Send>;

/// Threads that wait for the next direction to copy once theirs ends, each with its
/// buffer. They are kept, not ended, because an ended thread's CPU time leaves
/// /proc/<pid>/task, where the benchmark reads it.
struct Pool {
    idle: Arc<AtomicUsize>,
    tx: mpsc::Sender<Job>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
}

impl Pool {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            idle: Arc::new(AtomicUsize::new(0)),
            tx,
            rx: Arc::new(Mutex::new(rx)),
        }
    }

    fn run(&self, job: Job) {
        // An idle thread claimed here is one more receiver for the job sent: no job waits
        // behind a long copy.
        let claimed = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        let job = if claimed {
            match self.tx.send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => job,
            }
        } else {
            job
        };
        let (idle, rx) = (self.idle.clone(), self.rx.clone());
        let spawned = std::thread::Builder::new().spawn(move || {
            let mut buf = vec![0; BUF];
            job(&mut buf);
            loop {
                idle.fetch_add(1, Ordering::AcqRel);
                let next = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                match next {
                    Ok(job) => job(&mut buf),
                    Err(_) => return,
                }
            }
        });
        if let Err(e) = spawned {
            eprintln!("starting a thread: {e}");
        }
    }
}

fn spin(listener: &UnixListener, upstream: &Path) -> Result<()> {
    let mut pairs: Vec<Pair> = Vec::new();
    let mut waiting = true;
    loop {
        // With no connection open, wait in accept(2); else look for one without waiting.
        if waiting != pairs.is_empty() {
            waiting = pairs.is_empty();
            listener.set_nonblocking(!waiting)?;
        }
        match listener.accept() {
            Ok((client, _)) => match Pair::new(client, upstream) {
                Ok(p) => pairs.push(p),
                Err(e) => eprintln!("connecting to {}: {e}", upstream.display()),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => eprintln!("accept: {e}"),
        }
        pairs.retain_mut(Pair::pump);
    }
}

/// A client and its connection to the engine, both non-blocking.
struct Pair {
    /// Client, engine.
    sides: [UnixStream; 2],
    /// Client to engine, engine to client.
    dirs: [Direction; 2],
}

/// Bytes read from one side and not yet all written to the other.
struct Direction {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    ended: bool,
}

impl Pair {
    fn new(client: UnixStream, upstream: &Path) -> io::Result<Self> {
        let engine = UnixStream::connect(upstream)?;
        client.set_nonblocking(true)?;
        engine.set_nonblocking(true)?;
        let dir = || Direction {
            buf: vec![0; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            ended: false,
        };
        Ok(Self {
            sides: [client, engine],
            dirs: [dir(), dir()],
        })
    }

    /// One turn of both directions; false once the pair is done (both ended, or an
    /// error: dropping it closes both sockets).
    fn pump(&mut self) -> bool {
        let [client, engine] = &self.sides;
        let [up, down] = &mut self.dirs;
        if up.pump(client, engine).is_err() || down.pump(engine, client).is_err() {
            return false;
        }
        !(up.ended && down.ended)
    }
}

impl Direction {
    /// Reads what `from` has when nothing is pending, and writes what `to` takes now.
    fn pump(&mut self, mut from: &UnixStream, mut to: &UnixStream) -> io::Result<()> {
        if self.ended {
            return Ok(());
        }
        if self.start == self.end {
            match from.read(&mut self.buf) {
                Ok(0) => {
                    self.ended = true;
                    let _ = to.shutdown(Shutdown::Write);
                    return Ok(());
                }
                Ok(n) => (self.start, self.end) = (0, n),
                Err(e) if retry(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        match to.write(&self.buf[self.start..self.end]) {
            Ok(n) => self.start += n,
            Err(e) if retry(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Through each forwarder to an engine stand-in that reads to the end and answers
    /// with what it read, reversed: 3 MiB each way (more than the sockets and buffers
    /// hold, so writes stop short), and half-closes passed on both ways.
    #[test]
    fn forwards_bytes_and_half_closes() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = dir.path().join("engine.sock");
        let engine = UnixListener::bind(&upstream).unwrap();
        std::thread::spawn(move || {
            for conn in engine.incoming() {
                let mut conn = conn.unwrap();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    conn.read_to_end(&mut got).unwrap();
                    got.reverse();
                    conn.write_all(&got).unwrap();
                });
            }
        });
        let sent: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        for kind in Floor::ALL {
            let listen = dir.path().join(format!("{}.sock", kind.name()));
            let listener = UnixListener::bind(&listen).unwrap();
            let u = upstream.clone();
            std::thread::spawn(move || forward(kind, &listener, &u));
            for _ in 0..2 {
                let mut client = UnixStream::connect(&listen).unwrap();
                client.write_all(&sent).unwrap();
                client.shutdown(Shutdown::Write).unwrap();
                let mut back = Vec::new();
                client.read_to_end(&mut back).unwrap();
                back.reverse();
                assert!(back == sent, "{}: {} bytes back", kind.name(), back.len());
            }
        }
    }
}
