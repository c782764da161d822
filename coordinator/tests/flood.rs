//! Denial of service over the real network: a coordinator's libp2p peer on 127.0.0.1, many
//! fresh keys saying hello and one peer asking as fast as it can, while an honest builder
//! takes a job and submits its result. What the coordinator holds stays bounded, the flood
//! is answered `throttled` or `unavailable`, and the honest builder's work goes through.
//!
//! How many fresh keys: 10,000 by default (`BUILDSRS_FLOOD_HELLOS=N` for another number).
//! The curve crates are optimised in test builds (see the workspace `Cargo.toml`), so a hello
//! costs a few ms of CPU: about 65 hellos/s, 2.5 minutes, on two busy cores.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use buildsrs_coordinator::network::{self, NetworkLimits};
use buildsrs_keys::Identity;
use buildsrs_p2p::libp2p::{Multiaddr, PeerId, Swarm, request_response, swarm::SwarmEvent};
use buildsrs_p2p::{Behaviour, BehaviourEvent, ConnectionLimits, Limits, Role, build_swarm};
use buildsrs_protocol::{Attested, Outcome, RejectKind, Request, Response, Standing};
use buildsrs_store::{LeaseId, Policy, Store, store_test};
use futures::StreamExt;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::jobs::{attestation, hello, scene, submit};

/// Fresh keys that say hello, each on a connection of its own (see the module docs).
fn hellos() -> usize {
    std::env::var("BUILDSRS_FLOOD_HELLOS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}
/// Of them, at once.
const AT_ONCE: usize = 16;
/// New keys the store lets wait for approval.
const LINE: u32 = 100;
/// Requests the coordinator answers at once.
const IN_FLIGHT: u32 = 8;

/// A peer with one connection to the coordinator that asks one thing at a time.
struct Client {
    swarm: Swarm<Behaviour>,
    coordinator: PeerId,
}

impl Client {
    async fn connect(identity: &Identity, addr: &Multiaddr) -> Result<Self, String> {
        let mut swarm =
            build_swarm(identity, Role::Node, "flood-test").map_err(|e| e.to_string())?;
        swarm.dial(addr.clone()).map_err(|e| e.to_string())?;
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    return Ok(Self {
                        swarm,
                        coordinator: peer_id,
                    });
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
                _ => {}
            }
        }
    }

    async fn ask(&mut self, request: Request) -> Result<Response, String> {
        let id = self
            .swarm
            .behaviour_mut()
            .jobs
            .send_request(&self.coordinator, request);
        loop {
            match self.swarm.select_next_some().await {
                SwarmEvent::Behaviour(BehaviourEvent::Jobs(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                })) if request_id == id => return Ok(response),
                SwarmEvent::Behaviour(BehaviourEvent::Jobs(
                    request_response::Event::OutboundFailure {
                        request_id, error, ..
                    },
                )) if request_id == id => return Err(error.to_string()),
                SwarmEvent::ConnectionClosed { .. } => return Err("connection closed".into()),
                _ => {}
            }
        }
    }
}

/// How the flood of hellos was answered.
#[derive(Debug, Default)]
struct HelloCounts {
    welcomed: AtomicUsize,
    unavailable: AtomicUsize,
    throttled: AtomicUsize,
    other: AtomicUsize,
}

