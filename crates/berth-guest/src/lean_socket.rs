//! A stream socket that asks epoll only for what it is waiting on.
//!
//! tokio registers every socket for readability *and* writability, edge-triggered.
//! On Unix sockets the kernel signals "write space" each time the peer consumes what
//! was written, so a proxy that writes one small request and one small response per
//! exchange is woken twice more per exchange for nothing (seen with strace as
//! `EPOLLOUT`-only wakeups: 3.6 sleeps per proxied `/_ping` instead of 2). On a busy
//! 2-core machine each wakeup is a context switch taken from dockerd.
//!
//! `LeanSocket` registers the socket for readability only. Writes are attempted
//! directly; only when one would block is a second registration made, on a duplicate
//! of the descriptor, for writability (bulk transfers, where the extra events are
//! amortised). Closing the socket shuts both down.
//!
//! That first blocked write also tells that the peer reads slower than berth writes (a
//! stream, not an exchange), so a Unix socket's send buffer grows then (see
//! [`BULK_SEND_BUFFER`]).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A non-blocking stream socket (Unix or TCP) driven by tokio with lean readiness.
#[derive(Debug)]
pub struct LeanSocket {
    read: AsyncFd<OwnedFd>,
    /// A duplicate descriptor registered for writability, made on the first write
    /// that would block.
    write: OnceLock<AsyncFd<OwnedFd>>,
}

/// The send buffer a Unix socket gets once a write to it would block (the kernel
/// doubles it, to 2 MiB, for its bookkeeping). A Unix stream socket wakes its writer
/// when at most a quarter of the send buffer is still queued: with the default 208 KiB
/// a relay in the middle of an upload or a download is woken every ~150 KiB the peer
/// reads, with 2 MiB every ~1.5 MiB. berth's CPU per MiB streamed fell 15 % for
/// uploads and 9 % for downloads (docs/benchmarks.md). It is a ceiling, not an
/// allocation: only bytes in flight use memory, and exchanges that never block keep
/// the default.
pub(crate) const BULK_SEND_BUFFER: usize = 1 << 20;

