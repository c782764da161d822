//! The fixture registry as its users see it: over HTTP on loopback, and as files.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::io::Read;
use std::process::Command;

use buildsrs_fixture_registry::{
    FixtureError, FixtureRegistry, IndexEntry, ServeOptions, fixtures_dir, pack_dir, sha256_hex,
};

/// A client that never goes through a proxy: tests talk to loopback only.
fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let client = client();
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn entries(text: &[u8]) -> Vec<IndexEntry> {
    std::str::from_utf8(text)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `(path, contents)` of every file in a `.crate`.
fn unpack(crate_bytes: &[u8]) -> Vec<(String, String)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(crate_bytes));
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.push((path, text));
    }
    files
}

#[tokio::test]
async fn serves_config_with_the_download_template() {
    let registry = FixtureRegistry::start().await.unwrap();
    assert!(registry.index_url().starts_with("sparse+http://127.0.0.1:"));
    let (status, _, body) = get(&format!("{}config.json", registry.base_url()), &[]).await;
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        config["dl"],
        format!("{}dl/{{crate}}/{{version}}/download", registry.base_url())
    );
    assert!(config["api"].is_null());
    registry.shutdown().await;
}

#[tokio::test]
async fn published_crate_unpacks_under_name_version_and_matches_its_cksum() {
    let registry = FixtureRegistry::start().await.unwrap();
    let published = registry.publish("hello-bin", "0.2.0").unwrap();
    assert_eq!(published.name, "hello-bin");

    let (status, _, index) = get(&format!("{}he/ll/hello-bin", registry.base_url()), &[]).await;
    assert_eq!(status, 200);
    let lines = entries(&index);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].vers, "0.2.0");
    assert!(!lines[0].yanked);
    assert_eq!(lines[0].cksum, published.cksum);
    assert_eq!(lines[0].v, 2);

    let (status, _, crate_bytes) = get(&published.download_url, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(crate_bytes.len(), published.size);
    assert_eq!(sha256_hex(&crate_bytes), published.cksum);

    let files = unpack(&crate_bytes);
    let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "hello-bin-0.2.0/Cargo.toml",
            "hello-bin-0.2.0/Cargo.toml.orig",
            "hello-bin-0.2.0/src/main.rs",
        ]
    );
    let manifest: toml_edit::DocumentMut = files[0].1.parse().unwrap();
    assert_eq!(manifest["package"]["version"].as_str(), Some("0.2.0"));
    assert_eq!(manifest["package"]["name"].as_str(), Some("hello-bin"));
    registry.shutdown().await;
}

#[tokio::test]
async fn a_locked_publish_ships_a_lock_resolved_against_the_registry() {
    let registry = FixtureRegistry::start().await.unwrap();
    let mut deps = Vec::new();
    for fixture in ["fx-lexer", "fx-stats", "fx-report"] {
        deps.push(registry.publish(fixture, "0.1.0").unwrap());
    }
    let published = registry.publish_locked("few-deps", "0.1.0").await.unwrap();
    let (status, _, crate_bytes) = get(&published.download_url, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&crate_bytes), published.cksum);

    let files = unpack(&crate_bytes);
    let lock = &files
        .iter()
        .find(|(path, _)| path == "few-deps-0.1.0/Cargo.lock")
        .expect("the .crate has a Cargo.lock")
        .1;
    let lock: toml_edit::DocumentMut = lock.parse().unwrap();
    let packages = lock["package"].as_array_of_tables().unwrap();
    for dep in &deps {
        let entry = packages
            .iter()
            .find(|p| p["name"].as_str() == Some(dep.name.as_str()))
            .unwrap_or_else(|| panic!("{} is in the lock", dep.name));
        assert_eq!(entry["version"].as_str(), Some("0.1.0"));
        // Recorded as crates.io, which the registry stands in for, with its real checksum.
        assert_eq!(
            entry["source"].as_str(),
            Some("registry+https://github.com/rust-lang/crates.io-index")
        );
        assert_eq!(entry["checksum"].as_str(), Some(dep.cksum.as_str()));
    }
    assert_eq!(packages.len(), 4, "few-deps and its three dependencies");

    let error = registry
        .publish_locked("few-deps", "0.1.0")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("already"), "{error}");
    registry.shutdown().await;
}

