//! A listening socket whose connections are registered with the reactor once.
//!
//! tokio's listeners register each accepted connection with their reactor. A
//! [`LeanSocket`](crate::LeanSocket) registers its own way (readability only), so a
//! connection accepted by tokio had to be taken back first: per connection, an
//! `epoll_ctl` to add, one to delete, an `ioctl` for non-blocking mode and the
//! `LeanSocket`'s own `epoll_ctl` (seen with strace on every fresh connection).
//! `LeanListener` accepts with `accept4(2)`, non-blocking and close-on-exec at once,
//! and hands over the bare descriptor.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A listening socket of the standard library that owns its descriptor.
pub trait Listening: AsRawFd + sealed::Sealed {
    /// The standard library's own `set_nonblocking`.
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()>;
}

impl Listening for std::os::unix::net::UnixListener {
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        std::os::unix::net::UnixListener::set_nonblocking(self, nonblocking)
    }
}

impl Listening for std::net::TcpListener {
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        std::net::TcpListener::set_nonblocking(self, nonblocking)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::os::unix::net::UnixListener {}
    impl Sealed for std::net::TcpListener {}
}

/// A listening socket (Unix or TCP) registered for readability.
#[derive(Debug)]
pub struct LeanListener<L: Listening> {
    inner: AsyncFd<L>,
}

impl<L: Listening> LeanListener<L> {
    /// Takes over a bound, listening socket and makes it non-blocking.
    #[allow(unsafe_code)]
    pub fn new(listener: L) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        // SAFETY: `L` is a standard-library listener: it owns its descriptor, which
        // stays open and the same for as long as the `AsyncFd` owns the listener.
        let inner = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self { inner })
    }

    /// The listening socket.
    pub fn get_ref(&self) -> &L {
        self.inner.get_ref()
    }

    /// The next connection: non-blocking, close-on-exec, not registered anywhere yet.
    pub async fn accept(&self) -> io::Result<OwnedFd> {
        loop {
            let mut guard = self.inner.readable().await?;
            match guard.try_io(|inner| accept4(inner.get_ref().as_raw_fd())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

#[allow(unsafe_code)]
fn accept4(listener: std::os::fd::RawFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::SockFlag;
    let fd = nix::sys::socket::accept4(listener, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC)?;
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

    use super::*;
    use crate::LeanSocket;

    /// A connection comes out non-blocking and close-on-exec, and a `LeanSocket` made
    /// of it reads what the client sent before it was accepted without waiting.
    #[tokio::test]
    async fn accepted_connections_are_ready_for_a_lean_socket() {
        let dir = std::env::temp_dir().join(format!("lean-listener-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener =
            LeanListener::new(std::os::unix::net::UnixListener::bind(&path).unwrap()).unwrap();

        let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        client.write_all(b"GET /_ping").unwrap();
        let fd = listener.accept().await.unwrap();
        let status = OFlag::from_bits_retain(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).unwrap());
        assert!(status.contains(OFlag::O_NONBLOCK));
        let flags = FdFlag::from_bits_retain(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFD).unwrap());
        assert!(flags.contains(FdFlag::FD_CLOEXEC));

        let socket = LeanSocket::new(fd).unwrap();
        let mut buf = bytes::BytesMut::with_capacity(64);
        assert_eq!(socket.try_read_buf(&mut buf).unwrap(), Some(10));
        assert_eq!(&buf[..], b"GET /_ping");
        assert_eq!(
            socket.try_read_buf(&mut buf).unwrap(),
            None,
            "nothing more yet"
        );
        drop(client);
        assert_eq!(socket.try_read_buf(&mut buf).unwrap(), Some(0), "EOF");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
