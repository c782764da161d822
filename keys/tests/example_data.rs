//! The example shipped in docs/example (used by README and `scripts/demo`) must keep
//! verifying, and must stop verifying when anything about it is off.

use std::path::PathBuf;

use anyhow::Result;
use buildsrs_keys::{ArtifactId, Bundle, Expectations, Keyring, Policy, verify_bundle};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/example")
        .join(name)
}

const ARTIFACT: &str = "hello-0.1.0-x86_64-unknown-linux-gnu.txt";

#[test]
fn shipped_example_verifies_three_of_three() -> Result<()> {
    let artifact = ArtifactId::of_file(&example(ARTIFACT))?;
    let bundle = Bundle::load(&Bundle::path_for(&example(ARTIFACT)))?;
    let keyring = Keyring::load(&example("keyring"))?;
    let policy = |threshold| Policy {
        threshold,
        expect: Expectations {
            crate_name: Some("hello".parse().unwrap()),
            version: Some("0.1.0".parse().unwrap()),
            target: Some("x86_64-unknown-linux-gnu".parse().unwrap()),
            source: None,
        },
    };
    let report = verify_bundle(artifact, &bundle, &keyring, &policy(3));
    assert!(report.verified, "{report}");
    assert!(!verify_bundle(artifact, &bundle, &keyring, &policy(4)).verified);
    let mut one_key_less = Keyring::default();
    for entry in &keyring.entries()[1..] {
        one_key_less.push(entry.key, &entry.name)?;
    }
    assert!(!verify_bundle(artifact, &bundle, &one_key_less, &policy(3)).verified);
    Ok(())
}
