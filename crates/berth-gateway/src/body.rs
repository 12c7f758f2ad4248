//! The bodies that travel through the gateway, and what is done to a client's body
//! that berth answers without forwarding.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// The body berth sends upstream: the client's own, or one berth holds whole.
pub type UpstreamBody = Either<Metered<Incoming>, Full<Bytes>>;

/// The body of one engine's answer as the client gets it: the guest's own, streamed,
/// or one berth made (its own error, or a small answer it read whole).
pub(crate) type ResponseBody = Either<Metered<Incoming>, Full<Bytes>>;

/// Where a metered body's data bytes are counted (`metrics`); dropped when the body
/// ends, which may end what it records.
pub(crate) trait Tally: Send + Sync + std::fmt::Debug {
    /// `bytes` more went through.
    fn add(&self, bytes: u64);
}

pin_project_lite::pin_project! {
    /// A body whose data bytes are counted, when metrics are on; otherwise frames only
    /// pass through (one `Option` test per frame).
    #[derive(Debug)]
    pub struct Metered<B> {
        #[pin]
        inner: B,
        tally: Option<Box<dyn Tally>>,
    }
}

impl<B> Metered<B> {
    /// A body nobody counts.
    pub(crate) fn plain(inner: B) -> Self {
        Self { inner, tally: None }
    }

    /// This body, counted into `tally`.
    pub(crate) fn counted(inner: B, tally: Option<Box<dyn Tally>>) -> Self {
        Self { inner, tally }
    }

    /// This body, from now on counted into `tally` (which ends with the body).
    pub(crate) fn ending(mut self, tally: Box<dyn Tally>) -> Self {
        self.tally = Some(tally);
        self
    }
}

impl<B: Body> Body for Metered<B>
where
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Some(tally) = this.tally {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    tally.add(frame.data_ref().map_or(0, |d| d.remaining() as u64));
                }
                // The end (or failure) of the body ends what it counts.
                Poll::Ready(_) => *this.tally = None,
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body of a merged answer (several engines).
pub(crate) type MergedBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// What a client is answered with: one engine's answer, or a merged one.
pub(crate) type ClientBody = Either<ResponseBody, MergedBody>;

/// A request body already read whole by an earlier stage (admission judged it, host
/// work rewrote it): it is what goes upstream, and the client's body is never read
/// again.
#[derive(Clone, Debug)]
pub(crate) struct HeldBody(pub(crate) Bytes);

/// Reads and drops what is left of a request body that berth answers without
/// forwarding (up to 256 KiB, for at most a second), as Go's net/http does: closing the
/// connection on unread bytes makes the client's write fail with "broken pipe" before it
/// can read the answer.
pub(crate) async fn discard_unread(body: &mut Incoming) {
    use http_body_util::BodyExt;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let mut left = 256 * 1024usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                left = left.saturating_sub(data.len());
                if left == 0 {
                    break;
                }
            }
        }
    })
    .await;
}
