//! Zero-copy byte relay between two sockets: `splice(2)` from one socket into a pipe
//! and from the pipe into the other, so payload never enters user space. Used by the
//! gateway's upgraded and hijacked sessions, by the host's port forwards, and (a known
//! number of bytes, [`splice_exact`]) for the bodies of framed pass-through exchanges.
//!
//! [`SpliceRelay`] is a hand-written future rather than an `async fn`: every idle
//! session or forwarded connection keeps one, and written as async functions the two
//! directions, their readiness waits and the half-close logic took ~1.9 KiB per
//! session (each await point holds its own waiter node); polled by hand, the sockets'
//! own waker slots do that job and the relay is its two sockets and two small states.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::time::{Instant, Sleep};

use crate::LeanSocket;

/// A pipe starts at the kernel's default capacity (64 KiB: idle and interactive
/// streams never need more) and grows to this once a splice fills it, so that a bulk
/// stream moves what the socket holds in fewer calls.
const BULK_PIPE: usize = 1024 * 1024;

/// How often a half-closed first socket is checked for a full close.
pub(crate) const HANGUP_CHECK: Duration = Duration::from_secs(2);

/// Relays two sockets both ways until both directions reached EOF, or one failed.
/// EOF on one side becomes `shutdown(SHUT_WR)` on the other while the opposite
/// direction keeps flowing (a client's stdin EOF reaches the container, and the
/// container's remaining output still reaches the client). A direction's pipe is made
/// on its first bytes, so an idle relay holds no buffers.
#[derive(Debug)]
pub struct SpliceRelay {
    a: LeanSocket,
    b: LeanSocket,
    a_to_b: Direction,
    b_to_a: Direction,
    /// Set by [`Self::end_on_hangup_of_a`]: after `a` half-closed, when it is next
    /// looked at for a full close.
    hangup_watch: Option<HangupWatch>,
}

#[derive(Debug)]
enum HangupWatch {
    /// `a` has not half-closed yet.
    Armed,
    /// `a` half-closed; this timer says when to look again.
    Checking(Pin<Box<Sleep>>),
}

impl SpliceRelay {
    /// Relays `a` ↔ `b`.
    pub fn new(a: LeanSocket, b: LeanSocket) -> Self {
        Self {
            a,
            b,
            a_to_b: Direction::default(),
            b_to_a: Direction::default(),
            hangup_watch: None,
        }
    }

    /// Bytes already read from one side that belong to the other (read along with an
    /// HTTP head): written first, then dropped, so an idle session keeps none of them.
    pub fn with_prefixes(mut self, to_b: Vec<Bytes>, to_a: Vec<Bytes>) -> Self {
        self.a_to_b.first = to_b;
        self.b_to_a.first = to_a;
        self
    }

    /// Ends the relay when `a` closes fully, even while `b` still has a direction
    /// open: a client that hangs up must not keep a silent guest session. After `a`'s
    /// EOF, its socket is looked at for `POLLHUP` at once and every few seconds (on a
    /// Unix socket a full close shows as `POLLHUP`, a half-close does not).
    pub fn end_on_hangup_of_a(mut self) -> Self {
        self.hangup_watch = Some(HangupWatch::Armed);
        self
    }

    /// Bytes relayed so far: `a` → `b`, and `b` → `a`.
    pub fn bytes_moved(&self) -> (u64, u64) {
        (self.a_to_b.moved, self.b_to_a.moved)
    }

    /// Whether `a`'s peer hung up while `b` → `a` is still open.
    fn poll_a_hung_up(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(watch) = &mut self.hangup_watch else {
            return false;
        };
        if !self.a_to_b.done || self.b_to_a.done {
            return false;
        }
        loop {
            match watch {
                HangupWatch::Armed => {
                    if peer_hung_up(&self.a) {
                        return true;
                    }
                    *watch = HangupWatch::Checking(Box::pin(tokio::time::sleep(HANGUP_CHECK)));
                }
                HangupWatch::Checking(timer) => {
                    if timer.as_mut().poll(cx).is_pending() {
                        return false;
                    }
                    if peer_hung_up(&self.a) {
                        return true;
                    }
                    timer.as_mut().reset(Instant::now() + HANGUP_CHECK);
                }
            }
        }
    }
}

