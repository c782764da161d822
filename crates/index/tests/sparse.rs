//! The sparse follower against the fixture registry, on loopback only.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buildsrs_fixture_registry::{FixtureRegistry, ServeOptions};
use buildsrs_index::{
    CrateUpdate, FollowEnd, FollowOptions, IndexVersion, SparseFollower, WatchList,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn versions(update: &CrateUpdate) -> Vec<(String, bool)> {
    update
        .versions
        .iter()
        .map(|v| (v.version.to_string(), v.yanked))
        .collect()
}

fn listed(versions: &[IndexVersion]) -> Vec<&str> {
    versions.iter().map(|v| v.version.as_str()).collect()
}

fn follower(registry: &FixtureRegistry) -> SparseFollower {
    SparseFollower::new(&registry.index_url()).unwrap()
}

/// Index-file requests (not config.json) the registry answered with `status`.
fn crate_requests(
    registry: &FixtureRegistry,
    status: u16,
) -> Vec<buildsrs_fixture_registry::RequestRecord> {
    registry
        .requests()
        .into_iter()
        .filter(|r| r.path != "/config.json" && r.status == status)
        .collect()
}

#[tokio::test]
async fn new_versions_are_detected_with_cksum_and_download_url() {
    let registry = FixtureRegistry::start().await.unwrap();
    let first = registry.publish("hello-bin", "0.1.0").unwrap();
    let mut follower = follower(&registry);

    let report = follower.poll(&["hello-bin"]).await.unwrap();
    assert_eq!(report.updates.len(), 1);
    let update = &report.updates[0];
    assert_eq!(update.name, "hello-bin");
    assert_eq!(listed(&update.changes.added), ["0.1.0"]);
    let v = &update.versions[0];
    assert_eq!(v.cksum.to_hex(), first.cksum);
    assert_eq!(v.download_url, first.download_url);
    assert!(!v.yanked);

    // The URL works and serves bytes matching the index checksum.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let bytes = client
        .get(&v.download_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        buildsrs_fixture_registry::sha256_hex(&bytes),
        v.cksum.to_hex()
    );

    registry.publish("hello-bin", "0.2.0").unwrap();
    let report = follower.poll(&["hello-bin"]).await.unwrap();
    assert_eq!(report.updates.len(), 1);
    let update = &report.updates[0];
    assert_eq!(listed(&update.changes.added), ["0.2.0"]);
    assert_eq!(
        versions(update),
        [("0.1.0".into(), false), ("0.2.0".into(), false)]
    );
    assert!(update.changes.yanked.is_empty());
    assert_eq!(
        listed(follower.known_versions("hello-bin").unwrap()),
        ["0.1.0", "0.2.0"]
    );
}

#[tokio::test]
async fn rust_version_comes_from_the_published_manifest() {
    let registry = FixtureRegistry::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"needs-new-rust\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         rust-version = \"1.96\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    registry.publish_dir(dir.path(), "1.0.0").unwrap();
    registry.publish("hello-bin", "0.1.0").unwrap();

    let report = follower(&registry)
        .poll(&["needs-new-rust", "hello-bin"])
        .await
        .unwrap();
    let mut found: Vec<(String, Option<String>)> = report
        .updates
        .iter()
        .flat_map(|u| &u.versions)
        .map(|v| (v.name.to_string(), v.rust_version.clone()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("hello-bin".to_owned(), None),
            ("needs-new-rust".to_owned(), Some("1.96".to_owned()))
        ]
    );
}

#[tokio::test]
async fn yank_and_unyank_are_detected() {
    let registry = FixtureRegistry::start().await.unwrap();
    registry.publish("multi-bin", "1.0.0").unwrap();
    registry.publish("multi-bin", "1.1.0").unwrap();
    let mut follower = follower(&registry);
    follower.poll(&["multi-bin"]).await.unwrap();

    registry.yank("multi-bin", "1.1.0").unwrap();
    let report = follower.poll(&["multi-bin"]).await.unwrap();
    let changes = &report.updates[0].changes;
    assert_eq!(listed(&changes.yanked), ["1.1.0"]);
    assert!(changes.added.is_empty() && changes.unyanked.is_empty());
    assert_eq!(
        versions(&report.updates[0]),
        [("1.0.0".into(), false), ("1.1.0".into(), true)]
    );

    registry.unyank("multi-bin", "1.1.0").unwrap();
    let report = follower.poll(&["multi-bin"]).await.unwrap();
    let changes = &report.updates[0].changes;
    assert_eq!(listed(&changes.unyanked), ["1.1.0"]);
    assert!(changes.yanked.is_empty());
}

#[tokio::test]
async fn unchanged_index_with_validators_takes_the_304_path() {
    for (etag, last_modified) in [(true, false), (false, true), (true, true)] {
        let registry = FixtureRegistry::start_with(ServeOptions {
            etag,
            last_modified,
            ..ServeOptions::default()
        })
        .await
        .unwrap();
        registry.publish("lib-only", "0.1.0").unwrap();
        let mut follower = follower(&registry);
        assert_eq!(follower.poll(&["lib-only"]).await.unwrap().updates.len(), 1);

        registry.clear_requests();
        let report = follower.poll(&["lib-only"]).await.unwrap();
        assert!(report.updates.is_empty());
        assert_eq!(report.unchanged, ["lib-only"]);
        let not_modified = crate_requests(&registry, 304);
        assert_eq!(
            not_modified.len(),
            1,
            "etag={etag} last_modified={last_modified}"
        );
        assert!(not_modified[0].conditional);

        // A change still comes through.
        registry.yank("lib-only", "0.1.0").unwrap();
        let report = follower.poll(&["lib-only"]).await.unwrap();
        assert_eq!(listed(&report.updates[0].changes.yanked), ["0.1.0"]);
    }
}

#[tokio::test]
async fn unchanged_index_without_validators_takes_the_body_hash_path() {
    let registry = FixtureRegistry::start().await.unwrap();
    registry.publish("lib-only", "0.1.0").unwrap();
    let mut follower = follower(&registry);
    assert_eq!(follower.poll(&["lib-only"]).await.unwrap().updates.len(), 1);

    registry.clear_requests();
    let report = follower.poll(&["lib-only"]).await.unwrap();
    assert!(report.updates.is_empty());
    assert_eq!(report.unchanged, ["lib-only"]);
    let answered = crate_requests(&registry, 200);
    assert_eq!(answered.len(), 1);
    assert!(
        !answered[0].conditional,
        "no validators were given, none sent back"
    );
    assert!(crate_requests(&registry, 304).is_empty());
}

#[tokio::test]
async fn download_url_template_from_config_json_is_honoured() {
    let registry = FixtureRegistry::start().await.unwrap();
    let published = registry.publish("hello-bin", "0.3.0").unwrap();
    registry
        .set_dl_template(
            "https://dl.example/{prefix}/{lowerprefix}/{crate}/{version}/{sha256-checksum}.crate",
        )
        .unwrap();
    let mut follower = follower(&registry);
    let report = follower.poll(&["hello-bin"]).await.unwrap();
    assert_eq!(
        report.updates[0].versions[0].download_url,
        format!(
            "https://dl.example/he/ll/he/ll/hello-bin/0.3.0/{}.crate",
            published.cksum
        )
    );
    assert_eq!(
        follower.config().unwrap().dl(),
        "https://dl.example/{prefix}/{lowerprefix}/{crate}/{version}/{sha256-checksum}.crate"
    );

    // No marker: cargo's default suffix. The config is re-read at every poll.
    registry
        .set_dl_template("https://dl.example/api/v1/crates")
        .unwrap();
    registry.publish("hello-bin", "0.4.0").unwrap();
    let report = follower.poll(&["hello-bin"]).await.unwrap();
    assert_eq!(
        report.updates[0].changes.added[0].download_url,
        "https://dl.example/api/v1/crates/hello-bin/0.4.0/download"
    );
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn malformed_line_is_skipped_with_a_warning_and_the_rest_kept() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let registry = FixtureRegistry::start().await.unwrap();
    registry.publish("hello-bin", "0.1.0").unwrap();
    registry
        .append_index_line("hello-bin", "{\"name\":\"hello-bin\",\"vers\":")
        .unwrap();
    registry.publish("hello-bin", "0.2.0").unwrap();

    let mut follower = follower(&registry);
    let report = follower.poll(&["hello-bin"]).await.unwrap();
    assert!(report.errors.is_empty());
    assert_eq!(listed(&report.updates[0].versions), ["0.1.0", "0.2.0"]);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warning = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains("malformed"))
        .unwrap_or_else(|| panic!("no warning in {text}"));
    assert!(
        warning.contains("hello-bin") && warning.contains("line 2"),
        "{warning}"
    );
}

