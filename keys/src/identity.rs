//! One ed25519 key per node: its libp2p `PeerId`, its iroh endpoint id and its signing key.
//!
//! The secret key file holds exactly the 32-byte seed. Like ssh, we refuse to load a secret
//! key that group or others can read: a leaked builder key lets anyone sign artifacts in the
//! builder's name.
//!
//! Every signature is made over `domain prefix || message` (see [`Domain`]), so a signature
//! made for one kind of message can never be replayed as another kind.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use data_encoding::{BASE32_NOPAD, HEXLOWER};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of an ed25519 seed, and of the secret key file.
pub const SEED_LEN: usize = 32;

/// What a text public key starts with.
const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// The kinds of signed message. Each has its own prefix, which is signed along with the
/// message; a verifier names the kind it expects, so a signature over one kind fails as any
/// other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A build attestation statement (see [`crate::Statement`]).
    Attestation,
    /// A coordinator's announcement that an artifact became verified (gossiped).
    VerifiedAnnouncement,
}

impl Domain {
    /// The bytes signed before the message. Versioned, and NUL-terminated so that no prefix
    /// is a prefix of another.
    pub const fn prefix(self) -> &'static [u8] {
        match self {
            Domain::Attestation => b"buildsrs-attestation-v1\0",
            Domain::VerifiedAnnouncement => b"buildsrs-verified-announcement-v1\0",
        }
    }

    fn framed(self, message: &[u8]) -> Vec<u8> {
        let prefix = self.prefix();
        let mut framed = Vec::with_capacity(prefix.len() + message.len());
        framed.extend_from_slice(prefix);
        framed.extend_from_slice(message);
        framed
    }
}

/// Errors about key material and key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The secret key file is readable or writable by group or others.
    #[error(
        "{path}: permissions {mode:04o} are too open; a secret key must be readable by its \
         owner only (run `chmod 600 {path}`)"
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The secret key file is not exactly a 32-byte seed.
    #[error("{path}: a secret key file holds exactly {SEED_LEN} bytes, this one has {len}")]
    WrongLength {
        /// The key file.
        path: PathBuf,
        /// How long it was.
        len: u64,
    },
    /// The key file exists already; we never overwrite a key.
    #[error("{path}: already exists; refusing to overwrite a key file")]
    AlreadyExists {
        /// The key file.
        path: PathBuf,
    },
    /// The operating system could not provide randomness.
    #[error("no randomness available for key generation: {0}")]
    Randomness(String),
}

/// Why a text public key (or signature) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyParseError {
    /// The text is not `ed25519:` followed by 64 lowercase hex digits.
    #[error("expected a public key as `ed25519:` and 64 lowercase hex digits, got {0:?}")]
    Syntax(String),
    /// The bytes are not a valid ed25519 point.
    #[error("not a valid ed25519 public key: {0}")]
    InvalidPoint(String),
    /// A libp2p peer id that does not hold an ed25519 key inline.
    #[error("peer id {0} does not carry an ed25519 public key")]
    NotEd25519PeerId(String),
}

