//! One version of a crate as the registry index lists it: what the index follower produces
//! and the store ingests, with every field already parsed.

use crate::{CrateName, CrateVersion, Sha256Digest};

/// One version line of the registry index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IndexVersion {
    /// The crate name, as published (its case may differ from the one watched).
    pub name: CrateName,
    /// The version, exactly as in the index.
    pub version: CrateVersion,
    /// The sha256 of the `.crate` file.
    pub cksum: Sha256Digest,
    /// Whether the version is yanked.
    pub yanked: bool,
    /// Where the `.crate` file is downloaded from: the index `config.json` `dl` template,
    /// expanded when the line was read.
    pub download_url: String,
    /// The manifest's `rust-version` (`1.70`, `1.70.1`): the oldest Rust that builds it.
    pub rust_version: Option<String>,
}
