//! Offline verification: did at least `threshold` distinct trusted builders sign statements
//! naming exactly these bytes?
//!
//! Rules, in the order they are applied to each attestation:
//! 1. The bundle must name the artifact's hash and size, or nothing verifies.
//! 2. The attestation must decode, and its signature must verify for its builder key.
//! 3. Its statement must name the artifact's hash and size.
//! 4. The builder must be in the keyring and not revoked for the statement's build time.
//! 5. Its crate, version and target must equal the expectations the caller gave, and so must
//!    its registry and source checksum when the caller read them from the index or a
//!    `Cargo.lock`.
//! 6. If the attestations still in the running name more than one (crate, version, target),
//!    none of them counts: the bytes are claimed to be two different things. Passing
//!    expectations resolves such a conflict in favour of the expected claim.
//! 7. A builder counts once; its further attestations are reported as duplicates.
//!
//! Every attestation gets a verdict with a reason, so a user sees why a bundle fell short.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use serde::Serialize;

use crate::attestation::SignedAttestation;
use crate::bundle::Bundle;
use crate::hash::{ArtifactId, Sha256Digest};
use crate::identity::PublicKey;
use crate::keyring::Keyring;
use crate::names::{CrateName, CrateVersion, RegistryUrl, TargetTriple};
use crate::statement::Statement;

/// What the user expects the artifact to be. `None` means "whatever the attestations agree on".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Expectations {
    /// The crate name.
    #[serde(rename = "crate")]
    pub crate_name: Option<CrateName>,
    /// The crate version.
    pub version: Option<CrateVersion>,
    /// The target triple.
    pub target: Option<TargetTriple>,
    /// The source the artifact must be built from: the registry and the checksum its index
    /// lists (read by the user, from the index or a `Cargo.lock`). An attestation that names
    /// another registry or checksum, or none, does not count.
    pub source: Option<Source>,
}

/// A crate's source as a registry's index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    /// The registry.
    pub registry: RegistryUrl,
    /// The `.crate` file's SHA-256 (`cksum` in the index, `checksum` in a `Cargo.lock`).
    pub sha256: Sha256Digest,
}

/// How many distinct trusted builders must agree, and on what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Distinct trusted keys needed; at least 1.
    pub threshold: usize,
    /// What the artifact must be.
    pub expect: Expectations,
}

/// Why an attestation does not count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Rejection {
    /// It could not be decoded.
    Malformed {
        /// The decoding error.
        error: String,
    },
    /// Its signature does not verify.
    BadSignature,
    /// It names other bytes than the file's.
    WrongArtifact {
        /// What it names.
        attested: ArtifactId,
    },
    /// Its builder is not in the keyring.
    UnknownKey,
    /// Its builder is revoked (for builds finished at that time).
    Revoked,
    /// It names another crate, version, target, registry or source checksum than expected.
    Unexpected {
        /// `crate`, `version`, `target`, `registry` or `source_sha256`.
        field: &'static str,
        /// What the user expected.
        expected: String,
        /// What the statement says.
        found: String,
    },
    /// Its builder already counted for an earlier attestation in the bundle.
    DuplicateSigner,
    /// Trusted attestations of these bytes disagree on what they are.
    Disagreement,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { error } => write!(f, "malformed: {error}"),
            Self::BadSignature => f.write_str("signature does not verify"),
            Self::WrongArtifact { attested } => write!(f, "attests different bytes: {attested}"),
            Self::UnknownKey => f.write_str("signer is not in the keyring"),
            Self::Revoked => f.write_str("signer is revoked in the keyring"),
            Self::Unexpected {
                field,
                expected,
                found,
            } => write!(f, "{field} is {found:?}, expected {expected:?}"),
            Self::DuplicateSigner => f.write_str("signer already counted once"),
            Self::Disagreement => f.write_str(
                "trusted attestations disagree on crate/version/target; pass --crate, \
                 --version and --target to say which you expect",
            ),
        }
    }
}

/// The verdict on one attestation of the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttestationReport {
    /// Position in the bundle, from 0.
    pub index: usize,
    /// The signing key, when the attestation decoded.
    pub builder: Option<PublicKey>,
    /// The keyring name of the signer, when known.
    pub builder_name: Option<String>,
    /// The statement's crate, version and target, when it decoded.
    pub claims: Option<Claims>,
    /// `None` when it counts; otherwise why not.
    pub rejection: Option<Rejection>,
}

/// What an attestation says the artifact is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Claims {
    /// The crate name.
    #[serde(rename = "crate")]
    pub crate_name: CrateName,
    /// The version.
    pub version: CrateVersion,
    /// The target triple.
    pub target: TargetTriple,
}

impl fmt::Display for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} for {}",
            self.crate_name, self.version, self.target
        )
    }
}

/// The outcome of verifying an artifact against a bundle and keyring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Whether the threshold was met.
    pub verified: bool,
    /// The file's hash and size.
    pub artifact: ArtifactId,
    /// The policy applied.
    pub threshold: usize,
    /// Distinct trusted keys whose attestations counted.
    pub counted: usize,
    /// What the counted attestations agree the artifact is.
    pub claims: Option<Claims>,
    /// Set when the bundle is for other bytes; then nothing counts.
    pub bundle_mismatch: Option<ArtifactId>,
    /// One verdict per attestation, in bundle order.
    pub attestations: Vec<AttestationReport>,
}

