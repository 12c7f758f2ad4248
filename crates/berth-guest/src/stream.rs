use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::LeanSocket;

/// One byte stream to a guest engine, whatever the transport (Unix or TCP).
///
/// `poll_shutdown` is a real `shutdown(SHUT_WR)`, which is what carries a client's
/// stdin EOF to dockerd (gateway notes 4.3).
#[derive(Debug)]
pub struct GuestStream {
    socket: LeanSocket,
}

impl GuestStream {
    /// Wraps a connected socket.
    pub fn new(socket: LeanSocket) -> Self {
        Self { socket }
    }

    /// The socket, for zero-copy splicing.
    pub fn socket(&self) -> &LeanSocket {
        &self.socket
    }

    /// The socket, for a [`crate::splice::SpliceRelay`] to own.
    pub fn into_socket(self) -> LeanSocket {
        self.socket
    }
}

impl AsFd for GuestStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for GuestStream {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsyncRead for GuestStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuestStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

impl Connection for GuestStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Bytes buffered per direction by [`relayed`]: a TLS record or a few SSH packets.
const RELAY_BUFFER: usize = 64 * 1024;

/// Moves bytes between `io` (a TLS stream, an SSH channel) and a new Unix socket pair in
/// a task of its own; returns the other end as the stream. EOF on either side is passed
/// on as a half-close (TLS `close_notify`, SSH channel EOF towards the engine), so a
/// client's stdin EOF still reaches dockerd.
pub(crate) fn relayed<T>(io: T) -> io::Result<GuestStream>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    theirs.set_nonblocking(true)?;
    let theirs = tokio::net::UnixStream::from_std(theirs)?;
    let ours = LeanSocket::new(ours.into())?;
    tokio::spawn(async move {
        let (mut io, mut theirs) = (io, theirs);
        // Ends when both directions have ended or either fails; dropping both closes.
        let _ = tokio::io::copy_bidirectional_with_sizes(
            &mut theirs,
            &mut io,
            RELAY_BUFFER,
            RELAY_BUFFER,
        )
        .await;
    });
    Ok(GuestStream::new(ours))
}
