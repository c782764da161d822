//! Phase 1 reaches only the job's registry: real builds of crates that try to make cargo
//! contact another host (a git dependency, another registry, `[patch]`, a lock file naming
//! git, a dependency's index line naming another registry), each against a listener of the
//! test's own that must see no connection; and the registry proxy itself.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::Result;
use buildsrs_fixture_registry::{
    FixtureRegistry, IndexDep, fixtures_dir, pack_dir, pack_dir_with_lock,
};
use buildsrs_node::outcome::{BuildOutcome, Ended, OutcomeKind};
use buildsrs_node::pipeline::JobReport;
use buildsrs_node::registry_proxy::{AllowedHosts, Endpoint, RegistryProxy};
use support::{TestNode, fixture_copy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A hostile host: a listener that records whether anything connected to it.
struct Hostile(TcpListener);

impl Hostile {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Self(listener)
    }

    fn addr(&self) -> SocketAddr {
        self.0.local_addr().unwrap()
    }

    /// Whether a connection was made (a finished handshake waits in the backlog even if
    /// nobody accepted it).
    fn was_contacted(&self) -> bool {
        self.0.accept().is_ok()
    }
}

/// A copy of `fixture` whose manifest points `hostile.invalid` at `hostile`.
fn hostile_copy(fixture: &str, hostile: SocketAddr, scratch: &Path) -> Result<PathBuf> {
    let dir = fixture_copy(fixture, scratch)?;
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?;
    assert!(text.contains("hostile.invalid"), "{fixture}");
    std::fs::write(
        &manifest,
        text.replace("hostile.invalid", &hostile.to_string()),
    )?;
    Ok(dir)
}

/// The reason of a failed build; panics with the log otherwise.
fn failure(report: &JobReport) -> &str {
    match &report.outcome {
        BuildOutcome::Ended(ended @ Ended { reason, .. })
            if ended.kind() == OutcomeKind::BuildFailed =>
        {
            reason
        }
        other => panic!("expected the crate's failure, got {other}\n{}", report.log),
    }
}

#[tokio::test]
async fn git_other_registry_and_patch_dependencies_are_refused_before_phase_1() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("lib-only", "0.1.0")?;
    let node = TestNode::new(|_| {}).await?;
    let scratch = tempfile::tempdir()?;
    let cases = [
        ("git-dep", "is a git dependency"),
        ("other-registry-dep", "comes from another registry"),
        ("patches-crates-io", "[patch.crates-io]"),
    ];
    for (fixture, expected) in cases {
        let hostile = Hostile::start();
        let dir = hostile_copy(fixture, hostile.addr(), scratch.path())?;
        let report = node
            .build(&registry, &registry.publish_dir(&dir, "0.1.0")?)
            .await?;
        let reason = failure(&report);
        assert!(
            reason.starts_with("refused before phase 1") && reason.contains(expected),
            "{fixture}: {reason}"
        );
        if fixture != "patches-crates-io" {
            assert!(
                reason.contains("`lib-only`") && reason.contains(&hostile.addr().to_string()),
                "the reason names the dependency and its source: {reason}"
            );
        }
        assert!(!report.log.contains("== phase 1"), "{}", report.log);
        assert!(
            !hostile.was_contacted(),
            "{fixture}: the hostile host saw a connection"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_shipped_lock_naming_a_git_source_is_refused_before_phase_1() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("lib-only", "0.1.0")?;
    let hostile = Hostile::start();
    let source = format!(
        "git+http://{}/lib-only.git#0123456789abcdef0123456789abcdef01234567",
        hostile.addr()
    );
    let lock = format!(
        "version = 4\n\n[[package]]\nname = \"dep-user\"\nversion = \"0.1.0\"\n\
         dependencies = [\n \"lib-only\",\n]\n\n[[package]]\nname = \"lib-only\"\n\
         version = \"0.1.0\"\nsource = \"{source}\"\n"
    );
    let packed = pack_dir_with_lock(&fixtures_dir().join("dep-user"), "0.1.0", lock.as_bytes())?;
    let published = registry.publish_packed(packed)?;
    let node = TestNode::new(|_| {}).await?;
    let report = node.build(&registry, &published).await?;
    let reason = failure(&report);
    assert_eq!(
        reason,
        format!(
            "refused before phase 1: Cargo.lock: package `lib-only 0.1.0` comes from {source}, \
             not {}",
            registry.index_url()
        )
    );
    assert!(!report.log.contains("== phase 1"), "{}", report.log);
    assert!(!hostile.was_contacted());
    Ok(())
}

#[tokio::test]
async fn a_dependency_whose_index_line_names_another_registry_is_stopped_by_the_proxy() -> Result<()>
{
    let registry = FixtureRegistry::start().await?;
    let hostile = Hostile::start();
    // lib-only's index line (not its manifest, which the sources check never sees) has a
    // dependency from the hostile registry; resolving dep-user makes cargo go there.
    let mut lib = pack_dir(&fixtures_dir().join("lib-only"), "0.1.0")?;
    lib.entry.deps.push(IndexDep {
        name: "hostile-dep".into(),
        req: "^1".into(),
        features: Vec::new(),
        optional: false,
        default_features: true,
        target: None,
        kind: "normal".into(),
        registry: Some(format!("sparse+http://{}/", hostile.addr())),
        package: None,
    });
    registry.publish_packed(lib)?;
    let published = registry.publish("dep-user", "0.1.0")?;
    let node = TestNode::new(|_| {}).await?;
    let report = node.build(&registry, &published).await?;
    let reason = failure(&report);
    assert!(
        reason.contains("phase 1 tried to reach")
            && reason.contains(&hostile.addr().to_string())
            && reason.contains("refused by the node's registry proxy"),
        "{reason}\n{}",
        report.log
    );
    assert!(report.log.contains("== phase 1"), "{}", report.log);
    assert!(
        !hostile.was_contacted(),
        "cargo reached the hostile registry"
    );
    Ok(())
}

#[tokio::test]
async fn dependencies_are_fetched_through_the_proxy() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    for dependency in ["fx-lexer", "fx-stats", "fx-report"] {
        registry.publish(dependency, "0.1.0")?;
    }
    let published = registry.publish("few-deps", "0.1.0")?;
    let node = TestNode::new(|_| {}).await?;
    let report = node.build(&registry, &published).await?;
    assert!(
        report.outcome.kind() == OutcomeKind::Built,
        "{}\n{}",
        report.outcome,
        report.log
    );
    assert!(
        report.log.contains(&format!(
            "network: only {}, through the node's registry proxy",
            registry.addr()
        )),
        "{}",
        report.log
    );
    // Every download went through the proxy: the index files, config.json and the three
    // `.crate` files at least (curl does not bypass a proxy for loopback).
    let line = report
        .log
        .lines()
        .find(|l| l.contains("registry proxy: "))
        .unwrap();
    let allowed: u64 = line
        .split("registry proxy: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .parse()?;
    assert!(allowed >= 4, "{line}");
    assert!(!line.contains("refused"), "{line}");
    Ok(())
}

/// Sends `head` (a request head) on a new connection to the proxy and returns the response's
/// status line and the connection.
async fn raw_request(proxy: SocketAddr, head: &str) -> Result<(String, tokio::net::TcpStream)> {
    let mut stream = tokio::net::TcpStream::connect(proxy).await?;
    stream.write_all(head.as_bytes()).await?;
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            break;
        }
        received.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&received);
    Ok((text.lines().next().unwrap_or("").to_owned(), stream))
}

