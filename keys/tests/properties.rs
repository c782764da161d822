//! Properties over generated statements: encoding round-trips, and no single-byte change of
//! a signed attestation survives verification.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use buildsrs_keys::{
    ArtifactId, Blake3Hash, Identity, RegistryUrl, SCHEMA_VERSION, Sha256Digest, SignedAttestation,
    Statement, Toolchain,
};
use proptest::prelude::*;

fn digest() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn version() -> impl Strategy<Value = String> {
    (
        0u32..100,
        0u32..100,
        0u32..1000,
        proptest::option::of("[a-z]{1,6}(\\.[1-9][0-9]{0,2})?"),
    )
        .prop_map(|(major, minor, patch, pre)| match pre {
            Some(pre) => format!("{major}.{minor}.{patch}-{pre}"),
            None => format!("{major}.{minor}.{patch}"),
        })
}

prop_compose! {
    fn statement()(
        seed in any::<[u8; 32]>(),
        crate_name in "[a-zA-Z][a-zA-Z0-9_-]{0,30}",
        version in version(),
        source in proptest::option::of(digest()),
        lock in proptest::option::of(digest()),
        target in "[a-z0-9_]{1,8}-[a-z]{1,8}-[a-z]{1,8}(-[a-z]{1,6})?",
        release in "[0-9]\\.[0-9]{1,2}\\.[0-9](-nightly)?",
        commit in "[0-9a-f]{9,40}",
        features in proptest::collection::btree_set("[a-z][a-z0-9_-]{0,12}", 0..5),
        settings in proptest::option::of(digest()),
        artifact in digest(),
        size in 0u64..(1 << 53),
        started in 0u64..(1 << 40),
        took in 0u64..100_000,
    ) -> (Identity, Statement) {
        let identity = Identity::from_seed(seed);
        let statement = Statement {
            schema: SCHEMA_VERSION,
            crate_name: crate_name.parse().unwrap(),
            version: version.parse().unwrap(),
            registry: source.map(|_| RegistryUrl::crates_io()),
            source_sha256: source.map(Sha256Digest::from_bytes),
            cargo_lock_sha256: lock.map(Sha256Digest::from_bytes),
            target: target.parse().unwrap(),
            toolchain: Toolchain::from_parts(&release, &commit, &target).unwrap(),
            features: features.into_iter().collect(),
            settings_digest: settings.map(Blake3Hash::from_bytes),
            artifact: ArtifactId { blake3: Blake3Hash::from_bytes(artifact), size },
            builder: identity.public_key(),
            build_started: started,
            build_finished: started + took,
        };
        (identity, statement)
    }
}

proptest! {
    #[test]
    fn statement_encoding_round_trips((_, statement) in statement()) {
        let bytes = statement.canonical_bytes();
        let decoded = Statement::from_json(&bytes).unwrap();
        prop_assert_eq!(&decoded, &statement);
        prop_assert_eq!(decoded.canonical_bytes(), bytes);
    }

    #[test]
    fn signed_attestation_round_trips((identity, statement) in statement()) {
        let signed = SignedAttestation::sign(statement, &identity).unwrap();
        let bytes = signed.to_canonical_json();
        prop_assert_eq!(SignedAttestation::from_json_verified(&bytes).unwrap(), signed);
    }

    #[test]
    fn any_single_byte_change_fails_verification(
        (identity, statement) in statement(),
        position in any::<proptest::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let signed = SignedAttestation::sign(statement, &identity).unwrap();
        let mut bytes = signed.to_canonical_json();
        let at = position.index(bytes.len());
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        prop_assert!(SignedAttestation::from_json_verified(&bytes).is_err());
    }
}
