//! Archives in and out of buildsrs: deterministic artifact archives that builders on different
//! machines produce byte for byte, and safe unpacking of the archives we receive (`.crate`
//! sources from a registry, artifacts a user fetched).
//!
//! - [`pack`]: writes the gzip'd tar of a build's binaries, with a manifest, and its BLAKE3.
//! - [`unpack`]: extracts a gzip'd tar under one top-level directory, refusing anything that
//!   could write outside it, and within limits on size and entry count.
//!
//! This crate knows nothing of builds or networks: it turns files into bytes and back.

pub mod pack;
pub mod unpack;

pub use pack::{ArtifactFile, Manifest, PackError, PackedArtifact, pack_artifact};
pub use unpack::{Limits, UnpackError, Unpacked, unpack_tar_gz};
