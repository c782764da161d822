//! The job protocol's rules, tested through `JobService::handle` without a network, on both
//! store backends: who gets work, and which results count.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use buildsrs_coordinator::jobs::JobService;
use buildsrs_coordinator::sessions::Sessions;
use buildsrs_fixture_registry::FixtureRegistry;
use buildsrs_keys::{
    ArtifactId, Identity, SCHEMA_VERSION, Sha256Digest, SignedAttestation, Statement, Toolchain,
};
use buildsrs_protocol::{
    Attested, BlobAddress, Hello, Job, JobResult, NoJobReason, Outcome, RejectKind, Request,
    Response, Standing,
};
use buildsrs_store::testing::{TARGET, TOOLCHAIN, matrix};
use buildsrs_store::{IndexVersion, LeaseId, Store, TaskId, TaskState, store_test};
use jiff::Timestamp;
use tokio::sync::Notify;

pub(crate) struct Scene {
    pub(crate) service: JobService,
    verified: Arc<Notify>,
    _registry: FixtureRegistry,
}

/// A store with `hello-bin 0.1.0` planned (quorum 2) and a service over it.
pub(crate) async fn scene(store: &Store, auto_approve: bool) -> Scene {
    let registry = FixtureRegistry::start().await.unwrap();
    let published = registry.publish("hello-bin", "0.1.0").unwrap();
    let now = Timestamp::now();
    matrix(store, now).await;
    store.watch_crate("hello-bin", 0, now).await.unwrap();
    store
        .upsert_versions(
            vec![IndexVersion {
                name: "hello-bin".parse().unwrap(),
                version: "0.1.0".parse().unwrap(),
                cksum: published.cksum.parse().unwrap(),
                yanked: false,
                download_url: published.download_url.clone(),
                rust_version: None,
            }],
            now,
        )
        .await
        .unwrap();
    let verified = Arc::new(Notify::new());
    let service = JobService::new(
        store.clone(),
        auto_approve,
        Sessions::default(),
        Arc::clone(&verified),
    );
    Scene {
        service,
        verified,
        _registry: registry,
    }
}

pub(crate) fn hello(name: &str) -> Request {
    Request::Hello(Hello {
        agent: "test".into(),
        name: name.into(),
        targets: vec![TARGET.parse().unwrap()],
        toolchains: vec![TOOLCHAIN.parse().unwrap()],
        capacity: 1,
        blobs: BlobAddress {
            endpoint_id: "x".into(),
            addrs: vec![],
        },
    })
}

pub(crate) fn attestation(
    signer: &Identity,
    builder: &Identity,
    job: &Job,
    crate_name: &str,
    bytes: &[u8],
) -> Vec<u8> {
    let statement = Statement {
        schema: SCHEMA_VERSION,
        crate_name: crate_name.parse().unwrap(),
        version: job.version.clone(),
        registry: Some(buildsrs_keys::RegistryUrl::crates_io()),
        source_sha256: Some(job.source_sha256),
        cargo_lock_sha256: None,
        target: job.target.clone(),
        toolchain: format!("{TOOLCHAIN}/abc/{TARGET}")
            .parse::<Toolchain>()
            .unwrap(),
        features: vec![],
        settings_digest: None,
        artifact: ArtifactId::of_bytes(bytes),
        builder: builder.public_key(),
        build_started: 1,
        build_finished: 2,
    };
    if signer.public_key() == builder.public_key() {
        SignedAttestation::sign(statement, signer)
            .unwrap()
            .to_canonical_json()
    } else {
        // Another key signing in the builder's name: sign as the signer, then swap the name.
        let mut statement = statement;
        statement.builder = signer.public_key();
        let signed = SignedAttestation::sign(statement, signer).unwrap();
        let json = String::from_utf8(signed.to_canonical_json()).unwrap();
        json.replace(
            &signer.public_key().to_string(),
            &builder.public_key().to_string(),
        )
        .into_bytes()
    }
}

async fn take_job(service: &JobService, node: &Identity) -> Job {
    match service.handle(node.public_key(), Request::RequestJob).await {
        Response::Job(job) => job,
        other => panic!("expected a job, got {other:?}"),
    }
}

pub(crate) fn submit(job: &Job, outcome: Outcome) -> Request {
    Request::Submit(JobResult {
        task_id: job.task_id,
        lease_id: job.lease_id,
        epoch: job.epoch,
        outcome,
        log: b"log".to_vec(),
    })
}

