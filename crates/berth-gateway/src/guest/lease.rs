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
//!
//! The slot also keeps the connection's [`HeadTimer`]: the response-head deadline of
//! quick requests without a timer-wheel entry per request.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep};

use berth_guest::{GuestStream, LeanSocket};

use super::{Guest, UpstreamBody};
use crate::error::GatewayError;

tokio::task_local! {
    /// What the current client connection holds.
    static HELD: RefCell<Held>;
}

/// The per-client-connection slot.
#[derive(Default)]
struct Held {
    /// The guest connection, if one was taken.
    lease: Option<Lease>,
    /// Out of the slot while an exchange uses it.
    head_timer: Option<HeadTimer>,
}

/// Runs `conn` (one client connection) with a slot for the guest connection it holds;
/// the connection is given back to its guest's idle list when `conn` ends.
pub(crate) async fn scope<F: Future>(conn: F) -> F::Output {
    HELD.scope(RefCell::new(Held::default()), conn).await
}

/// The response-head deadline of one client connection's exchanges, as one timer
/// armed lazily: a request moves its deadline later without touching the timer wheel,
/// and only when the timer fires early is it re-armed to the deadline now in force.
/// A keep-alive client's quick requests then cost a clock read each instead of a timer
/// entry inserted and removed.
#[derive(Debug)]
pub(crate) struct HeadTimer {
    sleep: Pin<Box<Sleep>>,
}

