//! The coordinator's libp2p peer: listens and serves the job protocol, within limits.
//!
//! An actor owns the swarm ([`start`] spawns it); the rest of the coordinator talks to it
//! through a cheap [`NetworkHandle`]. Each inbound request is answered by [`JobService`] in
//! its own task so a slow store call never stalls the swarm; the answer comes back to the
//! actor over a channel, because only the swarm may send it.
//!
//! What a peer can make the coordinator hold is bounded ([`NetworkLimits`]):
//! - connections: in total, per peer, and in their handshake (`buildsrs_p2p::Limiter`);
//!   approved builders are admitted beyond the total, so strangers filling every slot do not
//!   lock out the builders doing the work;
//! - job-protocol streams per connection (the rest are dropped unread);
//! - requests: per peer at once and per second (a token bucket), and in total at once, where
//!   peers other than approved builders get only half of the total, so that no number of
//!   strangers can take every place approved builders need. A request beyond them is
//!   answered at once with [`RejectKind::Throttled`], without the store being asked, so a
//!   peer asking as fast as it can costs a map lookup per request;
//! - state: what the actor keeps per peer, and the peer's session, go with the peer's last
//!   connection (or, when a request was still being answered then, with its answer).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use buildsrs_keys::Identity;
use buildsrs_keys::PublicKey;
use buildsrs_p2p::libp2p::{
    Multiaddr, PeerId,
    request_response::{self, ResponseChannel},
    swarm::SwarmEvent,
};
use buildsrs_p2p::{Behaviour, BehaviourEvent, ConnectionLimits, Limits, Role, build_swarm_with};
use buildsrs_protocol::{RejectKind, Request, Response, Standing};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::jobs::JobService;

/// What the coordinator takes from its peers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetworkLimits {
    /// Connections, and job-protocol streams per connection.
    pub swarm: Limits,
    /// Requests one peer may have in flight (asked, not yet answered).
    pub max_requests_per_peer: u32,
    /// Requests one peer may make per second, sustained.
    pub requests_per_sec: f64,
    /// Requests one peer may make at once after a quiet time (a node starting with many job
    /// slots asks for a job per slot).
    pub request_burst: u32,
    /// Requests of all peers in flight at once; peers other than approved builders are let
    /// in only while fewer than half of these are in flight.
    pub max_requests_in_flight: u32,
}

impl Default for NetworkLimits {
    fn default() -> Self {
        Self {
            swarm: Limits {
                connections: ConnectionLimits::default(),
                max_streams_per_connection: 32,
            },
            max_requests_per_peer: 16,
            requests_per_sec: 10.0,
            request_burst: 80,
            max_requests_in_flight: 256,
        }
    }
}

/// What the network actor holds now, for metrics and tests.
#[derive(Debug, Default)]
pub struct NetworkStats {
    peers: AtomicUsize,
    in_flight: AtomicUsize,
    throttled: AtomicU64,
}

impl NetworkStats {
    /// Peers the actor keeps state for (connected, or with a request still being answered).
    pub fn peers(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests answered as throttled since the start.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
}

/// Talks to the network actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NetworkHandle {
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    stats: Arc<NetworkStats>,
}

impl NetworkHandle {
    /// The coordinator's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses it listens on, each ending in `/p2p/<peer id>`: what nodes dial.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// What the actor holds now.
    pub fn stats(&self) -> &NetworkStats {
        &self.stats
    }
}