/// The answer is a refusal of this kind.
fn assert_refused(answer: &Response, kind: RejectKind) {
    assert!(
        matches!(answer, Response::Rejected { kind: k, .. } if *k == kind),
        "expected a {kind:?} refusal, got {answer:?}"
    );
}

store_test!(
    pending_builders_get_no_work_until_approved,
    |store: Store| async move {
        let s = scene(&store, false).await;
        let node = Identity::from_seed([1; 32]);
        let key = node.public_key();
        // No hello yet on this coordinator: say hello first.
        assert!(matches!(
            s.service.handle(key, Request::RequestJob).await,
            Response::NoJob {
                reason: NoJobReason::HelloFirst,
                ..
            }
        ));
        assert_eq!(
            s.service.handle(key, hello("n1")).await,
            Response::Welcome {
                standing: Standing::Pending
            }
        );
        assert!(matches!(
            s.service.handle(key, Request::RequestJob).await,
            Response::NoJob {
                reason: NoJobReason::NotApproved,
                ..
            }
        ));
        store.approve_builder(&key, Timestamp::now()).await.unwrap();
        let job = take_job(&s.service, &node).await;
        assert_eq!(job.crate_name, "hello-bin");
        assert!(
            job.download_url.contains("/dl/hello-bin/0.1.0/"),
            "{}",
            job.download_url
        );
        // Saying hello again keeps the standing.
        assert_eq!(
            s.service.handle(key, hello("n1")).await,
            Response::Welcome {
                standing: Standing::Approved
            }
        );
    }
);

