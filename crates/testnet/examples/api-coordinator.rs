//! A coordinator whose store holds every kind of thing `/api/v1` shows, for the API's
//! contract test (`scripts/contract-test`):
//!
//! ```text
//! cargo run -p buildsrs-testnet --example api-coordinator -- DIR
//! ```
//!
//! Seeds a fresh coordinator data dir `DIR` (what was there is removed) through the store's
//! own operations, as a network would have made it: builders pending, approved and revoked;
//! tasks queued (one backing off after an expired lease), building, verified, in mismatch,
//! failed, without binaries and cancelled (its version yanked); results of every kind, with
//! real signed attestations and build logs; verified artifacts in object storage with their
//! bundles and downloads, one of them since withdrawn by a revocation; a version the planner
//! did not choose, one it could not plan, a pre-release with build metadata. Then it runs the
//! coordinator on it (`buildsrs_coordinator::run`): the web server on `127.0.0.1` (its URL in
//! `DIR/coordinator.http`), the network on loopback (so the feed lists the coordinator's
//! blob address), the index a fixture registry without crates (so nothing changes what was
//! seeded). SIGINT or SIGTERM stops it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use buildsrs_coordinator::{Config, IndexSource};
use buildsrs_fixture_registry::FixtureRegistry;
use buildsrs_keys::{
    ArtifactId, Bundle, Identity, SCHEMA_VERSION, SignedAttestation, Statement, Toolchain,
};
use buildsrs_storage::{ArtifactStorage, StorageConfig};
use buildsrs_store::{
    BuildOutcome, IndexVersion, NewBuilder, Policy, Store, StoredBuild, Submission, TaskId,
    TaskState,
};
use jiff::{SignedDuration, Timestamp};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

const TARGET: &str = "x86_64-unknown-linux-gnu";
const TOOLCHAIN: &str = "1.95.0";

/// The crates, as the index lists them: (name, version, yanked, rust-version).
const INDEX: &[(&str, &str, Option<&str>)] = &[
    ("hello-bin", "0.1.0", None),
    ("hello-bin", "0.2.0", None),
    ("multi-bin", "0.1.0", None),
    ("pre-tool", "0.2.0-alpha.1+build.5", None),
    ("lib-only", "0.1.0", None),
    ("dep-user", "0.1.0", None),
    ("dep-user", "0.2.0", None),
    ("compile-error", "0.1.0", None),
    ("retried", "0.1.0", None),
    ("withdrawn", "1.0.0", None),
    ("needs-rust", "1.0.0", Some("1.99")),
    ("unwatched", "0.3.0", None),
];

/// Watched crates and how many versions besides the newest to plan.
const WATCH: &[(&str, u32)] = &[
    ("hello-bin", 1),
    ("multi-bin", 0),
    ("pre-tool", 0),
    ("lib-only", 0),
    ("dep-user", 1),
    ("compile-error", 0),
    ("retried", 0),
    ("withdrawn", 0),
    ("needs-rust", 0),
];

fn cksum(name: &str, version: &str) -> String {
    buildsrs_keys::Blake3Hash::of_bytes(format!("{name}-{version}.crate").as_bytes()).to_hex()
}

fn index_line(name: &str, version: &str, yanked: bool, rust: Option<&str>) -> IndexVersion {
    IndexVersion {
        name: name.parse().expect("a crate name"),
        version: version.parse().expect("a version"),
        cksum: cksum(name, version).parse().expect("a sha256"),
        yanked,
        download_url: format!("https://registry.test/dl/{name}/{version}/download"),
        rust_version: rust.map(str::to_owned),
    }
}

/// Seeds the store and object storage.
struct Seeder {
    store: Store,
    storage: ArtifactStorage,
    /// Raised for every lease, so that the task asked for is the one leased next.
    priority: i64,
}

impl Seeder {
    async fn builder(&self, seed: u8, name: &str, now: Timestamp) -> Result<Identity> {
        let identity = Identity::from_seed([seed; 32]);
        self.store
            .register_builder(
                NewBuilder {
                    public_key: identity.public_key(),
                    name: name.to_owned(),
                    targets: vec![TARGET.parse()?],
                    toolchains: vec![TOOLCHAIN.parse()?],
                    capacity: 8,
                },
                now,
            )
            .await?;
        Ok(identity)
    }

    async fn task(&self, name: &str, version: &str) -> Result<TaskId> {
        let info = self
            .store
            .version_info(name, version)
            .await?
            .with_context(|| format!("{name} {version} is not in the store"))?;
        let task = info
            .tasks
            .first()
            .with_context(|| format!("{name} {version} has no task"))?;
        Ok(task.id)
    }

