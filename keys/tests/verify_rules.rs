//! Every rule of `verify_bundle`, each with its negative case.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

mod support;

use buildsrs_keys::verify::Rejection;
use buildsrs_keys::{
    ArtifactId, Bundle, Expectations, Keyring, Policy, RegistryUrl, Report, Sha256Digest,
    SignedAttestation, Source, verify_bundle,
};
use support::{SOURCE, bundle, identity, keyring, signed, statement};

const ARTIFACT: &[u8] = b"the artifact bytes";

fn artifact() -> ArtifactId {
    ArtifactId::of_bytes(ARTIFACT)
}

fn policy(threshold: usize) -> Policy {
    Policy {
        threshold,
        expect: Expectations::default(),
    }
}

fn rejections(report: &Report) -> Vec<Option<Rejection>> {
    report
        .attestations
        .iter()
        .map(|a| a.rejection.clone())
        .collect()
}

#[test]
fn two_trusted_builders_meet_threshold_two() {
    let (a, b) = (identity(1), identity(2));
    let report = verify_bundle(
        artifact(),
        &bundle(artifact(), &[&a, &b]),
        &keyring(&[&a, &b]),
        &policy(2),
    );
    assert!(report.verified, "{report}");
    assert_eq!(report.counted, 2);
    assert_eq!(report.claims.as_ref().unwrap().crate_name, "demo");
    assert_eq!(rejections(&report), [None, None]);
}

#[test]
fn threshold_not_met() {
    let (a, b) = (identity(1), identity(2));
    let report = verify_bundle(
        artifact(),
        &bundle(artifact(), &[&a, &b]),
        &keyring(&[&a, &b]),
        &policy(3),
    );
    assert!(!report.verified);
    assert_eq!(report.counted, 2);
    assert!(
        report
            .to_string()
            .starts_with("NOT VERIFIED: 2 trusted builder(s) counted, 3 required")
    );
}

#[test]
fn threshold_zero_never_verifies() {
    let a = identity(1);
    let report = verify_bundle(
        artifact(),
        &bundle(artifact(), &[&a]),
        &keyring(&[&a]),
        &policy(0),
    );
    assert!(!report.verified);
}

#[test]
fn a_different_file_never_verifies() {
    let (a, b) = (identity(1), identity(2));
    let other = ArtifactId::of_bytes(b"other bytes");
    let report = verify_bundle(
        other,
        &bundle(artifact(), &[&a, &b]),
        &keyring(&[&a, &b]),
        &policy(1),
    );
    assert!(!report.verified);
    assert_eq!(report.counted, 0);
    assert_eq!(report.bundle_mismatch, Some(artifact()));
}

#[test]
fn a_flipped_byte_in_the_file_never_verifies() {
    let (a, b) = (identity(1), identity(2));
    let mut bytes = ARTIFACT.to_vec();
    bytes[3] ^= 0x01;
    let report = verify_bundle(
        ArtifactId::of_bytes(&bytes),
        &bundle(artifact(), &[&a, &b]),
        &keyring(&[&a, &b]),
        &policy(1),
    );
    assert!(!report.verified);
}

#[test]
fn a_bundle_rewritten_to_name_the_file_still_fails_on_the_statements() {
    // An attacker who rewrites the bundle header to name their file gains nothing: every
    // signed statement still names the original bytes.
    let (a, b) = (identity(1), identity(2));
    let evil = ArtifactId::of_bytes(b"evil");
    let mut forged = bundle(artifact(), &[&a, &b]);
    forged.artifact = evil;
    let report = verify_bundle(evil, &forged, &keyring(&[&a, &b]), &policy(1));
    assert!(!report.verified);
    assert_eq!(
        rejections(&report),
        [
            Some(Rejection::WrongArtifact {
                attested: artifact()
            }),
            Some(Rejection::WrongArtifact {
                attested: artifact()
            })
        ]
    );
}

#[test]
fn bad_signature_does_not_count() {
    let (a, b) = (identity(1), identity(2));
    let mut bundle = bundle(artifact(), &[&a, &b]);
    let mut tampered = SignedAttestation::from_value(&bundle.attestations[1]).unwrap();
    tampered.statement.features = vec![];
    bundle.attestations[1] = serde_json::to_value(&tampered).unwrap();
    let report = verify_bundle(artifact(), &bundle, &keyring(&[&a, &b]), &policy(2));
    assert!(!report.verified);
    assert_eq!(rejections(&report), [None, Some(Rejection::BadSignature)]);
}