store_test!(
    only_attestations_by_the_connection_key_about_the_leased_task_count,
    |store: Store| async move {
        let s = scene(&store, true).await;
        let (a, b, mallory) = (
            Identity::from_seed([1; 32]),
            Identity::from_seed([2; 32]),
            Identity::from_seed([3; 32]),
        );
        for (n, id) in [("a", &a), ("b", &b), ("m", &mallory)] {
            s.service.handle(id.public_key(), hello(n)).await;
        }
        let job_a = take_job(&s.service, &a).await;

        // Signed by someone else in a's name: refused, nothing recorded.
        let forged = attestation(&mallory, &a, &job_a, "hello-bin", b"bin");
        let answer = s
            .service
            .handle(
                a.public_key(),
                submit(
                    &job_a,
                    Outcome::Built(Attested {
                        attestation: forged,
                    }),
                ),
            )
            .await;
        assert_refused(&answer, RejectKind::Forbidden);
        // Validly signed by mallory, but submitted on a's connection: refused.
        let theirs = attestation(&mallory, &mallory, &job_a, "hello-bin", b"bin");
        let answer = s
            .service
            .handle(
                a.public_key(),
                submit(
                    &job_a,
                    Outcome::Built(Attested {
                        attestation: theirs,
                    }),
                ),
            )
            .await;
        assert_refused(&answer, RejectKind::Forbidden);
        // About another crate: refused.
        let other = attestation(&a, &a, &job_a, "other-crate", b"bin");
        let answer = s
            .service
            .handle(
                a.public_key(),
                submit(&job_a, Outcome::Built(Attested { attestation: other })),
            )
            .await;
        assert_refused(&answer, RejectKind::Forbidden);
        // Garbage: refused.
        let answer = s
            .service
            .handle(
                a.public_key(),
                submit(
                    &job_a,
                    Outcome::Built(Attested {
                        attestation: b"{".to_vec(),
                    }),
                ),
            )
            .await;
        assert_refused(&answer, RejectKind::Forbidden);
        // Built from another source than the index names: refused.
        let mut trojan = job_a.clone();
        trojan.source_sha256 = Sha256Digest::from_bytes([9; 32]);
        let other_source = attestation(&a, &a, &trojan, "hello-bin", b"bin");
        let answer = s
            .service
            .handle(
                a.public_key(),
                submit(
                    &job_a,
                    Outcome::Built(Attested {
                        attestation: other_source,
                    }),
                ),
            )
            .await;
        assert_refused(&answer, RejectKind::Forbidden);
        // Replays: a's own validly signed attestation of these bytes, about another version,
        // target or toolchain release than the leased task (another crate and source:
        // above). The toolchain's host is no part of a task: builders' hosts may differ.
        type Edit = fn(&mut Statement);
        let replays: [(&str, Edit); 3] = [
            ("version", |s| s.version = "9.9.9".parse().unwrap()),
            ("target", |s| {
                s.target = "aarch64-unknown-linux-gnu".parse().unwrap();
            }),
            ("toolchain release", |s| {
                s.toolchain.release = "1.60.0".parse().unwrap();
            }),
        ];
        for (field, edit) in replays {
            let own = attestation(&a, &a, &job_a, "hello-bin", b"bin");
            let mut statement = SignedAttestation::from_json(&own).unwrap().statement;
            edit(&mut statement);
            let replay = SignedAttestation::sign(statement, &a)
                .unwrap()
                .to_canonical_json();
            let answer = s
                .service
                .handle(
                    a.public_key(),
                    submit(
                        &job_a,
                        Outcome::Built(Attested {
                            attestation: replay,
                        }),
                    ),
                )
                .await;
            assert!(
                matches!(
                    answer,
                    Response::Rejected {
                        kind: RejectKind::Forbidden,
                        ..
                    }
                ),
                "{field}: {answer:?}"
            );
        }
        // A result that names another task than its lease is for: refused, even a failure.
        let mut elsewhere = job_a.clone();
        elsewhere.task_id = TaskId(job_a.task_id.0 + 1_000);
        let answer = s
            .service
            .handle(
                a.public_key(),
                submit(&elsewhere, Outcome::build_failed("E0425")),
            )
            .await;
        assert_refused(&answer, RejectKind::Forbidden);
        let task = store.task(job_a.task_id).await.unwrap().unwrap();
        assert!(task.results.is_empty(), "refused results change nothing");

        // Mallory cannot submit under a's lease either.
        let own = attestation(&mallory, &mallory, &job_a, "hello-bin", b"bin");
        let answer = s
            .service
            .handle(
                mallory.public_key(),
                submit(&job_a, Outcome::Built(Attested { attestation: own })),
            )
            .await;
        assert!(matches!(answer, Response::Rejected { .. }), "{answer:?}");

        // The real thing from a and b: counted, verified, the publisher woken.
        let good = attestation(&a, &a, &job_a, "hello-bin", b"bin");
        assert_eq!(
            s.service
                .handle(
                    a.public_key(),
                    submit(&job_a, Outcome::Built(Attested { attestation: good }))
                )
                .await,
            Response::Accepted {
                counted: true,
                reason: None
            }
        );
        let job_b = take_job(&s.service, &b).await;
        assert_eq!(job_b.task_id, job_a.task_id);
        let woken = s.verified.notified();
        let good = attestation(&b, &b, &job_b, "hello-bin", b"bin");
        assert_eq!(
            s.service
                .handle(
                    b.public_key(),
                    submit(&job_b, Outcome::Built(Attested { attestation: good }))
                )
                .await,
            Response::Accepted {
                counted: true,
                reason: None
            }
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), woken)
            .await
            .unwrap();
        let task = store.task(job_a.task_id).await.unwrap().unwrap();
        assert_eq!(task.task.state, TaskState::Verified);
        assert_eq!(task.task.artifact, Some(ArtifactId::of_bytes(b"bin")));
    }
);

store_test!(renewals_need_the_leases_epoch, |store: Store| async move {
    let s = scene(&store, true).await;
    let node = Identity::from_seed([1; 32]);
    s.service.handle(node.public_key(), hello("n")).await;
    let job = take_job(&s.service, &node).await;
    let renewed = s
        .service
        .handle(
            node.public_key(),
            Request::RenewLease {
                lease_id: job.lease_id,
                epoch: job.epoch,
            },
        )
        .await;
    assert!(
        matches!(renewed, Response::Renewed { deadline_unix } if deadline_unix >= job.deadline_unix)
    );
    let stale = s
        .service
        .handle(
            node.public_key(),
            Request::RenewLease {
                lease_id: job.lease_id,
                epoch: job.epoch + 1,
            },
        )
        .await;
    assert_refused(&stale, RejectKind::StaleLease);
    let unknown = s
        .service
        .handle(
            node.public_key(),
            Request::RenewLease {
                lease_id: LeaseId(999_999),
                epoch: 1,
            },
        )
        .await;
    assert_refused(&unknown, RejectKind::StaleLease);
    // A failure result counts as a result (quorum 2 needs another one to decide).
    assert_eq!(
        s.service
            .handle(
                node.public_key(),
                submit(&job, Outcome::build_failed("E0425"))
            )
            .await,
        Response::Accepted {
            counted: true,
            reason: None
        }
    );
});