/// One worker of the hello flood: fresh keys, one connection each, until `next` reaches
/// `total`. The connection goes when the client is dropped.
async fn say_hellos(
    addr: Multiaddr,
    total: usize,
    next: Arc<AtomicUsize>,
    counts: Arc<HelloCounts>,
) {
    while next.fetch_add(1, Ordering::Relaxed) < total {
        let identity = Identity::generate().unwrap();
        let answer = match Client::connect(&identity, &addr).await {
            Ok(mut client) => client.ask(hello("flood")).await,
            Err(error) => Err(error),
        };
        let counter = match answer {
            Ok(Response::Welcome {
                standing: Standing::Pending,
            }) => &counts.welcomed,
            Ok(Response::Rejected {
                kind: RejectKind::Unavailable,
                ..
            }) => &counts.unavailable,
            Ok(Response::Rejected {
                kind: RejectKind::Throttled,
                ..
            }) => &counts.throttled,
            _ => &counts.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How the fast asker's requests were answered.
#[derive(Debug, Default)]
struct FloodCounts {
    throttled: usize,
    answered: usize,
    failed: usize,
}

/// Asks as fast as it can, with as many requests in flight as the coordinator takes streams
/// on one connection (`streams`), until `stop`: job requests and renewals of a lease it does
/// not hold, both of which reach the store when they are let through.
async fn ask_as_fast_as_possible(
    mut client: Client,
    streams: usize,
    stop: Arc<AtomicBool>,
) -> FloodCounts {
    let mut counts = FloodCounts::default();
    let mut in_flight = 0;
    let mut n = 0u64;
    loop {
        while in_flight < streams && !stop.load(Ordering::Relaxed) {
            n += 1;
            let request = if n.is_multiple_of(2) {
                Request::RequestJob
            } else {
                Request::RenewLease {
                    lease_id: LeaseId(1_000_000),
                    epoch: 1,
                }
            };
            client
                .swarm
                .behaviour_mut()
                .jobs
                .send_request(&client.coordinator, request);
            in_flight += 1;
        }
        if in_flight == 0 {
            return counts;
        }
        match client.swarm.select_next_some().await {
            SwarmEvent::Behaviour(BehaviourEvent::Jobs(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) => {
                in_flight -= 1;
                match response {
                    Response::Rejected {
                        kind: RejectKind::Throttled,
                        ..
                    } => counts.throttled += 1,
                    _ => counts.answered += 1,
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Jobs(
                request_response::Event::OutboundFailure { .. },
            )) => {
                in_flight -= 1;
                counts.failed += 1;
            }
            _ => {}
        }
    }
}

/// The honest builder's round: a job, then its result, each retried while throttled (as the
/// node does).
async fn build_one(client: &mut Client, node: &Identity) -> Response {
    let job = loop {
        match client.ask(Request::RequestJob).await.unwrap() {
            Response::Job(job) => break job,
            Response::Rejected {
                kind: RejectKind::Throttled,
                ..
            } => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("expected a job, got {other:?}"),
        }
    };
    let signed = attestation(node, node, &job, "hello-bin", b"the artifact");
    let result = submit(
        &job,
        Outcome::Built(Attested {
            attestation: signed,
        }),
    );
    loop {
        match client.ask(result.clone()).await.unwrap() {
            Response::Rejected {
                kind: RejectKind::Throttled,
                ..
            } => tokio::time::sleep(Duration::from_millis(200)).await,
            other => return other,
        }
    }
}

/// This process's resident memory, in MiB (Linux), for the record.
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096 / (1024 * 1024))
}

store_test!(
    a_flood_of_keys_and_requests_leaves_the_coordinator_bounded_and_working,
    policy = Policy {
        max_pending_builders: LINE,
        ..Policy::default()
    },
    |store: Store| async move {
        let s = scene(&store, false).await;
        // The honest builder was approved before the coordinator started.
        let honest = Identity::generate().unwrap();
        s.service.handle(honest.public_key(), hello("honest")).await;
        store
            .approve_builder(&honest.public_key(), Timestamp::now())
            .await
            .unwrap();
        let limits = NetworkLimits {
            swarm: Limits {
                connections: ConnectionLimits {
                    max_pending_incoming: 64,
                    max_established: 256,
                    max_established_per_peer: 2,
                },
                max_streams_per_connection: 32,
            },
            // Few, so that the flood fills the strangers' half and the honest builder works
            // in the other.
            max_requests_in_flight: IN_FLIGHT,
            ..NetworkLimits::default()
        };
        let shutdown = CancellationToken::new();
        let (net, actor) = network::start(
            &Identity::generate().unwrap(),
            &["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            s.service.clone(),
            limits,
            shutdown.clone(),
        )
        .await
        .unwrap();
        let addr = net.listen_addrs()[0].clone();
        let total = hellos();
        let rss_before = rss_mib();
        let started = Instant::now();

        // The fast asker says hello (it waits in line, like any new key), then floods.
        let mut asker = Client::connect(&Identity::generate().unwrap(), &addr)
            .await
            .unwrap();
        assert!(matches!(
            asker.ask(hello("asker")).await,
            Ok(Response::Welcome { .. })
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let asking = tokio::spawn(ask_as_fast_as_possible(
            asker,
            limits.swarm.max_streams_per_connection,
            Arc::clone(&stop),
        ));

        let next = Arc::new(AtomicUsize::new(0));
        let counts = Arc::new(HelloCounts::default());
        let workers: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                tokio::spawn(say_hellos(
                    addr.clone(),
                    total,
                    Arc::clone(&next),
                    Arc::clone(&counts),
                ))
            })
            .collect();

        // Meanwhile: what the coordinator holds, sampled; and the honest builder at work once
        // the flood is well under way.
        let (mut most_sessions, mut most_peers, mut most_in_flight) = (0, 0, 0);
        let mut most_rss = rss_before;
        let mut honest_result = None;
        let mut honest_took = Duration::ZERO;
        while workers.iter().any(|w| !w.is_finished()) || honest_result.is_none() {
            most_sessions = most_sessions.max(s.service.sessions().len());
            most_peers = most_peers.max(net.stats().peers());
            most_in_flight = most_in_flight.max(net.stats().in_flight());
            most_rss = most_rss.max(rss_mib());
            if honest_result.is_none() && next.load(Ordering::Relaxed) >= total / 10 {
                let began = Instant::now();
                let mut client = Client::connect(&honest, &addr).await.unwrap();
                assert_eq!(
                    client.ask(hello("honest")).await.unwrap(),
                    Response::Welcome {
                        standing: Standing::Approved
                    }
                );
                honest_result = Some(build_one(&mut client, &honest).await);
                honest_took = began.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let hellos_took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let flood = asking.await.unwrap();
        let rss_after = rss_mib();

        // The honest builder's result went in and counts.
        assert_eq!(
            honest_result,
            Some(Response::Accepted {
                counted: true,
                reason: None
            })
        );
        // Every hello was answered: a place in line for the first ones, `unavailable` after,
        // and `throttled` while the strangers' half of the requests in flight was taken.
        let welcomed = counts.welcomed.load(Ordering::Relaxed);
        let unavailable = counts.unavailable.load(Ordering::Relaxed);
        let throttled = counts.throttled.load(Ordering::Relaxed);
        assert_eq!(counts.other.load(Ordering::Relaxed), 0, "{counts:?}");
        assert_eq!(welcomed + unavailable + throttled, total);
        assert!(
            most_in_flight <= IN_FLIGHT as usize,
            "{most_in_flight} in flight"
        );
        // The asker took one place in line; the flood the rest, and not one more (new keys
        // register one at a time, on Postgres too).
        let line = LINE as usize;
        assert_eq!(welcomed, line - 1, "{welcomed} welcomed");
        // The store holds the line and the honest builder, nothing more.
        assert_eq!(store.builders().await.unwrap().len(), welcomed + 2);
        // Memory held per peer was bounded by the connections let in, never by the keys seen.
        let bound = 256 + 2;
        assert!(most_sessions <= bound, "{most_sessions} sessions at once");
        assert!(most_peers <= bound, "{most_peers} peers tracked at once");
        // The asker was throttled, and the coordinator says so.
        assert!(flood.throttled > 0, "{flood:?}");
        assert!(net.stats().throttled() >= flood.throttled as u64);
        // Once the fresh keys are gone, what is left is what is connected: the asker (until
        // its connection closes) and the honest builder.
        tokio::time::timeout(Duration::from_secs(10), async {
            while s.service.sessions().len() > 2 || net.stats().peers() > 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        eprintln!(
            "{total} hellos in {hellos_took:.1?} ({:.0}/s), {welcomed} welcomed, \
             {throttled} throttled; \
             the fast asker: {} throttled, {} answered, {} failed; \
             the honest builder's job and result in {honest_took:.1?}; \
             at most {most_sessions} sessions, {most_peers} peers and {most_in_flight} \
             requests in flight at once; \
             resident memory of the test process (coordinator and flooding peers) \
             {rss_before} MiB before, at most {most_rss} MiB, {rss_after} MiB after",
            total as f64 / hellos_took.as_secs_f64(),
            flood.throttled,
            flood.answered,
            flood.failed,
        );
        shutdown.cancel();
        actor.await.unwrap();
    }
);
