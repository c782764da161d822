//! Test harness (feature `testing`): fresh stores on both backends, [`crate::store_test!`] to
//! run one test body on each, and the seeding every crate's tests share.
//!
//! - [`TestStore::sqlite`] opens a store in a new temporary directory.
//! - [`TestStore::postgres`] creates a uniquely named database through the admin URL
//!   (`BUILDSRS_TEST_DATABASE_URL`, default [`DEFAULT_ADMIN_URL`]), opens a store on it, and
//!   drops the database when the `TestStore` is dropped — also when the test panics.
//!   If the server cannot be reached the test fails with a message saying so: Postgres tests
//!   never skip silently.
//! - Seeding: builder keys ([`key`]), the build matrix ([`matrix`]: [`TARGET`] and
//!   [`TOOLCHAIN`]), registrations ([`register`], [`builder`]), leases ([`lease`]) and
//!   results ([`submit`]), each written once here for the store's, the coordinator's and the
//!   web layer's tests. They panic, saying what failed, instead of returning errors.
//!
//! From another crate (with `buildsrs-store = { features = ["testing"] }` and tokio in its
//! dev-dependencies):
//!
//! ```ignore
//! use buildsrs_store::{store_test, Store};
//! store_test!(plans_watched_crates, |store: Store| async move {
//!     store.watch_crate("serde", 0, now).await.unwrap();
//! });
//! ```
//!
//! generates `plans_watched_crates::sqlite` and `plans_watched_crates::postgres`.
//! `store_test!(name, policy = expr, |store| ...)` opens both with that [`Policy`]. A body
//! that needs more than the store (its URL, for a second store or a child process) takes the
//! whole [`TestStore`] instead: `|db: TestStore| async move { .. }`. A body may return
//! `Result<(), E>`; an error fails the test.

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use buildsrs_keys::{Identity, PublicKey};
use jiff::Timestamp;
use tempfile::TempDir;

use crate::{
    BuildOutcome, Lease, NewBuilder, Policy, Store, StoreConfig, Submission, SubmitReport,
};

/// The admin URL used when `BUILDSRS_TEST_DATABASE_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The environment variable naming the admin URL.
pub const ADMIN_URL_VAR: &str = "BUILDSRS_TEST_DATABASE_URL";

/// The admin URL tests create their databases through.
pub fn admin_url() -> String {
    std::env::var(ADMIN_URL_VAR).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// A store on a fresh database, removed when dropped.
#[derive(Debug)]
pub struct TestStore {
    /// The store.
    pub store: Store,
    /// A URL that opens the same database (for a child process, or a second store).
    pub url: String,
    _dir: Option<TempDir>,
    database: Option<FreshDatabase>,
}

impl TestStore {
    /// A SQLite store in a fresh temporary directory.
    pub async fn sqlite() -> TestStore {
        Self::sqlite_with(Policy::default()).await
    }

    /// A SQLite store with a policy.
    pub async fn sqlite_with(policy: Policy) -> TestStore {
        let dir = tempfile::tempdir().expect("creating a temporary directory for SQLite");
        let path = dir.path().join("store.sqlite3");
        let url = format!("sqlite:{}", path.display());
        let store = Store::open(&StoreConfig::sqlite(&path).with_policy(policy))
            .await
            .expect("opening a SQLite test store");
        TestStore {
            store,
            url,
            _dir: Some(dir),
            database: None,
        }
    }

    /// A Postgres store on a fresh database.
    pub async fn postgres() -> TestStore {
        Self::postgres_with(Policy::default(), 4).await
    }

    /// A Postgres store on a fresh database, with a policy and a pool size.
    pub async fn postgres_with(policy: Policy, pool_size: usize) -> TestStore {
        let database = FreshDatabase::create().await;
        let mut config = StoreConfig::postgres(&database.url).with_policy(policy);
        if let crate::BackendConfig::Postgres {
            pool_size: size, ..
        } = &mut config.backend
        {
            *size = pool_size;
        }
        let store = Store::open(&config)
            .await
            .unwrap_or_else(|e| panic!("opening a Postgres test store on {}: {e}", database.url));
        TestStore {
            store,
            url: database.url.clone(),
            _dir: None,
            database: Some(database),
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if self.database.is_some() {
            // Free the connections before the database goes.
            self.store.close();
        }
    }
}

/// A uniquely named, empty Postgres database, dropped (best effort) when this is dropped.
#[derive(Debug)]
pub struct FreshDatabase {
    /// Its name.
    pub name: String,
    /// A URL to it.
    pub url: String,
    admin_url: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl FreshDatabase {
    /// Creates the database, or panics saying why (a missing server is a test failure).
    pub async fn create() -> FreshDatabase {
        let admin_url = admin_url();
        let name = format!(
            "buildsrs_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            jiff::Timestamp::now().as_millisecond() % 1_000_000
        );
        let client = admin_connect(&admin_url).await;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("creating test database {name} via {admin_url}: {e}"));
        let url = database_url(&admin_url, &name);
        FreshDatabase {
            name,
            url,
            admin_url,
        }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which must not be blocked on; a thread with
        // its own small runtime does the work.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await
                {
                    let driver = tokio::spawn(connection);
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    if let Err(e) = client.batch_execute(&sql).await {
                        eprintln!("note: could not drop test database {name}: {e}");
                    }
                    drop(client);
                    let _ = driver.await;
                }
            });
        });
        let _ = dropper.join();
    }
}

async fn admin_connect(admin_url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Postgres tests need a server: cannot connect to {admin_url} ({e}). Start one \
                 (scripts/ensure-postgres) or point {ADMIN_URL_VAR} at one."
            )
        });
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("note: admin connection ended: {e}");
        }
    });
    client
}