/// Starts listening on `listen` and serving `service` until `shutdown` fires, within
/// `limits`. Builders the store holds as approved are admitted beyond the connection limit
/// from the start. Returns once every listener is bound, with the handle and the actor's task.
pub async fn start(
    identity: &Identity,
    listen: &[Multiaddr],
    service: JobService,
    limits: NetworkLimits,
    shutdown: CancellationToken,
) -> Result<(NetworkHandle, JoinHandle<()>)> {
    let mut swarm = build_swarm_with(identity, Role::Coordinator, &agent(), limits.swarm)?;
    for builder in service.approved_builders().await? {
        swarm.behaviour_mut().limits.reserve(builder.peer_id());
    }
    for addr in listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("listening on {addr}"))?;
    }
    let peer_id = *swarm.local_peer_id();
    let mut listen_addrs = Vec::new();
    let bound = tokio::time::timeout(Duration::from_secs(10), async {
        while listen_addrs.len() < listen.len() {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    listen_addrs.push(address.with_p2p(peer_id).unwrap_or_else(|a| a));
                }
                SwarmEvent::ListenerError { error, .. } => bail!("listener failed: {error}"),
                SwarmEvent::ListenerClosed {
                    reason: Err(error), ..
                } => bail!("listener closed: {error}"),
                _ => {}
            }
        }
        Ok(())
    })
    .await;
    match bound {
        Ok(result) => result?,
        Err(_) => bail!("timed out waiting for the listeners on {listen:?}"),
    }
    for addr in &listen_addrs {
        tracing::info!("libp2p: listening on {addr}");
    }
    let stats = Arc::new(NetworkStats::default());
    let handle = NetworkHandle {
        peer_id,
        listen_addrs,
        stats: Arc::clone(&stats),
    };
    let actor = Actor {
        swarm,
        service,
        limits,
        peers: HashMap::new(),
        in_flight: 0,
        stats,
        shutdown,
    };
    Ok((handle, tokio::spawn(actor.run())))
}

fn agent() -> String {
    format!("buildsrs-coordinator/{}", env!("CARGO_PKG_VERSION"))
}

/// What the actor keeps per peer, while it is connected or has a request being answered.
#[derive(Debug)]
struct Peer {
    connections: u32,
    in_flight: u32,
    /// The token bucket: requests it may make now, refilled at `requests_per_sec`.
    tokens: f64,
    refilled: Instant,
}

struct Actor {
    swarm: buildsrs_p2p::libp2p::Swarm<Behaviour>,
    service: JobService,
    limits: NetworkLimits,
    peers: HashMap<PeerId, Peer>,
    in_flight: u32,
    stats: Arc<NetworkStats>,
    shutdown: CancellationToken,
}

/// An answer on its way back to the actor: who asked, what was asked, and the answer.
struct Answer {
    peer: PeerId,
    hello: bool,
    channel: ResponseChannel<Response>,
    response: Response,
}

