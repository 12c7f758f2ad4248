use std::io;
use std::net::SocketAddr;

use crate::Proto;

/// Why ports could not be brought to the host, or an engine could not be followed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// A host port is taken by another program (or by a forward of another engine).
    /// The text is dockerd's own (gateway notes 3.2): clients and scripts match on it.
    #[error("Bind for {addr} failed: port is already allocated")]
    AlreadyAllocated {
        /// The host address that could not be bound (`0.0.0.0:8080`, `[::]:8080`).
        addr: SocketAddr,
        /// The protocol of the listener.
        proto: Proto,
    },
    /// Binding a host listener failed for another reason than the port being taken.
    #[error("cannot bind {proto} {addr} on the host: {source}")]
    Bind {
        /// The host address.
        addr: SocketAddr,
        /// The protocol of the listener.
        proto: Proto,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// `NetworkSettings.Ports` was not the shape dockerd writes.
    #[error("invalid published ports: {reason}")]
    InvalidPorts {
        /// What was wrong.
        reason: String,
    },
    /// The thread that opens sockets inside the guest network namespace could not start.
    #[error("cannot start the guest network thread: {0}")]
    Thread(#[source] io::Error),
    /// Talking to the engine (events, list, inspect) failed.
    #[error("engine: {0}")]
    Engine(String),
}
