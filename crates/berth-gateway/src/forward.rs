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
use crate::guest::Guest;
use crate::Drain;

/// The body berth answers with: the guest's own, streamed, or one berth made.
pub(crate) type ResponseBody = Either<Incoming, Full<Bytes>>;

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
            let res = ordinary::forward(guest, req, deadline).await?;
            match host_work {
                Some(work) => work.after_response(guest, res).await,
                None => Ok(res),
            }
        }
        Exchange::Upgrade => upgrade::forward(guest, req, drain).await,
    }
}