impl LeanSocket {
    /// Takes over a connected, non-blocking stream socket.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        Ok(Self {
            read: register(fd, Interest::READABLE)?,
            write: OnceLock::new(),
        })
    }

    /// Connects to a listening Unix socket. A Unix `connect(2)` completes at once (or
    /// fails, e.g. with `EAGAIN` when the listener's backlog is full, as tokio's
    /// does), so no reactor round trip is needed; and the socket is registered once,
    /// the lean way, instead of by tokio first and then again here.
    pub fn connect_unix(path: &std::path::Path) -> io::Result<Self> {
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        Self::new(fd)
    }

    /// Takes over a tokio TCP stream.
    pub fn from_tcp(stream: tokio::net::TcpStream) -> io::Result<Self> {
        let std = stream.into_std()?;
        std.set_nonblocking(true)?;
        Self::new(std.into())
    }

    fn writer(&self) -> io::Result<&AsyncFd<OwnedFd>> {
        if let Some(w) = self.write.get() {
            return Ok(w);
        }
        let dup = self.read.get_ref().try_clone()?;
        grow_send_buffer(&dup);
        let w = register(dup, Interest::WRITABLE)?;
        // Only the one writer of this socket gets here; a lost race just drops `w`.
        let _ = self.write.set(w);
        Ok(self
            .write
            .get()
            .unwrap_or_else(|| unreachable!("set above")))
    }

    /// One `read(2)` into `buf` now, without waiting for readiness: `None` when
    /// nothing has arrived yet. A new connection's first request has usually arrived
    /// by the time it is accepted; reading it at once saves a trip through the
    /// reactor (and the timer of a wait that does not happen). The readiness is left
    /// alone: an event still pending costs at most one read that finds nothing.
    #[allow(unsafe_code)]
    pub fn try_read_buf<B: bytes::BufMut>(&self, buf: &mut B) -> io::Result<Option<usize>> {
        // SAFETY: the chunk's bytes are only written to (by `read(2)`), never read.
        let spare = unsafe { buf.chunk_mut().as_uninit_slice_mut() };
        let mut read_buf = ReadBuf::uninit(spare);
        match read_uninit(self.as_raw_fd(), &mut read_buf) {
            Ok(()) => {
                let n = read_buf.filled().len();
                // SAFETY: `read(2)` initialised the first `n` bytes of the chunk.
                unsafe { buf.advance_mut(n) };
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads what has arrived into `buf`'s spare capacity (at least one byte must be
    /// spare), waiting for readiness: the count read, 0 at EOF. A short read clears the
    /// readiness, as [`Self::poll_read_with_len`] does.
    #[allow(unsafe_code)]
    pub fn poll_read_buf<B: bytes::BufMut>(
        &self,
        cx: &mut Context<'_>,
        buf: &mut B,
    ) -> Poll<io::Result<usize>> {
        let want = buf.chunk_mut().len();
        let n = ready!(self.poll_read_with_len(cx, want, |fd| {
            // SAFETY: the chunk's bytes are only written to (by `read(2)`), never read.
            let spare = unsafe { buf.chunk_mut().as_uninit_slice_mut() };
            let mut read_buf = ReadBuf::uninit(spare);
            read_uninit(fd.as_raw_fd(), &mut read_buf)?;
            Ok(read_buf.filled().len())
        }))?;
        // SAFETY: `read(2)` initialised the first `n` bytes of the chunk.
        unsafe { buf.advance_mut(n) };
        Poll::Ready(Ok(n))
    }

    /// Ready when the socket is readable (or at EOF); consumes nothing. Only the last
    /// task to poll is woken: one reader per socket.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.read.poll_read_ready(cx).map_ok(|_| ())
    }

    /// Polls `op`, a raw operation that moves up to `want` bytes out of this socket (a
    /// `read` or `splice` of that length), until it does not return `WouldBlock`. A
    /// shorter result means the socket was drained, so its readiness is cleared and
    /// the next call waits for new data instead of trying (and failing with `EAGAIN`)
    /// first, as `poll_read` does.
    pub fn poll_read_with_len(
        &self,
        cx: &mut Context<'_>,
        want: usize,
        mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.read.poll_read_ready(cx))?;
            match guard.try_io(|fd| op(fd.get_ref().as_fd())) {
                Ok(Ok(n)) => {
                    if n > 0 && n < want {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(n));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// Polls `op`, a raw operation that moves bytes out of this socket, until it does
    /// not return `WouldBlock`; the readiness is cleared only then. For `splice(2)` into
    /// a pipe, which stops short when the pipe runs out of slots (one per queued
    /// message of the peer's) while the socket still holds bytes: clearing the
    /// readiness on that short count, as [`Self::poll_read_with_len`] does for reads,
    /// would wait for an event that never comes once the peer stops writing.
    pub fn poll_read_with(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.read.poll_read_ready(cx))?;
            match guard.try_io(|fd| op(fd.get_ref().as_fd())) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    /// Runs `op` (a raw write-side operation, e.g. `write` or `splice` into this socket):
    /// first directly, then whenever the socket is writable, until it does not return
    /// `WouldBlock`. Only the last task to poll is woken: one writer per socket.
    pub fn poll_write_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        match op(self.read.get_ref().as_fd()) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return Poll::Ready(other),
        }
        let writer = self.writer()?;
        loop {
            let mut guard = ready!(writer.poll_write_ready(cx))?;
            match guard.try_io(|fd| op(fd.get_ref().as_fd())) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    /// `shutdown(SHUT_WR)`: the peer reads EOF, and can still write to us.
    pub fn shutdown_write(&self) -> io::Result<()> {
        use nix::sys::socket::{shutdown, Shutdown};
        match shutdown(self.as_raw_fd(), Shutdown::Write) {
            // The peer is already fully gone: nothing left to tell it.
            Ok(()) | Err(nix::errno::Errno::ENOTCONN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for LeanSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.get_ref().as_fd()
    }
}

impl AsRawFd for LeanSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.read.get_ref().as_raw_fd()
    }
}

impl AsyncRead for LeanSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self).poll_read(cx, buf)
    }
}

impl AsyncWrite for LeanSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown_write())
    }
}