    /// `who` leases the task of `name` `version`.
    async fn lease(
        &mut self,
        who: &Identity,
        name: &str,
        version: &str,
        now: Timestamp,
    ) -> Result<buildsrs_store::Lease> {
        let task = self.task(name, version).await?;
        self.priority += 1;
        self.store
            .set_task_priority(task, self.priority, now)
            .await?;
        let lease = self
            .store
            .lease_next(&who.public_key(), now)
            .await?
            .with_context(|| format!("no lease for {name} {version}"))?;
        ensure!(
            lease.task_id == task,
            "leased task {} instead of {name} {version}",
            lease.task_id
        );
        Ok(lease)
    }

    /// `who` builds `name` `version` and reports `outcome`.
    async fn build(
        &mut self,
        who: &Identity,
        name: &str,
        version: &str,
        outcome: BuildOutcome,
        now: Timestamp,
    ) -> Result<()> {
        let lease = self.lease(who, name, version, now).await?;
        let log = format!(
            "   Compiling {name} v{version}\n{}\n",
            match &outcome {
                BuildOutcome::Built(_) => "    Finished `release` profile".to_owned(),
                other => format!("error: {}", other.kind()),
            }
        );
        self.store
            .submit(
                Submission {
                    lease_id: lease.lease_id,
                    epoch: lease.epoch,
                    builder: who.public_key(),
                    outcome,
                    log: Some(log.into_bytes()),
                },
                now,
            )
            .await?;
        Ok(())
    }

