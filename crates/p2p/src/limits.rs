//! Connection limits: how many connections a swarm takes, in total, per peer, and while
//! their handshakes run.
//!
//! libp2p's own `connection_limits` behaviour does the same checks but keeps an entry for
//! every peer id it ever saw (it empties the entry on disconnect and never removes it), so a
//! peer making a fresh key per connection grows it without bound. This one forgets a peer
//! when its last connection closes: its state is bounded by the connections it admits.
//!
//! Some peers may be *reserved* (the coordinator reserves approved builders): the total limit
//! does not refuse them, so strangers filling every slot do not lock out the builders that do
//! the work. The per-peer limit applies to everyone.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::{Endpoint, Multiaddr, transport::PortUse};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, behaviour::ConnectionEstablished, dummy,
};

/// How many connections a swarm takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Incoming connections still in their handshake (each costs a key exchange).
    pub max_pending_incoming: u32,
    /// Established connections in total (reserved peers are admitted beyond it).
    pub max_established: u32,
    /// Established connections of one peer (a node reconnecting briefly has two).
    pub max_established_per_peer: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_pending_incoming: 64,
            max_established: 1024,
            max_established_per_peer: 2,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum LimitExceeded {
    /// Too many incoming handshakes at once.
    #[error("{0} incoming connections are in their handshake already")]
    Pending(u32),
    /// Too many connections.
    #[error("{0} connections are established already")]
    Established(u32),
    /// Too many connections of this peer.
    #[error("this peer has {0} connections already")]
    PerPeer(u32),
}

/// The behaviour enforcing [`ConnectionLimits`]. It has no protocol of its own.
#[derive(Debug)]
pub struct Limiter {
    limits: ConnectionLimits,
    pending_incoming: HashSet<ConnectionId>,
    established: HashMap<PeerId, HashSet<ConnectionId>>,
    total: usize,
    reserved: HashSet<PeerId>,
}

impl Limiter {
    /// A limiter enforcing `limits`.
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            pending_incoming: HashSet::new(),
            established: HashMap::new(),
            total: 0,
            reserved: HashSet::new(),
        }
    }

    /// Admits `peer` beyond the total limit from now on (its own limit still applies).
    pub fn reserve(&mut self, peer: PeerId) {
        self.reserved.insert(peer);
    }

    /// Undoes [`Self::reserve`].
    pub fn release(&mut self, peer: &PeerId) {
        self.reserved.remove(peer);
    }

    /// Whether `peer` is reserved.
    pub fn is_reserved(&self, peer: &PeerId) -> bool {
        self.reserved.contains(peer)
    }

    /// Established connections now.
    pub fn established(&self) -> usize {
        self.total
    }

    /// Peers with at least one established connection: everything the limiter remembers
    /// per peer, besides the reserved ones.
    pub fn peers(&self) -> usize {
        self.established.len()
    }

    fn admit(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        let of_peer = self.established.get(peer).map_or(0, HashSet::len);
        if of_peer >= as_usize(self.limits.max_established_per_peer) {
            return Err(ConnectionDenied::new(LimitExceeded::PerPeer(
                self.limits.max_established_per_peer,
            )));
        }
        if self.total >= as_usize(self.limits.max_established) && !self.reserved.contains(peer) {
            return Err(ConnectionDenied::new(LimitExceeded::Established(
                self.limits.max_established,
            )));
        }
        Ok(())
    }
}

fn as_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl NetworkBehaviour for Limiter {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if self.pending_incoming.len() >= as_usize(self.limits.max_pending_incoming) {
            return Err(ConnectionDenied::new(LimitExceeded::Pending(
                self.limits.max_pending_incoming,
            )));
        }
        self.pending_incoming.insert(connection_id);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending_incoming.remove(&connection_id);
        self.admit(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => {
                let new = self
                    .established
                    .entry(peer_id)
                    .or_default()
                    .insert(connection_id);
                self.total += usize::from(new);
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => {
                if let Some(connections) = self.established.get_mut(&peer_id) {
                    if connections.remove(&connection_id) {
                        self.total = self.total.saturating_sub(1);
                    }
                    // Forget the peer with its last connection: nothing here outlives them.
                    if connections.is_empty() {
                        self.established.remove(&peer_id);
                    }
                }
            }
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.pending_incoming.remove(&connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
