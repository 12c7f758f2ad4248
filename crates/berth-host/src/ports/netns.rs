//! Where a forwarder opens its guest sides: in the guest's network namespace (on
//! [`NetnsSockets`]'s thread) or in berth's own network.

use std::io;
use std::net::SocketAddr;

use berth_guest::netns::{self, NetnsSockets};
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpStream, UdpSocket};

use crate::GuestNet;

/// Opens guest-side sockets, in the guest namespace or in berth's own network.
#[derive(Debug)]
pub(crate) struct GuestSockets {
    /// `None` for [`GuestNet::Host`].
    netns: Option<NetnsSockets>,
}

impl GuestSockets {
    /// Starts the namespace thread for `net` (none for the host network).
    pub(crate) fn new(net: &GuestNet) -> io::Result<Self> {
        let netns = match net {
            GuestNet::Namespace(path) | GuestNet::Machine { netns: path, .. } => {
                Some(NetnsSockets::new(path)?)
            }
            GuestNet::Host => None,
        };
        Ok(Self { netns })
    }

    /// A TCP stream connected to `addr` in the guest network.
    pub(crate) async fn connect_tcp(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        match &self.netns {
            Some(ns) => ns.connect_tcp(addr).await,
            None => {
                netns::connect_tcp(
                    Socket::new(Domain::for_address(addr), Type::STREAM, None)?,
                    addr,
                )
                .await
            }
        }
    }

    /// A UDP socket connected to `addr` in the guest network.
    pub(crate) async fn connect_udp(&self, addr: SocketAddr) -> io::Result<UdpSocket> {
        match &self.netns {
            Some(ns) => ns.connect_udp(addr).await,
            None => netns::connect_udp(
                Socket::new(Domain::for_address(addr), Type::DGRAM, None)?,
                addr,
            ),
        }
    }
}