/// A shared socket reads and writes as well (one reader and one writer at a time, as
/// for any `LeanSocket`): a relay can then watch it while it copies.
impl AsyncRead for &LeanSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.read.poll_read_ready(cx))?;
            let wanted = buf.remaining();
            let before = buf.filled().len();
            match guard.try_io(|fd| read_uninit(fd.get_ref().as_raw_fd(), buf)) {
                Ok(Ok(())) => {
                    let got = buf.filled().len() - before;
                    // A short read drained the socket: forget the readiness now instead
                    // of learning it from one more read(2) that fails with EAGAIN (what
                    // tokio does for its own sockets). Edge-triggered epoll reports any
                    // data that arrives later, and a newer event is never cleared.
                    if got > 0 && got < wanted {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for &LeanSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |fd| Ok(nix::unistd::write(fd, buf)?))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |fd| Ok(nix::sys::uio::writev(fd, bufs)?))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown_write())
    }
}

/// Raises a Unix socket's send buffer to [`BULK_SEND_BUFFER`]: past `wmem_max` when
/// berth may (`SO_SNDBUFFORCE`, root), else up to it. TCP sockets are left alone:
/// setting `SO_SNDBUF` would switch off the kernel's own tuning of their buffers.
fn grow_send_buffer(fd: &OwnedFd) {
    use nix::sys::socket::{
        getsockname, setsockopt, sockopt, AddressFamily, SockaddrLike, SockaddrStorage,
    };
    let unix = getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .is_ok_and(|a| a.family() == Some(AddressFamily::Unix));
    if unix && setsockopt(fd, sockopt::SndBufForce, &BULK_SEND_BUFFER).is_err() {
        // Best effort: the default buffer works, only with more wake-ups.
        let _ = setsockopt(fd, sockopt::SndBuf, &BULK_SEND_BUFFER);
    }
}

/// Registers an owned descriptor with tokio's reactor for `interest`.
#[allow(unsafe_code)]
fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor, stays open and refers to the
    // same file description for as long as the `AsyncFd` owns it, and its `as_raw_fd`
    // always returns that same number.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}

/// `read(2)` into the unfilled part of `buf` without zeroing it first (hyper hands
/// over buffers of several KiB per read; zeroing them showed up in profiles).
#[allow(unsafe_code)]
fn read_uninit(fd: RawFd, buf: &mut ReadBuf<'_>) -> io::Result<()> {
    // SAFETY: `unfilled_mut` is only written through by `read(2)`, never read; the
    // length passed is the slice's own length.
    let unfilled = unsafe { buf.unfilled_mut() };
    let n = unsafe { libc::read(fd, unfilled.as_mut_ptr().cast(), unfilled.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised exactly `n` bytes of the unfilled region.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{getsockopt, sockopt};
    use std::future::poll_fn;

    fn send_buffer(socket: &LeanSocket) -> usize {
        getsockopt(&socket.as_fd(), sockopt::SndBuf).expect("SO_SNDBUF")
    }

    /// Writes into `socket` until a write would block (nobody reads the other end).
    async fn fill(socket: &LeanSocket) {
        let chunk = vec![0u8; 64 * 1024];
        loop {
            let wrote = poll_fn(|cx| {
                match socket.poll_write_with(cx, |fd| Ok(nix::unistd::write(fd, &chunk)?)) {
                    Poll::Pending => Poll::Ready(None),
                    other => other.map(Some),
                }
            })
            .await;
            match wrote {
                Some(r) => assert!(r.expect("write") > 0),
                None => return,
            }
        }
    }

    #[tokio::test]
    async fn a_unix_socket_gets_the_bulk_send_buffer_once_a_write_blocks() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("non-blocking");
        let a = LeanSocket::new(a.into()).expect("register");
        let before = send_buffer(&a);
        assert!(before < 2 * BULK_SEND_BUFFER, "default already {before}");
        fill(&a).await;
        let after = send_buffer(&a);
        if nix::unistd::geteuid().is_root() {
            // The kernel reports twice what was set.
            assert_eq!(after, 2 * BULK_SEND_BUFFER);
        } else {
            assert!(after >= before, "shrank from {before} to {after}");
        }
    }

    #[tokio::test]
    async fn a_tcp_socket_keeps_the_kernels_own_buffer_tuning() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let _b = listener.accept().expect("accept");
        a.set_nonblocking(true).expect("non-blocking");
        let a = LeanSocket::new(a.into()).expect("register");
        let before = send_buffer(&a);
        fill(&a).await;
        // Autotuning may have grown it, but never to the exact bulk size we would set.
        assert_ne!(send_buffer(&a), 2 * BULK_SEND_BUFFER, "was {before}");
    }
}
