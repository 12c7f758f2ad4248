//! Pass-through to the chosen guest: a `match` on the [`Exchange`], one file per arm.
//!
//! Raw hijacks (attach/exec without `Upgrade`) never reach this point when they open a
//! connection: `serve` hands the whole socket to [`hijack`]. One that arrives later on
//! a keep-alive connection is forwarded as an ordinary exchange, which carries dockerd's
//! output but not stdin (hyper owns that connection); see docs/request-flow.md.

pub(crate) mod framed;
pub(crate) mod hijack;
mod ordinary;
pub(crate) mod splice;
mod upgrade;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::body::{HeldBody, Metered, ResponseBody, UpstreamBody};
use crate::classify::{Classified, Exchange};
use crate::drain::Drain;
use crate::error::GatewayError;
use crate::guest::Guest;
use crate::metrics::{Kind, Recording};

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
    let mut record = guest
        .meter()
        .and_then(|m| m.begin(Kind::of(classified, req.method())));
    let result = match classified.exchange {
        Exchange::Ordinary | Exchange::StreamedUpload | Exchange::Hijack => {
            forward_ordinary(guest, req, classified, record.as_ref()).await
        }
        // Boxed: rare (docs/conventions.md, "Futures"). A session takes the record
        // along: it ends when the session does.
        Exchange::Upgrade => Box::pin(upgrade::forward(guest, req, drain, &mut record)).await,
    };
    let Some(record) = record else {
        return result;
    };
    match result {
        Ok(res) => {
            record.answered(res.status());
            Ok(res.map(|body| match body {
                // The exchange ends with the engine's body.
                Either::Left(engine_body) => Either::Left(engine_body.ending(Box::new(record))),
                own_body => own_body,
            }))
        }
        Err(e) => {
            record.answered(e.status());
            Err(e)
        }
    }
}

/// An ordinary, streamed-upload or late hijack exchange over a pooled connection.
async fn forward_ordinary(
    guest: &Arc<Guest>,
    mut req: Request<Incoming>,
    classified: &Classified,
    record: Option<&Recording>,
) -> Result<Response<ResponseBody>, GatewayError> {
    // Only bodies of ordinary exchanges are ever held (create, update, exec create…).
    let held = req.extensions_mut().remove::<HeldBody>();
    let deadline = classified
        .head_deadline_applies(req.method())
        .then_some(guest.timeouts().head);
    let req = match held {
        Some(HeldBody(held)) => {
            if let Some(r) = record {
                r.received(held.len() as u64);
            }
            send_held(req, held)
        }
        None => req.map(|body| {
            // A body known to be empty (a GET) has nothing to count.
            let tally = record
                .filter(|_| !body.is_end_stream())
                .map(Recording::receiving);
            Either::Left(Metered::counted(body, tally))
        }),
    };
    // Uploads keep an idle managed engine up while their body flows.
    let _activity =
        matches!(classified.exchange, Exchange::StreamedUpload).then(|| guest.activity().begin());
    ordinary::forward(guest, req, deadline).await
}
