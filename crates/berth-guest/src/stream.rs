use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::LeanSocket;

/// One byte stream to a guest engine: a socket (Unix or TCP, which the gateway may
/// splice and frame itself), or a stream berth must read and write through its
/// transport (a TLS stream, an SSH channel).
///
/// `poll_shutdown` is a half-close whatever the transport (`shutdown(SHUT_WR)`, TLS
/// `close_notify`, SSH channel EOF): it is what carries a client's stdin EOF to dockerd
/// (gateway notes 4.3).
pub struct GuestStream(Inner);

enum Inner {
    Socket(LeanSocket),
    Transported(Box<dyn Transported>),
}

/// What a non-socket stream is to berth.
trait Transported: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transported for T {}

impl std::fmt::Debug for GuestStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Socket(socket) => f.debug_tuple("GuestStream").field(socket).finish(),
            Inner::Transported(_) => f.write_str("GuestStream(transported)"),
        }
    }
}

impl GuestStream {
    /// Wraps a connected socket.
    pub fn new(socket: LeanSocket) -> Self {
        Self(Inner::Socket(socket))
    }

    /// Wraps a stream with a transport of its own (TLS, an SSH channel).
    pub(crate) fn transported<T>(io: T) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self(Inner::Transported(Box::new(io)))
    }

    /// The socket, for zero-copy splicing and framing; `None` for a stream whose bytes
    /// go through a transport.
    pub fn socket(&self) -> Option<&LeanSocket> {
        match &self.0 {
            Inner::Socket(socket) => Some(socket),
            Inner::Transported(_) => None,
        }
    }

    /// The socket, for a [`crate::splice::SpliceRelay`] to own; the stream back when it
    /// is not one.
    pub fn into_socket(self) -> Result<LeanSocket, Self> {
        match self.0 {
            Inner::Socket(socket) => Ok(socket),
            other => Err(Self(other)),
        }
    }
}

/// Calls `$method` on whichever stream is inside.
macro_rules! each {
    ($self:ident, $io:ident => $call:expr) => {
        match &mut $self.get_mut().0 {
            Inner::Socket($io) => {
                let $io = Pin::new($io);
                $call
            }
            Inner::Transported($io) => {
                let $io = Pin::new(&mut **$io);
                $call
            }
        }
    };
}

impl AsyncRead for GuestStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, io => io.poll_read(cx, buf))
    }
}

impl AsyncWrite for GuestStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, io => io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, io => io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Inner::Socket(socket) => socket.is_write_vectored(),
            Inner::Transported(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, io => io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, io => io.poll_shutdown(cx))
    }
}

impl Connection for GuestStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}
