//! The libp2p side of buildsrs: one swarm definition for nodes and coordinators.
//!
//! - [`Behaviour`]: the job protocol (request-response over [`JobCodec`]), gossipsub for the
//!   coordinator's verified-artifact announcements, identify and ping.
//! - [`build_swarm`]: TCP + noise + yamux, keyed by the node's one ed25519 identity, so a
//!   connection's `PeerId` *is* the builder's public key (noise proves possession). The
//!   coordinator relies on that: an attestation counts only when its signer is the key of the
//!   connection that submitted it.
//!
//! *Architecture invariant:* network hygiene. Nothing here discovers peers on its own: no
//! mDNS, no UPnP, no relays, no AutoNAT, no public bootstrap list, no DNS transport. A swarm
//! talks to the addresses its owner dials and to peers that dial it. There is no DHT either:
//! nodes dial the coordinator's configured address and nothing else.

use std::time::Duration;

use buildsrs_keys::Identity;
use buildsrs_protocol::{JOBS_PROTOCOL, MAX_GOSSIP_BYTES, VERIFIED_TOPIC};
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, gossipsub, identify, noise, ping,
    request_response::{self, ProtocolSupport},
    swarm::NetworkBehaviour,
    tcp, yamux,
};

mod codec;

pub use codec::JobCodec;
pub use libp2p;

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
    /// `/buildsrs/jobs/2`.
    pub jobs: request_response::Behaviour<JobCodec>,
    /// The coordinator's verified-artifact announcements.
    pub gossip: gossipsub::Behaviour,
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

/// The gossip topic of verified-artifact announcements.
pub fn verified_topic() -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(VERIFIED_TOPIC)
}

/// Builds a swarm for `identity`, subscribed to the verified-artifact topic. It listens nowhere and
/// dials no one until told to.
pub fn build_swarm(
    identity: &Identity,
    role: Role,
    agent: &str,
) -> Result<Swarm<Behaviour>, P2pError> {
    let keypair = identity.libp2p_keypair();
    let agent = agent.to_owned();
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_behaviour(|key| behaviour(key, role, agent))
        .map_err(|e| P2pError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    swarm
        .behaviour_mut()
        .gossip
        .subscribe(&verified_topic())
        .map_err(|e| P2pError::Behaviour(e.to_string()))?;
    Ok(swarm)
}

fn behaviour(
    key: &libp2p::identity::Keypair,
    role: Role,
    agent: String,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let support = match role {
        Role::Coordinator => ProtocolSupport::Inbound,
        Role::Node => ProtocolSupport::Outbound,
    };
    let jobs = request_response::Behaviour::with_codec(
        JobCodec,
        [(StreamProtocol::new(JOBS_PROTOCOL), support)],
        request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
    );
    let gossip_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(MAX_GOSSIP_BYTES)
        // Strict: every message signed by its author's peer key, unsigned ones dropped.
        .validation_mode(gossipsub::ValidationMode::Strict)
        .build()?;
    let gossip = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )?;
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public()).with_agent_version(agent),
    );
    Ok(Behaviour {
        jobs,
        gossip,
        identify,
        ping: ping::Behaviour::default(),
    })
}

#[cfg(test)]
mod tests;