/// An ed25519 public key: a builder's identity as keyrings, attestations and peers name it.
///
/// Text form: `ed25519:` and 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses raw public key bytes, refusing bytes that are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, PublicKeyParseError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|e| PublicKeyParseError::InvalidPoint(e.to_string()))
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// A short, stable name for people to compare: 16 base32 characters in groups of four,
    /// taken from a domain-separated BLAKE3 hash of the key.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"buildsrs-fingerprint-v1\0");
        hasher.update(self.as_bytes());
        let digest = hasher.finalize();
        let text = BASE32_NOPAD.encode(&digest.as_bytes()[..10]).to_lowercase();
        Fingerprint(text)
    }

    /// The libp2p peer id of this key (the identity multihash of the key itself).
    pub fn peer_id(&self) -> libp2p_identity::PeerId {
        self.libp2p_public_key().to_peer_id()
    }

    /// The key as libp2p sees it.
    pub fn libp2p_public_key(&self) -> libp2p_identity::PublicKey {
        libp2p_identity::ed25519::PublicKey::try_from_bytes(self.as_bytes())
            .map(libp2p_identity::PublicKey::from)
            .expect("a valid ed25519 point is a valid libp2p ed25519 key")
    }

    /// Recovers the public key from a libp2p peer id, which for ed25519 keys carries the key
    /// inline. This is how a coordinator learns which builder a connection belongs to.
    pub fn from_peer_id(peer_id: &libp2p_identity::PeerId) -> Result<Self, PublicKeyParseError> {
        let refuse = || PublicKeyParseError::NotEd25519PeerId(peer_id.to_string());
        let multihash = peer_id.as_ref();
        // Code 0 is the identity multihash: the digest is the protobuf-encoded key itself.
        if multihash.code() != 0 {
            return Err(refuse());
        }
        let key = libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest())
            .map_err(|_| refuse())?;
        let ed = key.try_into_ed25519().map_err(|_| refuse())?;
        Self::from_bytes(&ed.to_bytes())
    }

    /// The iroh endpoint id of this key.
    pub fn endpoint_id(&self) -> iroh_base::EndpointId {
        iroh_base::PublicKey::from_bytes(self.as_bytes())
            .expect("a valid ed25519 point is a valid iroh public key")
    }

    /// Checks a signature made with [`Identity::sign`] for `domain` over `message`.
    ///
    /// Uses strict verification: non-canonical signatures and weak keys are refused, so a
    /// valid signature cannot be altered into another valid one.
    pub fn verify(&self, domain: Domain, message: &[u8], signature: &Signature) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(&domain.framed(message), &signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_KEY_PREFIX}{}", HEXLOWER.encode(self.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = PublicKeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = || PublicKeyParseError::Syntax(text.chars().take(100).collect());
        let hex = text.strip_prefix(PUBLIC_KEY_PREFIX).ok_or_else(refuse)?;
        if hex.len() != 64 {
            return Err(refuse());
        }
        let bytes: [u8; 32] = HEXLOWER
            .decode(hex.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(refuse)?;
        Self::from_bytes(&bytes)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A short human-comparable name of a public key, e.g. `k3xq-7hba-20zd-mm4c`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Fingerprint(String);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, chunk) in self.0.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            // Base32 output is ASCII, so every chunk is valid UTF-8.
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An ed25519 signature. Text form: 128 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Wraps raw signature bytes.
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The 64 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = PublicKeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = || PublicKeyParseError::Syntax(text.chars().take(140).collect());
        if text.len() != 128 {
            return Err(refuse());
        }
        HEXLOWER
            .decode(text.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .map(Self)
            .ok_or_else(refuse)
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(|_| {
            serde::de::Error::custom("expected a signature as 128 lowercase hex digits")
        })
    }
}

