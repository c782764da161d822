//! `buildsrs fetch` and `buildsrs verify` as a user runs them, against a running network (a
//! fixture registry, a coordinator and three builders on loopback, quorum 2): a verified
//! binary installs and runs; anything short of the user's standard installs nothing.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::sync::Arc;

use anyhow::Result;
use buildsrs_keys::{Bundle, Identity, Sha256Digest, SignedAttestation};
use buildsrs_testnet::{Testnet, TestnetOptions};

use support::{Proxy, TARGET, buildsrs, is_empty, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_installs_only_what_the_keyring_and_threshold_allow() -> Result<()> {
    let net = Testnet::start(TestnetOptions {
        // Both versions below are built, however the index follower sees them: at its
        // first sight, a crate builds its newest version and the backfill (here 1).
        watch: vec!["hello-bin:1".into()],
        ..Default::default()
    })
    .await?;
    let published = [
        net.registry.publish("hello-bin", "0.1.0")?,
        net.registry.publish("hello-bin", "0.2.0")?,
    ];
    net.wait_until("two verified tasks", |s| s.verified == 2)
        .await?;
    net.wait_published().await?;
    let url = net.http_url()?;
    // fetch holds attestations to what its own read of this index lists.
    let registry = net.registry.index_url();
    let temp = tempfile::tempdir()?;
    let keyring = temp.path().join("keyring");
    std::fs::write(&keyring, net.keyring()?.to_text())?;
    let keyring = keyring.to_str().unwrap();

    // Installs `spec` into a fresh directory and runs it; returns what fetch said.
    let install_and_run = |spec: &str, dir: &str, greeting: &str| {
        let bin = temp.path().join(dir);
        let out = buildsrs(&[
            "fetch",
            spec,
            "--coordinator",
            &url,
            "--registry",
            &registry,
            "--keyring",
            keyring,
            "--install-dir",
            bin.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let ran = Command::new(bin.join("hello-bin")).output().unwrap();
        assert_eq!(String::from_utf8(ran.stdout).unwrap(), greeting);
        text(&out)
    };
    // The happy path: latest, verified by two of the three trusted builders, installed, runs.
    let said = install_and_run("hello-bin", "bin", "Hello from hello-bin 0.2.0!\n");
    assert!(said.contains("installed hello-bin 0.2.0"), "{said}");
    assert!(
        said.contains("counted: node-"),
        "names who attested: {said}"
    );
    // An exact version.
    install_and_run("hello-bin@0.1.0", "old", "Hello from hello-bin 0.1.0!\n");

    // Refusals: exit 1, nothing installed, and the message says why.
    let refused = |args: &[&str], why: &str| {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("bin");
        let mut all = args.to_vec();
        all.extend(["--install-dir", dest.to_str().unwrap()]);
        let out = buildsrs(&all);
        assert_eq!(out.status.code(), Some(1), "{all:?}: {}", text(&out));
        assert!(text(&out).contains(why), "{all:?}: {}", text(&out));
        assert!(text(&out).contains("nothing was installed"));
        assert!(is_empty(&dest), "{all:?} installed something");
    };
    refused(
        &[
            "fetch",
            "hello-bin",
            "--coordinator",
            &url,
            "--registry",
            &registry,
            "--keyring",
            keyring,
            // More than the network's three builders: never met. (3 was met now and then,
            // when the third builder's late attestation arrived before the check.)
            "--threshold",
            "4",
        ],
        "NOT VERIFIED",
    );
    let one = temp.path().join("one-builder");
    let mut partial = buildsrs_keys::Keyring::default();
    let first = net.keyring()?.entries()[0].clone();
    partial.push(first.key, &first.name)?;
    std::fs::write(&one, partial.to_text())?;
    refused(
        &[
            "fetch",
            "hello-bin",
            "--coordinator",
            &url,
            "--registry",
            &registry,
            "--keyring",
            one.to_str().unwrap(),
        ],
        "NOT VERIFIED",
    );
    let flip_archive = Proxy::start(&url, |path, mut body| {
        if path.starts_with("/crates/") && path.ends_with(TARGET) {
            let middle = body.len() / 2;
            body[middle] ^= 1;
        }
        body
    })
    .await?;
    refused(
        &[
            "fetch",
            "hello-bin",
            "--coordinator",
            &flip_archive.url,
            "--registry",
            &registry,
            "--keyring",
            keyring,
        ],
        "NOT VERIFIED",
    );
    let flip_bundle = Proxy::start(&url, |path, body| {
        if path.starts_with("/attestations/") {
            // Another signature: same length, one character changed.
            let text = String::from_utf8(body).unwrap();
            let at = text.find("\"signature\"").unwrap() + 20;
            let mut bytes = text.into_bytes();
            bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
            return bytes;
        }
        body
    })
    .await?;
    refused(
        &[
            "fetch",
            "hello-bin",
            "--coordinator",
            &flip_bundle.url,
            "--registry",
            &registry,
            "--keyring",
            keyring,
        ],
        "NOT VERIFIED",
    );
    // A hostile server's errors: exit 2, nothing installed, the message says what it did.
    let failed = |coordinator: &str, spec: &str, why: &str| {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("bin");
        let out = buildsrs(&[
            "fetch",
            spec,
            "--coordinator",
            coordinator,
            "--registry",
            &registry,
            "--keyring",
            keyring,
            "--install-dir",
            dest.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", text(&out));
        assert!(text(&out).contains(why), "{spec}: {}", text(&out));
        assert!(is_empty(&dest), "{spec} installed something");
    };
    // Asked for 0.1.0, it answers with 0.2.0 (verified, signed: only not what was asked).
    let other_version = Proxy::start(&url, |path, body| {
        if path.starts_with("/api/v1/crates/hello-bin/0.1.0") {
            let text = String::from_utf8(body).unwrap();
            return text.replace("0.1.0", "0.2.0").into_bytes();
        }
        body
    })
    .await?;
    failed(
        &other_version.url,
        "hello-bin@0.1.0",
        "answered with 0.2.0: refused",
    );
    // The archive is larger than the size the answer named: the download stops.
    let larger = Proxy::start(&url, |path, mut body| {
        if path.starts_with("/crates/") && path.ends_with(TARGET) {
            body.extend(std::iter::repeat_n(0u8, 1 << 20));
        }
        body
    })
    .await?;
    failed(&larger.url, "hello-bin", "more than the");

    // Colluding builders, trusted by this user, sign bytes for hello-bin 0.2.0 but name the
    // source they were handed: another tarball (here hello-bin 0.1.0's, with its true
    // checksum), as a hostile coordinator would hand out under a real name. The coordinator
    // serves their bundle. fetch reads the index itself: that is not the source it lists.
    let hash = net
        .store
        .version_info("hello-bin", "0.2.0")
        .await?
        .unwrap()
        .tasks[0]
        .artifact
        .unwrap()
        .blake3;
    let honest = Bundle::from_json(
        &reqwest::get(format!("{url}/attestations/{hash}"))
            .await?
            .bytes()
            .await?,
    )?;
    let template = honest.decode_attestations().next().unwrap()?.statement;
    let listed = |version: &str| {
        let crate_file = published.iter().find(|p| p.version == version).unwrap();
        crate_file.cksum.parse::<Sha256Digest>().unwrap()
    };
    let colluders = [Identity::from_seed([41; 32]), Identity::from_seed([42; 32])];
    let colluding_keyring = temp.path().join("colluders");
    let mut trusted = buildsrs_keys::Keyring::default();
    for (i, colluder) in colluders.iter().enumerate() {
        trusted.push(colluder.public_key(), &format!("colluder-{i}"))?;
    }
    std::fs::write(&colluding_keyring, trusted.to_text())?;
    let bundle_naming = |source: Sha256Digest| {
        let mut bundle = Bundle::new(honest.artifact);
        for colluder in &colluders {
            let mut statement = template.clone();
            statement.builder = colluder.public_key();
            statement.source_sha256 = Some(source);
            bundle
                .push(&SignedAttestation::sign(statement, colluder).unwrap())
                .unwrap();
        }
        Arc::new(bundle.to_json_pretty())
    };
    let serving = |bundle: Arc<Vec<u8>>| {
        Proxy::start(&url, move |path, body| {
            if path.starts_with("/attestations/") {
                return bundle.to_vec();
            }
            body
        })
    };
    let trojan = serving(bundle_naming(listed("0.1.0"))).await?;
    let colluding_fetch = |coordinator: &str| {
        vec![
            "fetch".to_owned(),
            "hello-bin@0.2.0".to_owned(),
            "--coordinator".to_owned(),
            coordinator.to_owned(),
            "--registry".to_owned(),
            registry.clone(),
            "--keyring".to_owned(),
            colluding_keyring.to_str().unwrap().to_owned(),
        ]
    };
    let args = colluding_fetch(&trojan.url);
    refused(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &format!(
            "source_sha256 is \"{}\", expected \"{}\"",
            listed("0.1.0"),
            listed("0.2.0")
        ),
    );
    // The same colluders naming the listed source count: the refusal above is the source's.
    let listed_source = serving(bundle_naming(listed("0.2.0"))).await?;
    let bin = temp.path().join("colluded");
    let mut args = colluding_fetch(&listed_source.url);
    args.extend(["--install-dir".to_owned(), bin.to_str().unwrap().to_owned()]);
    let out = buildsrs(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", text(&out));

    // No keyring: an error (exit 2) unless the user chooses to trust the coordinator.
    let dest = temp.path().join("trusting");
    let out = buildsrs(&[
        "fetch",
        "hello-bin",
        "--coordinator",
        &url,
        "--registry",
        &registry,
        "--install-dir",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--trust-coordinator-keyring"));
    assert!(is_empty(&dest));
    let out = buildsrs(&[
        "fetch",
        "hello-bin",
        "--coordinator",
        &url,
        "--registry",
        &registry,
        "--trust-coordinator-keyring",
        "--install-dir",
        dest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("trusting the coordinator's keyring"));

    // Bad input: exit 2 with a clear message, nothing fetched.
    for (spec, why) in [("hello-bin@1.0", "semver"), ("../x", "not a crate name")] {
        let out = buildsrs(&[
            "fetch",
            spec,
            "--coordinator",
            &url,
            "--registry",
            &registry,
            "--keyring",
            keyring,
        ]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out).contains(why), "{}", text(&out));
    }
    let out = buildsrs(&[
        "fetch",
        "hello-bin",
        "--coordinator",
        &url,
        "--registry",
        &registry,
        "--keyring",
        keyring,
        "--target",
        "aarch64-apple-darwin",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("not built for aarch64-apple-darwin"),
        "{}",
        text(&out)
    );

    // `buildsrs verify` is `buildsrs-keys verify`: same verdicts and exit codes.
    let files = tempfile::tempdir()?;
    let archive = files.path().join("hello-bin.tar.gz");
    let v = net.store.version_info("hello-bin", "0.2.0").await?.unwrap();
    let hash = v.tasks[0].artifact.unwrap().blake3;
    std::fs::write(
        &archive,
        reqwest::get(format!("{url}/blobs/{hash}"))
            .await?
            .bytes()
            .await?,
    )?;
    std::fs::write(
        files.path().join("hello-bin.tar.gz.buildsrs.json"),
        reqwest::get(format!("{url}/attestations/{hash}"))
            .await?
            .bytes()
            .await?,
    )?;
    let a = archive.to_str().unwrap();
    for (threshold, code) in [(2, 0), (3, 1)] {
        let ours = buildsrs(&[
            "verify",
            a,
            "--keyring",
            keyring,
            "--threshold",
            &threshold.to_string(),
        ]);
        assert_eq!(ours.status.code(), Some(code), "{}", text(&ours));
        // The very report `buildsrs-keys verify` prints, from the same code.
        let report = buildsrs_keys::cli::verify(&buildsrs_keys::cli::VerifyArgs {
            file: archive.clone(),
            bundle: None,
            keyring: keyring.into(),
            threshold,
            crate_name: None,
            version: None,
            target: None,
            source_sha256: None,
            registry: None,
            cargo_lock: None,
            json: false,
        })?;
        assert_eq!(String::from_utf8(ours.stdout)?, report.to_string());
    }
    // --check-index reads the source from the index itself: the honest builders' bundle
    // counts, the colluders' (naming the tarball they were handed) does not.
    let bundle_file = files.path().join("hello-bin.tar.gz.buildsrs.json");
    let check_index = |keyring: &str| {
        buildsrs(&[
            "verify",
            a,
            "--keyring",
            keyring,
            "--threshold",
            "2",
            "--crate",
            "hello-bin",
            "--version",
            "0.2.0",
            "--check-index",
            "--registry",
            &registry,
        ])
    };
    let out = check_index(keyring);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(&bundle_file, &*bundle_naming(listed("0.1.0")))?;
    let out = check_index(colluding_keyring.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("source_sha256 is"), "{}", text(&out));
    net.stop().await
}
