//! Bridging two sockets after an upgrade or hijack, zero-copy, with half-close both ways.
//!
//! Each direction moves bytes with `splice(2)` through a pipe (socket → pipe → socket),
//! so hijacked streams never pass through user space. EOF on one side becomes
//! `shutdown(SHUT_WR)` on the other while the opposite direction keeps flowing (notes
//! 4.3): stdin EOF reaches the container and its remaining output still reaches the
//! client; the bridge ends when both directions are done, or when either fails.
//!
//! Idle sessions cost no buffers: a direction's pipe is made on its first bytes. A
//! client that closes fully (not a half-close) while the guest is silent is noticed by
//! a `POLLHUP` check every few seconds, so the guest connection is not held forever.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use berth_guest::GuestStream;
use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use nix::fcntl::{splice, OFlag, SpliceFFlags};
use nix::sys::socket::{shutdown, Shutdown};
use tokio::io::Interest;
use tokio::net::UnixStream;

use crate::serve::ClientIo;

/// How often a half-closed client is checked for a full close.
const HUP_CHECK: Duration = Duration::from_secs(2);

/// Bytes moved per splice call (the default pipe capacity).
const PIPE_CHUNK: usize = 64 * 1024;

/// Splices an upgraded client connection to an upgraded guest connection.
pub(crate) async fn bridge(client: Upgraded, upstream: Upgraded) -> io::Result<()> {
    let client = match client.downcast::<TokioIo<ClientIo>>() {
        Ok(parts) => {
            let (stream, prefix) = parts.io.into_inner().into_parts();
            (stream, [parts.read_buf, prefix])
        }
        Err(client) => return bridge_copy(client, upstream).await,
    };
    match upstream.downcast::<TokioIo<GuestStream>>() {
        Ok(parts) => {
            let (stream, [read_buf, prefix]) = client;
            bridge_sockets(
                stream,
                &[read_buf, prefix],
                parts.io.into_inner(),
                parts.read_buf,
            )
            .await
        }
        Err(upstream) => {
            // Not expected with berth's own connector; keep a correct, slower path.
            let (stream, [read_buf, prefix]) = client;
            let mut client = ClientIo::new(stream, join(read_buf, prefix));
            let mut upstream = TokioIo::new(upstream);
            copy(&mut client, &mut upstream).await
        }
    }
}

/// Splices a client socket to a guest socket. `to_guest` and `to_client` are bytes
/// already read from one side that belong to the other.
pub(crate) async fn bridge_sockets(
    client: UnixStream,
    to_guest: &[Bytes],
    guest: GuestStream,
    to_client: Bytes,
) -> io::Result<()> {
    let up = pump(&client, &guest, to_guest);
    let down = pump(&guest, &client, std::slice::from_ref(&to_client));
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        tokio::select! {
            r = &mut up, if !up_done => {
                r?;
                up_done = true;
                // A full close (not a half-close) of the client ends the exchange now,
                // as closing a direct connection to dockerd would.
                if !down_done && peer_hung_up(&client) {
                    return Ok(());
                }
            }
            r = &mut down, if !down_done => { r?; down_done = true; }
            _ = tokio::time::sleep(HUP_CHECK), if up_done && !down_done => {
                if peer_hung_up(&client) {
                    return Ok(());
                }
            }
        }
        if up_done && down_done {
            return Ok(());
        }
    }
}

/// A socket berth can splice from and to.
trait SpliceEnd: AsFd {
    async fn ready(&self, interest: Interest) -> io::Result<()>;
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

impl SpliceEnd for UnixStream {
    async fn ready(&self, interest: Interest) -> io::Result<()> {
        UnixStream::ready(self, interest).await.map(|_| ())
    }
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        UnixStream::try_io(self, interest, f)
    }
}

impl SpliceEnd for GuestStream {
    async fn ready(&self, interest: Interest) -> io::Result<()> {
        GuestStream::ready(self, interest).await.map(|_| ())
    }
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        GuestStream::try_io(self, interest, f)
    }
}

/// One direction: `src` → `dst` until EOF, then half-close `dst`.
async fn pump(src: &impl SpliceEnd, dst: &impl SpliceEnd, first: &[Bytes]) -> io::Result<()> {
    for bytes in first {
        write_all(dst, bytes).await?;
    }
    let mut pipe: Option<(OwnedFd, OwnedFd)> = None;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        src.ready(Interest::READABLE).await?;
        if pipe.is_none() {
            pipe = Some(nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?);
        }
        let Some((pipe_r, pipe_w)) = &pipe else {
            unreachable!("pipe made above")
        };
        let mut in_pipe = match src.try_io(Interest::READABLE, || {
            Ok(splice(src.as_fd(), None, pipe_w, None, PIPE_CHUNK, flags)?)
        }) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        while in_pipe > 0 {
            dst.ready(Interest::WRITABLE).await?;
            match dst.try_io(Interest::WRITABLE, || {
                Ok(splice(pipe_r, None, dst.as_fd(), None, in_pipe, flags)?)
            }) {
                Ok(n) => in_pipe -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
    // ENOTCONN: the peer is already fully gone; nothing left to tell it.
    match shutdown(dst.as_fd().as_raw_fd(), Shutdown::Write) {
        Ok(()) | Err(nix::errno::Errno::ENOTCONN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_all(dst: &impl SpliceEnd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        dst.ready(Interest::WRITABLE).await?;
        match dst.try_io(Interest::WRITABLE, || {
            Ok(nix::unistd::write(dst.as_fd(), bytes)?)
        }) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether the client closed its socket fully (`POLLHUP`), as opposed to a half-close.
fn peer_hung_up(stream: &UnixStream) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

fn join(a: Bytes, b: Bytes) -> Bytes {
    if b.is_empty() {
        a
    } else if a.is_empty() {
        b
    } else {
        [a, b].concat().into()
    }
}

/// The portable fallback: copy through user space with tokio's default small buffers.
async fn bridge_copy(client: Upgraded, upstream: Upgraded) -> io::Result<()> {
    copy(&mut TokioIo::new(client), &mut TokioIo::new(upstream)).await
}

async fn copy<A, B>(a: &mut A, b: &mut B) -> io::Result<()>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional(a, b).await.map(|_| ())
}
