//! [`Store`]: the one handle the coordinator holds, over either backend.
//!
//! Every method is one transaction. Methods that depend on time take `now` explicitly, so
//! tests control expiry and backoff, and several coordinator processes agree on what the
//! database says rather than on their clocks' readings at different moments.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use buildsrs_domain::{BlobAddress, Operator};
use buildsrs_keys::{ArtifactId, Blake3Hash, PublicKey};
use jiff::Timestamp;

use crate::db::Op;
use crate::error::{Result, StoreError};
use crate::model::{
    ArtifactInfo, AttestationId, BuildLog, BuilderInfo, BuilderResult, CrateInfo, CrateSummary,
    Decision, Event, ExpireReport, IndexVersion, IngestReport, Lease, LeaseId, LeasedTask,
    MatrixEntry, NewBuilder, Page, Paged, PublishedArtifact, QueueStats, RevokeReport, Submission,
    SubmitCheck, SubmitReport, TaskDetail, TaskId, TaskInfo, VerifiedItem, VersionInfo,
};
use crate::ops;
use crate::ops::Matrix;
use crate::policy::Policy;
use crate::postgres::PgBackend;
use crate::sqlite::{SqliteBackend, SqliteSync};

/// Which database a store uses.
#[derive(Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// One SQLite file (a directory means `store.sqlite3` inside it).
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Durability of commits.
        sync: SqliteSync,
    },
    /// A Postgres database.
    Postgres {
        /// `postgres://user[:password]@host[:port]/database`.
        url: String,
        /// Connections kept in the pool.
        pool_size: usize,
    },
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendConfig::Sqlite { path, sync } => f
                .debug_struct("Sqlite")
                .field("path", path)
                .field("sync", sync)
                .finish(),
            BackendConfig::Postgres { url, pool_size } => f
                .debug_struct("Postgres")
                .field("url", &redact(url))
                .field("pool_size", pool_size)
                .finish(),
        }
    }
}

/// Hides the password in a URL.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Default Postgres pool size.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How to open a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// The database.
    pub backend: BackendConfig,
    /// Scheduling policy.
    pub policy: Policy,
}

impl StoreConfig {
    /// A SQLite store at `path`.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self {
            backend: BackendConfig::Sqlite {
                path: path.into(),
                sync: SqliteSync::default(),
            },
            policy: Policy::default(),
        }
    }

    /// A Postgres store.
    pub fn postgres(url: impl Into<String>) -> Self {
        Self {
            backend: BackendConfig::Postgres {
                url: url.into(),
                pool_size: DEFAULT_POOL_SIZE,
            },
            policy: Policy::default(),
        }
    }

    /// `postgres://...` or `postgresql://...` selects Postgres; `sqlite:PATH` or a plain path
    /// selects SQLite.
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::postgres(url));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() || path == ":memory:" {
            return Err(StoreError::invalid(format!(
                "{url:?}: expected postgres://..., sqlite:PATH or a file path \
                 (in-memory SQLite is not supported: readers need the file)"
            )));
        }
        Ok(Self::sqlite(path))
    }

    /// The same, with this policy.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }
}

/// Which backend a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// SQLite.
    Sqlite,
    /// Postgres.
    Postgres,
}

enum Backend {
    Sqlite(SqliteBackend),
    Postgres(PgBackend),
}

struct Inner {
    backend: Backend,
    policy: Arc<Policy>,
}

/// The coordinator's job store. Cheap to clone; all clones share one pool/connection set.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Store");
        match &self.inner.backend {
            Backend::Sqlite(b) => s.field("sqlite", &b.path()),
            Backend::Postgres(b) => s.field("postgres", b),
        };
        s.field("policy", &self.inner.policy).finish()
    }
}

