//! The node's libp2p client: one connection to a coordinator, kept up, and a way to ask.
//!
//! An actor owns the swarm; [`Client`] is its cheap handle, with one typed method per request
//! of the job protocol ([`Client::request_job`], [`Client::renew`], [`Client::submit`],
//! [`Client::goodbye`]), each waiting for the answer and turning it into what the caller can
//! act on; an answer that does not belong to the request is an error. The actor dials the configured coordinator
//! addresses (and nothing else), redials with exponential backoff when the connection drops,
//! and sends the node's hello first on every new connection, so the coordinator always knows
//! who is asking before it is asked for work. A hello the coordinator puts off (`throttled`
//! when it is busy, `unavailable` when its line of new builders is full) is said again a
//! little later.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use buildsrs_domain::LeaseId;
use buildsrs_keys::Identity;
use buildsrs_p2p::libp2p::{
    Multiaddr, PeerId, Swarm, multiaddr::Protocol, request_response, swarm::SwarmEvent,
};
use buildsrs_p2p::{Behaviour, BehaviourEvent, Role, build_swarm};
use buildsrs_protocol::{
    Hello, Job, JobResult, NoJobReason, RejectKind, Request, Response, Standing,
};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest wait between redials.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long to wait before saying hello again after the coordinator put it off (busy, or
/// its line of builders waiting for approval full).
const HELLO_AGAIN: Duration = Duration::from_secs(10);

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

/// The answer to a job request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobAnswer {
    /// A job, under a fresh lease.
    Job(Job),
    /// Nothing now; ask again after `retry_after` (clamped to 1 s – 5 min, whatever the
    /// coordinator said).
    NoJob {
        /// Why.
        reason: NoJobReason,
        /// When to ask again.
        retry_after: Duration,
    },
}

/// The answer to a lease renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The lease now runs until this time (seconds since the Unix epoch).
    Renewed(i64),
    /// Not renewed: the task went elsewhere or the lease ended.
    Refused {
        /// What kind of refusal.
        kind: RejectKind,
        /// Why.
        reason: String,
    },
}

/// The answer to a submitted result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Recorded; `counted` says whether it counts toward the decision, `reason` why not.
    Recorded {
        /// Whether it counts.
        counted: bool,
        /// Why it does not, when it does not.
        reason: Option<String>,
    },
    /// Refused; nothing changed. `Unavailable` and `Throttled` are worth retrying, the rest
    /// is not.
    Refused {
        /// What kind of refusal.
        kind: RejectKind,
        /// Why.
        reason: String,
    },
}

impl Client {
    /// Asks for a job. A refusal is an error (the coordinator could not answer now).
    pub async fn request_job(&self) -> Result<JobAnswer> {
        match self.request(Request::RequestJob).await? {
            Response::Job(job) => Ok(JobAnswer::Job(job)),
            Response::NoJob {
                reason,
                retry_after_secs,
            } => Ok(JobAnswer::NoJob {
                reason,
                retry_after: Duration::from_secs(u64::from(retry_after_secs.clamp(1, 300))),
            }),
            other => unexpected("a job request", other),
        }
    }

    /// Renews a lease.
    pub async fn renew(&self, lease_id: LeaseId, epoch: i64) -> Result<Renewal> {
        match self
            .request(Request::RenewLease { lease_id, epoch })
            .await?
        {
            Response::Renewed { deadline_unix } => Ok(Renewal::Renewed(deadline_unix)),
            Response::Rejected { kind, reason } => Ok(Renewal::Refused { kind, reason }),
            other => unexpected("a renewal", other),
        }
    }

    /// Submits a job's result.
    pub async fn submit(&self, result: JobResult) -> Result<Submitted> {
        match self.request(Request::Submit(result)).await? {
            Response::Accepted { counted, reason } => Ok(Submitted::Recorded { counted, reason }),
            Response::Rejected { kind, reason } => Ok(Submitted::Refused { kind, reason }),
            other => unexpected("a result", other),
        }
    }