impl Actor {
    async fn run(mut self) {
        // As many as may be in flight, so a finished request never waits to hand its answer in.
        let capacity = usize::try_from(self.limits.max_requests_in_flight.max(1)).unwrap_or(1);
        let (answers, mut answers_rx) = mpsc::channel::<Answer>(capacity);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                Some(answer) = answers_rx.recv() => self.answered(answer),
                event = self.swarm.select_next_some() => self.event(event, &answers),
            }
        }
        tracing::info!("libp2p: stopped");
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>, answers: &mpsc::Sender<Answer>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Jobs(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => self.request(peer, request, channel, answers),
            SwarmEvent::Behaviour(BehaviourEvent::Jobs(
                request_response::Event::InboundFailure { peer, error, .. },
            )) => tracing::debug!("job request from {peer} failed: {error}"),
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                tracing::debug!("libp2p: {peer_id} connected");
                let burst = f64::from(self.limits.request_burst);
                self.peers
                    .entry(peer_id)
                    .or_insert_with(|| Peer {
                        connections: 0,
                        in_flight: 0,
                        tokens: burst,
                        refilled: Instant::now(),
                    })
                    .connections += 1;
                self.publish_stats();
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                tracing::debug!("libp2p: {peer_id} disconnected ({cause:?})");
                if let Some(peer) = self.peers.get_mut(&peer_id) {
                    peer.connections = peer.connections.saturating_sub(1);
                }
                self.forget_if_gone(peer_id);
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                // Refusals by the limits land here; a flood of them is not worth a warning.
                tracing::debug!("libp2p: incoming connection refused or failed: {error}");
            }
            _ => {}
        }
    }

    /// Lets a request through to the service, or answers it as throttled at once.
    fn request(
        &mut self,
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
        answers: &mpsc::Sender<Answer>,
    ) {
        let Ok(key) = PublicKey::from_peer_id(&peer) else {
            // Not an ed25519 peer: it cannot be a builder.
            self.respond(
                channel,
                Response::rejected(
                    RejectKind::Forbidden,
                    "builders are identified by ed25519 keys",
                ),
            );
            return;
        };
        if let Some(why) = self.admit(peer) {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("libp2p: request from {peer} throttled: {why}");
            self.respond(channel, Response::rejected(RejectKind::Throttled, why));
            return;
        }
        self.in_flight += 1;
        self.publish_stats();
        let hello = matches!(request, Request::Hello(_));
        let service = self.service.clone();
        let answers = answers.clone();
        tokio::spawn(async move {
            let response = service.handle(key, request).await;
            // Fails only when the actor has stopped.
            let _ = answers
                .send(Answer {
                    peer,
                    hello,
                    channel,
                    response,
                })
                .await;
        });
    }

    /// Takes a request of `peer` in, or says why not: the total in flight (half of it for
    /// peers other than approved builders), the peer's in flight, the peer's rate.
    fn admit(&mut self, peer: PeerId) -> Option<String> {
        let total = if self.swarm.behaviour().limits.is_reserved(&peer) {
            self.limits.max_requests_in_flight
        } else {
            self.limits.max_requests_in_flight.div_ceil(2)
        };
        if self.in_flight >= total {
            return Some(format!(
                "the coordinator is answering {} requests already; ask again in a few seconds",
                self.in_flight
            ));
        }
        let limits = self.limits;
        let now = Instant::now();
        let state = self.peers.entry(peer).or_insert_with(|| Peer {
            connections: 0,
            in_flight: 0,
            tokens: f64::from(limits.request_burst),
            refilled: now,
        });
        if state.in_flight >= limits.max_requests_per_peer {
            return Some(format!(
                "at most {} requests of one peer at once; ask again when one is answered",
                limits.max_requests_per_peer
            ));
        }
        let elapsed = now.duration_since(state.refilled).as_secs_f64();
        state.tokens = elapsed
            .mul_add(limits.requests_per_sec, state.tokens)
            .min(f64::from(limits.request_burst));
        state.refilled = now;
        if state.tokens < 1.0 {
            return Some(format!(
                "more than {} requests per second; ask again in a second",
                limits.requests_per_sec
            ));
        }
        state.tokens -= 1.0;
        state.in_flight += 1;
        None
    }

    /// Hands an answer to its asker and settles the books.
    fn answered(&mut self, answer: Answer) {
        let Answer {
            peer,
            hello,
            channel,
            response,
        } = answer;
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(state) = self.peers.get_mut(&peer) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        if hello {
            // Approved builders are admitted beyond the connection limit from now on (and on
            // their next connections); a builder revoked since loses that at its next hello.
            let limiter = &mut self.swarm.behaviour_mut().limits;
            match &response {
                Response::Welcome {
                    standing: Standing::Approved,
                } => limiter.reserve(peer),
                Response::Welcome { .. } => limiter.release(&peer),
                _ => {}
            }
        }
        self.respond(channel, response);
        // A peer that left while this was answered (a hello's session was stored after it
        // left) is forgotten now.
        self.forget_if_gone(peer);
        self.publish_stats();
    }

    fn respond(&mut self, channel: ResponseChannel<Response>, response: Response) {
        // Fails only when the asker has gone; its lease expires on its own.
        let _ = self
            .swarm
            .behaviour_mut()
            .jobs
            .send_response(channel, response);
    }

    /// Forgets a peer with no connection and nothing in flight: its state here and its
    /// session (a node says hello again on its next connection).
    fn forget_if_gone(&mut self, peer: PeerId) {
        let gone = self
            .peers
            .get(&peer)
            .is_none_or(|p| p.connections == 0 && p.in_flight == 0);
        if gone {
            self.peers.remove(&peer);
            if let Ok(key) = PublicKey::from_peer_id(&peer) {
                self.service.sessions().remove(&key);
            }
            self.publish_stats();
        }
    }

    fn publish_stats(&self) {
        self.stats.peers.store(self.peers.len(), Ordering::Relaxed);
        self.stats.in_flight.store(
            usize::try_from(self.in_flight).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
    }
}