#[test]
fn unknown_key_does_not_count() {
    let (a, stranger) = (identity(1), identity(9));
    let report = verify_bundle(
        artifact(),
        &bundle(artifact(), &[&a, &stranger]),
        &keyring(&[&a]),
        &policy(2),
    );
    assert!(!report.verified);
    assert_eq!(rejections(&report), [None, Some(Rejection::UnknownKey)]);
}

#[test]
fn revoked_key_does_not_count() {
    let (a, b) = (identity(1), identity(2));
    let text = format!("{} alice\n{} bob revoked\n", a.public_key(), b.public_key());
    let keyring = Keyring::parse(&text).unwrap();
    let report = verify_bundle(
        artifact(),
        &bundle(artifact(), &[&a, &b]),
        &keyring,
        &policy(2),
    );
    assert!(!report.verified);
    assert_eq!(rejections(&report), [None, Some(Rejection::Revoked)]);
}

#[test]
fn revoked_since_counts_only_builds_finished_before_the_revocation() {
    let (a, b) = (identity(1), identity(2));
    let finished = statement(&b, artifact()).build_finished as i64;
    let at = |secs: i64| jiff::Timestamp::from_second(secs).unwrap();
    for (since, counts) in [
        (finished + 1, true),
        (finished, false),
        (finished - 1, false),
    ] {
        let text = format!(
            "{} alice\n{} bob revoked-since={}\n",
            a.public_key(),
            b.public_key(),
            at(since)
        );
        let keyring = Keyring::parse(&text).unwrap();
        let report = verify_bundle(
            artifact(),
            &bundle(artifact(), &[&a, &b]),
            &keyring,
            &policy(2),
        );
        assert_eq!(
            report.verified, counts,
            "revoked since {since}, finished {finished}"
        );
    }
}

#[test]
fn a_key_that_signs_twice_counts_once() {
    let a = identity(1);
    let report = verify_bundle(
        artifact(),
        &bundle(artifact(), &[&a, &a]),
        &keyring(&[&a]),
        &policy(2),
    );
    assert!(!report.verified);
    assert_eq!(report.counted, 1);
    assert_eq!(
        rejections(&report),
        [None, Some(Rejection::DuplicateSigner)]
    );
    assert!(
        verify_bundle(
            artifact(),
            &bundle(artifact(), &[&a, &a]),
            &keyring(&[&a]),
            &policy(1)
        )
        .verified
    );
}

fn signed_with(
    builder: &buildsrs_keys::Identity,
    edit: impl FnOnce(&mut buildsrs_keys::Statement),
) -> serde_json::Value {
    let mut statement = statement(builder, artifact());
    edit(&mut statement);
    serde_json::to_value(SignedAttestation::sign(statement, builder).unwrap()).unwrap()
}

