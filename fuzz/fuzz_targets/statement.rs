//! Statements and signed attestations (what a node sends inside a result, what a bundle
//! holds) must decode strictly or not at all, never panic, and what decodes must survive its
//! canonical encoding: the signature covers the canonical bytes, so a decoded statement whose
//! re-encoding said something else would be verified as one thing and believed as another.
#![no_main]

use buildsrs_keys::{SignedAttestation, Statement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(statement) = Statement::from_json(data) {
        let canonical = statement.canonical_bytes();
        let again = Statement::from_json(&canonical).expect("a canonical statement decodes");
        assert_eq!(again, statement);
        // Canonical means one encoding: re-encoding what decoded gives the same bytes.
        assert_eq!(again.canonical_bytes(), canonical);
    }
    if let Ok(attestation) = SignedAttestation::from_json(data) {
        // A signature over other bytes is refused, not a panic.
        let _ = attestation.verify_signature();
        let canonical = attestation.to_canonical_json();
        let again =
            SignedAttestation::from_json(&canonical).expect("a canonical attestation decodes");
        assert_eq!(again, attestation);
        assert_eq!(again.to_canonical_json(), canonical);
    }
});