    /// `who` builds `bytes` for `name` `version` and attests it.
    async fn built(
        &mut self,
        who: &Identity,
        name: &str,
        version: &str,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<()> {
        let artifact = ArtifactId::of_bytes(bytes);
        let signed = attestation(who, name, version, artifact)?.to_canonical_json();
        self.build(
            who,
            name,
            version,
            BuildOutcome::Built(StoredBuild { artifact, signed }),
            now,
        )
        .await
    }

    /// Puts a verified artifact and its bundle into object storage, the way the publisher does.
    async fn publish(&self, bytes: &[u8], scratch: &Path) -> Result<ArtifactId> {
        let artifact = ArtifactId::of_bytes(bytes);
        let hash = artifact.blake3;
        let hex = hash.to_hex();
        let info = self
            .store
            .artifact(&hash)
            .await?
            .with_context(|| format!("artifact {hex} is not in the store"))?;
        let mut bundle = Bundle::new(artifact);
        for result in info.attestations.iter().filter(|a| a.counted) {
            if let Some(signed) = &result.signed {
                bundle.push(&SignedAttestation::from_json(signed)?)?;
            }
        }
        let file = scratch.join(&hex);
        std::fs::write(&file, bytes)?;
        buildsrs_coordinator::publish::store_published(
            &self.store,
            &self.storage,
            artifact,
            &file,
            &bundle,
        )
        .await?;
        Ok(artifact)
    }
}

/// The attestation a node signs for `artifact`.
fn attestation(
    who: &Identity,
    name: &str,
    version: &str,
    artifact: ArtifactId,
) -> Result<SignedAttestation> {
    let statement = Statement {
        schema: SCHEMA_VERSION,
        crate_name: name.parse()?,
        version: version.parse()?,
        registry: Some(buildsrs_keys::RegistryUrl::crates_io()),
        source_sha256: Some(cksum(name, version).parse()?),
        cargo_lock_sha256: None,
        target: TARGET.parse()?,
        toolchain: Toolchain::from_parts(
            TOOLCHAIN,
            "0000000000000000000000000000000000000000",
            TARGET,
        )?,
        features: Vec::new(),
        settings_digest: None,
        artifact,
        builder: who.public_key(),
        build_started: 1_767_225_600,
        build_finished: 1_767_225_660,
    };
    Ok(SignedAttestation::sign(statement, who)?)
}

/// An artifact's bytes (not an archive: the API never opens one).
fn bytes(label: &str) -> Vec<u8> {
    label.bytes().cycle().take(4096 + label.len()).collect()
}

async fn seed(dir: &Path, policy: Policy) -> Result<()> {
    let store = Store::open(
        &buildsrs_store::StoreConfig::sqlite(dir.join("coordinator.sqlite3")).with_policy(policy),
    )
    .await?;
    let storage = ArtifactStorage::open(&StorageConfig::Local {
        root: dir.join("artifacts"),
    })?;
    let mut s = Seeder {
        store: store.clone(),
        storage,
        priority: 0,
    };
    let now = Timestamp::now();
    let early = now - SignedDuration::from_hours(2);

    store.set_target(TARGET, true, early).await?;
    store.set_toolchain(TOOLCHAIN, true, early).await?;
    for (name, backfill) in WATCH {
        store.watch_crate(name, *backfill, early).await?;
    }
    let lines = INDEX
        .iter()
        .map(|(name, version, rust)| index_line(name, version, false, *rust))
        .collect();
    store.upsert_versions(lines, early).await?;

    let alpha = s.builder(1, "alpha", early).await?;
    let beta = s.builder(2, "beta", early).await?;
    let gamma = s.builder(3, "gamma", early).await?;
    let _delta = s.builder(4, "delta", early).await?;
    let eve = s.builder(5, "eve", early).await?;
    for who in [&alpha, &beta, &gamma] {
        store.approve_builder(&who.public_key(), early).await?;
    }
    // One approved with an operator, so the API shows one (the others are their own).
    store
        .approve_builder_as(&eve.public_key(), &"example-org".parse()?, early)
        .await?;

    // Node-side trouble, long ago: a node error, and a lease left to expire (its task backs
    // off, then waits in the queue).
    s.build(
        &eve,
        "lib-only",
        "0.1.0",
        BuildOutcome::node_error("the disk is full".to_owned()),
        early,
    )
    .await?;
    s.lease(&eve, "retried", "0.1.0", early).await?;
    let expired = store
        .expire_leases(now - SignedDuration::from_mins(60))
        .await?;
    ensure!(
        expired.expired == 1,
        "expected one expired lease: {expired:?}"
    );

    // Verified, stored, downloaded.
    let scratch = dir.join("seed-scratch");
    std::fs::create_dir_all(&scratch)?;
    let hello = bytes("hello-bin 0.1.0");
    s.built(&alpha, "hello-bin", "0.1.0", &hello, now).await?;
    s.built(&beta, "hello-bin", "0.1.0", &hello, now).await?;
    let hello = s.publish(&hello, &scratch).await?;
    for _ in 0..3 {
        store.record_download(&hello.blake3, now).await?;
    }
    // A pre-release (planned because its crate has no release) with build metadata.
    let pre = bytes("pre-tool 0.2.0-alpha.1+build.5");
    s.built(&alpha, "pre-tool", "0.2.0-alpha.1+build.5", &pre, now)
        .await?;
    s.built(&gamma, "pre-tool", "0.2.0-alpha.1+build.5", &pre, now)
        .await?;
    s.publish(&pre, &scratch).await?;

    // Verified and stored, then withdrawn: one of its two builders is revoked.
    let withdrawn = bytes("withdrawn 1.0.0");
    s.built(&beta, "withdrawn", "1.0.0", &withdrawn, now)
        .await?;
    s.built(&eve, "withdrawn", "1.0.0", &withdrawn, now).await?;
    s.publish(&withdrawn, &scratch).await?;
    let revoked = store
        .revoke_builder(&eve.public_key(), "the key leaked", now)
        .await?;
    ensure!(revoked.verified_lost == 1, "{revoked:?}");

    // Builders disagree; agree it fails; agree it has no binaries.
    s.built(&alpha, "hello-bin", "0.2.0", &bytes("one"), now)
        .await?;
    s.built(&beta, "hello-bin", "0.2.0", &bytes("other"), now)
        .await?;
    for who in [&alpha, &beta] {
        let failed = BuildOutcome::build_failed(
            "error[E0425]: cannot find value `x` in this scope".to_owned(),
        );
        s.build(who, "multi-bin", "0.1.0", failed, now).await?;
        s.build(who, "lib-only", "0.1.0", BuildOutcome::no_binaries(""), now)
            .await?;
    }

    // Being built now; yanked while queued.
    s.lease(&gamma, "dep-user", "0.1.0", now).await?;
    store
        .upsert_versions(vec![index_line("compile-error", "0.1.0", true, None)], now)
        .await?;
    std::fs::remove_dir_all(&scratch)?;

    // Every state is there.
    let mut states = Vec::new();
    for (name, version, _) in INDEX {
        if let Some(info) = store.version_info(name, version).await? {
            states.extend(info.tasks.iter().map(|t| t.state));
        }
    }
    for state in TaskState::ALL {
        ensure!(states.contains(state), "no task is {state}: {states:?}");
    }
    drop(s);
    drop(store);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        bail!("usage: api-coordinator DIR");
    };
    let dir = PathBuf::from(dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BUILDSRS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let policy = Policy::default();
    seed(&dir, policy.clone()).await.context("seeding")?;

    let registry = FixtureRegistry::start().await?;
    let mut config = Config::new(&dir);
    config.index = IndexSource::Sparse(registry.index_url());
    config.toolchains = vec![TOOLCHAIN.to_owned()];
    config.targets = vec![TARGET.to_owned()];
    config.policy = policy;
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    config.http = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    config.poll_interval = Duration::from_secs(5);

    let shutdown = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        stop.cancel();
    });
    let result = buildsrs_coordinator::run(config, shutdown).await;
    registry.shutdown().await;
    result
}
