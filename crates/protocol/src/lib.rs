//! The messages builder nodes and the coordinator exchange, and their wire format.
//!
//! One channel carries them (see `buildsrs-p2p` for the libp2p side): the job protocol
//! [`JOBS_PROTOCOL`], request-response: a node sends a [`Request`], the coordinator answers
//! with a [`Response`]. (There is no gossip: what is published, the coordinator's HTTP feed
//! lists.)
//!
//! Every message is CBOR (serde via `ciborium`) with a hard size limit checked before decoding,
//! so a peer can never make the other side allocate more than the limit. The protocol's major
//! version is part of its name: an incompatible change gets a new name (`/buildsrs/jobs/2`)
//! and both can be served side by side. Within a version, fields are only ever added with
//! `#[serde(default)]`, so older peers keep decoding newer messages.
//!
//! *Architecture invariant:* this crate knows nothing of libp2p, iroh, stores or builds. It is
//! plain data, so the node, the coordinator, the fuzzers and any future client share one
//! definition of the wire.

use buildsrs_domain::{
    CrateName, CrateVersion, LeaseId, Sha256Digest, TargetTriple, TaskId, ToolchainRelease,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The request-response protocol for jobs, version 1.
pub const JOBS_PROTOCOL: &str = "/buildsrs/jobs/2";

/// Largest request accepted: a result carries a signed attestation (~2 KiB) and a build log
/// capped by the node; 1 MiB leaves room for a generous log cap and nothing more.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Largest response accepted: responses are small records.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Most bytes of build log a result may carry (the rest of the request is small).
pub const MAX_LOG_BYTES: usize = MAX_REQUEST_BYTES - 64 * 1024;

/// A node's message to the coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Introduces the node; sent first on every connection and whenever its offer changes.
    Hello(Hello),
    /// Asks for one job.
    RequestJob,
    /// Extends a lease the node holds.
    RenewLease {
        /// The lease.
        lease_id: LeaseId,
        /// Its fencing epoch, as the job gave it.
        epoch: i64,
    },
    /// Delivers the result of a job.
    Submit(JobResult),
    /// The node is shutting down: it takes no more jobs (results it still sends are accepted).
    Goodbye,
}

/// What a node offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Software and version, e.g. `buildsrs-node/0.1.0`.
    pub agent: String,
    /// A human-readable name for the builder list (the operator's choice).
    pub name: String,
    /// Target triples it builds.
    pub targets: Vec<TargetTriple>,
    /// Toolchains it builds with.
    pub toolchains: Vec<ToolchainRelease>,
    /// Jobs it runs at once.
    pub capacity: u32,
    /// Where its blob server (iroh-blobs) answers.
    pub blobs: BlobAddress,
}

pub use buildsrs_domain::BlobAddress;

/// Longest [`Hello::agent`], in characters.
pub const MAX_AGENT_CHARS: usize = 128;
/// Longest [`Hello::name`], in characters.
pub const MAX_NAME_CHARS: usize = buildsrs_domain::LABEL_MAX_LEN;
/// Most targets, and most toolchains, a hello may list.
pub const MAX_CAPABILITIES: usize = 64;
/// Most socket addresses a hello's blob address may list.
pub const MAX_BLOB_ADDRS: usize = 16;
/// Longest blob endpoint id, in bytes (an iroh endpoint id is 64 hex digits).
pub const MAX_ENDPOINT_ID_BYTES: usize = 64;

/// A hello with a field out of bounds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("hello refused: {0}")]
pub struct HelloOutOfBounds(String);

impl Hello {
    /// Checks every field's size, so that what the coordinator keeps of a hello (in memory,
    /// for as long as the node is connected) is small whatever a peer sends: text without
    /// control characters and of bounded length, bounded lists.
    pub fn check_bounds(&self) -> Result<(), HelloOutOfBounds> {
        let text = |what: &str, value: &str, max: usize| {
            if value.chars().count() > max || value.chars().any(char::is_control) {
                return Err(HelloOutOfBounds(format!(
                    "{what} must be at most {max} characters without control characters"
                )));
            }
            Ok(())
        };
        text("agent", &self.agent, MAX_AGENT_CHARS)?;
        // The name goes into builder lists and served keyrings: the domain's one rule.
        self.name
            .parse::<buildsrs_domain::BuilderName>()
            .map_err(|e| HelloOutOfBounds(e.to_string()))?;
        for (what, count) in [
            ("targets", self.targets.len()),
            ("toolchains", self.toolchains.len()),
        ] {
            if count > MAX_CAPABILITIES {
                return Err(HelloOutOfBounds(format!(
                    "at most {MAX_CAPABILITIES} {what}, got {count}"
                )));
            }
        }
        if self.blobs.endpoint_id.len() > MAX_ENDPOINT_ID_BYTES {
            return Err(HelloOutOfBounds(format!(
                "a blob endpoint id is at most {MAX_ENDPOINT_ID_BYTES} bytes"
            )));
        }
        if self.blobs.addrs.len() > MAX_BLOB_ADDRS {
            return Err(HelloOutOfBounds(format!(
                "at most {MAX_BLOB_ADDRS} blob addresses, got {}",
                self.blobs.addrs.len()
            )));
        }
        Ok(())
    }
}