#[test]
fn packing_is_deterministic() {
    let dir = fixtures_dir().join("multi-bin");
    let a = pack_dir(&dir, "1.0.0").unwrap();
    let b = pack_dir(&dir, "1.0.0").unwrap();
    assert_eq!(a.bytes, b.bytes);
    assert_eq!(a.entry, b.entry);
    let c = pack_dir(&dir, "1.0.1").unwrap();
    assert_ne!(a.entry.cksum, c.entry.cksum);
    let paths: Vec<String> = unpack(&a.bytes).into_iter().map(|(p, _)| p).collect();
    assert!(paths.contains(&"multi-bin-1.0.0/src/bin/alpha.rs".to_owned()));
    assert!(paths.contains(&"multi-bin-1.0.0/src/bin/beta.rs".to_owned()));
}

#[test]
fn index_line_carries_features_and_dependencies() {
    let lib = pack_dir(&fixtures_dir().join("lib-only"), "0.3.0").unwrap();
    assert_eq!(lib.entry.features["loud"], Vec::<String>::new());

    // A crate depending on another fixture by path, as later fixtures will.
    let temp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(temp.path().join("src")).unwrap();
    std::fs::write(temp.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        temp.path().join("Cargo.toml"),
        r#"[package]
name = "uses-lib"
version = "0.0.0"
edition = "2021"

[dependencies]
lib-only = { path = "../lib-only", version = "0.3", features = ["loud"] }
renamed = { package = "lib-only", version = "0.3", optional = true }

[dev-dependencies]
helper = { path = "../helper" }

[target.'cfg(unix)'.build-dependencies]
lib-only = "0.3"

[features]
extra = ["dep:renamed"]

[workspace]
"#,
    )
    .unwrap();
    let packed = pack_dir(temp.path(), "0.1.0").unwrap();
    let deps = &packed.entry.deps;
    assert_eq!(deps.len(), 3, "{deps:?}");
    let normal = deps
        .iter()
        .find(|d| d.name == "lib-only" && d.kind == "normal")
        .unwrap();
    assert_eq!(normal.req, "0.3");
    assert_eq!(normal.features, ["loud"]);
    assert_eq!(normal.registry, None);
    let build = deps.iter().find(|d| d.kind == "build").unwrap();
    assert_eq!(build.target.as_deref(), Some("cfg(unix)"));
    let renamed = deps.iter().find(|d| d.name == "renamed").unwrap();
    assert_eq!(renamed.package.as_deref(), Some("lib-only"));
    assert!(renamed.optional);
    assert_eq!(
        packed.entry.features2.as_ref().unwrap()["extra"],
        ["dep:renamed"]
    );

    let manifest = &unpack(&packed.bytes)[0].1;
    assert!(!manifest.contains("path ="), "{manifest}");
    assert!(!manifest.contains("helper"), "{manifest}");
    assert!(manifest.contains("version = \"0.1.0\""), "{manifest}");
}

#[tokio::test]
async fn yank_and_unyank_rewrite_the_line() {
    let registry = FixtureRegistry::start().await.unwrap();
    registry.publish("hello-bin", "0.1.0").unwrap();
    registry.publish("hello-bin", "0.2.0").unwrap();
    registry.yank("hello-bin", "0.1.0").unwrap();
    let url = format!("{}he/ll/hello-bin", registry.base_url());
    let yanked: Vec<bool> = entries(&get(&url, &[]).await.2)
        .iter()
        .map(|e| e.yanked)
        .collect();
    assert_eq!(yanked, [true, false]);
    registry.unyank("hello-bin", "0.1.0").unwrap();
    let yanked: Vec<bool> = entries(&get(&url, &[]).await.2)
        .iter()
        .map(|e| e.yanked)
        .collect();
    assert_eq!(yanked, [false, false]);

    assert!(matches!(
        registry.yank("hello-bin", "9.9.9"),
        Err(FixtureError::NotPublished { .. })
    ));
    assert!(matches!(
        registry.publish("hello-bin", "0.1.0"),
        Err(FixtureError::AlreadyPublished { .. })
    ));
    assert!(matches!(
        registry.publish("no-such-fixture", "0.1.0"),
        Err(FixtureError::NoSuchFixture(_))
    ));
    assert!(matches!(
        registry.publish("../index", "0.1.0"),
        Err(FixtureError::NoSuchFixture(_))
    ));
}

