//! Upgrades: attach/exec with `Upgrade: tcp`, BuildKit `/session` and `/grpc` (h2c),
//! WebSocket attach. berth never speaks the upgraded protocol; it splices bytes.
//!
//! Order matters (notes 4.1): the client gets its 101 only after the guest's 101 has
//! arrived, because `docker run` sends `start` as soon as it sees the 101 and the attach
//! must already exist in dockerd. The request body is held whole first (it is a small
//! JSON document or empty) because hyper hands over an upgraded connection only once
//! the request body is complete (notes 4.7).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

use super::splice;
use crate::body::{Metered, ResponseBody};
use crate::drain::Drain;
use crate::error::GatewayError;
use crate::guest::{guest_uri_from, Guest};
use crate::headers::strip_hop_by_hop;
use crate::metrics::Recording;

/// Upgrade requests carry at most a small JSON body (exec start).
const MAX_UPGRADE_BODY: usize = 1 << 20;

pub(super) async fn forward(
    guest: &Arc<Guest>,
    mut req: Request<Incoming>,
    drain: &Drain,
    record: &mut Option<Recording>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    let protocol = parts
        .headers
        .get(UPGRADE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("tcp"));
    strip_hop_by_hop(&mut parts.headers, true);
    // dockerd decides between 101 and a plain hijack by the presence of `Upgrade`, and
    // WebSocket also needs `Connection: upgrade` (notes 1.3): put both back.
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    parts.headers.insert(UPGRADE, protocol);
    parts.uri = guest_uri_from(&parts.uri);
    parts.version = Version::HTTP_11;
    let body = Limited::new(body, MAX_UPGRADE_BODY)
        .collect()
        .await
        .map_err(|e| GatewayError::BadRequest(format!("reading request body: {e}")))?
        .to_bytes();
    let request_bytes = body.len() as u64;

    let mut res = guest
        .client()
        .request(Request::from_parts(parts, Either::Right(Full::new(body))))
        .await
        .map_err(|e| guest.upstream_error(&e))?;

    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        // An error before the hijack (404, 409, or attach's hand-written plain-text
        // answer delimited by close: notes 4.4) is forwarded as it is.
        let (mut parts, body) = res.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        return Ok(Response::from_parts(
            parts,
            Either::Left(Metered::plain(body)),
        ));
    }

    // The session takes the exchange's record: it is open until the session ends.
    let session = record.take();
    if let Some(r) = &session {
        r.answered(res.status());
        r.received(request_bytes);
    }
    let guest_upgrade = hyper::upgrade::on(&mut res);
    let engine = guest.name().to_owned();
    let guard = drain.guard();
    let activity = guest.activity().begin();
    tokio::spawn(async move {
        let _guard = guard;
        let _activity = activity;
        match tokio::try_join!(client_upgrade, guest_upgrade) {
            Ok((client, upstream)) => {
                let mut bridge = splice::bridge(client, upstream);
                if let Err(e) = (&mut bridge).await {
                    tracing::debug!(engine, error = %e, "upgraded stream ended with an error");
                }
                if let Some(r) = &session {
                    let (to_guest, to_client) = bridge.bytes();
                    r.received(to_guest);
                    r.sent(to_client);
                }
            }
            Err(e) => tracing::debug!(engine, error = %e, "upgrade not completed"),
        }
    });
    // The 101 head is forwarded as dockerd wrote it, reason phrase included
    // ("101 UPGRADED"); its Connection and Upgrade headers are the handshake itself.
    let (parts, _) = res.into_parts();
    Ok(Response::from_parts(
        parts,
        Either::Right(Full::new(Bytes::new())),
    ))
}
