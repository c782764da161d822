//! Content digests: BLAKE3 for artifacts, SHA-256 for crate sources and lock files.
//!
//! Both are carried as fixed-size byte arrays and written as 64 lowercase hex digits. Parsing
//! is strict (lowercase only, exact length) so that every digest has exactly one text form:
//! a signed statement can then never be altered without changing its bytes.

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use data_encoding::HEXLOWER;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 lowercase hex digits, got {got:?}")]
pub struct DigestParseError {
    got: String,
}

fn parse_hex32(text: &str) -> Result<[u8; 32], DigestParseError> {
    let refuse = || DigestParseError {
        got: text.chars().take(80).collect(),
    };
    if text.len() != 64 {
        return Err(refuse());
    }
    let bytes = HEXLOWER.decode(text.as_bytes()).map_err(|_| refuse())?;
    bytes.try_into().map_err(|_| refuse())
}

macro_rules! hex_digest {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps raw digest bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw digest bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The digest as 64 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                HEXLOWER.encode(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = DigestParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_digest!(
    /// A BLAKE3 hash: the content address of an artifact (and of every iroh blob).
    Blake3Hash
);
hex_digest!(
    /// A SHA-256 digest, as crates.io uses for `.crate` files (the index `cksum`).
    Sha256Digest
);

impl Blake3Hash {
    /// Hashes bytes in memory.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

impl From<blake3::Hash> for Blake3Hash {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

/// What an attestation says about the artifact: its BLAKE3 hash and its length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactId {
    /// BLAKE3 of the artifact's bytes.
    pub blake3: Blake3Hash,
    /// Length of the artifact in bytes.
    pub size: u64,
}

impl ArtifactId {
    /// Identifies bytes held in memory.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self {
            blake3: Blake3Hash::of_bytes(bytes),
            size: bytes.len() as u64,
        }
    }

    /// Hashes a file. Large files are memory-mapped and hashed on all cores, which is what
    /// makes verification cost about as much as `b3sum` (see `benches/verify.rs`).
    pub fn of_file(path: &Path) -> io::Result<Self> {
        let mut hasher = blake3::Hasher::new();
        hasher.update_mmap_rayon(path)?;
        Ok(Self::from_hasher(&hasher))
    }

    /// Identifies everything a hasher has been fed.
    pub fn from_hasher(hasher: &blake3::Hasher) -> Self {
        Self {
            blake3: hasher.finalize().into(),
            size: hasher.count(),
        }
    }
}

impl fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{} ({} bytes)", self.blake3, self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_text_form_is_strict_lowercase_hex() {
        let hex = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        let hash: Blake3Hash = hex.parse().unwrap();
        assert_eq!(hash, Blake3Hash::of_bytes(b""));
        assert_eq!(hash.to_string(), hex);
        assert!(hex.to_uppercase().parse::<Blake3Hash>().is_err());
        assert!(hex[..63].parse::<Blake3Hash>().is_err());
        assert!(format!("{hex}0").parse::<Blake3Hash>().is_err());
        assert!(format!("{}g", &hex[..63]).parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn file_hash_matches_in_memory_hash() {
        let dir = tempfile::tempdir().unwrap();
        // Big enough that blake3 takes the memory-map path.
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("artifact");
        std::fs::write(&path, &data).unwrap();
        assert_eq!(
            ArtifactId::of_file(&path).unwrap(),
            ArtifactId::of_bytes(&data)
        );
    }
}
