//! Frozen test vectors: a fixed seed and statement must always give the same public key,
//! fingerprint, ids, canonical bytes and signature. A change here breaks every existing
//! keyring and bundle, so it must be deliberate: regenerate with `BUILDSRS_BLESS=1`.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::path::PathBuf;

use anyhow::{Context, Result};
use buildsrs_keys::{Identity, SignedAttestation, Statement};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Vector {
    seed: String,
    public_key: String,
    fingerprint: String,
    peer_id: String,
    endpoint_id: String,
    statement: serde_json::Value,
    canonical_statement: String,
    signature: String,
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors.json")
}

fn compute(seed_hex: &str, statement: &serde_json::Value) -> Result<Vector> {
    let seed: [u8; 32] = data_encoding::HEXLOWER
        .decode(seed_hex.as_bytes())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("seed must be 32 bytes"))?;
    let identity = Identity::from_seed(seed);
    let mut statement: Statement = serde_json::from_value(statement.clone())?;
    statement.builder = identity.public_key();
    let signed = SignedAttestation::sign(statement, &identity)?;
    Ok(Vector {
        seed: seed_hex.to_owned(),
        public_key: identity.public_key().to_string(),
        fingerprint: identity.fingerprint().to_string(),
        peer_id: identity.peer_id().to_string(),
        endpoint_id: identity.endpoint_id().to_string(),
        statement: serde_json::to_value(&signed.statement)?,
        canonical_statement: String::from_utf8(signed.statement.canonical_bytes())?,
        signature: signed.signature.to_string(),
    })
}

#[test]
fn vectors_match() -> Result<()> {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let frozen: Vec<Vector> = serde_json::from_str(&text)?;
    assert!(!frozen.is_empty());
    let computed: Vec<Vector> = frozen
        .iter()
        .map(|v| compute(&v.seed, &v.statement))
        .collect::<Result<_>>()?;
    if std::env::var_os("BUILDSRS_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&computed)? + "\n")?;
        return Ok(());
    }
    for (frozen, computed) in frozen.iter().zip(&computed) {
        assert_eq!(frozen, computed);
        // The frozen signature must also verify on its own, from the frozen text alone.
        let signed = SignedAttestation::from_json_verified(
            format!(
                "{{\"signature\":\"{}\",\"statement\":{}}}",
                frozen.signature, frozen.canonical_statement
            )
            .as_bytes(),
        )?;
        assert_eq!(signed.statement.builder.to_string(), frozen.public_key);
    }
    Ok(())
}
