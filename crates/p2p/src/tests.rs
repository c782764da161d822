#![allow(clippy::unwrap_used)]

use std::time::Duration;

use buildsrs_protocol::{NoJobReason, Request, Response};
use futures::StreamExt;
use libp2p::{Multiaddr, request_response, swarm::SwarmEvent};

use super::*;

fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

async fn listening(swarm: &mut Swarm<Behaviour>) -> Multiaddr {
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}

/// Dials `addr` and drives the swarm until the connection stands (a request to a peer with
/// no connection and no known address fails at once).
async fn connect(swarm: &mut Swarm<Behaviour>, addr: Multiaddr) {
    swarm.dial(addr).unwrap();
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => return,
            SwarmEvent::OutgoingConnectionError { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_node_asks_and_the_coordinator_answers_over_tcp() {
    let mut coordinator = build_swarm(&identity(1), Role::Coordinator, "test").unwrap();
    let mut node = build_swarm(&identity(2), Role::Node, "test").unwrap();
    let addr = listening(&mut coordinator).await;
    let coordinator_id = *coordinator.local_peer_id();
    let node_id = *node.local_peer_id();

    let serve = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(BehaviourEvent::Jobs(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) = coordinator.select_next_some().await
            {
                // The transport authenticated the asker: the peer id is the node's key.
                assert_eq!(peer, node_id);
                assert_eq!(request, Request::RequestJob);
                let answer = Response::NoJob {
                    reason: NoJobReason::NothingQueued,
                    retry_after_secs: 3,
                };
                coordinator
                    .behaviour_mut()
                    .jobs
                    .send_response(channel, answer)
                    .unwrap();
                // Keep driving the swarm so the response is flushed.
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    loop {
                        coordinator.select_next_some().await;
                    }
                })
                .await;
                return;
            }
        }
    });

    connect(&mut node, addr).await;
    node.behaviour_mut()
        .jobs
        .send_request(&coordinator_id, Request::RequestJob);
    let response = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let SwarmEvent::Behaviour(BehaviourEvent::Jobs(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) = node.select_next_some().await
            {
                return response;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        response,
        Response::NoJob {
            reason: NoJobReason::NothingQueued,
            retry_after_secs: 3
        }
    );
    serve.await.unwrap();
}

#[tokio::test]
async fn a_node_does_not_serve_the_job_protocol() {
    // Nodes only ask; a coordinator (or anyone) asking a node gets an unsupported-protocol
    // failure instead of a node that answers jobs requests.
    let mut node = build_swarm(&identity(3), Role::Node, "test").unwrap();
    let mut other = build_swarm(&identity(4), Role::Node, "test").unwrap();
    let addr = listening(&mut node).await;
    let node_id = *node.local_peer_id();
    tokio::spawn(async move {
        loop {
            node.select_next_some().await;
        }
    });
    connect(&mut other, addr).await;
    other
        .behaviour_mut()
        .jobs
        .send_request(&node_id, Request::RequestJob);
    let failure = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let SwarmEvent::Behaviour(BehaviourEvent::Jobs(
                request_response::Event::OutboundFailure { error, .. },
            )) = other.select_next_some().await
            {
                return error;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(
            failure,
            request_response::OutboundFailure::UnsupportedProtocols
        ),
        "{failure:?}"
    );
}