impl Future for SpliceRelay {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(r) = this.a_to_b.poll_flow(cx, &this.a, &this.b) {
            r?;
        }
        if let Poll::Ready(r) = this.b_to_a.poll_flow(cx, &this.b, &this.a) {
            r?;
        }
        if (this.a_to_b.done && this.b_to_a.done) || this.poll_a_hung_up(cx) {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

/// Moves exactly `len` bytes from `src` to `dst` through a pipe, for a body whose length
/// is known and that no one needs to read (the gateway's framed pass-through). Fails
/// with `UnexpectedEof` when `src` ends first; `moved` counts the bytes written to `dst`
/// as they go. The pipe grows as [`SpliceRelay`]'s does, and is closed at the end.
pub async fn splice_exact(
    src: &LeanSocket,
    dst: &LeanSocket,
    len: u64,
    moved: &mut u64,
) -> io::Result<()> {
    let mut pipe = SplicePipe::new()?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut left = len;
    let mut in_pipe = 0usize;
    let mut filled = false;
    while left > 0 || in_pipe > 0 {
        if in_pipe > 0 {
            let n = std::future::poll_fn(|cx| {
                dst.poll_write_with(cx, |fd| {
                    Ok(splice(&pipe.read, None, fd, None, in_pipe, flags)?)
                })
            })
            .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            in_pipe -= n;
            *moved += n as u64;
            if in_pipe == 0 && std::mem::take(&mut filled) {
                pipe.grow();
            }
            continue;
        }
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(pipe.size);
        let n = std::future::poll_fn(|cx| {
            src.poll_read_with(cx, |fd| {
                Ok(splice(fd, None, &pipe.write, None, want, flags)?)
            })
        })
        .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before the body's end",
            ));
        }
        left -= n as u64;
        in_pipe = n;
        filled = n == pipe.size;
    }
    Ok(())
}

/// One direction's state: `src` → `dst`.
#[derive(Debug, Default)]
struct Direction {
    /// Bytes to write before the first splice.
    first: Vec<Bytes>,
    pipe: Option<SplicePipe>,
    /// Bytes spliced into the pipe and not yet out of it.
    in_pipe: usize,
    /// The last splice in filled the pipe: grow it once it is empty.
    filled: bool,
    /// EOF reached and passed on as a half-close.
    done: bool,
    /// Bytes written to the destination so far (for metrics).
    moved: u64,
}

impl Direction {
    /// Moves what `src` has into `dst`; `Ready(Ok)` once `src`'s EOF was passed on
    /// (and on every poll after).
    fn poll_flow(
        &mut self,
        cx: &mut Context<'_>,
        src: &LeanSocket,
        dst: &LeanSocket,
    ) -> Poll<io::Result<()>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_write_first(cx, dst))?;
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        loop {
            if self.in_pipe > 0 {
                let pipe = self.pipe.as_mut().ok_or_else(missing_pipe)?;
                let n = ready!(dst.poll_write_with(cx, |fd| {
                    Ok(splice(&pipe.read, None, fd, None, self.in_pipe, flags)?)
                }))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.in_pipe -= n;
                self.moved += n as u64;
                if self.in_pipe == 0 && std::mem::take(&mut self.filled) {
                    pipe.grow();
                }
                continue;
            }
            let pipe = match &mut self.pipe {
                Some(pipe) => pipe,
                None => {
                    ready!(src.poll_readable(cx))?;
                    self.pipe.insert(SplicePipe::new()?)
                }
            };
            // The pipe is empty here, yet a splice may stop short of `want` with bytes
            // still queued (the pipe's slots ran out on small messages): readiness is
            // only cleared by `EAGAIN`.
            let want = pipe.size;
            let n = ready!(src.poll_read_with(cx, |fd| {
                Ok(splice(fd, None, &pipe.write, None, want, flags)?)
            }))?;
            if n == 0 {
                dst.shutdown_write()?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            self.in_pipe = n;
            self.filled = n == want;
        }
    }

    fn poll_write_first(&mut self, cx: &mut Context<'_>, dst: &LeanSocket) -> Poll<io::Result<()>> {
        while let Some(bytes) = self.first.first_mut() {
            if bytes.is_empty() {
                self.first.remove(0);
                continue;
            }
            let n = ready!(dst.poll_write_with(cx, |fd| Ok(nix::unistd::write(fd, bytes)?)))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            bytes.advance(n);
            self.moved += n as u64;
        }
        if self.first.capacity() > 0 {
            self.first = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

fn missing_pipe() -> io::Error {
    io::Error::other("splice relay: bytes in a pipe that does not exist")
}

/// Whether the peer of `socket` closed it fully (`POLLHUP`), as opposed to a half-close.
pub(crate) fn peer_hung_up(socket: &LeanSocket) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLOUT)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

/// A non-blocking pipe: one direction's splice buffer.
#[derive(Debug)]
struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Its capacity in bytes.
    size: usize,
}

