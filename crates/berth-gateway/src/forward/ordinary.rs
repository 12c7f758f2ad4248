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

use http::{HeaderValue, Request, Response, Version};
use http_body_util::Either;

use crate::body::{Metered, ResponseBody};
use crate::error::GatewayError;
use crate::guest::{lease, Guest, UpstreamBody};
use crate::headers::strip_hop_by_hop;

pub(super) async fn forward(
    guest: &Arc<Guest>,
    req: Request<UpstreamBody>,
    head_deadline: Option<Duration>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, true);
    parts.uri = origin_form(&parts.uri);
    parts.version = Version::HTTP_11;
    // As hyper-util's client did: Go's server refuses an HTTP/1.1 request without Host.
    parts
        .headers
        .entry(http::header::HOST)
        .or_insert(HeaderValue::from_static("guest"));
    let res = lease::send(guest, Request::from_parts(parts, body), head_deadline).await?;
    let (mut parts, body) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Ok(Response::from_parts(
        parts,
        Either::Left(Metered::plain(body)),
    ))
}

/// The client's request target as sent upstream: path and query, verbatim.
fn origin_form(uri: &http::Uri) -> http::Uri {
    match uri.path_and_query() {
        Some(pq) => http::Uri::from(pq.clone()),
        None => http::Uri::from_static("/"),
    }
}