#[tokio::test]
async fn the_codec_refuses_an_oversized_request_without_buffering_it() {
    use libp2p::request_response::Codec;
    let mut codec = JobCodec;
    let protocol = StreamProtocol::new(JOBS_PROTOCOL);
    let huge = vec![0u8; buildsrs_protocol::MAX_REQUEST_BYTES + 10];
    let mut reader = futures::io::Cursor::new(huge);
    let err = codec
        .read_request(&protocol, &mut reader)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    // It stopped one byte past the limit.
    assert_eq!(
        reader.position(),
        buildsrs_protocol::MAX_REQUEST_BYTES as u64 + 1
    );
    let mut garbage = futures::io::Cursor::new(vec![0xff, 0xfe]);
    let err = codec
        .read_request(&protocol, &mut garbage)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

/// Dials `addr` as `identity` from a swarm of its own (holding the connection until the
/// returned sender is dropped) and drives `server` until it admits or refuses the
/// connection: whether it admitted it.
async fn admitted(
    server: &mut Swarm<Behaviour>,
    identity: Identity,
    addr: &Multiaddr,
) -> (bool, tokio::sync::oneshot::Sender<()>) {
    let (hold, mut release) = tokio::sync::oneshot::channel::<()>();
    let peer = identity.peer_id();
    let addr = addr.clone();
    tokio::spawn(async move {
        let mut swarm = build_swarm(&identity, Role::Node, "test").unwrap();
        swarm.dial(addr).unwrap();
        loop {
            tokio::select! {
                _ = &mut release => return,
                _ = swarm.select_next_some() => {}
            }
        }
    });
    let verdict = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match server.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => {
                    return true;
                }
                SwarmEvent::IncomingConnectionError {
                    error: libp2p::swarm::ListenError::Denied { cause },
                    ..
                } => {
                    assert!(cause.downcast::<LimitExceeded>().is_ok());
                    return false;
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    (verdict, hold)
}

/// Drives `server` until the limiter holds nothing.
async fn until_limiter_empty(server: &mut Swarm<Behaviour>) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while server.behaviour().limits.established() > 0 || server.behaviour().limits.peers() > 0 {
            server.select_next_some().await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connections_beyond_the_limits_are_refused_and_peers_that_left_are_forgotten() {
    let limits = Limits {
        connections: ConnectionLimits {
            max_pending_incoming: 8,
            max_established: 2,
            max_established_per_peer: 1,
        },
        ..Limits::default()
    };
    let mut server = build_swarm_with(&identity(1), Role::Coordinator, "test", limits).unwrap();
    let addr = listening(&mut server).await;
    server.behaviour_mut().limits.reserve(identity(9).peer_id());

    let (first, hold_first) = admitted(&mut server, identity(2), &addr).await;
    let (second, hold_second) = admitted(&mut server, identity(3), &addr).await;
    assert!(first && second);
    // The total is reached: a stranger is refused, a reserved peer is not.
    let (stranger, _) = admitted(&mut server, identity(4), &addr).await;
    assert!(!stranger);
    let (reserved, hold_reserved) = admitted(&mut server, identity(9), &addr).await;
    assert!(reserved);
    assert_eq!(server.behaviour().limits.established(), 3);
    // One connection per peer, reserved or not.
    let (again, _) = admitted(&mut server, identity(9), &addr).await;
    assert!(!again);
    drop((hold_first, hold_second, hold_reserved));
    until_limiter_empty(&mut server).await;

    // Fresh keys come and go: the limiter forgets each one with its connection (libp2p's own
    // connection_limits keeps an entry per peer id ever seen).
    for n in 10..60 {
        let (ok, hold) = admitted(&mut server, identity(n), &addr).await;
        assert!(ok);
        drop(hold);
        until_limiter_empty(&mut server).await;
    }
}

/// What the coordinator tells a peer it speaks (identify's protocol list): the job protocol,
/// identify and ping, and no gossip, so no peer can have it relay messages to the others.
#[tokio::test]
async fn a_coordinator_speaks_no_gossip() {
    let mut coordinator = build_swarm(&identity(1), Role::Coordinator, "test").unwrap();
    let mut node = build_swarm(&identity(2), Role::Node, "test").unwrap();
    let addr = listening(&mut coordinator).await;
    let coordinator_id = *coordinator.local_peer_id();
    tokio::spawn(async move {
        loop {
            coordinator.select_next_some().await;
        }
    });
    node.dial(addr).unwrap();
    let protocols = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) = node.select_next_some().await
                && peer_id == coordinator_id
            {
                return info.protocols;
            }
        }
    })
    .await
    .unwrap();
    let mut names: Vec<String> = protocols.iter().map(ToString::to_string).collect();
    names.sort();
    assert_eq!(
        names,
        [
            JOBS_PROTOCOL,
            "/ipfs/id/1.0.0",
            "/ipfs/id/push/1.0.0",
            "/ipfs/ping/1.0.0"
        ]
    );
}
