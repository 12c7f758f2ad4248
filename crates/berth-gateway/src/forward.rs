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

/// Reads the whole body, lets `work` rewrite it, and sets the new `Content-Length`
/// (notes 1.2: a rewritten body needs one).
async fn rewrite_body(
    guest: &Guest,
    req: Request<Incoming>,
    work: &crate::host::HostWork,
) -> Result<Request<UpstreamBody>, GatewayError> {
    use http_body_util::{BodyExt, Limited};
    let (mut parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_EDITED_BODY)
        .collect()
        .await
        .map_err(|e| GatewayError::BadRequest(format!("reading request body: {e}")))?
        .to_bytes();
    let body = match work.rewrite_body(guest, &body)? {
        Some(rewritten) => {
            parts.headers.remove(http::header::TRANSFER_ENCODING);
            parts
                .headers
                .insert(http::header::CONTENT_LENGTH, rewritten.len().into());
            rewritten
        }
        None => body,
    };
    Ok(Request::from_parts(parts, Either::Right(Full::new(body))))
}

/// Sends one request to `guest` and returns the response to give the client.
pub(crate) async fn forward(
    guest: &Arc<Guest>,
    req: Request<Incoming>,
    classified: &Classified,
    drain: &Drain,
) -> Result<Response<ResponseBody>, GatewayError> {
    match classified.exchange {
        Exchange::Ordinary | Exchange::StreamedUpload | Exchange::Hijack => {
            let deadline = classified
                .head_deadline_applies(req.method())
                .then_some(guest.timeouts().head);
            let host_work = crate::host::plan(guest, classified, req.uri());
            let req = match &host_work {
                Some(work) if work.rewrites_body() => rewrite_body(guest, req, work).await?,
                _ => req.map(Either::Left),
            };
            let res = ordinary::forward(guest, req, deadline).await?;
            match host_work {
                Some(work) => work.after_response(guest, res).await,
                None => Ok(res),
            }
        }
        Exchange::Upgrade => upgrade::forward(guest, req, drain).await,
    }
}
