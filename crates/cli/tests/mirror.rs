//! `buildsrs mirror` and `buildsrs mirror serve` against a running network: every verified
//! artifact is copied by hash, an interrupted mirror finishes without fetching again what it
//! has, bytes that do not match their hash are rejected, and the mirror serves what the
//! coordinator serves, the same way.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Result;
use buildsrs_keys::ArtifactId;
use buildsrs_testnet::{Testnet, TestnetOptions};
use support::{Proxy, buildsrs, command, text};

/// The hashes of the blobs in a mirror directory, each checked against its content.
fn mirrored(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.join("blobs")).into_iter().flatten() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let content = ArtifactId::of_file(&entry.path()).unwrap();
        assert_eq!(content.blake3.to_hex(), name, "a blob under the wrong name");
        assert!(
            dir.join("attestations")
                .join(format!("{name}.json"))
                .is_file()
        );
        found.push(name);
    }
    found.sort();
    found
}

fn cursor(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("mirror.cursor"))
        .ok()
        .map(|c| c.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_copies_resumes_rejects_and_serves() -> Result<()> {
    let net = Testnet::start(TestnetOptions {
        // hello-bin's two versions are both built, however the index follower sees them: at
        // its first sight, a crate builds its newest version and the backfill (here 1).
        watch: vec!["hello-bin:1".into(), "multi-bin".into()],
        ..Default::default()
    })
    .await?;
    net.registry.publish("hello-bin", "0.1.0")?;
    net.registry.publish("hello-bin", "0.2.0")?;
    net.registry.publish("multi-bin", "0.1.0")?;
    net.wait_until("three verified tasks", |s| s.verified == 3)
        .await?;
    net.wait_published().await?;
    let url = net.http_url()?;
    let mut expected: Vec<String> = net
        .store
        .published_since(0, 100)
        .await?
        .iter()
        .map(|p| p.artifact.blake3.to_hex())
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 3);
    let temp = tempfile::tempdir()?;

    // A complete copy, then a second run that finds everything there.
    let full = temp.path().join("full");
    let counting = Proxy::start(&url, |_, body| body).await?;
    // Over HTTP unless a test says otherwise (the feed lists peers, which `auto` prefers).
    let args = |dir: &Path, coordinator: &str| -> Vec<String> {
        [
            "mirror",
            "--once",
            "--from",
            "http",
            "--coordinator",
            coordinator,
            "--dir",
        ]
        .iter()
        .map(ToString::to_string)
        .chain([dir.to_str().unwrap().to_owned()])
        .collect()
    };
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        buildsrs(&args)
    };
    let out = run(&args(&full, &counting.url));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 new"), "{}", text(&out));
    assert_eq!(mirrored(&full), expected);
    assert_eq!(cursor(&full).as_deref(), Some("3"));
    assert_eq!(counting.blob_requests(), 3);
    let out = run(&args(&full, &counting.url));
    assert!(out.status.success());
    assert!(text(&out).contains("0 new"), "{}", text(&out));
    assert_eq!(counting.blob_requests(), 3, "nothing fetched twice");

    // From peers over iroh-blobs: the coordinator's feed lists who holds each blob (its own
    // store and the builders); no blob comes over HTTP.
    let feed: serde_json::Value = serde_json::from_slice(
        &reqwest::get(format!("{url}/api/v1/verified"))
            .await?
            .bytes()
            .await?,
    )?;
    let listed = feed["items"][0]["providers"].as_array().unwrap();
    assert!(!listed.is_empty(), "{feed}");
    let peered = temp.path().join("peered");
    let peer_proxy = Proxy::start(&url, |_, body| body).await?;
    let mut peer_args = args(&peered, &peer_proxy.url);
    peer_args[3] = "peers".into();
    let first = &listed[0];
    let addrs: Vec<&str> = first["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    peer_args.extend([
        "--peer".into(),
        format!(
            "{}@{}",
            first["endpoint_id"].as_str().unwrap(),
            addrs.join(",")
        ),
    ]);
    let out = run(&peer_args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 from peers"), "{}", text(&out));
    assert_eq!(mirrored(&peered), expected);
    assert_eq!(peer_proxy.blob_requests(), 0);
    let out = buildsrs(&[
        "mirror",
        "--once",
        "--dir",
        peered.to_str().unwrap(),
        "--peer",
        "nonsense",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("ENDPOINT_ID@IP:PORT"), "{}", text(&out));

    // Killed while the server stalls on the second blob, then run again: finishes, and
    // fetches only what it did not have.
    let halfway = temp.path().join("halfway");
    let stalling = Proxy::stalling(&url, 1).await?;
    let stall_args = args(&halfway, &stalling.url);
    let mut child = command(&stall_args.iter().map(String::as_str).collect::<Vec<_>>())
        .arg("--jobs")
        .arg("1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stalling.blob_requests() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the mirror never got going"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    let had = mirrored(&halfway);
    assert_eq!(had.len(), 1, "one blob before the stall");
    let resumed = Proxy::start(&url, |_, body| body).await?;
    let out = run(&args(&halfway, &resumed.url));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mirrored(&halfway), expected);
    assert_eq!(
        resumed.blob_requests(),
        2,
        "the blob it had is not fetched again"
    );

    // A server whose bytes do not match their hash: rejected, nothing kept, cursor unmoved.
    let corrupt = Proxy::start(&url, |path, mut body| {
        if path.starts_with("/blobs/") && !body.is_empty() {
            body[0] ^= 0xff;
        }
        body
    })
    .await?;
    let bad = temp.path().join("bad");
    let out = run(&args(&bad, &corrupt.url));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("rejected"), "{}", text(&out));
    assert!(mirrored(&bad).is_empty());
    assert_eq!(cursor(&bad).as_deref(), Some("0"));

    // With a keyring, only what verifies is kept.
    let one = temp.path().join("one-builder");
    let mut partial = buildsrs_keys::Keyring::default();
    let first = net.keyring()?.entries()[0].clone();
    partial.push(first.key, &first.name)?;
    std::fs::write(&one, partial.to_text())?;
    let strict = temp.path().join("strict");
    let mut strict_args = args(&strict, &url);
    strict_args.extend(["--keyring".into(), one.to_str().unwrap().into()]);
    let out = run(&strict_args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 refused"), "{}", text(&out));
    assert!(mirrored(&strict).is_empty());

    // `mirror serve` answers like the coordinator.
    let mut server = command(&[
        "mirror",
        "serve",
        "--dir",
        full.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line)?;
    let mirror_url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(mirror_url.starts_with("http://127.0.0.1:"), "{line}");
    let client = reqwest::Client::new();
    let hash = &expected[0];
    for (path, range) in [
        (format!("/blobs/{hash}"), None),
        (format!("/blobs/{hash}"), Some("bytes=10-99")),
        (format!("/attestations/{hash}"), None),
        (format!("/blobs/{}", "0".repeat(64)), None),
        ("/blobs/not-a-hash".to_owned(), None),
    ] {
        let mut answers = Vec::new();
        for base in [&url, &mirror_url] {
            let mut request = client.get(format!("{base}{path}"));
            if let Some(range) = range {
                request = request.header("range", range);
            }
            let response = request.send().await?;
            let headers: Vec<Option<String>> = [
                "etag",
                "cache-control",
                "accept-ranges",
                "content-range",
                "content-type",
            ]
            .iter()
            .map(|h| {
                response
                    .headers()
                    .get(*h)
                    .map(|v| v.to_str().unwrap().to_owned())
            })
            .collect();
            answers.push((response.status(), headers, response.bytes().await?));
        }
        assert_eq!(answers[0], answers[1], "{path} {range:?}");
    }
    let not_modified = client
        .get(format!("{mirror_url}/blobs/{hash}"))
        .header("if-none-match", format!("\"{hash}\""))
        .send()
        .await?;
    assert_eq!(not_modified.status(), 304);
    // `fetch` can take the bytes from the mirror (the coordinator only names the artifact).
    let keyring = temp.path().join("keyring");
    std::fs::write(&keyring, net.keyring()?.to_text())?;
    let bin = temp.path().join("bin");
    let mirror_proxy = Proxy::start(&mirror_url, |_, body| body).await?;
    let out = buildsrs(&[
        "fetch",
        "hello-bin",
        "--coordinator",
        &url,
        "--registry",
        &net.registry.index_url(),
        "--mirror",
        &mirror_proxy.url,
        "--keyring",
        keyring.to_str().unwrap(),
        "--install-dir",
        bin.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        mirror_proxy.blob_requests(),
        1,
        "the archive came from the mirror"
    );
    let ran = std::process::Command::new(bin.join("hello-bin")).output()?;
    assert_eq!(
        String::from_utf8(ran.stdout)?,
        "Hello from hello-bin 0.2.0!\n"
    );
    // SIGTERM stops it cleanly.
    std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()?;
    assert!(server.wait()?.success());
    let empty = temp.path().join("nothing");
    let out = buildsrs(&["mirror", "serve", "--dir", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("holds no mirror"));
    net.stop().await
}