/// The coordinator's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Hello`]: the builder's standing.
    Welcome {
        /// Whether it gets work.
        standing: Standing,
    },
    /// A job for the node.
    Job(Job),
    /// Nothing for the node now.
    NoJob {
        /// Why.
        reason: NoJobReason,
        /// When to ask again, in seconds.
        retry_after_secs: u32,
    },
    /// The lease now runs until this time.
    Renewed {
        /// New deadline, seconds since the Unix epoch.
        deadline_unix: i64,
    },
    /// The result was recorded.
    Accepted {
        /// Whether it counts toward the task's decision.
        counted: bool,
        /// Why it does not count, when it does not (for the volunteer's log).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The request was refused; nothing changed.
    Rejected {
        /// What kind of refusal.
        kind: RejectKind,
        /// Why, for logs and people.
        reason: String,
    },
    /// Answer to [`Request::Goodbye`].
    Farewell,
}

/// A builder's standing with the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Waits for an operator's approval; gets no work.
    Pending,
    /// Gets work; its attestations count.
    Approved,
    /// Gets no work; its attestations do not count.
    Revoked,
}

/// Why there is no job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoJobReason {
    /// The builder is not approved.
    NotApproved,
    /// The node has not said hello on this connection.
    HelloFirst,
    /// No queued task fits the node.
    NothingQueued,
    /// The coordinator is shutting down.
    ShuttingDown,
}

/// Kinds of refusal, for the node to react to without parsing text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// The message was malformed or out of bounds.
    BadRequest,
    /// The builder may not do this (not approved, not its lease, signer ≠ connection key).
    Forbidden,
    /// The lease is unknown, expired or superseded.
    StaleLease,
    /// The coordinator failed; try again later.
    Unavailable,
    /// Too many requests: from this peer (more at once, or faster, than a builder needs), or
    /// from everyone at once. Nothing changed; ask again in a few seconds.
    Throttled,
}

/// One leased task, everything the node needs to build it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The task.
    pub task_id: TaskId,
    /// The lease to renew and to submit under.
    pub lease_id: LeaseId,
    /// The lease's fencing epoch.
    pub epoch: i64,
    /// When the lease ends unless renewed, seconds since the Unix epoch.
    pub deadline_unix: i64,
    /// Crate name.
    pub crate_name: CrateName,
    /// Version.
    pub version: CrateVersion,
    /// SHA-256 the `.crate` must have (from the index).
    pub source_sha256: Sha256Digest,
    /// Where to download the `.crate`.
    pub download_url: String,
    /// Target triple.
    pub target: TargetTriple,
    /// Toolchain. (The crate's `[package.metadata.buildsrs]` decides the features.)
    pub toolchain: ToolchainRelease,
}

/// A job's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The task it was for.
    pub task_id: TaskId,
    /// The lease it ran under.
    pub lease_id: LeaseId,
    /// The lease's fencing epoch.
    pub epoch: i64,
    /// What happened.
    pub outcome: Outcome,
    /// The build log (head and tail, capped at [`MAX_LOG_BYTES`]).
    #[serde(with = "serde_bytes")]
    pub log: Vec<u8>,
}

/// What a build came to: the one outcome of `buildsrs-domain`, whose built result carries the
/// signed attestation.
pub type Outcome = buildsrs_domain::Outcome<Attested>;

/// A built result on the wire: the artifact is in the node's blob store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attested {
    /// The signed attestation, as JSON (`buildsrs_keys::SignedAttestation`).
    #[serde(with = "serde_bytes")]
    pub attestation: Vec<u8>,
}

/// Errors of encoding and decoding.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The message is larger than its limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
}

// Enums are externally tagged (serde's default): internally tagged ones are buffered by serde,
// which loses CBOR's binary forms (socket addresses, byte strings) on the way back.
// Byte fields use `serde_bytes`: CBOR byte strings rather than arrays of integers, which would
// take up to twice the space and make the size limits mean less.

/// Encodes a message as CBOR, refusing to produce more than `limit` bytes.
pub fn encode<T: Serialize>(message: &T, limit: usize) -> Result<Vec<u8>, WireError> {
    let mut bytes = Vec::new();
    ciborium::into_writer(message, &mut bytes).map_err(|e| WireError::Encode(e.to_string()))?;
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    Ok(bytes)
}

/// Decodes a CBOR message of at most `limit` bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    ciborium::from_reader(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

impl Request {
    /// Encodes a request within [`MAX_REQUEST_BYTES`].
    pub fn to_cbor(&self) -> Result<Vec<u8>, WireError> {
        encode(self, MAX_REQUEST_BYTES)
    }

    /// Decodes a request of at most [`MAX_REQUEST_BYTES`].
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes, MAX_REQUEST_BYTES)
    }
}

impl Response {
    /// Encodes a response within [`MAX_RESPONSE_BYTES`].
    pub fn to_cbor(&self) -> Result<Vec<u8>, WireError> {
        encode(self, MAX_RESPONSE_BYTES)
    }

    /// Decodes a response of at most [`MAX_RESPONSE_BYTES`].
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes, MAX_RESPONSE_BYTES)
    }

    /// A refusal.
    pub fn rejected(kind: RejectKind, reason: impl Into<String>) -> Self {
        Response::Rejected {
            kind,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests;