#[test]
fn mismatched_expectations_do_not_count() {
    let (a, b) = (identity(1), identity(2));
    let bundle = bundle(artifact(), &[&a, &b]);
    let keyring = keyring(&[&a, &b]);
    let cases = [
        (
            "crate",
            Expectations {
                crate_name: Some("other".parse().unwrap()),
                ..Default::default()
            },
            "demo",
        ),
        (
            "version",
            Expectations {
                version: Some("9.9.9".parse().unwrap()),
                ..Default::default()
            },
            "1.2.3",
        ),
        (
            "target",
            Expectations {
                target: Some("aarch64-apple-darwin".parse().unwrap()),
                ..Default::default()
            },
            "x86_64-unknown-linux-gnu",
        ),
        (
            "registry",
            Expectations {
                source: Some(Source {
                    registry: "sparse+http://127.0.0.1:1/index/".parse().unwrap(),
                    sha256: SOURCE.parse().unwrap(),
                }),
                ..Default::default()
            },
            "sparse+https://index.crates.io/",
        ),
        (
            "source_sha256",
            Expectations {
                source: Some(Source {
                    registry: RegistryUrl::crates_io(),
                    sha256: Sha256Digest::from_bytes([7; 32]),
                }),
                ..Default::default()
            },
            SOURCE,
        ),
    ];
    for (field, expect, found) in cases {
        let report = verify_bundle(
            artifact(),
            &bundle,
            &keyring,
            &Policy {
                threshold: 1,
                expect: expect.clone(),
            },
        );
        assert!(!report.verified, "{field}");
        match &report.attestations[0].rejection {
            Some(Rejection::Unexpected {
                field: f,
                found: got,
                ..
            }) => {
                assert_eq!((*f, got.as_str()), (field, found));
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let all_right = Expectations {
        crate_name: Some("demo".parse().unwrap()),
        version: Some("1.2.3".parse().unwrap()),
        target: Some("x86_64-unknown-linux-gnu".parse().unwrap()),
        source: Some(Source {
            registry: RegistryUrl::crates_io(),
            sha256: SOURCE.parse().unwrap(),
        }),
    };
    assert!(
        verify_bundle(
            artifact(),
            &bundle,
            &keyring,
            &Policy {
                threshold: 2,
                expect: all_right
            }
        )
        .verified
    );
}

#[test]
fn an_attestation_that_names_no_source_does_not_count_when_one_is_expected() {
    let (a, b) = (identity(1), identity(2));
    let unpinned = |s: &mut buildsrs_keys::Statement| {
        s.registry = None;
        s.source_sha256 = None;
    };
    let mut bundle = Bundle::new(artifact());
    for builder in [&a, &b] {
        bundle.attestations.push(signed_with(builder, unpinned));
    }
    let keyring = keyring(&[&a, &b]);
    let expect = Expectations {
        source: Some(Source {
            registry: RegistryUrl::crates_io(),
            sha256: SOURCE.parse().unwrap(),
        }),
        ..Default::default()
    };
    let report = verify_bundle(
        artifact(),
        &bundle,
        &keyring,
        &Policy {
            threshold: 1,
            expect,
        },
    );
    assert!(!report.verified);
    for attestation in &report.attestations {
        assert_eq!(
            attestation.rejection,
            Some(Rejection::Unexpected {
                field: "registry",
                expected: "sparse+https://index.crates.io/".into(),
                found: "none".into(),
            })
        );
    }
    // Without the expectation they count: the source check is the user's choice.
    assert!(verify_bundle(artifact(), &bundle, &keyring, &policy(2)).verified);
}

#[test]
fn attestations_that_disagree_with_each_other_do_not_count() {
    let (a, b, c) = (identity(1), identity(2), identity(3));
    let mut bundle = bundle(artifact(), &[&a, &b]);
    bundle
        .attestations
        .push(signed_with(&c, |s| s.version = "1.2.4".parse().unwrap()));
    let keyring = keyring(&[&a, &b, &c]);
    let report = verify_bundle(artifact(), &bundle, &keyring, &policy(1));
    assert!(!report.verified);
    assert_eq!(rejections(&report), vec![Some(Rejection::Disagreement); 3]);

    // Saying which claim is expected resolves the conflict.
    let expect = Expectations {
        version: Some("1.2.3".parse().unwrap()),
        ..Default::default()
    };
    let report = verify_bundle(
        artifact(),
        &bundle,
        &keyring,
        &Policy {
            threshold: 2,
            expect,
        },
    );
    assert!(report.verified, "{report}");
    assert!(matches!(
        report.attestations[2].rejection,
        Some(Rejection::Unexpected {
            field: "version",
            ..
        })
    ));
}

#[test]
fn one_builder_claiming_two_things_is_a_disagreement_not_a_duplicate() {
    let a = identity(1);
    let mut bundle = bundle(artifact(), &[&a]);
    bundle
        .attestations
        .push(signed_with(&a, |s| s.crate_name = "other".parse().unwrap()));
    let report = verify_bundle(artifact(), &bundle, &keyring(&[&a]), &policy(1));
    assert!(!report.verified);
    assert_eq!(rejections(&report), vec![Some(Rejection::Disagreement); 2]);
}

#[test]
fn a_malformed_entry_is_reported_and_the_others_still_count() {
    let (a, b) = (identity(1), identity(2));
    let mut bundle = bundle(artifact(), &[&a, &b]);
    bundle
        .attestations
        .insert(0, serde_json::json!({"signature": "00", "statement": {}}));
    bundle
        .attestations
        .push(serde_json::json!("not an attestation"));
    let report = verify_bundle(artifact(), &bundle, &keyring(&[&a, &b]), &policy(2));
    assert!(report.verified, "{report}");
    assert!(matches!(
        report.attestations[0].rejection,
        Some(Rejection::Malformed { .. })
    ));
    assert!(matches!(
        report.attestations[3].rejection,
        Some(Rejection::Malformed { .. })
    ));
}

#[test]
fn signed_attestations_survive_the_bundle_round_trip() {
    let (a, b) = (identity(1), identity(2));
    let original = bundle(artifact(), &[&a, &b]);
    let reread = buildsrs_keys::Bundle::from_json(&original.to_json_pretty()).unwrap();
    assert!(verify_bundle(artifact(), &reread, &keyring(&[&a, &b]), &policy(2)).verified);
    let first = signed(&a, artifact());
    assert_eq!(
        SignedAttestation::from_value(&reread.attestations[0]).unwrap(),
        first
    );
}