/// A node's secret identity. Cheap to clone; never printed.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl Identity {
    /// A new random identity from the operating system's randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; SEED_LEN];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Randomness(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// The identity for a given 32-byte seed (test vectors, key files).
    pub fn from_seed(seed: [u8; SEED_LEN]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Loads a secret key file, refusing one that group or others may read or write.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = fs::File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
        if meta.len() != SEED_LEN as u64 {
            return Err(KeyError::WrongLength {
                path: path.to_owned(),
                len: meta.len(),
            });
        }
        let mut seed = [0u8; SEED_LEN];
        file.read_exact(&mut seed).map_err(io_err)?;
        Ok(Self::from_seed(seed))
    }

    /// Writes the seed to a new file with mode 0600. Never overwrites an existing file.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::AlreadyExists => KeyError::AlreadyExists {
                    path: path.to_owned(),
                },
                _ => KeyError::Io {
                    path: path.to_owned(),
                    source,
                },
            })?;
        file.write_all(self.signing.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyError::Io {
                path: path.to_owned(),
                source,
            })
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// The fingerprint of the public key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.public_key().fingerprint()
    }

    /// The libp2p keypair made from the same seed.
    pub fn libp2p_keypair(&self) -> libp2p_identity::Keypair {
        // `ed25519_from_bytes` zeroizes its argument, so it gets its own copy.
        let seed = self.signing.to_bytes();
        libp2p_identity::Keypair::ed25519_from_bytes(seed)
            .expect("every 32-byte seed is a valid ed25519 secret key")
    }

    /// The libp2p peer id of this identity.
    pub fn peer_id(&self) -> libp2p_identity::PeerId {
        self.public_key().peer_id()
    }

    /// The iroh secret key made from the same seed.
    pub fn iroh_secret_key(&self) -> iroh_base::SecretKey {
        iroh_base::SecretKey::from_bytes(self.signing.as_bytes())
    }

    /// The iroh endpoint id of this identity.
    pub fn endpoint_id(&self) -> iroh_base::EndpointId {
        self.public_key().endpoint_id()
    }

    /// Signs `message` as a message of kind `domain`.
    pub fn sign(&self, domain: Domain, message: &[u8]) -> Signature {
        Signature(self.signing.sign(&domain.framed(message)).to_bytes())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn seed(byte: u8) -> [u8; 32] {
        [byte; 32]
    }

    #[test]
    fn rfc8032_test_vector_gives_the_published_public_key() {
        // RFC 8032, section 7.1, TEST 1.
        let secret = HEXLOWER
            .decode(b"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let identity = Identity::from_seed(secret.try_into().unwrap());
        assert_eq!(
            HEXLOWER.encode(identity.public_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn libp2p_iroh_and_signing_keys_are_the_same_bytes() {
        let identity = Identity::from_seed(seed(7));
        let ours = *identity.public_key().as_bytes();

        let libp2p = identity.libp2p_keypair().public();
        let libp2p_bytes = libp2p.clone().try_into_ed25519().unwrap().to_bytes();
        let iroh_bytes = *identity.iroh_secret_key().public().as_bytes();

        assert_eq!(libp2p_bytes, ours);
        assert_eq!(iroh_bytes, ours);
        assert_eq!(*identity.endpoint_id().as_bytes(), ours);
        assert_eq!(libp2p.to_peer_id(), identity.peer_id());
        assert_eq!(
            PublicKey::from_peer_id(&identity.peer_id()).unwrap(),
            identity.public_key()
        );
    }

    #[test]
    fn libp2p_signatures_verify_as_ours_only_with_the_domain_prefix() {
        // The libp2p keypair signs raw messages; ours are framed. Signing the framed bytes
        // with libp2p must give a signature our verifier accepts: same key, same algorithm.
        let identity = Identity::from_seed(seed(9));
        let framed = Domain::Attestation.framed(b"hello");
        let sig: [u8; 64] = identity
            .libp2p_keypair()
            .sign(&framed)
            .unwrap()
            .try_into()
            .unwrap();
        let sig = Signature::from_bytes(sig);
        assert!(
            identity
                .public_key()
                .verify(Domain::Attestation, b"hello", &sig)
        );
        assert!(
            !identity
                .public_key()
                .verify(Domain::VerifiedAnnouncement, b"hello", &sig)
        );
    }

    #[test]
    fn a_signature_for_one_domain_fails_for_every_other() {
        let identity = Identity::from_seed(seed(1));
        let sig = identity.sign(Domain::Attestation, b"message");
        let key = identity.public_key();
        assert!(key.verify(Domain::Attestation, b"message", &sig));
        assert!(!key.verify(Domain::VerifiedAnnouncement, b"message", &sig));
        assert!(!key.verify(Domain::Attestation, b"messagE", &sig));
        let other = Identity::from_seed(seed(2)).public_key();
        assert!(!other.verify(Domain::Attestation, b"message", &sig));
    }

    #[test]
    fn domain_prefixes_are_distinct_and_none_prefixes_another() {
        let all = [Domain::Attestation, Domain::VerifiedAnnouncement];
        for a in all {
            for b in all {
                if a != b {
                    assert!(!a.prefix().starts_with(b.prefix()));
                }
            }
        }
    }

    #[test]
    fn public_key_text_round_trips_and_is_strict() {
        let key = Identity::from_seed(seed(3)).public_key();
        let text = key.to_string();
        assert!(text.starts_with("ed25519:"));
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert!(text.to_uppercase().parse::<PublicKey>().is_err());
        assert!(text.replace("ed25519:", "").parse::<PublicKey>().is_err());
        assert!(text[..text.len() - 1].parse::<PublicKey>().is_err());
    }

    #[test]
    fn fingerprint_is_short_grouped_and_stable() {
        let key = Identity::from_seed(seed(3)).public_key();
        let fp = key.fingerprint().to_string();
        assert_eq!(fp.len(), 19);
        assert_eq!(fp.split('-').count(), 4);
        assert_eq!(fp, key.fingerprint().to_string());
        assert_ne!(fp, Identity::from_seed(seed(4)).fingerprint().to_string());
    }

    #[test]
    fn save_writes_0600_and_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let identity = Identity::generate().unwrap();
        identity.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&path).unwrap().len(), 32);
        assert_eq!(
            Identity::load(&path).unwrap().public_key(),
            identity.public_key()
        );
        assert!(matches!(
            identity.save(&path),
            Err(KeyError::AlreadyExists { .. })
        ));
    }

    #[test]
    fn load_refuses_keys_readable_by_others_or_of_wrong_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        Identity::from_seed(seed(5)).save(&path).unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660, 0o666] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = Identity::load(&path).unwrap_err();
            assert!(
                matches!(err, KeyError::InsecurePermissions { mode: m, .. } if m == mode),
                "{err}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Identity::load(&path).is_ok());

        let short = dir.path().join("short.key");
        fs::write(&short, [1u8; 31]).unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Identity::load(&short),
            Err(KeyError::WrongLength { len: 31, .. })
        ));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let identity = Identity::from_seed(seed(0xab));
        let debug = format!("{identity:?}");
        assert!(!debug.contains(&HEXLOWER.encode(&seed(0xab))));
        assert!(debug.contains("ed25519:"));
    }
}