#[tokio::test]
async fn unknown_crates_are_reported_and_do_not_stop_the_others() {
    let registry = FixtureRegistry::start().await.unwrap();
    registry.publish("hello-bin", "0.1.0").unwrap();
    let mut follower = follower(&registry);
    let report = follower
        .poll(&["no-such-crate", "hello-bin", "not/a/name"])
        .await
        .unwrap();
    assert_eq!(report.not_found, ["no-such-crate"]);
    assert_eq!(report.updates.len(), 1);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].0, "not/a/name");
    assert!(!report.index_unreachable());
}

#[tokio::test]
async fn concurrency_limit_is_respected() {
    let registry = FixtureRegistry::start_with(ServeOptions {
        delay: Duration::from_millis(40),
        ..ServeOptions::default()
    })
    .await
    .unwrap();
    let names: Vec<String> = (0..24).map(|i| format!("crate-{i:02}")).collect();
    for name in &names {
        registry
            .publish_raw(name, "1.0.0", name.as_bytes(), None)
            .unwrap();
    }

    for limit in [1, 3, 8] {
        registry.clear_requests();
        let mut follower = follower(&registry).with_concurrency(limit);
        let report = follower.poll(&names).await.unwrap();
        assert_eq!(report.updates.len(), names.len());
        let max = registry.max_in_flight();
        assert!(max <= limit, "limit {limit}, saw {max} in flight");
        // With a 40 ms delay per answer, the follower does use what it is allowed.
        assert!(
            max >= limit.min(2),
            "limit {limit}, saw only {max} in flight"
        );
    }
}

