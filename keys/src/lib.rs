//! Identities, signed build attestations, keyrings and offline verification for buildsrs.
//!
//! This crate is the root of trust a user holds in their hands: with an artifact, its bundle
//! and a keyring, [`verify_bundle`] decides whether enough trusted builders signed exactly
//! those bytes. It knows nothing of networks, databases or builds, so the same code runs in
//! the `buildsrs-keys` and `buildsrs` CLIs, in builder nodes, and in the coordinator.
//!
//! - [`identity`]: one ed25519 key per node, its libp2p and iroh ids, domain-separated signing.
//! - [`statement`]: what a build attestation pins, and its canonical encoding.
//! - [`attestation`]: a statement with its signature.
//! - [`bundle`]: the `<artifact>.buildsrs.json` file holding an artifact's attestations.
//! - [`keyring`]: the text file of trusted keys.
//! - [`names`]: crate names, versions and target triples, each a type parsed once.
//! - [`release`]: Rust release numbers (`rust-version`, a toolchain's release) and their order.
//! - [`verify`]: the k-of-n decision and its report.
//! - [`cli`]: the `buildsrs-keys` command line, shared with the `buildsrs` CLI.

pub mod attestation;
pub mod bundle;
pub mod cli;
pub mod hash;
pub mod identity;
pub mod keyring;
pub mod lockfile;
pub mod names;
pub mod release;
pub mod statement;
pub mod verify;

pub use attestation::{AttestationError, SignedAttestation};
pub use bundle::{Bundle, BundleError};
pub use hash::{ArtifactId, Blake3Hash, Sha256Digest};
pub use identity::{Domain, Fingerprint, Identity, KeyError, PublicKey, Signature};
pub use keyring::{Keyring, KeyringEntry, KeyringError, Revocation};
pub use names::{
    CrateName, CrateVersion, InvalidName, RegistryUrl, TargetTriple, ToolchainRelease,
};
pub use release::RustRelease;
pub use statement::{SCHEMA_VERSION, Statement, StatementError, Toolchain, canonical_json};
pub use verify::{Expectations, Policy, Report, Source, verify_bundle};
