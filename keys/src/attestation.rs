//! A signed attestation: a [`Statement`] and the builder's signature over its canonical bytes.
//!
//! The signature is made in the [`Domain::Attestation`] domain by the key the statement names
//! as `builder`, so the statement says who signed it and a signature cannot be lifted onto a
//! different kind of message.

use serde::{Deserialize, Serialize};

use crate::identity::{Domain, Identity, Signature};
use crate::statement::{Statement, StatementError, canonical_json};

/// Why an attestation could not be made or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// The JSON is not an attestation.
    #[error("malformed attestation: {0}")]
    Decode(String),
    /// The statement inside is not valid.
    #[error(transparent)]
    Statement(#[from] StatementError),
    /// The signature does not verify with the statement's builder key.
    #[error("signature does not verify for builder {builder}")]
    BadSignature {
        /// The key the statement names.
        builder: String,
    },
    /// Asked to sign a statement that names someone else as builder.
    #[error("the statement names builder {named} but the signing key is {signer}")]
    WrongSigner {
        /// The builder the statement names.
        named: String,
        /// The key that was asked to sign.
        signer: String,
    },
}

/// A statement with its signature. Serialized as `{"signature": …, "statement": {…}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAttestation {
    /// Ed25519 signature by `statement.builder` over the statement's canonical bytes.
    pub signature: Signature,
    /// What is attested.
    pub statement: Statement,
}

impl SignedAttestation {
    /// Validates and signs a statement. The identity must be the statement's builder.
    pub fn sign(statement: Statement, identity: &Identity) -> Result<Self, AttestationError> {
        statement.validate()?;
        if statement.builder != identity.public_key() {
            return Err(AttestationError::WrongSigner {
                named: statement.builder.to_string(),
                signer: identity.public_key().to_string(),
            });
        }
        let signature = identity.sign(Domain::Attestation, &statement.canonical_bytes());
        Ok(Self {
            signature,
            statement,
        })
    }

    /// Checks the statement's syntax and the builder's signature over it. Says nothing about
    /// whether the builder is trusted: that is the keyring's job.
    pub fn verify_signature(&self) -> Result<(), AttestationError> {
        self.statement.validate()?;
        let message = self.statement.canonical_bytes();
        if self
            .statement
            .builder
            .verify(Domain::Attestation, &message, &self.signature)
        {
            Ok(())
        } else {
            Err(AttestationError::BadSignature {
                builder: self.statement.builder.to_string(),
            })
        }
    }

    /// The canonical JSON of the whole signed attestation (how nodes send it on the wire).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        canonical_json(self)
    }

    /// Decodes a signed attestation from JSON text, checking syntax but not the signature.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestationError> {
        let attestation: Self =
            serde_json::from_slice(bytes).map_err(|e| AttestationError::Decode(e.to_string()))?;
        attestation.statement.validate()?;
        Ok(attestation)
    }

    /// Decodes one entry of a bundle.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, AttestationError> {
        let attestation =
            Self::deserialize(value).map_err(|e| AttestationError::Decode(e.to_string()))?;
        attestation.statement.validate()?;
        Ok(attestation)
    }

    /// Decodes and verifies the signature in one step.
    pub fn from_json_verified(bytes: &[u8]) -> Result<Self, AttestationError> {
        let attestation = Self::from_json(bytes)?;
        attestation.verify_signature()?;
        Ok(attestation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::ArtifactId;
    use crate::statement::{SCHEMA_VERSION, Toolchain};

    fn statement_for(identity: &Identity) -> Statement {
        Statement {
            schema: SCHEMA_VERSION,
            crate_name: "demo".parse().unwrap(),
            version: "1.0.0".parse().unwrap(),
            registry: None,
            source_sha256: None,
            cargo_lock_sha256: None,
            target: "x86_64-unknown-linux-gnu".parse().unwrap(),
            toolchain: "1.95.0/abc/x86_64-unknown-linux-gnu"
                .parse::<Toolchain>()
                .unwrap(),
            features: vec![],
            settings_digest: None,
            artifact: ArtifactId::of_bytes(b"demo"),
            builder: identity.public_key(),
            build_started: 10,
            build_finished: 20,
        }
    }

    #[test]
    fn sign_then_verify_and_round_trip() {
        let identity = Identity::from_seed([4; 32]);
        let signed = SignedAttestation::sign(statement_for(&identity), &identity).unwrap();
        signed.verify_signature().unwrap();
        let bytes = signed.to_canonical_json();
        assert_eq!(
            SignedAttestation::from_json_verified(&bytes).unwrap(),
            signed
        );
    }

    #[test]
    fn a_key_cannot_sign_in_another_builders_name() {
        let alice = Identity::from_seed([1; 32]);
        let mallory = Identity::from_seed([2; 32]);
        let err = SignedAttestation::sign(statement_for(&alice), &mallory).unwrap_err();
        assert!(matches!(err, AttestationError::WrongSigner { .. }));
    }

    #[test]
    fn changing_the_statement_or_the_builder_breaks_the_signature() {
        let alice = Identity::from_seed([1; 32]);
        let signed = SignedAttestation::sign(statement_for(&alice), &alice).unwrap();

        let mut other_version = signed.clone();
        other_version.statement.version = "1.0.1".parse().unwrap();
        assert!(matches!(
            other_version.verify_signature(),
            Err(AttestationError::BadSignature { .. })
        ));

        let mut claimed_by_bob = signed;
        claimed_by_bob.statement.builder = Identity::from_seed([3; 32]).public_key();
        assert!(claimed_by_bob.verify_signature().is_err());
    }

    #[test]
    fn an_announcement_signature_is_not_an_attestation_signature() {
        let alice = Identity::from_seed([1; 32]);
        let statement = statement_for(&alice);
        let wrong_domain = alice.sign(Domain::VerifiedAnnouncement, &statement.canonical_bytes());
        let forged = SignedAttestation {
            signature: wrong_domain,
            statement,
        };
        assert!(forged.verify_signature().is_err());
    }
}
