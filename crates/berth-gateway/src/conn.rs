//! The client side of a connection: who is connected ([`PeerIdentity`]), over what
//! ([`ClientStream`]: a plain socket, Unix or TCP, or TLS over one), with bytes that
//! were read ahead (the sniffed head) put back in front ([`Prefixed`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use berth_guest::LeanSocket;
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

/// Who is on the other end of a client connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerIdentity {
    /// A local process, from `SO_PEERCRED`.
    Unix { uid: u32, gid: u32, pid: i32 },
    /// A TLS client; `subject` is its certificate's subject when it sent one.
    Tls {
        addr: SocketAddr,
        subject: Option<String>,
    },
    /// A plain TCP client (an insecure listener).
    Tcp { addr: SocketAddr },
    /// Unknown (credentials could not be read).
    Unknown,
    /// A container on berth's container socket ([`BoundSocket::for_containers`](crate::BoundSocket::for_containers)).
    Internal,
    /// A local process on a tenant's own socket ([`BoundSocket::for_tenant`](crate::BoundSocket::for_tenant)):
    /// it is that tenant, whoever it is.
    TenantSocket {
        tenant: String,
        uid: u32,
        gid: u32,
        pid: i32,
    },
}

/// How a client is connected.
#[derive(Debug)]
pub(crate) enum ClientStream {
    /// A Unix or TCP socket: upgraded streams are spliced zero-copy.
    Plain(LeanSocket),
    /// TLS: upgraded streams are copied through user space (they must be decrypted).
    Tls(Box<TlsStream<LeanSocket>>),
}

impl ClientStream {
    /// Bytes the client has already sent, read without waiting (`None`: nothing yet,
    /// or TLS, whose records are read through the reactor).
    pub(crate) fn try_read_buf(&self, buf: &mut bytes::BytesMut) -> io::Result<Option<usize>> {
        match self {
            Self::Plain(socket) => socket.try_read_buf(buf),
            Self::Tls(_) => Ok(None),
        }
    }
}

/// A stream with bytes read ahead of it put back in front.
#[derive(Debug)]
pub(crate) struct Prefixed<T> {
    inner: T,
    prefix: Bytes,
}

/// The client connection as hyper sees it.
pub(crate) type ClientIo = Prefixed<ClientStream>;

impl<T> Prefixed<T> {
    pub(crate) fn new(inner: T, prefix: Bytes) -> Self {
        Self { inner, prefix }
    }

    /// The stream.
    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The stream and the bytes read from it that nobody consumed yet.
    pub(crate) fn into_parts(self) -> (T, Bytes) {
        (self.inner, self.prefix)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
