//! The bodies that travel through the gateway, and what is done to a client's body
//! that berth answers without forwarding.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// The body berth sends upstream: the client's own, or one berth holds whole.
pub type UpstreamBody = Either<Incoming, Full<Bytes>>;

/// The body of one engine's answer as the client gets it: the guest's own, streamed,
/// or one berth made (its own error, or a small answer it read whole).
pub(crate) type ResponseBody = Either<Incoming, Full<Bytes>>;

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