impl Store {
    /// Opens the store and applies any missing migrations.
    pub async fn open(config: &StoreConfig) -> Result<Store> {
        config.policy.validate()?;
        let backend = match &config.backend {
            BackendConfig::Sqlite { path, sync } => {
                let (path, sync) = (path.clone(), *sync);
                let backend = tokio::task::spawn_blocking(move || SqliteBackend::open(&path, sync))
                    .await
                    .map_err(|e| StoreError::Backend(Box::new(e)))??;
                Backend::Sqlite(backend)
            }
            BackendConfig::Postgres { url, pool_size } => {
                Backend::Postgres(PgBackend::open(url, *pool_size).await?)
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                policy: Arc::new(config.policy.clone()),
            }),
        })
    }

    /// Opens a store from a URL (see [`StoreConfig::from_url`]) with the default policy.
    pub async fn open_url(url: &str) -> Result<Store> {
        Self::open(&StoreConfig::from_url(url)?).await
    }

    /// Which backend this is.
    pub fn backend(&self) -> BackendKind {
        match self.inner.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    async fn write<A, T>(&self, args: A, op: Op<A, T>) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.write(Arc::clone(&self.inner.policy), args, op).await,
            Backend::Postgres(b) => b.write(&self.inner.policy, &args, op).await,
        }
    }

    /// Like [`Self::write`] for an operation that is a single statement on Postgres (a call of
    /// a server-side function): there it runs without the round trips of a transaction
    /// around it. On SQLite it is an ordinary write.
    async fn write_one_statement<A, T>(&self, args: A, op: Op<A, T>) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.write(Arc::clone(&self.inner.policy), args, op).await,
            Backend::Postgres(b) => b.write_one_statement(&self.inner.policy, &args, op).await,
        }
    }

    async fn read<A, T>(&self, args: A, op: Op<A, T>) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.read(Arc::clone(&self.inner.policy), args, op).await,
            Backend::Postgres(b) => b.read(&self.inner.policy, &args, op).await,
        }
    }

    /// Closes the Postgres pool now (the harness does this before dropping a database).
    #[cfg(feature = "testing")]
    pub(crate) fn close(&self) {
        if let Backend::Postgres(b) = &self.inner.backend {
            b.close();
        }
    }

    // ---- schema -------------------------------------------------------------------------

    /// The schema version of the database (the newest migration applied).
    pub async fn schema_version(&self) -> Result<i64> {
        self.read((), |db, _, ()| Box::pin(ops::reads::schema_version(db)))
            .await
    }

    // ---- index, watching, build matrix --------------------------------------------------

    /// Upserts a batch of index lines (at most 50,000) and plans, cancels or requeues tasks.
    /// A bad line refuses the whole batch.
    pub async fn upsert_versions(
        &self,
        batch: Vec<IndexVersion>,
        now: Timestamp,
    ) -> Result<IngestReport> {
        self.write((batch, now), |db, policy, (batch, now)| {
            Box::pin(ops::ingest::upsert_versions(db, policy, batch, *now))
        })
        .await
    }

    /// Watches a crate: plans its newest non-yanked version and the `backfill` next-older
    /// ones (semver order, pre-releases only if there is nothing else), and from then on
    /// every version the index publishes. The backfill is kept for a crate the index has not
    /// shown yet: its first versions are planned the same way when they arrive. Watching
    /// again with a larger backfill plans the extra versions. Returns the number of tasks
    /// planned. See `ops/plan.rs` for `rust-version` and crates without binaries.
    pub async fn watch_crate(&self, name: &str, backfill: u32, now: Timestamp) -> Result<u64> {
        self.write(
            (name.to_owned(), backfill, now),
            |db, policy, (name, backfill, now)| {
                Box::pin(ops::ingest::watch_crate(db, policy, name, *backfill, *now))
            },
        )
        .await
    }

    /// Unwatches a crate: its new versions are no longer planned; existing tasks stay.
    pub async fn unwatch_crate(&self, name: &str, now: Timestamp) -> Result<()> {
        self.write((name.to_owned(), now), |db, _, (name, now)| {
            Box::pin(ops::ingest::unwatch_crate(db, name, *now))
        })
        .await
    }

    /// Adds, enables or disables a target triple.
    pub async fn set_target(&self, triple: &str, enabled: bool, now: Timestamp) -> Result<()> {
        self.write(
            (triple.to_owned(), enabled, now),
            |db, _, (name, enabled, now)| {
                Box::pin(ops::ingest::set_matrix_entry(
                    db,
                    Matrix::Targets,
                    name,
                    *enabled,
                    *now,
                ))
            },
        )
        .await
    }

    /// Adds, enables or disables a toolchain.
    pub async fn set_toolchain(&self, name: &str, enabled: bool, now: Timestamp) -> Result<()> {
        self.write(
            (name.to_owned(), enabled, now),
            |db, _, (name, enabled, now)| {
                Box::pin(ops::ingest::set_matrix_entry(
                    db,
                    Matrix::Toolchains,
                    name,
                    *enabled,
                    *now,
                ))
            },
        )
        .await
    }

    /// The target triples.
    pub async fn targets(&self) -> Result<Vec<MatrixEntry>> {
        self.read((), |db, _, ()| {
            Box::pin(ops::ingest::matrix(db, Matrix::Targets))
        })
        .await
    }

    /// The toolchains.
    pub async fn toolchains(&self) -> Result<Vec<MatrixEntry>> {
        self.read((), |db, _, ()| {
            Box::pin(ops::ingest::matrix(db, Matrix::Toolchains))
        })
        .await
    }

    // ---- builders -----------------------------------------------------------------------

    /// Registers a builder as pending, or updates a known builder's name and capabilities.
    pub async fn register_builder(
        &self,
        builder: NewBuilder,
        now: Timestamp,
    ) -> Result<BuilderInfo> {
        self.write((builder, now), |db, policy, (builder, now)| {
            Box::pin(ops::builders::register(db, policy, builder, *now))
        })
        .await
    }

    /// Approves a pending builder; the key is its own operator (it counts toward a quorum
    /// apart from every other key).
    pub async fn approve_builder(&self, key: &PublicKey, now: Timestamp) -> Result<()> {
        self.write((*key, now), |db, _, (key, now)| {
            Box::pin(ops::builders::approve(db, key, None, *now))
        })
        .await
    }

    /// Approves a pending builder as run by `operator`: all keys of one operator count once
    /// toward a quorum. An approved builder keeps the operator it was approved as (asking
    /// for another is a conflict).
    pub async fn approve_builder_as(
        &self,
        key: &PublicKey,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<()> {
        self.write(
            (*key, operator.clone(), now),
            |db, _, (key, operator, now)| {
                Box::pin(ops::builders::approve(db, key, Some(operator), *now))
            },
        )
        .await
    }

    /// Revokes a builder: its leases end, its results stop counting, and the tasks that
    /// counted them are decided again.
    pub async fn revoke_builder(
        &self,
        key: &PublicKey,
        reason: &str,
        now: Timestamp,
    ) -> Result<RevokeReport> {
        self.write(
            (*key, reason.to_owned(), now),
            |db, policy, (key, reason, now)| {
                Box::pin(ops::builders::revoke(db, policy, key, reason, *now))
            },
        )
        .await
    }

    // ---- scheduling ---------------------------------------------------------------------

    /// Leases the next task to an approved builder (`Ok(None)`: nothing for it now).
    pub async fn lease_next(&self, builder: &PublicKey, now: Timestamp) -> Result<Option<Lease>> {
        self.write_one_statement((*builder, now), |db, policy, (key, now)| {
            Box::pin(ops::lease::lease_next(db, policy, key, *now))
        })
        .await
    }

    /// Extends a lease; returns the new deadline.
    pub async fn renew_lease(
        &self,
        builder: &PublicKey,
        lease: LeaseId,
        epoch: i64,
        now: Timestamp,
    ) -> Result<Timestamp> {
        self.write(
            (*builder, lease, epoch, now),
            |db, policy, (key, lease, epoch, now)| {
                Box::pin(ops::lease::renew(db, policy, key, *lease, *epoch, *now))
            },
        )
        .await
    }

    /// Expires leases past their deadline and requeues (or stops) their tasks.
    pub async fn expire_leases(&self, now: Timestamp) -> Result<ExpireReport> {
        self.write(now, |db, policy, now| {
            Box::pin(ops::lease::expire(db, policy, *now))
        })
        .await
    }

    /// Records a builder's result and decides its task.
    pub async fn submit(&self, submission: Submission, now: Timestamp) -> Result<SubmitReport> {
        self.submit_checked(submission, now, |_| Ok(())).await
    }

    /// Like [`Self::submit`], with the caller's check of the result against the task the lease
    /// is for, run inside the same transaction once the lease and its task are locked: the
    /// coordinator checks that an attestation describes exactly that task. A refusal records
    /// nothing ([`StoreError::Refused`]).
    pub async fn submit_checked(
        &self,
        submission: Submission,
        now: Timestamp,
        check: impl Fn(&LeasedTask) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Result<SubmitReport> {
        let check: SubmitCheck = Arc::new(check);
        self.write(
            (submission, check, now),
            |db, policy, (submission, check, now)| {
                Box::pin(ops::submit::submit(db, policy, submission, check, *now))
            },
        )
        .await
    }

    /// Sets a task's priority (higher is leased first).
    pub async fn set_task_priority(
        &self,
        task: TaskId,
        priority: i64,
        now: Timestamp,
    ) -> Result<()> {
        self.write((task, priority, now), |db, _, (task, priority, now)| {
            Box::pin(ops::lease::set_priority(db, *task, *priority, *now))
        })
        .await
    }

    /// Requeues a task that was stopped after too many node-side failures, with a fresh
    /// retry budget.
    pub async fn retry_task(&self, task: TaskId, now: Timestamp) -> Result<()> {
        self.write((task, now), |db, policy, (task, now)| {
            Box::pin(ops::lease::retry(db, policy, *task, *now))
        })
        .await
    }

    /// Changes an open task's quorum (1 to 16) and decides it again with the results it has.
    pub async fn set_task_quorum(
        &self,
        task: TaskId,
        quorum: u32,
        now: Timestamp,
    ) -> Result<Decision> {
        self.write((task, quorum, now), |db, policy, (task, quorum, now)| {
            Box::pin(ops::tasks::set_quorum(db, policy, *task, *quorum, *now))
        })
        .await
    }

    // ---- artifacts ----------------------------------------------------------------------

    /// Counts one download of a verified artifact on `now`'s UTC day (`NotFound` for an
    /// artifact the store does not know).
    pub async fn record_download(&self, hash: &Blake3Hash, now: Timestamp) -> Result<()> {
        let day = now.as_second().div_euclid(86_400);
        match self.record_downloads(vec![(*hash, day, 1)]).await? {
            0 => Err(StoreError::not_found(format!("artifact {hash}"))),
            _ => Ok(()),
        }
    }

    /// Adds counted downloads per artifact and UTC day (unix day number) in one
    /// transaction, as the web server flushes what it counted in memory; artifacts the
    /// store does not know are skipped. Returns how many downloads were recorded.
    pub async fn record_downloads(&self, counts: Vec<(Blake3Hash, i64, u64)>) -> Result<u64> {
        self.write(counts, |db, _, counts| {
            Box::pin(ops::artifacts::record_downloads(db, counts))
        })
        .await
    }

    /// Records where object storage keeps an artifact.
    pub async fn set_artifact_storage_key(&self, hash: &Blake3Hash, key: &str) -> Result<()> {
        self.write((*hash, key.to_owned()), |db, _, (hash, key)| {
            Box::pin(ops::artifacts::set_storage_key(db, hash, key))
        })
        .await
    }

    /// Published artifacts (in object storage) with a feed number above `after`, in feed
    /// order, at most `limit` (capped at 200). Feed numbers are handed out in commit order,
    /// so a mirror that remembers the last number it saw never misses one.
    pub async fn published_since(&self, after: i64, limit: u32) -> Result<Vec<PublishedArtifact>> {
        self.read((after, limit), |db, _, (after, limit)| {
            Box::pin(ops::artifacts::published_since(db, *after, *limit))
        })
        .await
    }

    /// Verified artifacts not yet in object storage (see
    /// [`Store::set_artifact_storage_key`]) and not backing off at `now` (see
    /// [`Store::publication_failed`]), oldest verification first, at most `limit`.
    pub async fn artifacts_awaiting_storage(
        &self,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<ArtifactId>> {
        self.read((limit, now), |db, _, (limit, now)| {
            Box::pin(ops::artifacts::awaiting_storage(db, *limit, *now))
        })
        .await
    }

    /// Records a failed try to publish an artifact: it leaves the backlog until the returned
    /// time, 10 s after the first failure, doubling after each further one up to an hour.
    pub async fn publication_failed(&self, hash: &Blake3Hash, now: Timestamp) -> Result<Timestamp> {
        self.write((*hash, now), |db, _, (hash, now)| {
            Box::pin(ops::artifacts::publication_failed(db, hash, *now))
        })
        .await
    }

    /// Records where a builder serves blobs (from its hello), so that a restarted coordinator
    /// can fetch from it before it says hello again. Unknown builders are refused.
    pub async fn set_blob_address(&self, builder: &PublicKey, address: &BlobAddress) -> Result<()> {
        self.write((*builder, address.clone()), |db, _, (builder, address)| {
            Box::pin(ops::providers::set_blob_address(db, builder, address))
        })
        .await
    }

    /// Where a builder serves blobs, as its last hello said.
    pub async fn blob_address(&self, builder: &PublicKey) -> Result<Option<BlobAddress>> {
        self.read(*builder, |db, _, builder| {
            Box::pin(ops::providers::blob_address(db, builder))
        })
        .await
    }

    // ---- reads --------------------------------------------------------------------------

    /// Crates whose name contains `query` (case-insensitive; `-` and `_` match each other).
    pub async fn search_crates(&self, query: &str, page: Page) -> Result<Paged<CrateSummary>> {
        self.read((query.to_owned(), page), |db, _, (query, page)| {
            Box::pin(ops::reads::search_crates(db, query, *page))
        })
        .await
    }

    /// The names of every watched crate, sorted (what the index follower polls).
    pub async fn watched_crates(&self) -> Result<Vec<String>> {
        self.read((), |db, _, ()| Box::pin(ops::reads::watched_crates(db)))
            .await
    }

    /// A crate and its versions.
    pub async fn crate_info(&self, name: &str) -> Result<Option<CrateInfo>> {
        self.read(name.to_owned(), |db, _, name| {
            Box::pin(ops::reads::crate_info(db, name))
        })
        .await
    }

    /// A crate with all its versions, and the tasks of its `newest` newest versions (newest
    /// first), in one read transaction.
    pub async fn crate_with_tasks(
        &self,
        name: &str,
        newest: u32,
    ) -> Result<Option<(CrateInfo, Vec<VersionInfo>)>> {
        self.read((name.to_owned(), newest), |db, _, (name, newest)| {
            Box::pin(ops::reads::crate_with_tasks(db, name, *newest))
        })
        .await
    }

    /// A version and its tasks.
    pub async fn version_info(&self, name: &str, version: &str) -> Result<Option<VersionInfo>> {
        self.read(
            (name.to_owned(), version.to_owned()),
            |db, _, (name, version)| Box::pin(ops::reads::version_info(db, name, version)),
        )
        .await
    }

    /// A version with every task's leases and results, in one read transaction.
    pub async fn version_details(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<(VersionInfo, Vec<TaskDetail>)>> {
        self.read(
            (name.to_owned(), version.to_owned()),
            |db, _, (name, version)| Box::pin(ops::reads::version_details(db, name, version)),
        )
        .await
    }

    /// A task with its leases and results.
    pub async fn task(&self, id: TaskId) -> Result<Option<TaskDetail>> {
        self.read(id, |db, _, id| Box::pin(ops::reads::task(db, *id)))
            .await
    }

    /// An artifact by hash.
    pub async fn artifact(&self, hash: &Blake3Hash) -> Result<Option<ArtifactInfo>> {
        self.read(*hash, |db, _, hash| {
            Box::pin(ops::reads::artifact(db, hash))
        })
        .await
    }

    /// One builder.
    pub async fn builder(&self, key: &PublicKey) -> Result<Option<BuilderInfo>> {
        self.read(*key, |db, _, key| Box::pin(ops::reads::builder(db, key)))
            .await
    }

    /// All builders.
    pub async fn builders(&self) -> Result<Vec<BuilderInfo>> {
        self.read((), |db, _, ()| Box::pin(ops::reads::builders(db)))
            .await
    }

    /// A page of builders in the order they registered (the limit capped at
    /// [`Page::MAX_LIMIT`]), and how many there are.
    pub async fn builders_page(&self, page: Page) -> Result<Paged<BuilderInfo>> {
        self.read(page, |db, _, page| {
            Box::pin(ops::reads::builders_page(db, *page))
        })
        .await
    }

    /// How many approved builders were seen at `since` or later.
    pub async fn builders_seen_since(&self, since: Timestamp) -> Result<u64> {
        self.read(since, |db, _, since| {
            Box::pin(ops::reads::builders_seen_since(db, *since))
        })
        .await
    }

    /// Open tasks: those being built first, then the queue in leasing order.
    pub async fn open_tasks(&self, page: Page) -> Result<Paged<TaskInfo>> {
        self.read(page, |db, _, page| {
            Box::pin(ops::reads::open_tasks(db, *page))
        })
        .await
    }

    /// A builder's most recent results (at most 200), newest first; `None` if unknown.
    pub async fn builder_results(
        &self,
        key: &PublicKey,
        limit: u32,
    ) -> Result<Option<Vec<BuilderResult>>> {
        self.read((*key, limit), |db, _, (key, limit)| {
            Box::pin(ops::reads::builder_results(db, key, *limit))
        })
        .await
    }

    /// Queue statistics; `now` decides which tasks are ready (not backing off).
    pub async fn queue_stats(&self, now: Timestamp) -> Result<QueueStats> {
        self.read(now, |db, _, now| {
            Box::pin(ops::reads::queue_stats(db, *now))
        })
        .await
    }

    /// The most recently verified tasks, newest first (at most 200).
    pub async fn recently_verified(&self, limit: u32) -> Result<Vec<VerifiedItem>> {
        self.read(limit, |db, _, limit| {
            Box::pin(ops::reads::recently_verified(db, *limit))
        })
        .await
    }

    /// Event log entries with id above `after`, oldest first (at most 1,000).
    pub async fn events(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.read((after, limit), |db, _, (after, limit)| {
            Box::pin(ops::reads::events(db, *after, *limit))
        })
        .await
    }

    /// The kept part of a result's build log.
    pub async fn build_log(&self, id: AttestationId) -> Result<Option<BuildLog>> {
        self.read(id, |db, _, id| Box::pin(ops::reads::build_log(db, *id)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_backend() {
        assert!(matches!(
            StoreConfig::from_url("postgres://u@h/db").map(|c| c.backend),
            Ok(BackendConfig::Postgres { .. })
        ));
        assert!(matches!(
            StoreConfig::from_url("sqlite:/tmp/x.db").map(|c| c.backend),
            Ok(BackendConfig::Sqlite { path, .. }) if path == std::path::Path::new("/tmp/x.db")
        ));
        assert!(matches!(
            StoreConfig::from_url("/data/store.sqlite3").map(|c| c.backend),
            Ok(BackendConfig::Sqlite { .. })
        ));
        assert!(StoreConfig::from_url("sqlite::memory:").is_err());
        assert!(StoreConfig::from_url("").is_err());
    }

    #[test]
    fn passwords_are_not_shown() {
        let config = StoreConfig::postgres("postgres://alice:s3cret@db.example/buildsrs");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("alice:***@db.example"), "{shown}");
    }
}