impl SplicePipe {
    fn new() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let size = fcntl(write.as_raw_fd(), FcntlArg::F_GETPIPE_SZ)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(64 * 1024);
        Ok(Self { read, write, size })
    }

    /// To [`BULK_PIPE`] if the kernel allows (`/proc/sys/fs/pipe-max-size`, and the
    /// per-user pipe limits for an unprivileged berth); else it stays as it is.
    fn grow(&mut self) {
        if self.size >= BULK_PIPE {
            return;
        }
        if let Some(size) = i32::try_from(BULK_PIPE)
            .ok()
            .and_then(|want| fcntl(self.write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(want)).ok())
            .and_then(|got| usize::try_from(got).ok())
        {
            self.size = size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay_test_io::{big_payload, send_then_half_close};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// A relay between two socket pairs: returns the far ends (the "client" talking to
    /// `a` and the "guest" behind `b`) and the running relay.
    fn relay(
        setup: impl FnOnce(SpliceRelay) -> SpliceRelay,
    ) -> (
        UnixStream,
        UnixStream,
        tokio::task::JoinHandle<io::Result<()>>,
    ) {
        let (client, a) = UnixStream::pair().unwrap();
        let (b, guest) = UnixStream::pair().unwrap();
        let lean = |s: UnixStream| {
            s.set_nonblocking(true).unwrap();
            LeanSocket::new(OwnedFd::from(s)).unwrap()
        };
        let relay = setup(SpliceRelay::new(lean(a), lean(b)));
        (client, guest, tokio::spawn(relay))
    }

    fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> T + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        tokio::task::spawn_blocking(f)
    }

    /// Reads `s` to EOF on a blocking thread; gives the stream back with what it read.
    fn read_to_end(mut s: UnixStream) -> tokio::task::JoinHandle<(UnixStream, Vec<u8>)> {
        blocking(move || {
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            (s, got)
        })
    }

    #[tokio::test]
    async fn prefixes_go_first_then_bytes_and_half_closes_pass_both_ways() {
        let (client, mut guest, relay) = relay(|r| {
            r.with_prefixes(
                vec![
                    Bytes::from_static(b"head "),
                    Bytes::new(),
                    Bytes::from_static(b"body "),
                ],
                vec![Bytes::from_static(b"early ")],
            )
        });
        // Several pipe fills each way, so the pipe grows on the way.
        let big = big_payload();
        let client_side = send_then_half_close(client, big.clone());
        let sent = big.clone();
        let guest_side = blocking(move || {
            let mut got = Vec::new();
            // The client's half-close arrives as EOF while this side can still write.
            guest.read_to_end(&mut got).unwrap();
            guest.write_all(&sent).unwrap();
            guest.shutdown(std::net::Shutdown::Write).unwrap();
            got
        });
        let at_guest = guest_side.await.unwrap();
        let at_client = client_side.await.unwrap();
        relay.await.unwrap().unwrap();
        assert_eq!(&at_guest[..10], b"head body ");
        assert!(at_guest[10..] == big[..], "client → guest bytes differ");
        assert_eq!(&at_client[..6], b"early ");
        assert!(at_client[6..] == big[..], "guest → client bytes differ");
    }

    /// Many small messages fill a pipe's slots before its bytes: the splice stops
    /// short with bytes still queued, and the relay must go on without a new event
    /// (the peer has stopped writing). Lost readiness here hung attach sessions.
    #[tokio::test]
    async fn small_messages_beyond_the_pipes_slots_all_arrive_without_more_writes() {
        let (client, mut guest, relay) = relay(|r| r);
        // 100 messages: more than a 64 KiB pipe's 16 slots, less than the socket's
        // send buffer holds (each message costs ~1 KiB of it).
        let message = [7u8; 100];
        for _ in 0..100 {
            guest.write_all(&message).unwrap();
        }
        let got = blocking(move || {
            let mut client = client;
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut got = vec![0u8; 100 * 100];
            client.read_exact(&mut got).map(|()| got)
        });
        let got = got
            .await
            .unwrap()
            .expect("the relay stalled with bytes queued");
        assert!(got.iter().all(|&b| b == 7));
        drop(guest);
        relay.abort();
    }

    #[tokio::test]
    async fn a_full_close_of_a_ends_the_relay_while_b_is_silent() {
        let (client, _guest, relay) = relay(SpliceRelay::end_on_hangup_of_a);
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), relay)
            .await
            .expect("relay still open after the client hung up")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_half_close_of_a_keeps_b_to_a_open() {
        let (client, guest, relay) = relay(SpliceRelay::end_on_hangup_of_a);
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let (mut guest, _) = read_to_end(guest).await.unwrap();
        // Past the first hang-up check, and still open.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!relay.is_finished(), "a half-close ended the relay");
        guest.write_all(b"late output").unwrap();
        drop(guest);
        let (_, got) = read_to_end(client).await.unwrap();
        assert_eq!(got, b"late output");
        relay.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn without_the_hangup_watch_a_closed_a_waits_for_b() {
        let (client, guest, relay) = relay(|r| r);
        drop(client);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!relay.is_finished());
        drop(guest);
        relay.await.unwrap().unwrap();
    }
}