    /// Says the node is leaving.
    pub async fn goodbye(&self) -> Result<()> {
        match self.request(Request::Goodbye).await? {
            Response::Farewell => Ok(()),
            other => unexpected("a goodbye", other),
        }
    }

    /// Sends one request and waits for the answer. Fails when the coordinator is not
    /// connected or the request fails in transit; the caller decides whether to retry.
    async fn request(&self, request: Request) -> Result<Response> {
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

/// An answer that does not belong to the request.
fn unexpected<T>(what: &str, answer: Response) -> Result<T> {
    match answer {
        Response::Rejected { kind, reason } => {
            bail!("the coordinator refused {what} ({kind:?}): {reason}")
        }
        other => bail!("unexpected answer to {what}: {other:?}"),
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
        hello_again: None,
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
    /// When to say hello again, after a hello the coordinator put off.
    hello_again: Option<tokio::time::Instant>,
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
            let hello_again = self.hello_again;
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = &mut redial, if !self.connected => {
                    self.dial();
                    redial.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(3600));
                }
                () = tokio::time::sleep_until(hello_again.unwrap_or_else(tokio::time::Instant::now)),
                    if hello_again.is_some() =>
                {
                    self.hello_again = None;
                    if self.connected {
                        self.send_hello();
                    }
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
                        Response::Rejected {
                            kind: kind @ (RejectKind::Throttled | RejectKind::Unavailable),
                            reason,
                        } => {
                            tracing::warn!(
                                "the coordinator put our hello off ({kind:?}: {reason}); \
                                 saying it again in {HELLO_AGAIN:?}"
                            );
                            self.hello_again = Some(tokio::time::Instant::now() + HELLO_AGAIN);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use buildsrs_protocol::BlobAddress;

    use super::*;

    /// A coordinator that answers the first hello `throttled` and the next one `welcome`:
    /// the node says hello again on its own and gets welcomed.
    #[tokio::test]
    async fn a_hello_put_off_is_said_again() {
        let coordinator_key = Identity::from_seed([1; 32]);
        let mut coordinator = build_swarm(&coordinator_key, Role::Coordinator, "test").unwrap();
        coordinator
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = coordinator.select_next_some().await
            {
                break address.with_p2p(coordinator_key.peer_id()).unwrap();
            }
        };
        let hellos = tokio::spawn(async move {
            let mut hellos = 0;
            loop {
                if let SwarmEvent::Behaviour(BehaviourEvent::Jobs(
                    request_response::Event::Message {
                        message:
                            request_response::Message::Request {
                                request: Request::Hello(_),
                                channel,
                                ..
                            },
                        ..
                    },
                )) = coordinator.select_next_some().await
                {
                    hellos += 1;
                    let answer = if hellos == 1 {
                        Response::rejected(RejectKind::Throttled, "busy")
                    } else {
                        Response::Welcome {
                            standing: Standing::Approved,
                        }
                    };
                    let _ = coordinator
                        .behaviour_mut()
                        .jobs
                        .send_response(channel, answer);
                }
            }
        });
        let shutdown = CancellationToken::new();
        let hello = Hello {
            agent: "test".into(),
            name: "n".into(),
            targets: vec![],
            toolchains: vec![],
            capacity: 1,
            blobs: BlobAddress {
                endpoint_id: "x".into(),
                addrs: vec![],
            },
        };
        let (client, actor) = start(
            &Identity::from_seed([2; 32]),
            addr,
            hello,
            "test",
            shutdown.clone(),
        )
        .unwrap();
        let standing = tokio::time::timeout(
            HELLO_AGAIN + Duration::from_secs(10),
            client.wait_welcomed(&shutdown),
        )
        .await
        .unwrap();
        assert_eq!(standing, Some(Standing::Approved));
        shutdown.cancel();
        actor.await.unwrap();
        hellos.abort();
    }
}
