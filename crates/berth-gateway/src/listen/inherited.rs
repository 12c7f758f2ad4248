//! Listeners handed over already bound and listening (`-H fd://`: systemd socket
//! activation, as dockerd takes them). berth only accepts on them; a Unix socket's file
//! belongs to whoever bound it (the socket unit) and stays when berth stops, so that
//! clients keep connecting while the service restarts.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use berth_guest::LeanListener;
use nix::sys::socket::{self, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage};
use tokio_rustls::TlsAcceptor;

use super::{BoundSocket, Listener, TcpEndpoint};
use crate::error::ListenError;

impl Listener {
    /// Takes a listening stream socket that was passed in; `name` (`fd://3`) names it in
    /// errors. A TCP socket serves TLS with `tls`, plain TCP without (the caller has
    /// checked that this is allowed).
    pub fn inherited(
        fd: OwnedFd,
        name: &str,
        tls: Option<TlsAcceptor>,
    ) -> Result<Self, ListenError> {
        let what = Path::new(name);
        let sys = |doing: &str, e: nix::errno::Errno| ListenError::new(what, doing, e.into());
        let listening =
            socket::getsockopt(&fd, sockopt::AcceptConn).map_err(|e| sys("reading it", e))?;
        let stream = socket::getsockopt(&fd, sockopt::SockType)
            .map_err(|e| sys("reading its type", e))?
            == SockType::Stream;
        if !(listening && stream) {
            return Err(ListenError::config(
                what,
                "not a listening stream socket (the socket unit needs ListenStream=)",
            ));
        }
        let addr = socket::getsockname::<SockaddrStorage>(fd.as_raw_fd())
            .map_err(|e| sys("reading its address", e))?;
        match addr.family() {
            Some(AddressFamily::Unix) => {
                let listener = std::os::unix::net::UnixListener::from(fd);
                let path = listener
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_owned))
                    .ok_or_else(|| ListenError::config(what, "a Unix socket without a path"))?;
                let listener = LeanListener::new(listener)
                    .map_err(|e| ListenError::new(what, "registering", e))?;
                Ok(Self::Unix(BoundSocket {
                    listener,
                    path,
                    inode: 0,
                    internal: false,
                    owns_file: false,
                    tenant: None,
                }))
            }
            Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                let listener = LeanListener::new(std::net::TcpListener::from(fd))
                    .map_err(|e| ListenError::new(what, "registering", e))?;
                Ok(Self::Tcp(TcpEndpoint { listener, tls }))
            }
            _ => Err(ListenError::config(what, "neither a Unix nor a TCP socket")),
        }
    }

    /// Where clients reach this listener, as a `-H` URL.
    pub fn url(&self) -> String {
        match self {
            Self::Unix(socket) => format!("unix://{}", socket.path.display()),
            Self::Tcp(endpoint) => match endpoint.local_addr() {
                Ok(addr) => format!("tcp://{addr}"),
                Err(_) => "tcp://?".to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_handed_over_unix_socket_serves_and_its_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let listener = Listener::inherited(OwnedFd::from(std_listener), "fd://3", None).unwrap();
        assert_eq!(listener.url(), format!("unix://{}", path.display()));
        let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let accepted = listener.accept().await.unwrap().await.unwrap();
        assert!(matches!(accepted.1, crate::conn::PeerIdentity::Unix { .. }));
        drop((client, accepted, listener));
        assert!(path.exists(), "the socket unit's file must outlive berth");
    }

    #[tokio::test]
    async fn a_handed_over_tcp_socket_serves_and_other_sockets_are_refused() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = Listener::inherited(OwnedFd::from(tcp), "fd://4", None).unwrap();
        assert_eq!(listener.url(), format!("tcp://{addr}"));
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = listener.accept().await.unwrap().await.unwrap();
        assert!(matches!(accepted.1, crate::conn::PeerIdentity::Tcp { .. }));

        let unbound = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = Listener::inherited(OwnedFd::from(unbound), "fd://5", None).unwrap_err();
        assert!(e.to_string().contains("fd://5"), "{e}");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(Listener::inherited(OwnedFd::from(a), "fd://6", None).is_err());
    }
}
