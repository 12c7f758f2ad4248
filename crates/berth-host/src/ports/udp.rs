//! UDP forwards: one host socket per binding; per client address, a guest-side socket
//! (made in the guest network, connected to the engine's listener) whose replies go
//! back to that client from the host socket, as dockerd's own proxy does. A flow idle
//! for [`FLOW_IDLE`] in both directions is dropped.
//!
//! UDP may lose datagrams, and so may the relay: a datagram that finds a socket buffer
//! full is dropped rather than stalling every other flow of the listener.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::{AbortHandle, JoinSet};

use super::netns::GuestSockets;
use super::Target;

/// How long a client flow lives without traffic.
const FLOW_IDLE: Duration = Duration::from_secs(60);

/// Client flows per listener; datagrams from further clients are dropped.
const MAX_FLOWS: usize = 4096;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// One client's flow.
#[derive(Debug)]
struct Flow {
    guest: Arc<UdpSocket>,
    /// The guest address it was opened to: a flow whose listener was re-pointed is
    /// replaced on its next datagram.
    to: SocketAddr,
    /// Last traffic either way, in milliseconds since the listener's `clock`.
    last: Arc<AtomicU64>,
    replies: AbortHandle,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

/// Relays datagrams between clients of `host` and the current `target` until the task
/// is aborted (which also ends every flow).
pub(super) async fn serve(host: UdpSocket, target: Arc<Target>, sockets: Arc<GuestSockets>) {
    let host = Arc::new(host);
    let clock = Instant::now();
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut replies = JoinSet::new();
    let mut sweep = tokio::time::interval(FLOW_IDLE / 4);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            received = host.recv_from(&mut buf) => {
                let (n, client) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive failed");
                        continue;
                    }
                };
                let now = millis_since(clock);
                let guest = target.get();
                if flows.get(&client).is_some_and(|f| f.to != guest) {
                    flows.remove(&client);
                }
                if !flows.contains_key(&client) {
                    if flows.len() >= MAX_FLOWS {
                        tracing::debug!(%client, "too many udp flows: datagram dropped");
                        continue;
                    }
                    let socket = match sockets.connect_udp(guest).await {
                        Ok(s) => Arc::new(s),
                        Err(e) => {
                            tracing::debug!(%client, %guest, error = %e, "guest udp socket failed");
                            continue;
                        }
                    };
                    let last = Arc::new(AtomicU64::new(now));
                    let task = reply(Arc::clone(&socket), Arc::clone(&host), client, Arc::clone(&last), clock);
                    let flow = Flow { guest: socket, to: guest, last, replies: replies.spawn(task) };
                    flows.insert(client, flow);
                }
                let Some(flow) = flows.get(&client) else { continue };
                flow.last.store(now, Ordering::Relaxed);
                // Straight to the socket, not through tokio's write readiness, which a
                // socket registered a moment ago does not know yet.
                if let Err(e) = socket2::SockRef::from(&*flow.guest).send(&buf[..n]) {
                    tracing::debug!(%client, error = %e, "datagram to guest dropped");
                }
            }
            _ = sweep.tick() => {
                let now = millis_since(clock);
                let idle = u64::try_from(FLOW_IDLE.as_millis()).unwrap_or(u64::MAX);
                flows.retain(|_, f| {
                    now.saturating_sub(f.last.load(Ordering::Relaxed)) < idle
                        && !f.replies.is_finished()
                });
                while replies.try_join_next().is_some() {}
            }
        }
    }
}

/// Sends what the guest answers back to `client` until the guest socket fails.
async fn reply(
    guest: Arc<UdpSocket>,
    host: Arc<UdpSocket>,
    client: SocketAddr,
    last: Arc<AtomicU64>,
    clock: Instant,
) {
    loop {
        if guest.readable().await.is_err() {
            return;
        }
        match answer(&guest, &host, client) {
            Ok(true) => last.store(millis_since(clock), Ordering::Relaxed),
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(%client, error = %e, "guest udp socket failed");
                return;
            }
        }
    }
}

/// Moves one datagram guest → client, if one is waiting. Synchronous, so the buffer
/// lives on the stack for the call instead of in every flow's task.
fn answer(guest: &UdpSocket, host: &UdpSocket, client: SocketAddr) -> io::Result<bool> {
    let mut buf = [0u8; MAX_DATAGRAM];
    match guest.try_recv(&mut buf) {
        Ok(n) => {
            if let Err(e) = socket2::SockRef::from(host).send_to(&buf[..n], &client.into()) {
                tracing::debug!(%client, error = %e, "datagram to client dropped");
            }
            Ok(true)
        }
        // Spurious readiness, or the ICMP "port unreachable" of an earlier datagram
        // (nothing listened in the guest for a moment): the flow goes on.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn millis_since(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX)
}
