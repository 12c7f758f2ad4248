//! Fan-out: views that every engine contributes to, answered as one dockerd would.
//!
//! The client's request (method, versioned path, query, headers) goes to every engine
//! at once; if any engine refuses it (a bad filter, say), that refusal is the answer,
//! byte for byte. Otherwise the answers are merged by [`crate::merge`] and sent with
//! the default engine's headers. Events are merged as a stream, never buffered whole.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Either, Full, Limited, StreamBody};
use hyper::body::Incoming;

use crate::error::GatewayError;
use crate::forward::headers::strip_hop_by_hop;
use crate::guest::{guest_uri_from, Guest};
use crate::merge;
use crate::route::{EngineRouter, MergedView};

/// The body of a merged answer.
pub(crate) type MergedBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// A JSON view larger than this from one engine is refused rather than held.
const MAX_VIEW: usize = 256 << 20;

/// Answers `view` from every engine of `router`.
pub(crate) async fn answer(
    router: &EngineRouter,
    view: MergedView,
    req: Request<Incoming>,
) -> Result<Response<MergedBody>, GatewayError> {
    let (parts, _body) = req.into_parts();
    let guests = router.guests();
    let answers = futures_util::future::join_all(guests.iter().map(|g| ask(g, &parts))).await;
    let mut heads = Vec::with_capacity(answers.len());
    let mut bodies = Vec::with_capacity(answers.len());
    for answer in answers {
        let res = answer?;
        if !res.status().is_success() {
            // The engines' own refusal (bad filter, bad version): pass it on.
            return Ok(res.map(|b| b.map_err(std::io::Error::other).boxed_unsync()));
        }
        let (head, body) = res.into_parts();
        heads.push(head);
        bodies.push(body);
    }
    if view == MergedView::Events {
        use futures_util::StreamExt;
        let sources = bodies.into_iter().map(BodyExt::into_data_stream).collect();
        let frames =
            merge::EventMerge::new(sources).map(|line| Ok::<_, std::io::Error>(Frame::data(line)));
        let mut head = heads.swap_remove(0);
        head.headers.remove(header::CONTENT_LENGTH);
        return Ok(Response::from_parts(
            head,
            StreamBody::new(frames).boxed_unsync(),
        ));
    }
    let mut values = Vec::with_capacity(bodies.len());
    for (body, guest) in bodies.into_iter().zip(guests) {
        let bytes = Limited::new(body, MAX_VIEW)
            .collect()
            .await
            .map_err(|e| GatewayError::GuestUnreachable {
                engine: guest.name().to_owned(),
                reason: format!("reading a response: {e}"),
            })?
            .to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            GatewayError::Internal(format!(
                "engine {:?} sent invalid JSON for {}: {e}",
                guest.name(),
                parts.uri.path()
            ))
        })?;
        values.push(value);
    }
    let merged = match view {
        MergedView::Containers => {
            merge::containers(values, merge::limit_from_query(parts.uri.query()))
        }
        MergedView::Images => merge::images(values),
        MergedView::Volumes => merge::volumes(values),
        MergedView::Networks => merge::networks(values, 0),
        MergedView::SystemDf => merge::system_df(values),
        MergedView::Info => merge::info(values, 0),
        MergedView::Prune => merge::prune(values),
        MergedView::Events => unreachable!("answered above"),
    };
    let mut body =
        serde_json::to_vec(&merged).map_err(|e| GatewayError::Internal(e.to_string()))?;
    // dockerd's encoder ends every document with a newline.
    body.push(b'\n');
    let mut head = heads.swap_remove(0);
    head.headers.remove(header::TRANSFER_ENCODING);
    head.headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body = Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok(Response::from_parts(head, body))
}

/// Sends the client's request (without a body: these views take none) to one engine.
async fn ask(guest: &Arc<Guest>, parts: &Parts) -> Result<Response<Incoming>, GatewayError> {
    guest.ready().await?;
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers, true);
    headers.remove(header::CONTENT_LENGTH);
    let mut req = Request::builder()
        .method(parts.method.clone())
        .uri(guest_uri_from(&parts.uri))
        .body(Either::Right(Full::new(Bytes::new())))
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    *req.headers_mut() = headers;
    let res = guest
        .client()
        .request(req)
        .await
        .map_err(|e| guest.upstream_error(&e))?;
    let (mut head, body) = res.into_parts();
    strip_hop_by_hop(&mut head.headers, false);
    Ok(Response::from_parts(head, body))
}
