//! Fan-out: views that every engine contributes to, answered as one dockerd would.
//!
//! The client's request (method, versioned path, query, headers) goes to every engine
//! at once; if any engine refuses it (a bad filter, say), that refusal is the answer,
//! byte for byte. Otherwise the answers are merged by [`crate::merge`] and sent with
//! the default engine's headers. Events are merged as a stream, never buffered whole.
//! An engine that cannot be reached (or is known down, see `guest::Health`) is left out
//! while any other answers: the view goes on with the machines that are up.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Either, Full, Limited, StreamBody};
use hyper::body::Incoming;

use crate::body::MergedBody;
use crate::classify::MergedView;
use crate::error::GatewayError;
use crate::guest::{guest_uri_from, Guest};
use crate::headers::strip_hop_by_hop;
use crate::merge::{self, anchors};
use crate::workloads;

/// A JSON view larger than this from one engine is refused rather than held.
const MAX_VIEW: usize = 256 << 20;

/// Answers `view` from every engine in `guests` (the default first).
pub(crate) async fn answer(
    guests: &[Arc<Guest>],
    view: MergedView,
    req: Request<Incoming>,
) -> Result<Response<MergedBody>, GatewayError> {
    let (parts, _body) = req.into_parts();
    let plan = match view {
        MergedView::Containers => anchored_plan(guests, &parts, "containers").await?,
        MergedView::Images => anchored_plan(guests, &parts, "images").await?,
        _ => None,
    };
    let asks = guests.iter().enumerate().map(|(i, g)| {
        let target = plan
            .as_ref()
            .map(|plan| format!("{}?{}", parts.uri.path(), plan[i].query));
        ask(g, &parts, target)
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut heads = Vec::with_capacity(answers.len());
    let mut bodies = Vec::with_capacity(answers.len());
    // Which engines answered (indices into `guests`), and the first that could not.
    let mut answered = Vec::with_capacity(answers.len());
    let mut unavailable = None;
    for (index, answer) in answers.into_iter().enumerate() {
        let res = match answer {
            Ok(res) => res,
            Err(e) if e.is_engine_unavailable() => {
                tracing::debug!(engine = guests[index].name(), error = %e, "left out of a merged view");
                unavailable.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        if !res.status().is_success() {
            // The engines' own refusal (bad filter, bad version): pass it on.
            return Ok(res.map(|b| b.map_err(std::io::Error::other).boxed_unsync()));
        }
        let (head, body) = res.into_parts();
        heads.push(head);
        bodies.push(body);
        answered.push(index);
    }
    if let (true, Some(e)) = (answered.is_empty(), unavailable) {
        return Err(e);
    }
    // The default engine's place among those that answered (its headers, its networks).
    let default = answered.iter().position(|&i| i == 0).unwrap_or(0);
    if view == MergedView::Events {
        use futures_util::StreamExt;
        let sources = bodies.into_iter().map(BodyExt::into_data_stream).collect();
        let frames =
            merge::EventMerge::new(sources).map(|line| Ok::<_, std::io::Error>(Frame::data(line)));
        let mut head = heads.swap_remove(default);
        head.headers.remove(header::CONTENT_LENGTH);
        return Ok(Response::from_parts(
            head,
            StreamBody::new(frames).boxed_unsync(),
        ));
    }
    let mut values = Vec::with_capacity(bodies.len());
    for (body, &index) in bodies.into_iter().zip(&answered) {
        let guest = &guests[index];
        let bytes = Limited::new(body, MAX_VIEW)
            .collect()
            .await
            .map_err(|e| GatewayError::GuestUnreachable {
                engine: guest.name().to_owned(),
                reason: format!("reading a response: {e}"),
            })?
            .to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| guest.bad_answer(format!("invalid JSON for {}: {e}", parts.uri.path())))?;
        let value = match &plan {
            Some(plan) => anchors::within(value, plan[index].window),
            None => value,
        };
        values.push(value);
    }
    let merged = match view {
        MergedView::Containers => {
            merge::containers(values, merge::limit_from_query(parts.uri.query()))
        }
        MergedView::Images => merge::images(values),
        MergedView::Volumes => merge::volumes(values),
        MergedView::Networks => merge::networks(values, default),
        MergedView::SystemDf => merge::system_df(values),
        MergedView::Info => merge::info(values, default),
        MergedView::Prune => merge::prune(values),
        MergedView::Events => unreachable!("answered above"),
    };
    let mut body =
        serde_json::to_vec(&merged).map_err(|e| GatewayError::Internal(e.to_string()))?;
    // dockerd's encoder ends every document with a newline.
    body.push(b'\n');
    let mut head = heads.swap_remove(default);
    head.headers.remove(header::TRANSFER_ENCODING);
    head.headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body = Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok(Response::from_parts(head, body))
}

/// For a list whose `since`/`before` filters name an object (`kind`: `containers` or
/// `images`) that lives on one engine: what to ask each engine instead (only the owner
/// gets the anchor; the others are cut by its creation time). `None`: ask all alike.
async fn anchored_plan(
    guests: &[Arc<Guest>],
    parts: &Parts,
    kind: &str,
) -> Result<Option<Vec<anchors::EngineQuery>>, GatewayError> {
    let query = parts.uri.query().unwrap_or("");
    let found = anchors::ListAnchors::from_query(Some(query));
    if found.is_empty() {
        return Ok(None);
    }
    let since = resolve_anchor(guests, kind, found.since.as_deref()).await?;
    let before = resolve_anchor(guests, kind, found.before.as_deref()).await?;
    Ok(Some(found.plan(query, guests.len(), since, before)))
}

/// The one engine holding `ident` and its creation time; `None` when no engine or
/// several do (the engines then answer for it themselves).
async fn resolve_anchor(
    guests: &[Arc<Guest>],
    kind: &str,
    ident: Option<&str>,
) -> Result<Option<anchors::ResolvedAnchor>, GatewayError> {
    let Some(ident) = ident else {
        return Ok(None);
    };
    let path = format!("/{kind}/{}/json", percent_encode_path(ident));
    let mut owners = Vec::new();
    for (owner, answer) in workloads::inspect_everywhere(guests, &path)
        .await?
        .0
        .into_iter()
        .enumerate()
    {
        if let Some(body) = answer {
            let created = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| anchors::created_seconds(&v["Created"]));
            owners.push((owner, created));
        }
    }
    Ok(match owners.as_slice() {
        [(owner, Some(created))] => Some(anchors::ResolvedAnchor {
            owner: *owner,
            created: *created,
        }),
        _ => None,
    })
}

/// Escapes what cannot stand in a path segment (names and IDs never need it; image
/// references keep their `/`, `:` and `@`, which dockerd reads greedily).
fn percent_encode_path(s: &str) -> String {
    const UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'?')
        .add(b'#')
        .add(b'%')
        .add(b'"');
    percent_encoding::utf8_percent_encode(s, UNSAFE).to_string()
}

/// Sends the client's request (without a body: these views take none) to one engine,
/// to `target` (path and query) instead of the client's when given.
async fn ask(
    guest: &Arc<Guest>,
    parts: &Parts,
    target: Option<String>,
) -> Result<Response<Incoming>, GatewayError> {
    guest.ready_unless_down().await?;
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers, true);
    headers.remove(header::CONTENT_LENGTH);
    let mut req = Request::builder()
        .method(parts.method.clone())
        .uri(match target {
            Some(target) => guest_uri_from(
                &target
                    .parse()
                    .map_err(|_| GatewayError::Internal(format!("bad list query {target}")))?,
            ),
            None => guest_uri_from(&parts.uri),
        })
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
