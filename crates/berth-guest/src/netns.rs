//! Sockets opened inside a guest's network namespace: the port forwarder's guest sides,
//! and the API connections to an engine that listens on an address inside one (a VM
//! machine's dockerd, behind its tap device).
//!
//! A socket belongs to the namespace of the thread that *created* it, for its whole
//! life, whoever uses it later. So one std thread per user enters the namespace
//! (`setns(CLONE_NEWNET)`, no `unsafe`) and only ever creates sockets on request; the
//! async side connects them, so a slow connect never holds the thread and no tokio
//! worker ever changes namespace.
//!
//! The namespace is entered lazily and re-entered when the file at the path names
//! another namespace than the one the thread is in (checked with one `stat` per
//! socket): a managed engine may not have created it yet when the forwarder is built,
//! and `machine rm` + start makes a new one under the same name.
//!
//! Lifecycle: the thread ends when its [`NetnsSockets`] is dropped (the request
//! channel closes) and the drop joins it.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use socket2::{Domain, Socket, Type};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::oneshot;

/// Creates sockets inside the network namespace at one path, on a thread of its own.
#[derive(Debug)]
pub struct NetnsSockets {
    path: PathBuf,
    /// Dropped first on drop, which ends the thread's receive loop.
    requests: Option<mpsc::Sender<Request>>,
    handle: Option<thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct Request {
    domain: Domain,
    ty: Type,
    reply: oneshot::Sender<io::Result<Socket>>,
}

impl NetnsSockets {
    /// Starts the thread for the namespace at `path` (entered at the first request).
    pub fn new(path: &Path) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let thread_path = path.to_path_buf();
        let handle = thread::Builder::new()
            .name(format!("netns-{name}"))
            .stack_size(128 * 1024)
            .spawn(move || serve(&thread_path, rx))?;
        Ok(Self {
            path: path.to_path_buf(),
            requests: Some(tx),
            handle: Some(handle),
        })
    }

    /// The namespace's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A TCP stream connected to `addr` in the namespace, with `TCP_NODELAY`.
    pub async fn connect_tcp(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        connect_tcp(
            self.socket(Domain::for_address(addr), Type::STREAM).await?,
            addr,
        )
        .await
    }

    /// A UDP socket connected to `addr` in the namespace.
    pub async fn connect_udp(&self, addr: SocketAddr) -> io::Result<UdpSocket> {
        connect_udp(
            self.socket(Domain::for_address(addr), Type::DGRAM).await?,
            addr,
        )
    }

    /// A new non-blocking socket created in the namespace.
    pub async fn socket(&self, domain: Domain, ty: Type) -> io::Result<Socket> {
        let (reply, answer) = oneshot::channel();
        let gone = || io::Error::other("the guest network thread stopped");
        self.requests
            .as_ref()
            .ok_or_else(gone)?
            .send(Request { domain, ty, reply })
            .map_err(|_| gone())?;
        let socket = answer.await.map_err(|_| gone())?.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("socket in network namespace {}: {e}", self.path.display()),
            )
        })?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }
}

/// Connects a fresh stream socket to `addr`, with `TCP_NODELAY`.
pub async fn connect_tcp(socket: Socket, addr: SocketAddr) -> io::Result<TcpStream> {
    socket.set_nonblocking(true)?;
    let stream = TcpSocket::from_std_stream(std::net::TcpStream::from(socket))
        .connect(addr)
        .await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects a fresh datagram socket to `addr` (a UDP connect only sets the peer).
pub fn connect_udp(socket: Socket, addr: SocketAddr) -> io::Result<UdpSocket> {
    socket.set_nonblocking(true)?;
    socket.connect(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

impl Drop for NetnsSockets {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(handle) = self.handle.take() {
            // The thread only waits for requests: with the channel closed it ends at once.
            let _ = handle.join();
        }
    }
}

/// The namespace thread: creates sockets until the request channel closes.
fn serve(path: &Path, requests: mpsc::Receiver<Request>) {
    let mut entered = None;
    for req in requests {
        let socket = enter(path, &mut entered).and_then(|()| Socket::new(req.domain, req.ty, None));
        let _ = req.reply.send(socket);
    }
}

/// Makes sure this thread is in the namespace currently at `path`. `entered` is the
/// (device, inode) of the namespace it is in.
fn enter(path: &Path, entered: &mut Option<(u64, u64)>) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if *entered == Some((meta.dev(), meta.ino())) {
        return Ok(());
    }
    let file = File::open(path)?;
    let meta = file.metadata()?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
    tracing::debug!(netns = %path.display(), "guest network thread entered the namespace");
    *entered = Some((meta.dev(), meta.ino()));
    Ok(())
}
