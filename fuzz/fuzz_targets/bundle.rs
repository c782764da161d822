//! Bundle parsing and verification must never panic, whatever the bytes.
#![no_main]

use buildsrs_keys::{ArtifactId, Bundle, Expectations, Identity, Keyring, Policy, verify_bundle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = Bundle::from_json(data) else {
        return;
    };
    let mut keyring = Keyring::default();
    let builder = Identity::from_seed([1; 32]);
    let _ = keyring.push(builder.public_key(), "fuzz");
    let policy = Policy {
        threshold: 1,
        expect: Expectations::default(),
    };
    // Verify against the artifact the bundle names and against other bytes.
    let report = verify_bundle(bundle.artifact, &bundle, &keyring, &policy);
    let _ = report.to_string();
    let _ = serde_json::to_string(&report);
    let report = verify_bundle(ArtifactId::of_bytes(data), &bundle, &keyring, &policy);
    assert!(!report.verified || report.artifact == bundle.artifact);
    // What parsed must serialize back and parse again.
    let again = Bundle::from_json(&bundle.to_json_pretty()).expect("a parsed bundle re-parses");
    assert_eq!(again.artifact, bundle.artifact);
});
