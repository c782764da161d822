//! The coordinator's libp2p peer: listens, serves the job protocol, gossips announcements.
//!
//! An actor owns the swarm ([`start`] spawns it); the rest of the coordinator talks to it
//! through a cheap [`NetworkHandle`]. Each inbound request is answered by [`JobService`] in
//! its own task so a slow store call never stalls the swarm; the answer comes back to the
//! actor over a channel, because only the swarm may send it.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use buildsrs_keys::{Identity, PublicKey};
use buildsrs_p2p::libp2p::{
    Multiaddr, PeerId,
    request_response::{self, ResponseChannel},
    swarm::SwarmEvent,
};
use buildsrs_p2p::{Behaviour, BehaviourEvent, Role, build_swarm, verified_topic};
use buildsrs_protocol::{RejectKind, Response, VerifiedAnnouncement};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::jobs::JobService;

/// Talks to the network actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
}

#[derive(Debug)]
enum Command {
    Announce(Vec<u8>),
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

    /// Gossips that an artifact is verified (best effort: with no subscribed peer, nobody
    /// hears it, and the artifact is verified all the same).
    pub async fn announce(&self, announcement: &VerifiedAnnouncement) -> Result<()> {
        let bytes = announcement.to_cbor()?;
        self.commands
            .send(Command::Announce(bytes))
            .await
            .context("the network actor has stopped")
    }
}

/// Starts listening on `listen` and serving `service` until `shutdown` fires. Returns once
/// every listener is bound, with the handle and the actor's task.
pub async fn start(
    identity: &Identity,
    listen: &[Multiaddr],
    service: JobService,
    shutdown: CancellationToken,
) -> Result<(NetworkHandle, JoinHandle<()>)> {
    let mut swarm = build_swarm(identity, Role::Coordinator, &agent())?;
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
    let (commands, commands_rx) = mpsc::channel(64);
    let handle = NetworkHandle {
        commands,
        peer_id,
        listen_addrs,
    };
    let actor = Actor {
        swarm,
        service,
        commands: commands_rx,
        shutdown,
    };
    Ok((handle, tokio::spawn(actor.run())))
}

fn agent() -> String {
    format!("buildsrs-coordinator/{}", env!("CARGO_PKG_VERSION"))
}

struct Actor {
    swarm: buildsrs_p2p::libp2p::Swarm<Behaviour>,
    service: JobService,
    commands: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
}

type Answer = (ResponseChannel<Response>, Response);

impl Actor {
    async fn run(mut self) {
        let (answers, mut answers_rx) = mpsc::channel::<Answer>(256);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                Some((channel, response)) = answers_rx.recv() => {
                    // Fails only when the asker has gone; its lease expires on its own.
                    let _ = self.swarm.behaviour_mut().jobs.send_response(channel, response);
                }
                Some(command) = self.commands.recv() => self.command(command),
                event = self.swarm.select_next_some() => self.event(event, &answers),
            }
        }
        tracing::info!("libp2p: stopped");
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Announce(bytes) => {
                if let Err(error) = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(verified_topic(), bytes)
                {
                    tracing::debug!("announcement not gossiped: {error}");
                }
            }
        }
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
            })) => {
                let Ok(key) = PublicKey::from_peer_id(&peer) else {
                    // Not an ed25519 peer: it cannot be a builder.
                    let refusal = Response::rejected(
                        RejectKind::Forbidden,
                        "builders are identified by ed25519 keys",
                    );
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .jobs
                        .send_response(channel, refusal);
                    return;
                };
                let service = self.service.clone();
                let answers = answers.clone();
                tokio::spawn(async move {
                    let response = service.handle(key, request).await;
                    let _ = answers.send((channel, response)).await;
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Jobs(
                request_response::Event::InboundFailure { peer, error, .. },
            )) => tracing::debug!("job request from {peer} failed: {error}"),
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                tracing::debug!("libp2p: {peer_id} connected");
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                tracing::debug!("libp2p: {peer_id} disconnected ({cause:?})");
            }
            _ => {}
        }
    }
}