store_test!(
    bad_hellos_are_refused_and_change_nothing,
    |store: Store| async move {
        let s = scene(&store, true).await;
        let node = Identity::from_seed([1; 32]);
        let Request::Hello(mut h) = hello("n") else {
            unreachable!()
        };
        h.name = "\u{7}bell".into();
        let answer = s.service.handle(node.public_key(), Request::Hello(h)).await;
        assert_refused(&answer, RejectKind::BadRequest);
        assert!(store.builders().await.unwrap().is_empty());
        assert!(s.service.sessions().is_empty());
    }
);

store_test!(
    a_result_under_another_builders_lease_is_refused_before_its_signature_is_checked,
    |store: Store| async move {
        let s = scene(&store, true).await;
        let (a, mallory) = (Identity::from_seed([1; 32]), Identity::from_seed([3; 32]));
        for (n, id) in [("a", &a), ("m", &mallory)] {
            s.service.handle(id.public_key(), hello(n)).await;
        }
        let job_a = take_job(&s.service, &a).await;
        // A badly signed attestation: mallory's signature in a's name.
        let forged = || {
            submit(
                &job_a,
                Outcome::Built(Attested {
                    attestation: attestation(&mallory, &a, &job_a, "hello-bin", b"bin"),
                }),
            )
        };
        // Under a's lease from mallory's connection: refused for the lease, the signature
        // never looked at (the answer does not mention it).
        let answer = s.service.handle(mallory.public_key(), forged()).await;
        assert_refused(&answer, RejectKind::Forbidden);
        let Response::Rejected { reason, .. } = answer else {
            unreachable!()
        };
        assert!(reason.contains("held by another builder"), "{reason}");
        assert!(!reason.contains("signature"), "{reason}");
        // From a's connection, the holder's, the same bytes get as far as the signature.
        let answer = s.service.handle(a.public_key(), forged()).await;
        let Response::Rejected { kind, reason } = answer else {
            panic!("expected a refusal, got {answer:?}")
        };
        assert_eq!(kind, RejectKind::Forbidden);
        assert!(reason.contains("signature does not verify"), "{reason}");
        // Neither was recorded: a's own result still counts.
        let own = attestation(&a, &a, &job_a, "hello-bin", b"bin");
        let answer = s
            .service
            .handle(
                a.public_key(),
                submit(&job_a, Outcome::Built(Attested { attestation: own })),
            )
            .await;
        assert_eq!(
            answer,
            Response::Accepted {
                counted: true,
                reason: None
            }
        );
    }
);

store_test!(
    a_hello_out_of_bounds_is_refused_and_changes_nothing,
    |store: Store| async move {
        let s = scene(&store, false).await;
        let key = Identity::from_seed([5; 32]).public_key();
        let Request::Hello(mut big) = hello("big") else {
            unreachable!()
        };
        big.agent = "x".repeat(100_000);
        let answer = s.service.handle(key, Request::Hello(big)).await;
        assert_refused(&answer, RejectKind::BadRequest);
        assert!(store.builders().await.unwrap().is_empty());
        assert!(s.service.sessions().is_empty());
    }
);

store_test!(
    hellos_from_endless_new_keys_fill_neither_the_store_nor_memory,
    policy = buildsrs_store::Policy {
        max_pending_builders: 3,
        ..buildsrs_store::Policy::default()
    },
    |store: Store| async move {
        let s = scene(&store, false).await;
        let mut refused = 0;
        for n in 1..=50u8 {
            let key = Identity::from_seed([n; 32]).public_key();
            match s.service.handle(key, hello("flood")).await {
                Response::Welcome { standing } => assert_eq!(standing, Standing::Pending),
                answer => {
                    assert_refused(&answer, RejectKind::Unavailable);
                    refused += 1;
                }
            }
        }
        assert_eq!(refused, 47);
        assert_eq!(store.builders().await.unwrap().len(), 3);
        assert_eq!(
            s.service.sessions().len(),
            3,
            "a refused key gets no session either"
        );
    }
);

