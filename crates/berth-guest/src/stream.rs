use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, Ready};
use tokio::net::{TcpStream, UnixStream};

pin_project_lite::pin_project! {
    /// One byte stream to a guest engine, whatever the transport.
    ///
    /// `poll_shutdown` is a real `shutdown(SHUT_WR)` on both transports, which is what
    /// carries a client's stdin EOF to dockerd (gateway notes 4.3).
    #[project = GuestStreamProj]
    #[derive(Debug)]
    pub enum GuestStream {
        /// A Unix domain socket.
        Unix { #[pin] inner: UnixStream },
        /// A TCP connection.
        Tcp { #[pin] inner: TcpStream },
    }
}

impl From<UnixStream> for GuestStream {
    fn from(inner: UnixStream) -> Self {
        Self::Unix { inner }
    }
}

impl From<TcpStream> for GuestStream {
    fn from(inner: TcpStream) -> Self {
        Self::Tcp { inner }
    }
}

impl GuestStream {
    /// Waits until the stream is ready for `interest` (for zero-copy splicing).
    pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        match self {
            Self::Unix { inner } => inner.ready(interest).await,
            Self::Tcp { inner } => inner.ready(interest).await,
        }
    }

    /// Runs a raw I/O operation on the socket, clearing readiness on `WouldBlock`.
    pub fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            Self::Unix { inner } => inner.try_io(interest, f),
            Self::Tcp { inner } => inner.try_io(interest, f),
        }
    }
}

impl AsFd for GuestStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Unix { inner } => inner.as_fd(),
            Self::Tcp { inner } => inner.as_fd(),
        }
    }
}

impl AsRawFd for GuestStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Self::Unix { inner } => inner.as_raw_fd(),
            Self::Tcp { inner } => inner.as_raw_fd(),
        }
    }
}

impl AsyncRead for GuestStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.project() {
            GuestStreamProj::Unix { inner } => inner.poll_read(cx, buf),
            GuestStreamProj::Tcp { inner } => inner.poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GuestStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.project() {
            GuestStreamProj::Unix { inner } => inner.poll_write(cx, buf),
            GuestStreamProj::Tcp { inner } => inner.poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.project() {
            GuestStreamProj::Unix { inner } => inner.poll_write_vectored(cx, bufs),
            GuestStreamProj::Tcp { inner } => inner.poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.project() {
            GuestStreamProj::Unix { inner } => inner.poll_flush(cx),
            GuestStreamProj::Tcp { inner } => inner.poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.project() {
            GuestStreamProj::Unix { inner } => inner.poll_shutdown(cx),
            GuestStreamProj::Tcp { inner } => inner.poll_shutdown(cx),
        }
    }
}

impl Connection for GuestStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}
