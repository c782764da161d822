//! The node's libp2p client: one connection to a coordinator, kept up, and a way to ask.
//!
//! An actor owns the swarm; [`Client`] is its cheap handle. [`Client::request`] sends one
//! job-protocol request and waits for the answer. The actor dials the configured coordinator
//! addresses (and nothing else), redials with exponential backoff when the connection drops,
//! and sends the node's hello first on every new connection, so the coordinator always knows
//! who is asking before it is asked for work.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use buildsrs_keys::Identity;
use buildsrs_p2p::libp2p::{
    Multiaddr, PeerId, Swarm, multiaddr::Protocol, request_response, swarm::SwarmEvent,
};
use buildsrs_p2p::{Behaviour, BehaviourEvent, Role, build_swarm};
use buildsrs_protocol::{Hello, NoJobReason, Request, Response, Standing};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest wait between redials.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where the node stands with its coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Not connected (or hello not answered yet).
    Down,
    /// Connected and welcomed with this standing.
    Up(Standing),
}

/// Asks the coordinator. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    requests: mpsc::Sender<(Request, oneshot::Sender<Result<Response>>)>,
    link: watch::Receiver<Link>,
}

impl Client {
    /// Sends one request and waits for the answer. Fails when the coordinator is not
    /// connected or the request fails in transit; the caller decides whether to retry.
    pub async fn request(&self, request: Request) -> Result<Response> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((request, tx))
            .await
            .map_err(|_| anyhow!("the network actor has stopped"))?;
        rx.await
            .map_err(|_| anyhow!("the network actor has stopped"))?
    }

    /// Waits until the coordinator has welcomed the node (or `shutdown` fires).
    pub async fn wait_welcomed(&self, shutdown: &CancellationToken) -> Option<Standing> {
        let mut link = self.link.clone();
        loop {
            if let Link::Up(standing) = *link.borrow_and_update() {
                return Some(standing);
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                changed = link.changed() => if changed.is_err() { return None },
            }
        }
    }
}

/// Starts the client for the coordinator at `coordinator` (a multiaddr ending in
/// `/p2p/<peer id>`). Returns its handle and task; the task ends when `shutdown` fires.
pub fn start(
    identity: &Identity,
    coordinator: Multiaddr,
    hello: Hello,
    agent: &str,
    shutdown: CancellationToken,
) -> Result<(Client, JoinHandle<()>)> {
    let Some(Protocol::P2p(coordinator_id)) = coordinator.iter().last() else {
        bail!("the coordinator address {coordinator} must end in /p2p/<peer id>");
    };
    let swarm = build_swarm(identity, Role::Node, agent).context("setting up libp2p")?;
    let (requests, requests_rx) = mpsc::channel(16);
    let (link_tx, link) = watch::channel(Link::Down);
    let actor = Actor {
        swarm,
        coordinator,
        coordinator_id,
        hello,
        link: link_tx,
        requests: requests_rx,
        pending: HashMap::new(),
        hello_request: None,
        backoff: Duration::from_millis(250),
        connected: false,
        shutdown,
    };
    Ok((Client { requests, link }, tokio::spawn(actor.run())))
}

struct Actor {
    swarm: Swarm<Behaviour>,
    coordinator: Multiaddr,
    coordinator_id: PeerId,
    hello: Hello,
    link: watch::Sender<Link>,
    requests: mpsc::Receiver<(Request, oneshot::Sender<Result<Response>>)>,
    pending: HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<Response>>>,
    hello_request: Option<request_response::OutboundRequestId>,
    backoff: Duration,
    connected: bool,
    shutdown: CancellationToken,
}

impl Actor {
    async fn run(mut self) {
        self.dial();
        let redial = tokio::time::sleep(Duration::MAX);
        tokio::pin!(redial);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = &mut redial, if !self.connected => {
                    self.dial();
                    redial.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(3600));
                }
                request = self.requests.recv() => match request {
                    Some((request, reply)) => self.send(request, reply),
                    // Every handle is gone: nobody can use the connection any more.
                    None => break,
                },
                event = self.swarm.select_next_some() => {
                    if let Some(wait) = self.event(event) {
                        redial.as_mut().reset(tokio::time::Instant::now() + wait);
                    }
                }
            }
        }
        // Fail whatever is still waiting, so no caller hangs on a stopped actor.
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(anyhow!("the node is shutting down")));
        }
    }

    fn dial(&mut self) {
        if let Err(error) = self.swarm.dial(self.coordinator.clone()) {
            tracing::warn!("dialling {}: {error}", self.coordinator);
        }
    }

    fn send(&mut self, request: Request, reply: oneshot::Sender<Result<Response>>) {
        if !self.connected {
            let _ = reply.send(Err(anyhow!("not connected to the coordinator")));
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .jobs
            .send_request(&self.coordinator_id, request);
        self.pending.insert(id, reply);
    }

    /// Handles one swarm event; returns a redial delay when the connection is gone.
    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Option<Duration> {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == self.coordinator_id => {
                tracing::info!("connected to the coordinator {peer_id}");
                self.connected = true;
                self.backoff = Duration::from_millis(250);
                self.send_hello();
                None
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if peer_id == self.coordinator_id => {
                tracing::warn!("lost the coordinator; redialling in {:?}", self.backoff);
                self.connected = false;
                self.link.send_replace(Link::Down);
                Some(self.next_backoff())
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. }
                if peer_id.is_none_or(|p| p == self.coordinator_id) && !self.connected =>
            {
                tracing::warn!(
                    "cannot reach the coordinator ({error}); retrying in {:?}",
                    self.backoff
                );
                Some(self.next_backoff())
            }
            SwarmEvent::Behaviour(BehaviourEvent::Jobs(event)) => {
                self.jobs_event(event);
                None
            }
            _ => None,
        }
    }

    fn send_hello(&mut self) {
        let hello = Request::Hello(self.hello.clone());
        let id = self
            .swarm
            .behaviour_mut()
            .jobs
            .send_request(&self.coordinator_id, hello);
        self.hello_request = Some(id);
    }

    fn next_backoff(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        wait
    }

    fn jobs_event(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if self.hello_request == Some(request_id) {
                    self.hello_request = None;
                    match response {
                        Response::Welcome { standing } => {
                            tracing::info!("the coordinator welcomes us: {standing:?}");
                            self.link.send_replace(Link::Up(standing));
                        }
                        other => tracing::warn!("the coordinator refused our hello: {other:?}"),
                    }
                } else if let Some(reply) = self.pending.remove(&request_id) {
                    if let Response::NoJob {
                        reason: NoJobReason::HelloFirst,
                        ..
                    } = response
                    {
                        // The coordinator lost our hello (it restarted on a live connection,
                        // or our hello failed in transit): say it again.
                        self.send_hello();
                    }
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if self.hello_request == Some(request_id) {
                    tracing::warn!("hello failed: {error}");
                    self.hello_request = None;
                } else if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(anyhow!("request failed: {error}")));
                }
            }
            _ => {}
        }
    }
}
