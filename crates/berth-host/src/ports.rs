//! [`PortForwarder`]: host listeners for the ports containers publish inside an engine's
//! network namespace.
//!
//! The engine stays the authority on who holds a port: a forward carries the same
//! HostIp/HostPort on the host as the engine's binding, and its guest side is the
//! container itself or the engine's own proxy for that port (`published.rs`).
//! Listeners are keyed per container and per (protocol, host address); `apply` diffs
//! the wanted set against what is bound, so re-applying the same map (the gateway's
//! start hook *and* `PortSync` both do) changes nothing and keeps open connections, and
//! a map whose guest side alone moved re-points the listener without closing it.

mod netns;
mod published;
mod tcp;
mod udp;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use socket2::{Domain, Socket, Type};
use tokio::task::JoinHandle;

use crate::PortError;
use netns::GuestSockets;
use published::Binding;

/// Listen backlog of host listeners (the kernel caps it at `net.core.somaxconn`): a
/// burst of connections right after `docker start` queues instead of being refused.
const BACKLOG: i32 = 4096;

/// Where a forward's guest side is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestNet {
    /// Inside the network namespace at this path (e.g. `/var/run/netns/berth-default`).
    /// It may appear after the forwarder is built; it is entered on first use.
    Namespace(PathBuf),
    /// Inside the network namespace at `netns`, where the engine is not on the
    /// namespace's loopback but at `engine` (a VM behind a tap device): guest sides that
    /// would reach the engine's proxy on loopback go to `engine` instead, and container
    /// addresses are reached through the routes to it.
    Machine {
        /// The namespace's path.
        netns: PathBuf,
        /// The engine's address in the namespace.
        engine: IpAddr,
    },
    /// In berth's own network namespace (an engine that shares the host's network;
    /// mostly for tests: the engine's own proxy then already holds the host ports).
    Host,
}

/// A forwarded protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// One host listener forwarding into the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Forward {
    /// The container that published the port (full ID as given to `apply`).
    pub container_id: String,
    /// TCP or UDP.
    pub proto: Proto,
    /// The host address listened on (`0.0.0.0`, `::`, `127.0.0.1`, …).
    pub host_ip: IpAddr,
    /// The host port listened on.
    pub host_port: u16,
    /// The address connected to inside the guest network: the container's (after
    /// [`PortForwarder::apply_inspect`]) or the namespace's loopback, where dockerd's
    /// proxy listens (after [`PortForwarder::apply`]).
    pub guest_ip: IpAddr,
    /// The port connected to inside the guest network: the container's port, or the
    /// engine's published port (the same number as `host_port`) through the proxy.
    pub guest_port: u16,
    /// The container's own port (`80` of `"80/tcp"`).
    pub container_port: u16,
}

/// Brings published ports of one engine's containers to the host. Cheap to clone
/// (shared state); listeners close when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct PortForwarder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// [`GuestNet::Machine`]'s engine address.
    engine: Option<IpAddr>,
    sockets: Arc<GuestSockets>,
    /// Serializes `apply` and `remove`: each awaits listener shutdowns between reading
    /// and writing `table`.
    ops: tokio::sync::Mutex<()>,
    /// Bound listeners by container ID. Only touched briefly, never across an await.
    table: Mutex<HashMap<String, Vec<Listener>>>,
}

/// A bound host listener and the task serving it; aborting the task closes it.
#[derive(Debug)]
struct Listener {
    binding: Binding,
    /// The guest side, shared with the serving task.
    target: Arc<Target>,
    task: JoinHandle<()>,
}

/// Where a listener's new connections (and new UDP flows) go; changed in place when a
/// re-apply moves only the guest side.
#[derive(Debug)]
pub(crate) struct Target(Mutex<SocketAddr>);

impl Target {
    fn new(addr: SocketAddr) -> Self {
        Self(Mutex::new(addr))
    }

    /// The current guest address.
    pub(crate) fn get(&self) -> SocketAddr {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, addr: SocketAddr) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = addr;
    }
}

/// A bound, not yet served host socket.
enum Bound {
    Tcp(tokio::net::TcpListener),
    Udp(tokio::net::UdpSocket),
}

// === impl PortForwarder ===

