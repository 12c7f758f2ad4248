//! Ordinary and streamed-upload exchanges over a pooled keep-alive connection.
//!
//! Both bodies are moved, not copied: the client's `Incoming` becomes the upstream
//! request body (hyper applies back-pressure and keeps its framing: a `Content-Length`
//! header is honoured, an empty body is sent as none, chunked stays chunked: notes
//! 1.2), and the guest's `Incoming` becomes the response body, written to the client
//! frame by frame as it arrives (notes 5.2). The response head is returned the moment
//! it arrives, so `wait` and streaming routes never hold it (notes 4.6).

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, Version};
use http_body_util::Either;

use super::headers::strip_hop_by_hop;
use super::ResponseBody;
use crate::error::GatewayError;
use crate::guest::{guest_uri_from, Guest, UpstreamBody};

pub(super) async fn forward(
    guest: &Arc<Guest>,
    req: Request<UpstreamBody>,
    head_deadline: Option<Duration>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, true);
    parts.uri = guest_uri_from(&parts.uri);
    parts.version = Version::HTTP_11;
    let upstream = guest.client().request(Request::from_parts(parts, body));
    let res =
        match head_deadline {
            Some(after) => tokio::time::timeout(after, upstream).await.map_err(|_| {
                GatewayError::GuestTimeout {
                    engine: guest.name().to_owned(),
                    what: "the response head",
                    after,
                }
            })?,
            None => upstream.await,
        }
        .map_err(|e| guest.upstream_error(&e))?;
    let (mut parts, body) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Ok(Response::from_parts(parts, Either::Left(body)))
}
