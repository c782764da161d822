//! Fixtures shared by the integration tests: deterministic identities and statements.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.
#![allow(dead_code)] // Each test binary uses a different subset.

use buildsrs_keys::{
    ArtifactId, Bundle, Identity, Keyring, RegistryUrl, SCHEMA_VERSION, SignedAttestation,
    Statement,
};

/// The identity with the seed `[n; 32]`.
pub fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

/// The source checksum every [`statement`] names (on crates.io).
pub const SOURCE: &str = "5f0c1fbbf3a0b7d9b31ec6c4b31e81bd5c2c50bd4f6fd25d8f2b1bbf8c8c6c0a";

/// A valid statement by `builder` about `artifact`.
pub fn statement(builder: &Identity, artifact: ArtifactId) -> Statement {
    Statement {
        schema: SCHEMA_VERSION,
        crate_name: "demo".parse().unwrap(),
        version: "1.2.3".parse().unwrap(),
        registry: Some(RegistryUrl::crates_io()),
        source_sha256: Some(SOURCE.parse().unwrap()),
        cargo_lock_sha256: None,
        target: "x86_64-unknown-linux-gnu".parse().unwrap(),
        toolchain: "1.95.0/59807616e/x86_64-unknown-linux-gnu".parse().unwrap(),
        features: vec!["default".into()],
        settings_digest: None,
        artifact,
        builder: builder.public_key(),
        build_started: 1_790_000_000,
        build_finished: 1_790_000_060,
    }
}

/// `statement` signed by its builder.
pub fn signed(builder: &Identity, artifact: ArtifactId) -> SignedAttestation {
    SignedAttestation::sign(statement(builder, artifact), builder).unwrap()
}

/// A bundle with one attestation by each of `builders`.
pub fn bundle(artifact: ArtifactId, builders: &[&Identity]) -> Bundle {
    let mut bundle = Bundle::new(artifact);
    for builder in builders {
        bundle.push(&signed(builder, artifact)).unwrap();
    }
    bundle
}

/// A keyring trusting `builders`, named `b1`, `b2`, ….
pub fn keyring(builders: &[&Identity]) -> Keyring {
    let mut keyring = Keyring::default();
    for (i, builder) in builders.iter().enumerate() {
        keyring
            .push(builder.public_key(), &format!("b{}", i + 1))
            .unwrap();
    }
    keyring
}
