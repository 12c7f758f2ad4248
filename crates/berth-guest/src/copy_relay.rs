//! Bridging a client's socket to a guest stream that is not a socket (a TLS stream, an
//! SSH channel) after an upgrade or hijack: the bytes must pass through the transport,
//! so they are copied through user space, with what [`crate::splice::SpliceRelay`]
//! promises otherwise: half-close both ways, and a client's full close ends the session
//! even while the guest is silent.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;

use crate::splice::{peer_hung_up, HANGUP_CHECK};
use crate::{GuestStream, LeanSocket};

/// Bytes buffered per direction: a TLS record or a few SSH packets at a time.
const BUFFER: usize = 64 * 1024;

/// Relays `client` ↔ `guest` until both directions reached EOF, either failed, or the
/// client closed fully after its EOF; `to_guest` and `to_client` (bytes already read
/// from one side that belong to the other) go first. EOF from one side is passed on as
/// a half-close of the other (`shutdown(SHUT_WR)`, TLS `close_notify`, SSH channel
/// EOF). Returns the bytes moved client → guest and guest → client, prefixes included.
pub async fn copy_relay(
    client: LeanSocket,
    to_guest: Vec<Bytes>,
    mut guest: GuestStream,
    to_client: Bytes,
) -> io::Result<(u64, u64)> {
    let watched = Watched {
        socket: &client,
        eof: Notify::new(),
        read: AtomicU64::new(to_guest.iter().map(|b| b.len() as u64).sum()),
        written: AtomicU64::new(0),
    };
    let mut side = &watched;
    for bytes in &to_guest {
        guest.write_all(bytes).await?;
    }
    guest.flush().await?;
    side.write_all(&to_client).await?;
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut side, &mut guest, BUFFER, BUFFER);
    let hung_up = async {
        // Only once the client sent EOF: a half-close leaves the other direction open,
        // a full close shows as POLLHUP on a Unix socket.
        watched.eof.notified().await;
        while !peer_hung_up(&client) {
            tokio::time::sleep(HANGUP_CHECK).await;
        }
    };
    tokio::select! {
        copied = copy => { copied?; }
        () = hung_up => {}
    }
    Ok((
        watched.read.load(Ordering::Relaxed),
        watched.written.load(Ordering::Relaxed),
    ))
}

/// The client's socket as the copy uses it, telling the hangup watch when it reads EOF
/// and counting the bytes (the copy's own counts are lost when the watch ends it).
struct Watched<'a> {
    socket: &'a LeanSocket,
    eof: Notify,
    read: AtomicU64,
    written: AtomicU64,
}

impl AsyncRead for &Watched<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut { self.socket }).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            match buf.filled().len() - before {
                0 => self.eof.notify_one(),
                n => {
                    self.read.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
        polled
    }
}

impl AsyncWrite for &Watched<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut { self.socket }).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket.shutdown_write())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay_test_io::{big_payload, send_then_half_close};
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, DuplexStream};

    /// A relay from a socket pair's end to an in-memory stream (what a TLS stream or an
    /// SSH channel is to the relay): returns the client's end, the guest's end and the
    /// running relay.
    fn relay(
        to_guest: Vec<Bytes>,
        to_client: Bytes,
    ) -> (
        UnixStream,
        DuplexStream,
        tokio::task::JoinHandle<io::Result<(u64, u64)>>,
    ) {
        let (client, ours) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let ours = LeanSocket::new(OwnedFd::from(ours)).unwrap();
        let (guest_end, guest) = tokio::io::duplex(16 * 1024);
        let relay = copy_relay(
            ours,
            to_guest,
            GuestStream::transported(guest_end),
            to_client,
        );
        (client, guest, tokio::spawn(relay))
    }

    #[tokio::test]
    async fn prefixes_go_first_then_bytes_and_half_closes_pass_both_ways() {
        let (client, mut guest, relay) = relay(
            vec![Bytes::from_static(b"head "), Bytes::from_static(b"body ")],
            Bytes::from_static(b"early "),
        );
        let big = big_payload();
        let client_side = send_then_half_close(client, big.clone());
        // The client's half-close arrives as EOF while this side can still write.
        let mut at_guest = Vec::new();
        guest.read_to_end(&mut at_guest).await.unwrap();
        guest.write_all(&big).await.unwrap();
        guest.shutdown().await.unwrap();
        let at_client = client_side.await.unwrap();
        let moved = relay.await.unwrap().unwrap();
        assert_eq!(&at_guest[..10], b"head body ");
        assert!(at_guest[10..] == big[..], "client → guest bytes differ");
        assert_eq!(&at_client[..6], b"early ");
        assert!(at_client[6..] == big[..], "guest → client bytes differ");
        assert_eq!(moved, (at_guest.len() as u64, at_client.len() as u64));
    }

    #[tokio::test]
    async fn a_full_close_of_the_client_ends_the_relay_while_the_guest_is_silent() {
        let (client, mut guest, relay) = relay(Vec::new(), Bytes::new());
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), relay)
            .await
            .expect("relay still open after the client hung up")
            .unwrap()
            .unwrap();
        // The guest's side was closed with it.
        let mut rest = Vec::new();
        guest.read_to_end(&mut rest).await.unwrap();
    }

    #[tokio::test]
    async fn a_half_close_of_the_client_keeps_the_guest_to_client_direction_open() {
        let (mut client, mut guest, relay) = relay(Vec::new(), Bytes::new());
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        guest.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
        // Past the first hang-up check, and still open.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!relay.is_finished(), "a half-close ended the relay");
        guest.write_all(b"late output").await.unwrap();
        drop(guest);
        let got = tokio::task::spawn_blocking(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got
        })
        .await
        .unwrap();
        assert_eq!(got, b"late output");
        relay.await.unwrap().unwrap();
    }
}
