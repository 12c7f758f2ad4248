//! Bridging two byte streams after an upgrade or hijack, with half-close both ways.
//!
//! EOF on one side becomes `shutdown(SHUT_WR)` on the other while the opposite direction
//! keeps flowing (notes 4.3): stdin EOF reaches the container and its remaining output
//! still reaches the client; the stream ends when both directions are done.

use std::io;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Splices two upgraded connections until both directions are finished.
pub(crate) async fn bridge(client: Upgraded, upstream: Upgraded) -> io::Result<()> {
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    bridge_io(&mut client, &mut upstream).await
}

/// Splices any two streams until both directions are finished.
pub(crate) async fn bridge_io<A, B>(a: &mut A, b: &mut B) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(a, b, COPY_BUF, COPY_BUF)
        .await
        .map(|_| ())
}

/// Large enough to move a full socket buffer per syscall on bulk transfers.
const COPY_BUF: usize = 64 * 1024;
