//! One guest connection per client connection, for ordinary exchanges.
//!
//! A keep-alive client sends its requests one after another, so one guest connection
//! can carry all of them: it is taken from the guest's idle list (or opened) when the
//! client connection first needs it, kept in a task-local slot of that client
//! connection's task ([`scope`]), and given back to the idle list when the client
//! connection ends. Per request this costs no pool lookup and no pool check-in, which
//! hyper-util's pooled client pays on every exchange; a fresh client connection still
//! reuses an idle guest connection.
//!
//! hyper's server calls the service for the next request only once the previous
//! response has been written whole, so the held connection is free by then (or closed,
//! when the client dropped a streamed body: hyper then closes the guest connection).

use std::cell::RefCell;
use std::future::Future;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::{Guest, UpstreamBody};
use crate::error::GatewayError;

tokio::task_local! {
    /// The guest connection the current client connection holds, if any.
    static HELD: RefCell<Option<Lease>>;
}

/// Runs `conn` (one client connection) with a slot for the guest connection it holds;
/// the connection is given back to its guest's idle list when `conn` ends.
pub(crate) async fn scope<F: Future>(conn: F) -> F::Output {
    HELD.scope(RefCell::new(None), conn).await
}

/// Idle guest connections kept per guest; more are closed when given back (a burst of
/// client connections would otherwise keep as many descriptors open on dockerd).
const MAX_IDLE: usize = 64;

/// Idle guest connections, with the engine generation they were opened to.
#[derive(Debug, Default)]
pub(crate) struct IdleConnections(Mutex<Vec<(u64, SendRequest<UpstreamBody>)>>);

impl IdleConnections {
    /// An idle connection to `generation`; connections to older runs are dropped.
    fn take(&self, generation: u64) -> Option<SendRequest<UpstreamBody>> {
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((g, sender)) = idle.pop() {
            if g == generation && sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, generation: u64, sender: SendRequest<UpstreamBody>) {
        // Only a connection whose last exchange is complete: one still busy (or
        // closing) would make its next user wait.
        if sender.is_ready() {
            let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push((generation, sender));
            }
        }
    }
}

/// A guest connection held by one client connection.
struct Lease {
    guest: Arc<Guest>,
    generation: u64,
    sender: Option<SendRequest<UpstreamBody>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.guest.idle.give_back(self.generation, sender);
        }
    }
}

/// Sends `req` (origin-form URI, hop-by-hop headers removed) to `guest` over the
/// connection the current client connection holds; returns the response head with
/// its streamed body. Outside a [`scope`] it uses the guest's pooled client.
pub(crate) async fn send(
    guest: &Arc<Guest>,
    req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, GatewayError> {
    if HELD.try_with(|_| ()).is_err() {
        let req = with_absolute_uri(req);
        return guest
            .client()
            .request(req)
            .await
            .map_err(|e| guest.upstream_error(&e));
    }
    let generation = guest.generation();
    let held = HELD
        .with(|slot| {
            let mut slot = slot.borrow_mut();
            match slot.as_mut() {
                Some(lease)
                    if Arc::ptr_eq(&lease.guest, guest) && lease.generation == generation =>
                {
                    lease.sender.take()
                }
                _ => {
                    // Another engine (or an older run): give the old one back.
                    *slot = None;
                    None
                }
            }
        })
        .or_else(|| guest.idle.take(generation));
    let (sender, result) = match held {
        Some(mut sender) => match sender.ready().await {
            Ok(()) => match sender.try_send_request(req).await {
                Ok(res) => (sender, Ok(res)),
                // Never written: the engine closed this idle connection; a new one.
                Err(mut e) => match e.take_message() {
                    Some(req) => exchange_on_new(guest, req).await?,
                    None => (sender, Err(e.into_error())),
                },
            },
            // Closed while idle: nothing was sent.
            Err(_) => exchange_on_new(guest, req).await?,
        },
        None => exchange_on_new(guest, req).await?,
    };
    HELD.with(|slot| {
        let mut slot = slot.borrow_mut();
        match slot.as_mut() {
            // The usual case: the lease this connection already holds gets its sender
            // back (no Arc clone and drop per request).
            Some(lease) if Arc::ptr_eq(&lease.guest, guest) && lease.generation == generation => {
                lease.sender = Some(sender);
            }
            _ => {
                *slot = Some(Lease {
                    guest: Arc::clone(guest),
                    generation,
                    sender: Some(sender),
                });
            }
        }
    });
    result.map_err(|e| guest.upstream_hyper_error(&e))
}

/// Opens a new guest connection and sends `req` on it.
async fn exchange_on_new(
    guest: &Arc<Guest>,
    req: Request<UpstreamBody>,
) -> Result<(SendRequest<UpstreamBody>, hyper::Result<Response<Incoming>>), GatewayError> {
    let stream = guest
        .connector()
        .connect()
        .await
        .map_err(|e| guest.connect_error(&e))?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| guest.upstream_hyper_error(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "guest connection ended with an error");
        }
    });
    let res = sender.send_request(req).await;
    Ok((sender, res))
}

/// The pooled client wants an absolute URI (it sends the origin form upstream).
fn with_absolute_uri(mut req: Request<UpstreamBody>) -> Request<UpstreamBody> {
    *req.uri_mut() = super::guest_uri_from(req.uri());
    req
}
