#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn hello() -> Hello {
    Hello {
        agent: "buildsrs-node/0.1.0".into(),
        name: "box-1".into(),
        targets: vec!["x86_64-unknown-linux-gnu".parse().unwrap()],
        toolchains: vec!["1.95.0".parse().unwrap()],
        capacity: 2,
        blobs: BlobAddress {
            endpoint_id: "ab".repeat(32),
            addrs: vec!["127.0.0.1:4444".parse().unwrap()],
        },
    }
}

fn job() -> Job {
    Job {
        task_id: TaskId(7),
        lease_id: LeaseId(9),
        epoch: 3,
        deadline_unix: 1_800_000_000,
        crate_name: "hello-bin".parse().unwrap(),
        version: "0.1.0".parse().unwrap(),
        source_sha256: Sha256Digest::from_bytes([0; 32]),
        download_url: "http://127.0.0.1:1/dl/hello-bin/0.1.0/download".into(),
        target: "x86_64-unknown-linux-gnu".parse().unwrap(),
        toolchain: "1.95.0".parse().unwrap(),
    }
}

#[test]
fn every_request_round_trips() {
    let requests = [
        Request::Hello(hello()),
        Request::RequestJob,
        Request::RenewLease {
            lease_id: LeaseId(1),
            epoch: 2,
        },
        Request::Submit(JobResult {
            task_id: TaskId(7),
            lease_id: LeaseId(1),
            epoch: 2,
            outcome: Outcome::Built(Attested {
                attestation: b"{\"statement\":{}}".to_vec(),
            }),
            log: b"Compiling hello-bin".to_vec(),
        }),
        Request::Submit(JobResult {
            task_id: TaskId(7),
            lease_id: LeaseId(1),
            epoch: 2,
            outcome: Outcome::build_failed("error[E0425]"),
            log: vec![],
        }),
        Request::Goodbye,
    ];
    for request in requests {
        let bytes = request.to_cbor().unwrap();
        assert_eq!(Request::from_cbor(&bytes).unwrap(), request);
    }
}

#[test]
fn every_response_round_trips() {
    let responses = [
        Response::Welcome {
            standing: Standing::Pending,
        },
        Response::Job(job()),
        Response::NoJob {
            reason: NoJobReason::NothingQueued,
            retry_after_secs: 5,
        },
        Response::Renewed {
            deadline_unix: 1_800_000_100,
        },
        Response::Accepted {
            counted: true,
            reason: None,
        },
        Response::Accepted {
            counted: false,
            reason: Some("node errors never count".into()),
        },
        Response::rejected(RejectKind::StaleLease, "lease 9 expired"),
        Response::Farewell,
    ];
    for response in responses {
        let bytes = response.to_cbor().unwrap();
        assert_eq!(Response::from_cbor(&bytes).unwrap(), response);
    }
}

/// A coordinator from before `Accepted` carried a reason still answers nodes of today.
#[test]
fn an_accepted_answer_without_a_reason_decodes() {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    enum OldResponse {
        Accepted { counted: bool },
    }
    let mut bytes = Vec::new();
    ciborium::into_writer(&OldResponse::Accepted { counted: false }, &mut bytes).unwrap();
    assert_eq!(
        Response::from_cbor(&bytes).unwrap(),
        Response::Accepted {
            counted: false,
            reason: None
        }
    );
}

#[test]
fn logs_travel_as_byte_strings() {
    // A byte string costs one byte per byte; an array of small integers would cost up to two.
    let log = vec![0xffu8; 10_000];
    let request = Request::Submit(JobResult {
        task_id: TaskId(7),
        lease_id: LeaseId(1),
        epoch: 1,
        outcome: Outcome::timed_out("after 1800 s"),
        log,
    });
    let bytes = request.to_cbor().unwrap();
    assert!(bytes.len() < 10_100, "{} bytes", bytes.len());
}

#[test]
fn oversized_messages_are_refused_both_ways() {
    let request = Request::Submit(JobResult {
        task_id: TaskId(7),
        lease_id: LeaseId(1),
        epoch: 1,
        outcome: Outcome::timed_out("after 1800 s"),
        log: vec![b'x'; MAX_REQUEST_BYTES],
    });
    assert!(matches!(
        request.to_cbor(),
        Err(WireError::TooLarge { limit, .. }) if limit == MAX_REQUEST_BYTES
    ));
    let too_big = vec![0u8; MAX_RESPONSE_BYTES + 1];
    assert!(matches!(
        Response::from_cbor(&too_big),
        Err(WireError::TooLarge { .. })
    ));
}

#[test]
fn a_log_at_the_cap_fits_in_a_request() {
    let request = Request::Submit(JobResult {
        task_id: TaskId(i64::MAX),
        lease_id: LeaseId(i64::MAX),
        epoch: i64::MAX,
        outcome: Outcome::Built(Attested {
            attestation: vec![b'a'; 4096],
        }),
        log: vec![b'x'; MAX_LOG_BYTES],
    });
    assert!(request.to_cbor().is_ok());
}

#[test]
fn unknown_message_types_are_malformed_not_panics() {
    // {"launch_missiles": {}}
    let mut bytes = Vec::new();
    ciborium::into_writer(
        &std::collections::BTreeMap::from([(
            "launch_missiles",
            std::collections::BTreeMap::<u8, u8>::new(),
        )]),
        &mut bytes,
    )
    .unwrap();
    assert!(matches!(
        Request::from_cbor(&bytes),
        Err(WireError::Malformed(_))
    ));
    assert!(matches!(
        Request::from_cbor(&[0xff, 0x00, 0x13]),
        Err(WireError::Malformed(_))
    ));
    assert!(matches!(
        Request::from_cbor(&[]),
        Err(WireError::Malformed(_))
    ));
}