#[tokio::test]
async fn raw_publish_keeps_bytes_and_checksum_override() {
    let registry = FixtureRegistry::start().await.unwrap();
    let wrong = "0".repeat(64);
    let published = registry
        .publish_raw("evil", "0.1.0", b"not a tarball", Some(wrong.clone()))
        .unwrap();
    assert_eq!(published.cksum, wrong);
    let (_, _, bytes) = get(&published.download_url, &[]).await;
    assert_eq!(bytes, b"not a tarball");
    let (_, _, index) = get(&format!("{}ev/il/evil", registry.base_url()), &[]).await;
    assert_eq!(entries(&index)[0].cksum, wrong);
}

#[tokio::test]
async fn validators_give_304_only_when_switched_on() {
    let registry = FixtureRegistry::start().await.unwrap();
    registry.publish("lib-only", "0.1.0").unwrap();
    let url = format!("{}li/b-/lib-only", registry.base_url());

    let (_, headers, _) = get(&url, &[]).await;
    assert!(headers.get("etag").is_none() && headers.get("last-modified").is_none());

    registry.set_options(ServeOptions {
        etag: true,
        last_modified: true,
        ..ServeOptions::default()
    });
    let (_, headers, _) = get(&url, &[]).await;
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let modified = headers["last-modified"].to_str().unwrap().to_owned();
    assert_eq!(get(&url, &[("if-none-match", &etag)]).await.0, 304);
    assert_eq!(get(&url, &[("if-modified-since", &modified)]).await.0, 304);

    // A change moves both validators, even within the same second.
    registry.publish("lib-only", "0.2.0").unwrap();
    assert_eq!(get(&url, &[("if-none-match", &etag)]).await.0, 200);
    assert_eq!(get(&url, &[("if-modified-since", &modified)]).await.0, 200);

    let log = registry.requests();
    assert_eq!(log.iter().filter(|r| r.status == 304).count(), 2);
    assert_eq!(log.iter().filter(|r| r.conditional).count(), 4);

    registry.set_options(ServeOptions {
        unavailable: true,
        ..ServeOptions::default()
    });
    assert_eq!(get(&url, &[]).await.0, 503);
}

#[tokio::test]
async fn only_index_files_are_served() {
    let registry = FixtureRegistry::start_with(ServeOptions {
        git: true,
        ..ServeOptions::default()
    })
    .await
    .unwrap();
    registry.publish("hello-bin", "0.1.0").unwrap();
    for path in [
        ".git/config",
        "he/ll/.tmp",
        "he/../../crates",
        "he",
        "nope/nope/nope",
    ] {
        let (status, _, _) = get(&format!("{}{path}", registry.base_url()), &[]).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _, _) = get(
        &format!("{}dl/hello-bin/..%2f..%2fx/download", registry.base_url()),
        &[],
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn git_index_gets_one_commit_per_change() {
    let registry = FixtureRegistry::start_with(ServeOptions {
        git: true,
        ..ServeOptions::default()
    })
    .await
    .unwrap();
    let url = registry.git_url().unwrap();
    assert!(url.starts_with("file:///"));
    registry.publish("hello-bin", "0.1.0").unwrap();
    registry.publish("multi-bin", "0.1.0").unwrap();
    registry.yank("hello-bin", "0.1.0").unwrap();
    registry.yank("hello-bin", "0.1.0").unwrap(); // no change, no commit

    let log = Command::new("git")
        .arg("-C")
        .arg(registry.index_dir())
        .args(["log", "--format=%s", "master"])
        .output()
        .unwrap();
    let subjects = String::from_utf8(log.stdout).unwrap();
    assert_eq!(
        subjects.lines().collect::<Vec<_>>(),
        [
            "Yank hello-bin 0.1.0",
            "Publish multi-bin 0.1.0",
            "Publish hello-bin 0.1.0",
            "Initial commit: config.json",
        ]
    );
    let head = registry.git_head().unwrap().unwrap();
    assert_eq!(head.len(), 40);
}

#[tokio::test]
async fn pause_and_resume_keep_the_port_and_contents() {
    let mut registry = FixtureRegistry::start().await.unwrap();
    registry.publish("hello-bin", "0.1.0").unwrap();
    let url = format!("{}he/ll/hello-bin", registry.base_url());
    registry.pause().await;
    assert!(client().get(&url).send().await.is_err());
    registry.resume().await.unwrap();
    assert_eq!(get(&url, &[]).await.0, 200);
}
