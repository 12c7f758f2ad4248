//! Host state that outlives a request: the ports containers publish inside an engine's
//! network namespace, brought to the host.
//!
//! ```text
//!  gateway start hook ─apply()─┐                      host │ netns /var/run/netns/berth-<m>
//!  PortSync (engine /events) ──┴► PortForwarder ── 0.0.0.0:8080 ─┬─► 172.17.0.2:80 (container)
//!                                  one listener per        │     └─► 127.0.0.1:8080 (docker-proxy)
//!                                  proto + host address    │  guest sockets made by a thread
//!                                                          │  that entered the namespace
//! ```
//!
//! [`PortForwarder`] binds host listeners from inspect's `NetworkSettings.Ports` (gateway
//! notes 12) and relays TCP (zero-copy `splice`, half-close both ways) and UDP (one
//! guest socket per client) into the namespace: to the container itself when the whole
//! inspect is known, else through dockerd's proxy. [`PortSync`] keeps it in step with
//! the engine's container lifecycle from `GET /events` (notes 13).

mod error;
mod ports;
mod sync;

pub use error::PortError;
pub use ports::{Forward, GuestNet, PortForwarder, Proto};
pub use sync::PortSync;
