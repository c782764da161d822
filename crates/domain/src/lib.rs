//! The domain vocabulary: one type per concept, parsed once by one rule, used by every crate
//! that speaks of it (protocol, store, index, node, coordinator, web, CLI).
//!
//! - From `buildsrs-keys`, which owns what signatures need and keeps its dependency set small
//!   enough to audit: [`CrateName`], [`CrateVersion`], [`TargetTriple`] (parsed by the
//!   statement's rules), the digests [`Blake3Hash`] and [`Sha256Digest`], [`ArtifactId`], a
//!   builder's [`PublicKey`], the [`Toolchain`], its [`ToolchainRelease`] and the
//!   [`RustRelease`] it stands for.
//! - Here: how a build ended, [`Outcome`] and its [`OutcomeKind`]; a version line of the
//!   registry index, [`IndexVersion`]; where a peer serves blobs, [`BlobAddress`]; the
//!   coordinator's [`TaskId`] and [`LeaseId`]; what people call a builder, its
//!   [`BuilderName`], and who runs it, its [`Operator`] (one rule for both, safe in a
//!   keyring line).
//!
//! **Invariant:** no other crate declares these concepts again; a layer that needs more (the
//! node's archive path, the store's signed bytes) puts it in the `Built` payload of
//! [`Outcome`], never in a second outcome enum.

pub mod blob;
pub mod builder;
pub mod ids;
pub mod index;
pub mod outcome;

pub use blob::{BlobAddress, InvalidBlobAddress};
pub use builder::{BuilderName, InvalidLabel, LABEL_MAX_LEN, LABEL_PATTERN, Operator};
pub use buildsrs_keys::{
    ArtifactId, Blake3Hash, CrateName, CrateVersion, InvalidName, PublicKey, RustRelease,
    Sha256Digest, TargetTriple, Toolchain, ToolchainRelease,
};
pub use ids::{InvalidId, LeaseId, TaskId};
pub use index::IndexVersion;
pub use outcome::{BuiltWithoutPayload, Ended, Outcome, OutcomeKind, UnknownOutcomeKind};