/// Verifies `artifact` (the file's own hash and size) against a bundle under a policy.
pub fn verify_bundle(
    artifact: ArtifactId,
    bundle: &Bundle,
    keyring: &Keyring,
    policy: &Policy,
) -> Report {
    let bundle_matches = bundle.artifact == artifact;
    let mut reports: Vec<AttestationReport> = bundle
        .decode_attestations()
        .enumerate()
        .map(|(index, decoded)| judge_one(index, decoded, artifact, keyring, policy))
        .collect();

    // Rule 6: countable attestations must agree on what the bytes are.
    let distinct: BTreeSet<&Claims> = reports
        .iter()
        .filter(|r| r.rejection.is_none())
        .filter_map(|r| r.claims.as_ref())
        .collect();
    let agreed = match distinct.len() {
        0 => None,
        1 => distinct.into_iter().next().cloned(),
        _ => {
            for report in reports.iter_mut().filter(|r| r.rejection.is_none()) {
                report.rejection = Some(Rejection::Disagreement);
            }
            None
        }
    };

    // Rule 7: the first countable attestation of each builder counts, later ones do not.
    let mut seen: HashSet<PublicKey> = HashSet::new();
    for report in reports.iter_mut().filter(|r| r.rejection.is_none()) {
        if let Some(builder) = report.builder
            && !seen.insert(builder)
        {
            report.rejection = Some(Rejection::DuplicateSigner);
        }
    }

    let counted = if bundle_matches {
        reports.iter().filter(|r| r.rejection.is_none()).count()
    } else {
        0
    };
    Report {
        verified: bundle_matches && policy.threshold > 0 && counted >= policy.threshold,
        artifact,
        threshold: policy.threshold,
        counted,
        claims: agreed,
        bundle_mismatch: (!bundle_matches).then_some(bundle.artifact),
        attestations: reports,
    }
}

fn judge_one(
    index: usize,
    decoded: Result<SignedAttestation, crate::AttestationError>,
    artifact: ArtifactId,
    keyring: &Keyring,
    policy: &Policy,
) -> AttestationReport {
    let attestation = match decoded {
        Ok(attestation) => attestation,
        Err(error) => {
            return AttestationReport {
                index,
                builder: None,
                builder_name: None,
                claims: None,
                rejection: Some(Rejection::Malformed {
                    error: error.to_string(),
                }),
            };
        }
    };
    let statement = &attestation.statement;
    let entry = keyring.get(&statement.builder);
    let claims = Claims {
        crate_name: statement.crate_name.clone(),
        version: statement.version.clone(),
        target: statement.target.clone(),
    };
    let rejection = if attestation.verify_signature().is_err() {
        Some(Rejection::BadSignature)
    } else if statement.artifact != artifact {
        Some(Rejection::WrongArtifact {
            attested: statement.artifact,
        })
    } else if entry.is_none() {
        Some(Rejection::UnknownKey)
    } else if !entry.is_some_and(|e| e.trusted_for(statement.build_finished)) {
        Some(Rejection::Revoked)
    } else {
        unexpected(&policy.expect, statement)
    };
    AttestationReport {
        index,
        builder: Some(statement.builder),
        builder_name: entry.map(|e| e.name.clone()),
        claims: Some(claims),
        rejection,
    }
}

fn unexpected(expect: &Expectations, statement: &Statement) -> Option<Rejection> {
    let text = |value: Option<&str>| value.map(str::to_owned);
    let absent = || "none".to_owned();
    let (registry, sha256) = match &expect.source {
        Some(source) => (
            Some(source.registry.to_string()),
            Some(source.sha256.to_string()),
        ),
        None => (None, None),
    };
    [
        (
            "crate",
            text(expect.crate_name.as_deref()),
            statement.crate_name.to_string(),
        ),
        (
            "version",
            text(expect.version.as_deref()),
            statement.version.to_string(),
        ),
        (
            "target",
            text(expect.target.as_deref()),
            statement.target.to_string(),
        ),
        (
            "registry",
            registry,
            statement
                .registry
                .as_ref()
                .map_or_else(absent, ToString::to_string),
        ),
        (
            "source_sha256",
            sha256,
            statement
                .source_sha256
                .as_ref()
                .map_or_else(absent, ToString::to_string),
        ),
    ]
    .into_iter()
    .find_map(|(field, expected, found)| match expected {
        Some(expected) if expected != found => Some(Rejection::Unexpected {
            field,
            expected,
            found,
        }),
        _ => None,
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.verified {
            write!(
                f,
                "VERIFIED: {} trusted builder(s) of {} required attest ",
                self.counted, self.threshold
            )?;
            match &self.claims {
                Some(claims) => writeln!(f, "{claims}")?,
                None => writeln!(f, "this artifact")?,
            }
        } else {
            writeln!(
                f,
                "NOT VERIFIED: {} trusted builder(s) counted, {} required",
                self.counted, self.threshold
            )?;
        }
        writeln!(f, "artifact: {}", self.artifact)?;
        if let Some(other) = &self.bundle_mismatch {
            writeln!(
                f,
                "the bundle is for different bytes ({other}); no attestation in it can count"
            )?;
        }
        if self.attestations.is_empty() {
            writeln!(f, "the bundle holds no attestations")?;
        }
        for report in &self.attestations {
            let who = match (&report.builder_name, &report.builder) {
                (Some(name), Some(key)) => format!("{name} ({})", key.fingerprint()),
                (None, Some(key)) => format!("{key} ({})", key.fingerprint()),
                _ => "?".to_owned(),
            };
            let what = report
                .claims
                .as_ref()
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default();
            match &report.rejection {
                None => writeln!(f, "  #{} counted: {who}{what}", report.index)?,
                Some(why) => writeln!(f, "  #{} rejected: {who}{what}: {why}", report.index)?,
            }
        }
        Ok(())
    }
}
