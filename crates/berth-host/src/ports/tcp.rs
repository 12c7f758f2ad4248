//! TCP forwards: an accept loop per host listener; per connection, a guest-side stream
//! opened in the guest network and a zero-copy relay between the two.
//!
//! Each direction moves bytes with `splice(2)` (socket → pipe → socket), so payload
//! never enters user space. EOF on one side becomes `shutdown(SHUT_WR)` on the other
//! while the opposite direction keeps flowing; the connection ends when both directions
//! are done, or at the first error (both sockets are then closed). A direction's pipe
//! is made on its first bytes, so idle connections hold two sockets and nothing else.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

use super::netns::GuestSockets;
use super::Target;

/// The pipe capacity asked for: bytes moved per `splice` pair. Larger than the 64 KiB
/// default to halve the syscalls of a bulk transfer; the kernel caps it at
/// `/proc/sys/fs/pipe-max-size` and we keep the default if it refuses.
const PIPE_SIZE: usize = 1024 * 1024;

/// How long a guest-side connect may take. A container address that just went away
/// is not refused but unanswered (no ARP reply) for about 3 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the accept loop pauses when the process is out of file descriptors
/// (`EMFILE`), instead of spinning on a listener that stays readable.
const FD_EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);

/// Accepts on `listener` until the task is aborted; every connection is relayed to
/// the current `target` on its own task, which outlives the listener (closing a forward
/// lets open connections finish).
pub(super) async fn serve(listener: TcpListener, target: Arc<Target>, sockets: Arc<GuestSockets>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EMFILE | nix::libc::ENFILE)
                ) {
                    tracing::warn!(error = %e, "out of file descriptors: raise RLIMIT_NOFILE");
                    tokio::time::sleep(FD_EXHAUSTED_PAUSE).await;
                } else {
                    tracing::debug!(error = %e, "accept failed");
                }
                continue;
            }
        };
        let sockets = Arc::clone(&sockets);
        let guest = target.get();
        tokio::spawn(async move {
            let upstream = tokio::time::timeout(CONNECT_TIMEOUT, sockets.connect_tcp(guest))
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
            // The connection must not keep the namespace thread alive.
            drop(sockets);
            let upstream = match upstream {
                Ok(s) => s,
                Err(e) => {
                    // Nothing listens in the guest any more (the container just died):
                    // closing is what a client of dockerd's own proxy would see.
                    tracing::debug!(%peer, %guest, error = %e, "guest side refused");
                    return;
                }
            };
            let _ = client.set_nodelay(true);
            if let Err(e) = relay(&client, &upstream).await {
                tracing::debug!(%peer, %guest, error = %e, "forwarded connection ended with an error");
            }
        });
    }
}

/// Relays `a` ↔ `b` until both directions reached EOF, or one failed.
async fn relay(a: &TcpStream, b: &TcpStream) -> io::Result<()> {
    tokio::try_join!(pump(a, b), pump(b, a)).map(|_| ())
}

/// One direction: `src` → `dst` until EOF, then half-close `dst`.
async fn pump(src: &TcpStream, dst: &TcpStream) -> io::Result<()> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut pipe: Option<Pipe> = None;
    loop {
        src.readable().await?;
        let p = match &pipe {
            Some(p) => p,
            None => pipe.insert(Pipe::new()?),
        };
        // The pipe is always drained before the next read, so a would-block here can
        // only mean the socket is empty (never a full pipe): tokio may clear readiness.
        let n = match src.try_io(Interest::READABLE, || {
            Ok(splice(src, None, &p.write, None, p.size, flags)?)
        }) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        let mut in_pipe = n;
        while in_pipe > 0 {
            in_pipe -= dst
                .async_io(Interest::WRITABLE, || {
                    Ok(splice(&p.read, None, dst, None, in_pipe, flags)?)
                })
                .await?;
        }
    }
    match socket2::SockRef::from(dst).shutdown(Shutdown::Write) {
        // The peer is already gone: nothing left to tell it.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}

/// A non-blocking pipe used as the splice buffer of one direction.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Its capacity in bytes.
    size: usize,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let size = i32::try_from(PIPE_SIZE)
            .ok()
            .and_then(|want| fcntl(write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(want)).ok())
            .and_then(|got| usize::try_from(got).ok())
            .unwrap_or(64 * 1024);
        Ok(Self { read, write, size })
    }
}