/// A loopback address with nothing listening (a port that was just free).
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn quick() -> FollowOptions {
    FollowOptions {
        interval: Duration::from_millis(100),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
    }
}

async fn next(rx: &mut mpsc::Receiver<CrateUpdate>) -> CrateUpdate {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("an update within 20 s")
        .expect("the follower is still running")
}

#[tokio::test]
async fn unreachable_index_is_retried_until_it_comes_up() {
    let addr = free_addr();
    let follower = SparseFollower::new(&format!("sparse+http://{addr}/")).unwrap();
    let watch = WatchList::from_names(["hello-bin"]).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(follower.follow(watch, tx, quick(), cancel.clone()));

    // Several failed rounds with nothing listening; the follower keeps going.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err());
    assert!(!task.is_finished());

    let mut registry = FixtureRegistry::start_on(addr, ServeOptions::default())
        .await
        .unwrap();
    registry.publish("hello-bin", "0.1.0").unwrap();
    let update = next(&mut rx).await;
    assert_eq!(listed(&update.changes.added), ["0.1.0"]);

    // Down again mid-run (and a 503 phase), then back with a new version.
    registry.pause().await;
    registry.publish("hello-bin", "0.2.0").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    registry.resume().await.unwrap();
    registry.set_options(ServeOptions {
        unavailable: true,
        ..ServeOptions::default()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err());
    registry.set_options(ServeOptions::default());
    let update = next(&mut rx).await;
    assert_eq!(listed(&update.changes.added), ["0.2.0"]);

    cancel.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, FollowEnd::Cancelled);
}

#[tokio::test]
async fn follow_reports_changes_and_picks_up_watch_list_additions_at_once() {
    let registry = FixtureRegistry::start().await.unwrap();
    registry.publish("hello-bin", "0.1.0").unwrap();
    registry.publish("multi-bin", "0.1.0").unwrap();
    let watch = WatchList::from_names(["hello-bin"]).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let options = FollowOptions {
        interval: Duration::from_secs(3600),
        ..quick()
    };
    let task = tokio::spawn(follower(&registry).follow(watch.clone(), tx, options, cancel.clone()));

    assert_eq!(next(&mut rx).await.name, "hello-bin");
    // The admin UI adds a crate: it is fetched now, not in an hour.
    watch.add("multi-bin").unwrap();
    let update = next(&mut rx).await;
    assert_eq!(update.name, "multi-bin");
    assert_eq!(listed(&update.changes.added), ["0.1.0"]);

    cancel.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, FollowEnd::Cancelled);
}

#[tokio::test]
async fn follow_sends_later_changes_and_stops_when_nobody_listens() {
    let registry = FixtureRegistry::start_with(ServeOptions {
        etag: true,
        ..ServeOptions::default()
    })
    .await
    .unwrap();
    registry.publish("hello-bin", "0.1.0").unwrap();
    let watch = WatchList::from_names(["hello-bin"]).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let task =
        tokio::spawn(follower(&registry).follow(watch, tx, quick(), CancellationToken::new()));

    assert_eq!(listed(&next(&mut rx).await.changes.added), ["0.1.0"]);
    // Unchanged rounds send nothing (and cost a 304 each).
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(rx.try_recv().is_err());
    assert!(crate_requests(&registry, 304).len() >= 2);
    registry.yank("hello-bin", "0.1.0").unwrap();
    assert_eq!(listed(&next(&mut rx).await.changes.yanked), ["0.1.0"]);

    drop(rx);
    registry.publish("hello-bin", "0.2.0").unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, FollowEnd::ReceiverClosed);
}
