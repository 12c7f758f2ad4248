//! Bridging two sockets after an upgrade or hijack, zero-copy, with half-close both ways.
//!
//! Each direction moves bytes with `berth_guest::splice` (socket → pipe → socket),
//! so hijacked streams never pass through user space. EOF on one side becomes
//! `shutdown(SHUT_WR)` on the other while the opposite direction keeps flowing (notes
//! 4.3): stdin EOF reaches the container and its remaining output still reaches the
//! client; the bridge ends when both directions are done, or when either fails.
//!
//! Idle sessions cost no buffers: a direction's pipe is made on its first bytes. A
//! client that closes fully (not a half-close) is noticed by `POLLHUP` when its EOF
//! arrives and every few seconds after, so a silent guest is not held forever.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_guest::{GuestStream, LeanSocket};
use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

use crate::serve::{ClientIo, ClientStream, Prefixed};

/// How often a half-closed client is checked for a full close.
const HUP_CHECK: Duration = Duration::from_secs(2);

/// Splices an upgraded client connection to an upgraded guest connection.
pub(crate) async fn bridge(client: Upgraded, upstream: Upgraded) -> io::Result<()> {
    let (client, client_read) = match client.downcast::<TokioIo<ClientIo>>() {
        Ok(parts) => (parts.io.into_inner(), parts.read_buf),
        Err(client) => return copy_io(TokioIo::new(client), TokioIo::new(upstream)).await,
    };
    // Bytes hyper read past each head belong to the stream (notes 4.1); on the client
    // side, anything still in the sniff buffer comes after them.
    let (stream, prefix) = client.into_parts();
    let to_guest = vec![client_read, prefix];
    match upstream.downcast::<TokioIo<GuestStream>>() {
        Ok(parts) => {
            let guest = parts.io.into_inner();
            bridge_client(stream, to_guest, guest, parts.read_buf).await
        }
        Err(upstream) => {
            // Not expected with berth's own connector; keep a correct, slower path.
            let client = Prefixed::new(stream, Bytes::from(to_guest.concat()));
            copy_io(client, TokioIo::new(upstream)).await
        }
    }
}

/// Bridges a client to a guest stream: zero-copy for plain sockets, through user space
/// for TLS clients (their bytes must be decrypted).
pub(crate) async fn bridge_client(
    client: ClientStream,
    to_guest: Vec<Bytes>,
    guest: GuestStream,
    to_client: Bytes,
) -> io::Result<()> {
    match client {
        ClientStream::Plain(socket) => {
            bridge_sockets(&socket, to_guest, guest.socket(), to_client).await
        }
        tls @ ClientStream::Tls(_) => {
            let client = Prefixed::new(tls, Bytes::from(to_guest.concat()));
            copy_io(client, Prefixed::new(guest, to_client)).await
        }
    }
}

/// Splices a client socket to a guest socket. `to_guest` and `to_client` are bytes
/// already read from one side that belong to the other.
async fn bridge_sockets(
    client: &LeanSocket,
    to_guest: Vec<Bytes>,
    guest: &LeanSocket,
    to_client: Bytes,
) -> io::Result<()> {
    let _open = OpenBridge::new();
    // Every idle session keeps this future: the pumps are built in place (bound first
    // and pinned after, each would take its size twice) and the half-close timer is
    // boxed, so that the future holds little more than the two pumps.
    let mut up = std::pin::pin!(pump(client, guest, to_guest));
    let mut down = std::pin::pin!(pump(guest, client, vec![to_client]));
    tokio::select! {
        r = &mut up => {
            r?;
            // A full close (not a half-close) of the client ends the exchange now, as
            // closing a direct connection to dockerd would; a half-closed client is
            // looked at again every few seconds while the guest's output flows.
            let mut check = Box::pin(tokio::time::sleep(HUP_CHECK));
            loop {
                if peer_hung_up(client) {
                    return Ok(());
                }
                tokio::select! {
                    r = &mut down => return r,
                    () = check.as_mut() => {
                        check.as_mut().reset(tokio::time::Instant::now() + HUP_CHECK);
                    }
                }
            }
        }
        r = &mut down => {
            r?;
            up.await
        }
    }
}

/// Bridges open now.
static OPEN_BRIDGES: AtomicUsize = AtomicUsize::new(0);

/// Counts an open bridge. When the last one closes, freed heap goes back to the system:
/// glibc keeps it otherwise, so the memory of hundreds of idle sessions stayed with
/// berth after they closed.
struct OpenBridge;

impl OpenBridge {
    fn new() -> Self {
        OPEN_BRIDGES.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for OpenBridge {
    fn drop(&mut self) {
        if OPEN_BRIDGES.fetch_sub(1, Ordering::Relaxed) == 1 {
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

/// One direction: `src` → `dst` until EOF, then half-close `dst`. `first` (bytes read
/// with a head) is written, then dropped: it holds hyper's whole read buffer, which an
/// idle session must not keep.
async fn pump(src: &LeanSocket, dst: &LeanSocket, first: Vec<Bytes>) -> io::Result<()> {
    for bytes in first {
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            let n = dst
                .write_with(|fd| Ok(nix::unistd::write(fd, rest)?))
                .await?;
            rest = &rest[n..];
        }
    }
    berth_guest::splice::splice_to_eof(src, dst).await?;
    dst.shutdown_write()
}

/// Whether the client closed its socket fully (`POLLHUP`), as opposed to a half-close.
fn peer_hung_up(socket: &LeanSocket) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLOUT)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

/// The portable path: copy through user space with tokio's small default buffers.
async fn copy_io<A, B>(mut a: A, mut b: B) -> io::Result<()>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional(&mut a, &mut b)
        .await
        .map(|_| ())
}