/// The admin URL with its database replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A test body [`crate::store_test!`] runs: a closure taking the [`Store`] or the whole
/// [`TestStore`] (`Arg` tells the two apart, from the closure's argument type), returning
/// `()` or a `Result`.
pub trait StoreTestBody<Arg> {
    /// Runs the body on `db`, which lives until the body is done.
    fn run(self, db: TestStore) -> impl Future<Output = ()>;
}

impl<F, Fut> StoreTestBody<Store> for F
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output: BodyOutput>,
{
    async fn run(self, db: TestStore) {
        let store = db.store.clone();
        (self)(store).await.check();
        drop(db);
    }
}

impl<F, Fut> StoreTestBody<TestStore> for F
where
    F: FnOnce(TestStore) -> Fut,
    Fut: Future<Output: BodyOutput>,
{
    async fn run(self, db: TestStore) {
        (self)(db).await.check();
    }
}

/// What a [`crate::store_test!`] body may return: `()`, or a `Result` whose error fails the
/// test.
pub trait BodyOutput {
    /// Panics on an error.
    fn check(self);
}

impl BodyOutput for () {
    fn check(self) {}
}

impl<E: Debug> BodyOutput for Result<(), E> {
    fn check(self) {
        if let Err(error) = self {
            panic!("the test failed: {error:?}");
        }
    }
}

/// Runs `body` on `db` (what [`crate::store_test!`] expands to).
pub async fn run_body<Arg>(db: TestStore, body: impl StoreTestBody<Arg>) {
    body.run(db).await;
}

/// Runs one async test body against SQLite and against Postgres: generates a module `name`
/// with tests `sqlite` and `postgres`. The body is a closure taking a [`Store`] or a
/// [`TestStore`] (see [`StoreTestBody`]).
#[macro_export]
macro_rules! store_test {
    ($name:ident, policy = $policy:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::testing::TestStore::sqlite_with($policy).await;
                $crate::testing::run_body(db, $body).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::testing::TestStore::postgres_with($policy, 4).await;
                $crate::testing::run_body(db, $body).await;
            }
        }
    };
    ($name:ident, $body:expr) => {
        $crate::store_test!($name, policy = $crate::Policy::default(), $body);
    };
}

// ---- seeding ----------------------------------------------------------------------------

/// The target triple the seeding helpers enable and register builders for.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The toolchain the seeding helpers enable and register builders for.
pub const TOOLCHAIN: &str = "1.95.0";

/// Builder number `n`'s key (the public half of the seed `[n; 32]`, as the tests' nodes use).
pub fn key(n: u8) -> PublicKey {
    Identity::from_seed([n; 32]).public_key()
}

/// A distinct, well-formed source checksum per `n`.
pub fn cksum(n: u64) -> String {
    format!("{n:064x}")
}

/// Enables [`TARGET`] and [`TOOLCHAIN`].
pub async fn matrix(store: &Store, now: Timestamp) {
    store
        .set_target(TARGET, true, now)
        .await
        .unwrap_or_else(|e| panic!("enabling {TARGET}: {e}"));
    store
        .set_toolchain(TOOLCHAIN, true, now)
        .await
        .unwrap_or_else(|e| panic!("enabling {TOOLCHAIN}: {e}"));
}

/// Registers builder `n` ([`key`]) as `name` for [`TARGET`] and [`TOOLCHAIN`]; it waits for
/// approval.
pub async fn register(store: &Store, n: u8, name: &str, now: Timestamp) -> PublicKey {
    let public_key = key(n);
    store
        .register_builder(
            NewBuilder {
                public_key,
                name: name.to_owned(),
                targets: vec![TARGET.parse().expect("a target triple")],
                toolchains: vec![TOOLCHAIN.parse().expect("a toolchain release")],
                capacity: crate::MAX_BUILDER_CAPACITY,
            },
            now,
        )
        .await
        .unwrap_or_else(|e| panic!("registering builder {n}: {e}"));
    public_key
}

/// Registers builder `n` as `builder-n` (see [`register`]) and approves it.
pub async fn builder(store: &Store, n: u8, now: Timestamp) -> PublicKey {
    let public_key = register(store, n, &format!("builder-{n}"), now).await;
    store
        .approve_builder(&public_key, now)
        .await
        .unwrap_or_else(|e| panic!("approving builder {n}: {e}"));
    public_key
}

/// The next lease for `builder`; panics when there is none.
pub async fn lease(store: &Store, builder: &PublicKey, now: Timestamp) -> Lease {
    store
        .lease_next(builder, now)
        .await
        .unwrap_or_else(|e| panic!("leasing for {}: {e}", builder.fingerprint()))
        .unwrap_or_else(|| panic!("no task to lease for {}", builder.fingerprint()))
}

/// Submits `outcome` under `lease` (no log).
pub async fn submit(
    store: &Store,
    lease: &Lease,
    builder: &PublicKey,
    outcome: BuildOutcome,
    now: Timestamp,
) -> SubmitReport {
    store
        .submit(
            Submission {
                lease_id: lease.lease_id,
                epoch: lease.epoch,
                builder: *builder,
                outcome,
                log: None,
            },
            now,
        )
        .await
        .unwrap_or_else(|e| panic!("submitting under lease {}: {e}", lease.lease_id.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_everything_but_the_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            database_url("postgres://u:p@h/db?sslmode=disable", "t2"),
            "postgres://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(database_url("postgres://h", "t3"), "postgres://h/t3");
    }
}
