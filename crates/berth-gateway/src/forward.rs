//! Pass-through to the chosen guest: a `match` on the [`Exchange`], one file per arm.
//!
//! Raw hijacks (attach/exec without `Upgrade`) never reach this point when they open a
//! connection: `serve` hands the whole socket to [`hijack`]. One that arrives later on
//! a keep-alive connection is forwarded as an ordinary exchange, which carries dockerd's
//! output but not stdin (hyper owns that connection); see docs/request-flow.md.

pub(crate) mod headers;
pub(crate) mod hijack;
mod ordinary;
pub(crate) mod splice;
mod upgrade;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::classify::{Classified, Exchange};
use crate::error::GatewayError;
use crate::guest::{Guest, UpstreamBody};
use crate::Drain;

/// The body berth answers with: the guest's own, streamed, or one berth made.
pub(crate) type ResponseBody = Either<Incoming, Full<Bytes>>;

/// Request bodies berth edits (JSON) are held whole up to this size; dockerd itself
/// reads create bodies without a limit, but no real one comes near it.
const MAX_EDITED_BODY: usize = 16 << 20;

/// A request body already read whole by an earlier stage (admission judged it): it is
/// what goes upstream, and the client's body is never read again.
#[derive(Clone, Debug)]
pub(crate) struct HeldBody(pub(crate) Bytes);

/// The request with its held body, framed by `Content-Length` whatever the client used.
fn send_held(req: Request<Incoming>, held: Bytes) -> Request<UpstreamBody> {
    let (mut parts, _) = req.into_parts();
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, held.len().into());
    Request::from_parts(parts, Either::Right(Full::new(held)))
}

/// Reads the whole body (or takes the held one), lets `work` rewrite it, and sets the
/// new `Content-Length` (notes 1.2: a rewritten body needs one).
async fn rewrite_body(
    guest: &Guest,
    req: Request<Incoming>,
    held: Option<HeldBody>,
    work: &crate::host::HostWork,
) -> Result<Request<UpstreamBody>, GatewayError> {
    use http_body_util::{BodyExt, Limited};
    let (mut parts, body) = req.into_parts();
    let body = match held {
        Some(HeldBody(held)) => held,
        None => Limited::new(body, MAX_EDITED_BODY)
            .collect()
            .await
            .map_err(|e| GatewayError::BadRequest(format!("reading request body: {e}")))?
            .to_bytes(),
    };
    let body = work.rewrite_body(guest, &body)?.unwrap_or(body);
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, body.len().into());
    Ok(Request::from_parts(parts, Either::Right(Full::new(body))))
}

/// Sends one request to `guest` and returns the response to give the client.
///
/// The rare arms (body rewrites, host-side work after the response, upgrades) are
/// boxed: a request's whole future is moved on every request, so its size is paid by
/// every `/_ping` (it was 5.7 KiB with them inline).
pub(crate) async fn forward(
    guest: &Arc<Guest>,
    req: Request<Incoming>,
    classified: &Classified,
    drain: &Drain,
) -> Result<Response<ResponseBody>, GatewayError> {
    let mut req = req;
    // Only bodies of ordinary exchanges are ever held (create, update, exec create…).
    let held = req.extensions_mut().remove::<HeldBody>();
    match classified.exchange {
        Exchange::Ordinary | Exchange::StreamedUpload | Exchange::Hijack => {
            let deadline = classified
                .head_deadline_applies(req.method())
                .then_some(guest.timeouts().head);
            let host_work = crate::host::plan(guest, classified, req.uri());
            let req = match (&host_work, held) {
                (Some(work), held) if work.rewrites_body() => {
                    Box::pin(rewrite_body(guest, req, held, work)).await?
                }
                (_, Some(HeldBody(held))) => send_held(req, held),
                (_, None) => req.map(Either::Left),
            };
            // Uploads keep an idle managed engine up while their body flows.
            let _activity = matches!(classified.exchange, Exchange::StreamedUpload)
                .then(|| guest.activity().begin());
            let res = ordinary::forward(guest, req, deadline).await?;
            match host_work {
                Some(work) => Box::pin(work.after_response(guest, res)).await,
                None => Ok(res),
            }
        }
        Exchange::Upgrade => Box::pin(upgrade::forward(guest, req, drain)).await,
    }
}