impl HeadTimer {
    pub(crate) fn new(deadline: Instant) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Runs `fut` until it completes (`Some`) or `deadline` passes (`None`). Pinned
    /// by the caller, so that it is not moved into this future (and stored twice).
    pub(crate) async fn within<F: Future>(
        &mut self,
        deadline: Instant,
        mut fut: Pin<&mut F>,
    ) -> Option<F::Output> {
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            // Fired for an earlier deadline: re-arm to this one (poll again to register).
            while self.sleep.as_mut().poll(cx).is_ready() {
                if Instant::now() >= deadline {
                    return Poll::Ready(None);
                }
                self.sleep.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await
    }
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

/// Idle guest connections for framed exchanges (`forward::framed`), as
/// [`IdleConnections`] keeps hyper's.
#[derive(Debug, Default)]
pub(crate) struct IdleStreams(Mutex<Vec<(u64, GuestStream)>>);

impl IdleStreams {
    /// An idle stream to `generation` the engine has not closed (one `read(2)` that
    /// finds nothing; a stream with anything to read is dropped).
    fn take(&self, generation: u64) -> Option<GuestStream> {
        loop {
            let (g, stream) = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            let mut probe = [0u8; 1];
            let quiet = stream
                .socket()
                .is_some_and(|s| matches!(s.try_read_buf(&mut &mut probe[..]), Ok(None)));
            if g == generation && quiet {
                return Some(stream);
            }
        }
    }

    fn give_back(&self, generation: u64, stream: GuestStream) {
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((generation, stream));
        }
    }
}

/// The guest connection one client connection's framed exchanges use, kept across
/// its requests; given back to the guest's idle list when dropped, unless
/// [`Self::discard`]ed (an exchange left it out of step).
#[derive(Debug)]
pub(crate) struct StreamLease {
    guest: Arc<Guest>,
    generation: u64,
    stream: Option<GuestStream>,
    /// Already carried an exchange: it may have been closed by the engine since.
    reused: bool,
    /// No exchange is under way on it (one that was cancelled leaves it out of step).
    in_step: bool,
}

impl StreamLease {
    /// The connection `held` has to `guest` (reused), else an idle one or a new one.
    pub(crate) async fn hold<'a>(
        guest: &Arc<Guest>,
        held: &'a mut Option<StreamLease>,
    ) -> Result<&'a mut StreamLease, GatewayError> {
        let generation = guest.generation();
        let current = held.as_ref().is_some_and(|l| {
            Arc::ptr_eq(&l.guest, guest) && l.generation == generation && l.stream.is_some()
        });
        if !current {
            *held = None;
            let (stream, reused) = match guest.idle_streams.take(generation) {
                Some(stream) => (stream, true),
                None => (Self::connect(guest).await?, false),
            };
            *held = Some(StreamLease {
                guest: Arc::clone(guest),
                generation,
                stream: Some(stream),
                reused,
                in_step: true,
            });
        }
        Ok(held.as_mut().unwrap_or_else(|| unreachable!("set above")))
    }

    /// A new connection; a socket, since the framed path reads and splices it
    /// (`GuestConnector::streams_are_sockets` keeps other transports off that path).
    async fn connect(guest: &Guest) -> Result<GuestStream, GatewayError> {
        let stream = guest
            .connector()
            .connect()
            .await
            .map_err(|e| guest.connect_error(&e))?;
        match stream.socket() {
            Some(_) => Ok(stream),
            None => Err(GatewayError::Internal(format!(
                "engine {:?}: a framed exchange over a stream that is not a socket",
                guest.name()
            ))),
        }
    }

    /// Replaces the connection with a new one (the engine closed the one held).
    pub(crate) async fn reconnect(&mut self) -> Result<(), GatewayError> {
        self.stream = None;
        self.stream = Some(Self::connect(&self.guest).await?);
        self.reused = false;
        Ok(())
    }

    /// The socket (a held lease always has one).
    pub(crate) fn socket(&self) -> &LeanSocket {
        match self.stream.as_ref().and_then(GuestStream::socket) {
            Some(socket) => socket,
            None => unreachable!("a held lease has a socket stream (`connect`)"),
        }
    }

    /// Whether this connection carried an exchange before this one.
    pub(crate) fn reused(&self) -> bool {
        self.reused
    }

    /// Marks an exchange begun: until [`Self::done`], the connection is out of step.
    pub(crate) fn begin(&mut self) {
        self.in_step = false;
    }

    /// Marks an exchange done in step: the connection may carry the next one.
    pub(crate) fn done(&mut self) {
        self.reused = true;
        self.in_step = true;
    }

    /// Closes the connection (out of step with the engine).
    pub(crate) fn discard(&mut self) {
        self.stream = None;
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            if self.in_step && self.reused {
                self.guest.idle_streams.give_back(self.generation, stream);
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
/// its streamed body, or a timeout error when `head_deadline` passes before the head
/// arrives. Outside a [`scope`] it uses the guest's pooled client.
pub(crate) async fn send(
    guest: &Arc<Guest>,
    req: Request<UpstreamBody>,
    head_deadline: Option<Duration>,
) -> Result<Response<Incoming>, GatewayError> {
    // `head_timeout = 0` (off) arrives as `Duration::MAX`: no deadline at all.
    let Some((after, deadline)) =
        head_deadline.and_then(|after| Some((after, deadline_in(after)?)))
    else {
        return send_untimed(guest, req).await;
    };
    let timer = HELD.try_with(|slot| slot.borrow_mut().head_timer.take());
    let mut timer = match timer {
        Ok(timer) => timer.unwrap_or_else(|| HeadTimer::new(deadline)),
        Err(_) => {
            return tokio::time::timeout_at(deadline, send_untimed(guest, req))
                .await
                .unwrap_or_else(|_| Err(guest.head_timeout(after)));
        }
    };
    let exchange = std::pin::pin!(send_untimed(guest, req));
    let res = timer.within(deadline, exchange).await;
    HELD.with(|slot| slot.borrow_mut().head_timer = Some(timer));
    res.unwrap_or_else(|| Err(guest.head_timeout(after)))
}

/// `after` from now, or `None` when that is beyond what an `Instant` can hold.
pub(crate) fn deadline_in(after: Duration) -> Option<Instant> {
    Instant::now().checked_add(after)
}

/// [`send`] without a deadline.
async fn send_untimed(
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
            let slot = &mut slot.borrow_mut().lease;
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
                    Some(req) => Box::pin(exchange_on_new(guest, req)).await?,
                    None => (sender, Err(e.into_error())),
                },
            },
            // Closed while idle: nothing was sent.
            Err(_) => Box::pin(exchange_on_new(guest, req)).await?,
        },
        None => Box::pin(exchange_on_new(guest, req)).await?,
    };
    HELD.with(|slot| {
        let slot = &mut slot.borrow_mut().lease;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The timer of a connection whose earlier request set an earlier deadline must
    /// time a later request out at that request's own deadline, not the old one.
    #[tokio::test(start_paused = true)]
    async fn head_timer_re_arms_to_the_deadline_in_force() {
        let start = Instant::now();
        let after = Duration::from_secs(120);
        let mut timer = HeadTimer::new(start + after);
        let quick = std::pin::pin!(async { 7 });
        assert_eq!(timer.within(start + after, quick).await, Some(7));

        tokio::time::sleep(Duration::from_secs(100)).await;
        let second = Instant::now() + after;
        let never = std::pin::pin!(std::future::pending::<()>());
        assert_eq!(timer.within(second, never).await, None);
        assert_eq!(Instant::now(), second, "timed out at the second deadline");

        // A fired timer is re-armed for the next request, which completes in time.
        let third = Instant::now() + after;
        let quick = std::pin::pin!(async {
            tokio::time::sleep(Duration::from_secs(119)).await;
            "answered"
        });
        assert_eq!(timer.within(third, quick).await, Some("answered"));
    }

    #[tokio::test(start_paused = true)]
    async fn head_timer_moves_earlier_for_a_shorter_deadline() {
        let start = Instant::now();
        let mut timer = HeadTimer::new(start + Duration::from_secs(120));
        let never = std::pin::pin!(std::future::pending::<()>());
        assert_eq!(
            timer.within(start + Duration::from_secs(5), never).await,
            None
        );
        assert_eq!(Instant::now(), start + Duration::from_secs(5));
    }
}
