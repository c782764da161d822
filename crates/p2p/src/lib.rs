//! The libp2p side of buildsrs: one swarm definition for nodes and coordinators.
//!
//! - [`Behaviour`]: connection limits ([`Limiter`]), the job protocol (request-response over
//!   [`JobCodec`]), identify and ping.
//! - [`build_swarm`]: TCP + noise + yamux, keyed by the node's one ed25519 identity, so a
//!   connection's `PeerId` *is* the builder's public key (noise proves possession). The
//!   coordinator relies on that: an attestation counts only when its signer is the key of the
//!   connection that submitted it.
//!
//! *Architecture invariant:* network hygiene. Nothing here discovers peers on its own: no
//! mDNS, no UPnP, no relays, no AutoNAT, no public bootstrap list, no DNS transport. A swarm
//! talks to the addresses its owner dials and to peers that dial it. There is no DHT either:
//! nodes dial the coordinator's configured address and nothing else. There is no gossip:
//! nothing relays one peer's messages to others, so no peer can speak to the network through
//! the coordinator (published artifacts are listed by the coordinator's HTTP feed).
//!
//! *Architecture invariant:* bounded. A swarm admits a bounded number of connections
//! ([`ConnectionLimits`]), each with a bounded number of job-protocol streams in flight
//! ([`Limits::max_streams_per_connection`]), each message size-limited by the codec.

use std::time::Duration;

use buildsrs_keys::Identity;
use buildsrs_protocol::JOBS_PROTOCOL;
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, identify, noise, ping,
    request_response::{self, ProtocolSupport},
    swarm::NetworkBehaviour,
    tcp, yamux,
};

mod codec;
mod limits;

pub use codec::JobCodec;
pub use libp2p;
pub use limits::{ConnectionLimits, LimitExceeded, Limiter};

/// Identify's protocol version string: peers speaking anything else are not buildsrs peers.
pub const IDENTIFY_PROTOCOL: &str = "/buildsrs/1";

/// How long a job-protocol request may take before the asker gives up. Submitting a result
/// writes to the store, so this is generous.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Which side of the job protocol a swarm is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves the job protocol.
    Coordinator,
    /// Asks for jobs.
    Node,
}

/// Everything a buildsrs peer speaks.
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)] // the derived behaviour's parts have no Debug
pub struct Behaviour {
    /// Connection limits. First, so that a connection it refuses is not set up by the others.
    pub limits: Limiter,
    /// `/buildsrs/jobs/2`.
    pub jobs: request_response::Behaviour<JobCodec>,
    /// Learns peers' listen addresses and agent versions.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
}

/// Errors building a swarm.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// The transport could not be set up.
    #[error("cannot set up the libp2p transport: {0}")]
    Transport(String),
    /// A behaviour could not be configured.
    #[error("cannot configure libp2p: {0}")]
    Behaviour(String),
}

/// What a swarm takes from its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections.
    pub connections: ConnectionLimits,
    /// Job-protocol streams in flight on one connection (requests being read, waiting for
    /// their answer, or answers being written); a stream beyond it is dropped unread. Each
    /// may hold a request of up to `MAX_REQUEST_BYTES` while it is read.
    pub max_streams_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections: ConnectionLimits::default(),
            // libp2p's own default: a node with many jobs renews many leases at once.
            max_streams_per_connection: 100,
        }
    }
}

/// Builds a swarm for `identity` with the default [`Limits`]. It listens nowhere and dials no
/// one until told to.
pub fn build_swarm(
    identity: &Identity,
    role: Role,
    agent: &str,
) -> Result<Swarm<Behaviour>, P2pError> {
    build_swarm_with(identity, role, agent, Limits::default())
}

/// Builds a swarm for `identity` that takes at most `limits` from its peers.
pub fn build_swarm_with(
    identity: &Identity,
    role: Role,
    agent: &str,
    limits: Limits,
) -> Result<Swarm<Behaviour>, P2pError> {
    let keypair = identity.libp2p_keypair();
    let agent = agent.to_owned();
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_behaviour(|key| behaviour(key, role, agent, limits))
        .map_err(|e| P2pError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    Ok(swarm)
}

fn behaviour(
    key: &libp2p::identity::Keypair,
    role: Role,
    agent: String,
    limits: Limits,
) -> Behaviour {
    let support = match role {
        Role::Coordinator => ProtocolSupport::Inbound,
        Role::Node => ProtocolSupport::Outbound,
    };
    let jobs = request_response::Behaviour::with_codec(
        JobCodec,
        [(StreamProtocol::new(JOBS_PROTOCOL), support)],
        request_response::Config::default()
            .with_request_timeout(REQUEST_TIMEOUT)
            .with_max_concurrent_streams(limits.max_streams_per_connection),
    );
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public()).with_agent_version(agent),
    );
    Behaviour {
        limits: Limiter::new(limits.connections),
        jobs,
        identify,
        ping: ping::Behaviour::default(),
    }
}

#[cfg(test)]
mod tests;
