//! TCP forwards: an accept loop per host listener; per connection, a guest-side stream
//! opened in the guest network and a zero-copy relay between the two.
//!
//! Each direction moves bytes with `berth_guest::splice` (socket → pipe → socket), so
//! payload never enters user space. EOF on one side becomes `shutdown(SHUT_WR)` on the
//! other while the opposite direction keeps flowing; the connection ends when both
//! directions are done, or at the first error (both sockets are then closed). A
//! direction's pipe is made on its first bytes, so idle connections hold two sockets
//! and nothing else.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use berth_guest::splice::SpliceRelay;
use berth_guest::LeanSocket;
use tokio::net::{TcpListener, TcpStream};

use super::netns::GuestSockets;
use super::Target;

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
            if let Err(e) = relay(client, upstream).await {
                tracing::debug!(%peer, %guest, error = %e, "forwarded connection ended with an error");
            }
        });
    }
}

/// Relays `a` ↔ `b` until both directions reached EOF, or one failed.
async fn relay(a: TcpStream, b: TcpStream) -> io::Result<()> {
    SpliceRelay::new(LeanSocket::from_tcp(a)?, LeanSocket::from_tcp(b)?).await
}
