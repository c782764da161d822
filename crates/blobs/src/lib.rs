//! Artifacts as BLAKE3 content-addressed blobs, moved between buildsrs nodes over
//! iroh-blobs.
//!
//! A [`BlobNode`] is one process's blob server and client: an iroh endpoint, a blob store
//! (on disk, or in memory for tests) and a router serving that store. A builder node adds
//! its artifact ([`BlobNode::add_file`]) and hands its [`BlobAddress`] to the coordinator; the
//! coordinator (or a mirror) calls [`BlobNode::fetch`] with the artifact's hash and the
//! addresses of everyone who claims to have it, and gets the bytes from the first provider
//! that delivers them intact. The hash is the BLAKE3 of the artifact, the same digest the
//! signed attestations carry ([`buildsrs_keys::ArtifactId`]), so what arrives is what was
//! attested: iroh-blobs verifies the stream chunk by chunk against it and never stores
//! unverified bytes.
//!
//! # Network hygiene
//!
//! Endpoints use iroh's `Minimal` preset with relays disabled, no address lookup (no DNS,
//! pkarr or mDNS), port mapping disabled, a minimal net report and a single explicitly
//! bound socket. A node dials only the socket addresses passed to [`BlobNode::fetch`]. (A
//! provider can still tell a connected peer about its other direct addresses through
//! iroh's QUIC NAT traversal; iroh does not let that be switched off. Those are the same
//! peer's addresses, and a provider bound to one address advertises only that one.)

mod addr;
mod error;
mod node;

pub use addr::{BlobAddress, IrohAddress};
pub use error::{BlobError, FailureKind, ProviderFailure};
pub use node::{BlobConfig, BlobNode, FetchTimeouts};

/// The iroh-blobs and iroh crates this one is built on, for callers that need their types
/// (e.g. [`iroh::SecretKey`] for [`BlobConfig`]) without depending on them directly.
pub use {iroh, iroh_blobs};