#[tokio::test]
async fn the_proxy_reaches_only_the_allowed_hosts() -> Result<()> {
    let allowed_host = FixtureRegistry::start().await?;
    let other = Hostile::start();
    let proxy = RegistryProxy::start(CancellationToken::new()).await?;
    let hosts = proxy
        .registry_hosts(&allowed_host.index_url(), &reqwest::Client::new())
        .await?;
    let mut expected = AllowedHosts::default();
    expected.insert(Endpoint::of_url(&allowed_host.base_url())?);
    assert_eq!(hosts, expected, "the index and dl hosts are one here");
    let grant = proxy.grant("test", hosts)?;
    let credentials = {
        let userinfo = grant
            .url()
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('@'))
            .unwrap()
            .0;
        data_encoding::BASE64.encode(userinfo.as_bytes())
    };
    let auth = format!("Proxy-Authorization: Basic {credentials}\r\n");

    // Plain HTTP in absolute form, as cargo sends it for an http registry.
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(grant.url())?)
        .build()?;
    let config = client
        .get(format!("{}config.json", allowed_host.base_url()))
        .send()
        .await?;
    assert_eq!(config.status(), 200);
    assert!(config.text().await?.contains("\"dl\""));
    let refused = client
        .get(format!("http://{}/config.json", other.addr()))
        .send()
        .await?;
    assert_eq!(refused.status(), 403);

    // CONNECT, as cargo sends it for an https registry: a tunnel to the allowed host only.
    let (status, _) = raw_request(
        proxy.addr(),
        &format!(
            "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n{auth}\r\n",
            other.addr()
        ),
    )
    .await?;
    assert!(status.contains(" 403 "), "{status}");
    let target = allowed_host.addr();
    let (status, mut tunnel) = raw_request(
        proxy.addr(),
        &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n"),
    )
    .await?;
    assert!(status.contains(" 200 "), "{status}");
    tunnel
        .write_all(
            format!("GET /config.json HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut answer = String::new();
    tunnel.read_to_string(&mut answer).await?;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"dl\""),
        "{answer}"
    );

    // Without the grant's credentials, nothing; an origin-form request is no proxy request.
    let (status, _) = raw_request(
        proxy.addr(),
        &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    )
    .await?;
    assert!(status.contains(" 403 "), "{status}");
    let (status, _) = raw_request(
        proxy.addr(),
        &format!("GET /config.json HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n"),
    )
    .await?;
    assert!(status.contains(" 403 "), "{status}");

    let traffic = grant.traffic();
    assert_eq!(traffic.allowed, 2, "{traffic:?}");
    assert_eq!(
        traffic.refused,
        [
            format!("GET {}", other.addr()),
            format!("CONNECT {}", other.addr())
        ]
    );
    assert!(traffic.unreachable.is_empty(), "{traffic:?}");
    assert!(!other.was_contacted(), "the other host saw a connection");

    // A grant that is gone lets nothing through.
    drop(grant);
    let (status, _) = raw_request(
        proxy.addr(),
        &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n"),
    )
    .await?;
    assert!(status.contains(" 403 "), "{status}");
    Ok(())
}
