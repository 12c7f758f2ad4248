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
//! arrives and every few seconds after, so a silent guest is not held forever
//! (`SpliceRelay::end_on_hangup_of_a`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use berth_guest::splice::SpliceRelay;
use berth_guest::GuestStream;
use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::{ClientIo, ClientStream, Prefixed};

/// Splices an upgraded client connection to an upgraded guest connection.
pub(crate) fn bridge(client: Upgraded, upstream: Upgraded) -> Bridge {
    let (client, client_read) = match client.downcast::<TokioIo<ClientIo>>() {
        Ok(parts) => (parts.io.into_inner(), parts.read_buf),
        Err(client) => return Bridge::copy(TokioIo::new(client), TokioIo::new(upstream)),
    };
    // Bytes hyper read past each head belong to the stream (notes 4.1); on the client
    // side, anything still in the sniff buffer comes after them.
    let (stream, prefix) = client.into_parts();
    let to_guest = vec![client_read, prefix];
    match upstream.downcast::<TokioIo<GuestStream>>() {
        Ok(parts) => {
            let guest = parts.io.into_inner();
            bridge_client(stream, to_guest, guest, parts.read_buf)
        }
        Err(upstream) => {
            // Not expected with berth's own connector; keep a correct, slower path.
            let client = Prefixed::new(stream, Bytes::from(to_guest.concat()));
            Bridge::copy(client, TokioIo::new(upstream))
        }
    }
}

/// Bridges a client to a guest stream: zero-copy when both are sockets, through user
/// space when either is TLS (its bytes must be decrypted) or an SSH channel. `to_guest` and `to_client` are
/// bytes already read from one side that belong to the other.
pub(crate) fn bridge_client(
    client: ClientStream,
    to_guest: Vec<Bytes>,
    guest: GuestStream,
    to_client: Bytes,
) -> Bridge {
    match client {
        // A full close (not a half-close) of the client ends the exchange at once, as
        // closing a direct connection to dockerd would, even if the guest stays silent.
        ClientStream::Plain(socket) => match guest.into_socket() {
            Ok(guest) => Bridge::Splice(
                SpliceRelay::new(socket, guest)
                    .with_prefixes(to_guest, vec![to_client])
                    .end_on_hangup_of_a(),
            ),
            // A TLS stream or SSH channel: its bytes pass through the transport.
            Err(guest) => Bridge::Copy(
                Box::pin(berth_guest::copy_relay(socket, to_guest, guest, to_client)),
                (0, 0),
            ),
        },
        tls @ ClientStream::Tls(_) => {
            let client = Prefixed::new(tls, Bytes::from(to_guest.concat()));
            Bridge::copy(client, Prefixed::new(guest, to_client))
        }
    }
}

/// A session's relay, built before it is awaited: every idle session holds one, so it
/// is the relay itself (a few hundred bytes), not the state of async functions around
/// it. The rare user-space path is boxed.
#[allow(clippy::large_enum_variant)] // the large variant is the common one: kept inline
pub(crate) enum Bridge {
    Splice(SpliceRelay),
    /// The copy, and the bytes it moved each way once it ended.
    Copy(Pin<Box<CopyFuture>>, (u64, u64)),
}

/// A user-space copy both ways; it ends with the bytes moved each way.
type CopyFuture = dyn Future<Output = io::Result<(u64, u64)>> + Send;

impl Bridge {
    fn copy<A, B>(a: A, b: B) -> Self
    where
        A: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::Copy(Box::pin(copy_io(a, b)), (0, 0))
    }

    /// Bytes bridged so far: client → guest, guest → client (a user-space copy
    /// reports them when it ends).
    pub(crate) fn bytes(&self) -> (u64, u64) {
        match self {
            Bridge::Splice(relay) => relay.bytes_moved(),
            Bridge::Copy(_, moved) => *moved,
        }
    }
}

impl Future for Bridge {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Bridge::Splice(relay) => Pin::new(relay).poll(cx),
            Bridge::Copy(copy, moved) => {
                *moved = std::task::ready!(copy.as_mut().poll(cx))?;
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// The portable path: copy through user space with tokio's small default buffers.
async fn copy_io<A, B>(mut a: A, mut b: B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional(&mut a, &mut b).await
}