impl PortForwarder {
    /// A forwarder whose guest sides are opened in `guest_net`.
    pub fn new(guest_net: GuestNet) -> Result<Self, PortError> {
        let sockets = GuestSockets::new(&guest_net).map_err(PortError::Thread)?;
        let engine = match guest_net {
            GuestNet::Machine { engine, .. } => Some(engine),
            GuestNet::Namespace(_) | GuestNet::Host => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                sockets: Arc::new(sockets),
                ops: tokio::sync::Mutex::new(()),
                table: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Makes the host listeners of `container_id` match `ports`, inspect's
    /// `NetworkSettings.Ports` (gateway notes 12). Every listener is bound and
    /// listening when this returns. Unchanged listeners are kept with their
    /// connections; listeners the map no longer asks for are closed. The guest side is
    /// the engine's proxy on the namespace's loopback (see [`Self::apply_inspect`] for
    /// the direct path).
    ///
    /// A listener of *another* container on an overlapping address is stale (the engine
    /// gave the port to this one, so the other container's exit was not applied yet)
    /// and is closed first.
    ///
    /// On error nothing this call would have bound stays bound, and the container
    /// keeps only its unchanged listeners. A taken port is
    /// [`PortError::AlreadyAllocated`], worded as dockerd words it.
    pub async fn apply(
        &self,
        container_id: &str,
        ports: &serde_json::Value,
    ) -> Result<(), PortError> {
        let wanted = published::parse(ports, None)?;
        self.apply_bindings(container_id, wanted).await
    }

    /// [`Self::apply`] from a whole `GET /containers/{id}/json` answer: the ID and
    /// `NetworkSettings.Ports` are read from it, and when the container is on a single
    /// network its address becomes the guest side, which skips dockerd's proxy (one
    /// user-space hop less per byte). Listeners made by `apply` for the same ports are
    /// kept and re-pointed, so the two may be mixed.
    pub async fn apply_inspect(&self, inspect: &serde_json::Value) -> Result<(), PortError> {
        let id = inspect["Id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| PortError::InvalidPorts {
                reason: "inspect answer without an Id".into(),
            })?;
        let ip = published::container_ip(inspect);
        let wanted = published::parse(&inspect["NetworkSettings"]["Ports"], ip)?;
        self.apply_bindings(id, wanted).await
    }

    async fn apply_bindings(
        &self,
        container_id: &str,
        mut wanted: Vec<Binding>,
    ) -> Result<(), PortError> {
        if let Some(engine) = self.inner.engine {
            for b in &mut wanted {
                if b.guest.ip().is_loopback() {
                    b.guest.set_ip(engine);
                }
            }
        }
        let _op = self.inner.ops.lock().await;
        let (stale, to_bind) = {
            let mut table = self.inner.table();
            let mut kept = Vec::new();
            let mut stale = Vec::new();
            for mut l in table.remove(container_id).unwrap_or_default() {
                match wanted.iter().find(|b| b.same_listener(&l.binding)) {
                    Some(b) => {
                        if b.guest != l.binding.guest {
                            tracing::debug!(
                                container = container_id,
                                host = %b.host,
                                from = %l.binding.guest,
                                to = %b.guest,
                                "guest side moved"
                            );
                            l.target.set(b.guest);
                        }
                        l.binding = b.clone();
                        kept.push(l);
                    }
                    None => stale.push(l),
                }
            }
            let to_bind: Vec<Binding> = wanted
                .into_iter()
                .filter(|b| !kept.iter().any(|l| b.same_listener(&l.binding)))
                .collect();
            for (other, listeners) in table.iter_mut() {
                let (taken, rest): (Vec<_>, Vec<_>) = std::mem::take(listeners)
                    .into_iter()
                    .partition(|l| to_bind.iter().any(|b| b.overlaps(&l.binding)));
                for l in &taken {
                    tracing::info!(
                        container = %other,
                        to = container_id,
                        proto = %l.binding.proto,
                        addr = %l.binding.host,
                        "stale forward handed over: the engine gave its port to another container"
                    );
                }
                *listeners = rest;
                stale.extend(taken);
            }
            table.retain(|_, l| !l.is_empty());
            if !kept.is_empty() {
                table.insert(container_id.to_owned(), kept);
            }
            (stale, to_bind)
        };
        close(stale).await;
        if to_bind.is_empty() {
            return Ok(());
        }

        // Bind everything before serving anything: on the first failure the sockets
        // bound so far are dropped (closed) with `bound`.
        let mut bound = Vec::with_capacity(to_bind.len());
        for b in to_bind {
            if let Some(socket) = bind(&b)? {
                bound.push((b, socket));
            }
        }
        let started: Vec<Listener> = bound
            .into_iter()
            .map(|(binding, socket)| {
                tracing::debug!(
                    container = container_id,
                    proto = %binding.proto,
                    host = %binding.host,
                    guest = %binding.guest,
                    "forwarding"
                );
                let sockets = Arc::clone(&self.inner.sockets);
                let target = Arc::new(Target::new(binding.guest));
                let serving = Arc::clone(&target);
                let task = match socket {
                    Bound::Tcp(l) => tokio::spawn(tcp::serve(l, serving, sockets)),
                    Bound::Udp(s) => tokio::spawn(udp::serve(s, serving, sockets)),
                };
                Listener {
                    binding,
                    target,
                    task,
                }
            })
            .collect();
        tracing::info!(
            container = container_id,
            listeners = started.len(),
            "ports forwarded"
        );
        self.inner
            .table()
            .entry(container_id.to_owned())
            .or_default()
            .extend(started);
        Ok(())
    }

    /// Closes the listeners of `container_id`; connections already open through them
    /// may finish. The ports are free when this returns.
    pub async fn remove(&self, container_id: &str) {
        let _op = self.inner.ops.lock().await;
        let listeners = self.inner.table().remove(container_id);
        if let Some(listeners) = listeners {
            tracing::info!(
                container = container_id,
                listeners = listeners.len(),
                "forwards removed"
            );
            close(listeners).await;
        }
    }

    /// The forwards in place, ordered by container, protocol and host address.
    pub fn list(&self) -> Vec<Forward> {
        let table = self.inner.table();
        let mut out: Vec<Forward> = table
            .iter()
            .flat_map(|(id, listeners)| {
                listeners.iter().map(move |l| Forward {
                    container_id: id.clone(),
                    proto: l.binding.proto,
                    host_ip: l.binding.host.ip(),
                    host_port: l.binding.host.port(),
                    guest_ip: l.binding.guest.ip(),
                    guest_port: l.binding.guest.port(),
                    container_port: l.binding.container_port,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.container_id, a.proto, a.host_port, a.host_ip).cmp(&(
                &b.container_id,
                b.proto,
                b.host_port,
                b.host_ip,
            ))
        });
        out
    }

    /// The containers that have forwards.
    pub(crate) fn containers(&self) -> Vec<String> {
        self.inner.table().keys().cloned().collect()
    }
}

// === impl Inner ===

impl Inner {
    fn table(&self) -> MutexGuard<'_, HashMap<String, Vec<Listener>>> {
        // No code panics while holding it; a poisoned map is still consistent.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let table = self.table.get_mut().unwrap_or_else(PoisonError::into_inner);
        for l in table.values().flatten() {
            l.task.abort();
        }
    }
}

/// Closes listeners: their sockets are closed when this returns.
async fn close(listeners: Vec<Listener>) {
    for l in &listeners {
        l.task.abort();
    }
    for l in listeners {
        // An aborted task's future (and its socket) is dropped before its handle
        // resolves.
        let _ = l.task.await;
    }
}

/// Binds one host socket. `None` for an IPv6 address on a host without IPv6 (dockerd
/// reports `::` bindings even then).
fn bind(b: &Binding) -> Result<Option<Bound>, PortError> {
    let (proto, addr) = (b.proto, b.host);
    let fail = |source: io::Error| {
        if source.raw_os_error() == Some(nix::libc::EADDRINUSE) {
            PortError::AlreadyAllocated { addr, proto }
        } else {
            PortError::Bind {
                addr,
                proto,
                source,
            }
        }
    };
    let no_ipv6 = |e: &io::Error| {
        addr.is_ipv6()
            && matches!(
                e.raw_os_error(),
                Some(nix::libc::EAFNOSUPPORT | nix::libc::EADDRNOTAVAIL)
            )
    };
    let ty = match proto {
        crate::Proto::Tcp => Type::STREAM,
        crate::Proto::Udp => Type::DGRAM,
    };
    let attempt = || -> io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), ty, None)?;
        if addr.is_ipv6() {
            // `::` must not also take the IPv4 port: dockerd lists 0.0.0.0 separately.
            socket.set_only_v6(true)?;
        }
        if proto == crate::Proto::Tcp {
            // Rebinding a port whose old connections linger in TIME_WAIT. Never for
            // UDP, where it would let two sockets share a port silently.
            socket.set_reuse_address(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        if proto == crate::Proto::Tcp {
            socket.listen(BACKLOG)?;
        }
        Ok(socket)
    };
    let socket = match attempt() {
        Ok(s) => s,
        Err(e) if no_ipv6(&e) => {
            tracing::debug!(%addr, error = %e, "no IPv6 on the host: binding skipped");
            return Ok(None);
        }
        Err(e) => return Err(fail(e)),
    };
    let bound = match proto {
        crate::Proto::Tcp => tokio::net::TcpListener::from_std(socket.into()).map(Bound::Tcp),
        crate::Proto::Udp => tokio::net::UdpSocket::from_std(socket.into()).map(Bound::Udp),
    };
    bound.map(Some).map_err(fail)
}