store_test!(
    a_node_is_told_why_its_result_did_not_count,
    |store: Store| async move {
        let s = scene(&store, true).await;
        let node = Identity::from_seed([4; 32]);
        s.service.handle(node.public_key(), hello("n4")).await;
        let job = take_job(&s.service, &node).await;
        let answer = s
            .service
            .handle(
                node.public_key(),
                submit(&job, Outcome::node_error("disk full")),
            )
            .await;
        assert_eq!(
            answer,
            Response::Accepted {
                counted: false,
                reason: Some("node errors never count".into())
            }
        );
    }
);

store_test!(
    a_hello_with_a_name_that_would_alter_the_keyring_is_refused,
    |store: Store| async move {
        // The name a node sends goes into the builder list and the served keyring; one that
        // would add a word (`revoked`) or a line (another key, revoked) to it is refused,
        // saying why, and leaves nothing behind, even with --auto-approve.
        let s = scene(&store, true).await;
        let node = Identity::from_seed([1; 32]);
        let victim = Identity::from_seed([2; 32]).public_key();
        for name in [
            "x revoked".to_owned(),
            format!("x\n{victim} victim revoked"),
        ] {
            let answer = s.service.handle(node.public_key(), hello(&name)).await;
            assert_refused(&answer, RejectKind::BadRequest);
            let Response::Rejected { reason, .. } = answer else {
                unreachable!("checked above");
            };
            assert!(reason.contains("builder name"), "{reason}");
        }
        assert!(store.builders().await.unwrap().is_empty());
        assert!(s.service.sessions().is_empty());

        // A host name is a good name; auto-approval leaves the key its own operator.
        assert_eq!(
            s.service
                .handle(node.public_key(), hello("build-01.example.org"))
                .await,
            Response::Welcome {
                standing: Standing::Approved
            }
        );
        let info = store.builder(&node.public_key()).await.unwrap().unwrap();
        assert_eq!(info.name, "build-01.example.org");
        assert_eq!(info.operator, None);
    }
);

store_test!(
    two_keys_of_one_operator_do_not_verify_alone,
    |store: Store| async move {
        // Mallory runs two keys, both approved as hers; Alice runs one.
        let s = scene(&store, false).await;
        let (m1, m2, alice) = (
            Identity::from_seed([1; 32]),
            Identity::from_seed([2; 32]),
            Identity::from_seed([3; 32]),
        );
        let now = Timestamp::now();
        for (id, operator) in [(&m1, "mallory"), (&m2, "mallory"), (&alice, "alice")] {
            s.service.handle(id.public_key(), hello("node")).await;
            store
                .approve_builder_as(&id.public_key(), &operator.parse().unwrap(), now)
                .await
                .unwrap();
        }
        // Her first key takes the task and reports a hash of her choosing; her second key is
        // not given the task while her first holds it, nor after it answered.
        let job = take_job(&s.service, &m1).await;
        let no_job = |answer: Response| {
            assert!(
                matches!(
                    answer,
                    Response::NoJob {
                        reason: NoJobReason::NothingQueued,
                        ..
                    }
                ),
                "{answer:?}"
            );
        };
        no_job(s.service.handle(m2.public_key(), Request::RequestJob).await);
        let hers = attestation(&m1, &m1, &job, "hello-bin", b"bin");
        assert_eq!(
            s.service
                .handle(
                    m1.public_key(),
                    submit(&job, Outcome::Built(Attested { attestation: hers }))
                )
                .await,
            Response::Accepted {
                counted: true,
                reason: None
            }
        );
        no_job(s.service.handle(m2.public_key(), Request::RequestJob).await);
        let task = store.task(job.task_id).await.unwrap().unwrap();
        assert_eq!(task.task.state, TaskState::Queued);
        assert_eq!(task.task.artifact, None);

        // Another operator's key agreeing verifies it, and the publisher is woken.
        let job_alice = take_job(&s.service, &alice).await;
        assert_eq!(job_alice.task_id, job.task_id);
        let woken = s.verified.notified();
        let theirs = attestation(&alice, &alice, &job_alice, "hello-bin", b"bin");
        assert_eq!(
            s.service
                .handle(
                    alice.public_key(),
                    submit(
                        &job_alice,
                        Outcome::Built(Attested {
                            attestation: theirs
                        })
                    )
                )
                .await,
            Response::Accepted {
                counted: true,
                reason: None
            }
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), woken)
            .await
            .unwrap();
        let task = store.task(job.task_id).await.unwrap().unwrap();
        assert_eq!(task.task.state, TaskState::Verified);
    }
);
