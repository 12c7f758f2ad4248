//! Pass-through to the chosen guest: a `match` on the [`Exchange`], one file per arm.
//!
//! Raw hijacks (attach/exec without `Upgrade`) never reach this point when they open a
//! connection: `serve` hands the whole socket to [`hijack`]. One that arrives later on
//! a keep-alive connection is forwarded as an ordinary exchange, which carries dockerd's
//! output but not stdin (hyper owns that connection); see docs/request-flow.md.

pub(crate) mod hijack;
mod ordinary;
pub(crate) mod splice;
mod upgrade;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::body::{HeldBody, ResponseBody, UpstreamBody};
use crate::classify::{Classified, Exchange};
use crate::drain::Drain;
use crate::error::GatewayError;
use crate::guest::Guest;

/// The request with its held body, framed by `Content-Length` whatever the client used
/// (notes 1.2: a rewritten body needs one).
fn send_held(req: Request<Incoming>, held: Bytes) -> Request<UpstreamBody> {
    let (mut parts, _) = req.into_parts();
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, held.len().into());
    Request::from_parts(parts, Either::Right(Full::new(held)))
}

/// Sends one request to `guest` and returns the response to give the client. A body
/// an earlier stage held ([`HeldBody`]) is sent instead of the client's.
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
            let req = match held {
                Some(HeldBody(held)) => send_held(req, held),
                None => req.map(Either::Left),
            };
            // Uploads keep an idle managed engine up while their body flows.
            let _activity = matches!(classified.exchange, Exchange::StreamedUpload)
                .then(|| guest.activity().begin());
            ordinary::forward(guest, req, deadline).await
        }
        // Boxed: rare (docs/conventions.md, "Futures").
        Exchange::Upgrade => Box::pin(upgrade::forward(guest, req, drain)).await,
    }
}