/// A coordinator is hostile until checked: a job whose name, version, target, toolchain,
/// checksum or ids break the domain's rules does not decode, so no node code ever sees it.
#[test]
fn a_job_that_breaks_a_domain_rule_does_not_decode() {
    let good = serde_json::to_value(job()).unwrap();
    for (field, bad) in [
        ("crate_name", serde_json::json!("../../etc")),
        ("version", serde_json::json!("1.0")),
        ("target", serde_json::json!("X86_64/../x")),
        ("toolchain", serde_json::json!("1.95.0 --verbose")),
        ("source_sha256", serde_json::json!("not hex")),
        ("task_id", serde_json::json!(0)),
        ("lease_id", serde_json::json!(-4)),
    ] {
        let mut hostile = good.clone();
        hostile[field] = bad;
        let bytes = encode(
            &std::collections::BTreeMap::from([("job", &hostile)]),
            MAX_RESPONSE_BYTES,
        )
        .unwrap();
        assert!(Response::from_cbor(&bytes).is_err(), "{field} decoded");
    }
    let bytes = encode(
        &std::collections::BTreeMap::from([("job", &good)]),
        MAX_RESPONSE_BYTES,
    )
    .unwrap();
    assert_eq!(Response::from_cbor(&bytes).unwrap(), Response::Job(job()));
}

/// `Job` had a `features` field (always empty: nothing filled it) until it was dropped. Both
/// directions still decode: a coordinator that sends it to a newer node (unknown fields are
/// ignored), and a newer coordinator's job at a node that expects it (it was
/// `#[serde(default)]`).
#[test]
fn jobs_with_and_without_the_dropped_features_field_decode() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OldJob {
        task_id: i64,
        lease_id: i64,
        epoch: i64,
        deadline_unix: i64,
        crate_name: String,
        version: String,
        source_sha256: String,
        download_url: String,
        target: String,
        toolchain: String,
        #[serde(default)]
        features: Vec<String>,
    }
    let j = job();
    let old = OldJob {
        task_id: j.task_id.0,
        lease_id: j.lease_id.0,
        epoch: j.epoch,
        deadline_unix: j.deadline_unix,
        crate_name: j.crate_name.to_string(),
        version: j.version.to_string(),
        source_sha256: j.source_sha256.to_hex(),
        download_url: j.download_url.clone(),
        target: j.target.to_string(),
        toolchain: j.toolchain.to_string(),
        features: vec![],
    };
    let from_old = encode(
        &std::collections::BTreeMap::from([("job", &old)]),
        MAX_RESPONSE_BYTES,
    )
    .unwrap();
    assert_eq!(
        Response::from_cbor(&from_old).unwrap(),
        Response::Job(j.clone())
    );
    let from_new = Response::Job(j).to_cbor().unwrap();
    let at_old: std::collections::BTreeMap<String, OldJob> =
        decode(&from_new, MAX_RESPONSE_BYTES).unwrap();
    assert_eq!(at_old["job"], old);
}

#[test]
fn a_hello_out_of_bounds_is_refused() {
    assert_eq!(hello().check_bounds(), Ok(()));
    let long = |n: usize| "x".repeat(n);
    let mut at_limits = hello();
    at_limits.agent = long(MAX_AGENT_CHARS);
    at_limits.name = long(MAX_NAME_CHARS);
    at_limits.blobs.addrs = vec!["127.0.0.1:1".parse().unwrap(); MAX_BLOB_ADDRS];
    at_limits.targets = vec!["x86_64-unknown-linux-gnu".parse().unwrap(); MAX_CAPABILITIES];
    assert_eq!(at_limits.check_bounds(), Ok(()));
    let bad: [fn(&mut Hello); 8] = [
        |h| h.agent = "x".repeat(MAX_AGENT_CHARS + 1),
        |h| h.agent = "buildsrs-node\n0.1".into(),
        |h| h.name = "x".repeat(MAX_NAME_CHARS + 1),
        |h| h.name = "x revoked".into(),
        |h| h.targets = vec!["x86_64-unknown-linux-gnu".parse().unwrap(); MAX_CAPABILITIES + 1],
        |h| h.toolchains = vec!["1.95.0".parse().unwrap(); MAX_CAPABILITIES + 1],
        |h| h.blobs.endpoint_id = "ab".repeat(33),
        |h| h.blobs.addrs = vec!["127.0.0.1:1".parse().unwrap(); MAX_BLOB_ADDRS + 1],
    ];
    for (i, spoil) in bad.iter().enumerate() {
        let mut h = hello();
        spoil(&mut h);
        assert!(h.check_bounds().is_err(), "case {i}: {h:?}");
    }
}

#[test]
fn a_throttled_refusal_round_trips() {
    let r = Response::rejected(RejectKind::Throttled, "slow down");
    let bytes = r.to_cbor().unwrap();
    assert_eq!(Response::from_cbor(&bytes).unwrap(), r);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Request::from_cbor(&bytes);
        let _ = Response::from_cbor(&bytes);
    }

    #[test]
    fn renewals_round_trip(lease_id in 1..=i64::MAX, epoch in any::<i64>()) {
        let r = Request::RenewLease { lease_id: LeaseId(lease_id), epoch };
        prop_assert_eq!(Request::from_cbor(&r.to_cbor().unwrap()).unwrap(), r);
    }
}
