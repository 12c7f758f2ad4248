//! Listen: bind the sockets safely, accept connections, tell who is connecting.
//!
//! A Unix socket file left by a crashed berth is replaced only if nothing answers on
//! it; a live one belongs to another server and binding fails with a clear error
//! instead of stealing it. The file is removed on clean shutdown, if it is still ours.
//! TCP listeners serve TLS (`listen/tls.rs`), or plain TCP only when explicitly marked
//! insecure.

mod inherited;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_guest::{LeanListener, LeanSocket};
use tokio_rustls::TlsAcceptor;

use crate::conn::{ClientStream, PeerIdentity};
use crate::error::ListenError;

/// A bound Unix socket that removes its file when dropped.
#[derive(Debug)]
pub struct BoundSocket {
    listener: LeanListener<std::os::unix::net::UnixListener>,
    path: PathBuf,
    inode: u64,
    /// Peers are containers (`PeerIdentity::Internal`), whatever their uid.
    internal: bool,
    /// The file is berth's to remove on drop (not one a service manager bound).
    owns_file: bool,
    /// Peers are this tenant (`PeerIdentity::TenantSocket`), whatever their uid.
    tenant: Option<String>,
}

impl BoundSocket {
    /// Binds `path` with `mode` (e.g. `0o660`) and, if given, group `gid` (dockerd's
    /// `--group`), creating the parent directory.
    pub fn bind(path: &Path, mode: u32, gid: Option<u32>) -> Result<Self, ListenError> {
        let err = |what: &str, e: io::Error| ListenError::new(path, what, e);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err("creating its directory", e))?;
        }
        if std::fs::symlink_metadata(path).is_ok() {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(ListenError::in_use(path)),
                Err(_) => {
                    std::fs::remove_file(path).map_err(|e| err("removing a stale socket", e))?;
                }
            }
        }
        let listener = std::os::unix::net::UnixListener::bind(path)
            .and_then(LeanListener::new)
            .map_err(|e| err("binding", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| err("setting its mode", e))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(path, None, Some(gid))
                .map_err(|e| err("setting its group", e))?;
        }
        let inode = std::fs::metadata(path)
            .map_err(|e| err("reading it back", e))?
            .ino();
        Ok(Self {
            listener,
            path: path.to_owned(),
            inode,
            internal: false,
            owns_file: true,
            tenant: None,
        })
    }

    /// Marks this socket as the one containers get instead of the Docker socket: its
    /// peers are `PeerIdentity::Internal` (a container's root is not the host's).
    pub fn for_containers(mut self) -> Self {
        self.internal = true;
        self
    }

    /// Marks this socket as tenant `name`'s own: every client of it is that tenant.
    pub fn for_tenant(mut self, name: &str) -> Self {
        self.tenant = Some(name.to_owned());
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one plain connection (for side channels such as a control socket).
    pub async fn accept(&self) -> io::Result<tokio::net::UnixStream> {
        let fd = self.listener.accept().await?;
        tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd))
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        // Only remove the file if it is still the socket we bound (a second server may
        // have replaced a file that an operator deleted by hand).
        if self.owns_file && std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A TCP listener: TLS unless explicitly insecure.
pub struct TcpEndpoint {
    listener: LeanListener<std::net::TcpListener>,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for TcpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpEndpoint")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl TcpEndpoint {
    /// Binds `addr`; `tls: None` serves plain TCP (the caller has checked it is allowed).
    pub async fn bind(addr: &str, tls: Option<TlsAcceptor>) -> Result<Self, ListenError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .and_then(|l| l.into_std())
            .and_then(LeanListener::new)
            .map_err(|e| ListenError::new(Path::new(addr), "binding", e))?;
        Ok(Self { listener, tls })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }
}

/// Something the gateway accepts clients on.
#[derive(Debug)]
pub enum Listener {
    /// A Unix socket.
    Unix(BoundSocket),
    /// A TCP port, with or without TLS.
    Tcp(TcpEndpoint),
}

/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

impl Listener {
    /// Accepts the next client. Everything that can fail for one connection alone
    /// (its registration, its peer address, the TLS handshake) happens in the returned
    /// future, so that a client that resets at once costs the accept loop nothing; an
    /// `Err` here is the listener's own (e.g. out of descriptors).
    pub(crate) async fn accept(
        &self,
    ) -> io::Result<
        impl std::future::Future<Output = io::Result<(ClientStream, PeerIdentity)>> + Send + 'static,
    > {
        enum Accepted {
            Unix(OwnedFd, PeerIdentity),
            Tcp(std::net::TcpStream, Option<TlsAcceptor>),
        }
        let accepted = match self {
            Self::Unix(socket) => {
                let fd = socket.listener.accept().await?;
                let peer = match (&socket.tenant, unix_peer(&fd)) {
                    _ if socket.internal => PeerIdentity::Internal,
                    (Some(tenant), PeerIdentity::Unix { uid, gid, pid }) => {
                        PeerIdentity::TenantSocket {
                            tenant: tenant.clone(),
                            uid,
                            gid,
                            pid,
                        }
                    }
                    (Some(tenant), _) => PeerIdentity::TenantSocket {
                        tenant: tenant.clone(),
                        uid: u32::MAX,
                        gid: u32::MAX,
                        pid: 0,
                    },
                    (None, peer) => peer,
                };
                Accepted::Unix(fd, peer)
            }
            Self::Tcp(endpoint) => Accepted::Tcp(
                std::net::TcpStream::from(endpoint.listener.accept().await?),
                endpoint.tls.clone(),
            ),
        };
        Ok(async move {
            match accepted {
                Accepted::Unix(fd, peer) => Ok((ClientStream::Plain(LeanSocket::new(fd)?), peer)),
                Accepted::Tcp(stream, tls) => {
                    let addr = stream.peer_addr()?;
                    stream.set_nodelay(true)?;
                    let socket = LeanSocket::new(stream.into())?;
                    let Some(acceptor) = tls else {
                        return Ok((ClientStream::Plain(socket), PeerIdentity::Tcp { addr }));
                    };
                    let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket))
                        .await
                        .map_err(|_| {
                            io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                        })??;
                    let subject = tls::peer_subject(tls.get_ref().1);
                    Ok((
                        ClientStream::Tls(Box::new(tls)),
                        PeerIdentity::Tls { addr, subject },
                    ))
                }
            }
        })
    }
}

fn unix_peer(socket: &OwnedFd) -> PeerIdentity {
    match nix::sys::socket::getsockopt(socket, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(cred) => PeerIdentity::Unix {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        },
        Err(_) => PeerIdentity::Unknown,
    }
}
