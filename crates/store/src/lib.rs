//! The coordinator's job store: crates, versions, tasks, leases, results, artifacts and
//! builders, behind one interface with two backends.
//!
//! - **SQLite** (the embedded default): one file in the data dir, WAL, one serialised writer
//!   connection on tokio's blocking pool plus reader connections. See the `sqlite` module.
//! - **Postgres** (production): a deadpool pool; several coordinator processes may share one
//!   database. See the `postgres` module.
//!
//! ```no_run
//! # async fn demo() -> buildsrs_store::Result<()> {
//! use buildsrs_store::{Store, StoreConfig, Policy};
//! let store = Store::open_url("sqlite:/var/lib/buildsrs/store.sqlite3").await?;
//! let store = Store::open(&StoreConfig::postgres("postgres://buildsrs@db/buildsrs")
//!     .with_policy(Policy { quorum: 3, ..Policy::default() })).await?;
//! assert_eq!(store.schema_version().await?, buildsrs_store::SCHEMA_VERSION);
//! # Ok(()) }
//! ```
//!
//! Every operation is one transaction, written once over a small SQL interface (the `db` module) and
//! run by either backend, so the two cannot drift apart; one conformance suite
//! (`tests/conformance.rs`) runs every test body on both.
//!
//! # Schema
//!
//! | table | holds |
//! |---|---|
//! | `crates` | name, watched?, first seen, backfill (older versions asked for), binaries? (its latest decision said) |
//! | `versions` | crate, version, source sha256 (`cksum`), yanked?, first seen, `rust-version`, plan (not chosen / probe / matrix), plan note (why nothing was planned), download URL (from the index, handed out with the lease) |
//! | `targets`, `toolchains` | the build matrix, each entry enabled or not |
//! | `tasks` | version × target × toolchain: state, reason, priority, quorum, results wanted and counted, lease limit and active leases, fencing epoch, node-side failures, backoff (`not_before`), verified artifact, decision time |
//! | `leases` | task, builder, epoch, state (active / completed / expired / cancelled), deadline |
//! | `attestations` | every result: task, builder, lease, outcome, artifact hash and size, the signed bytes, reason, when received, counted?, late? |
//! | `build_logs` | the last [`Policy::max_log_bytes`] of each result's log |
//! | `artifacts` | hash, size, storage key, verified at |
//! | `artifact_downloads` | downloads per artifact per UTC day |
//! | `builders` (+ `builder_targets`, `builder_toolchains`) | public key, name, status, capabilities, last seen, built / agreed / outvoted / failed |
//! | `events` | the append-only event log (triggers refuse updates and deletes) |
//! | `schema_migrations` | applied migrations ([`SCHEMA_VERSION`]) |
//!
//! Times are unix milliseconds. Invariants the database itself enforces: one task per
//! version × target × toolchain; at most one active lease per builder and task; at most one
//! counted result per builder and task; one result per lease; a node error never counts;
//! `active_leases` never negative.
//!
//! # Rules
//!
//! Leasing (who gets what, fencing, expiry, backoff, the retry limit) is described in
//! `ops/lease.rs`; what counts and when a task is decided in `ops/submit.rs` and `rules.rs`;
//! which versions get built and with which tasks (the newest version and what comes next,
//! backfill, `rust-version`, probes for crates without binaries) in `ops/plan.rs`; ingest,
//! watching, yanks and un-yanks in `ops/ingest.rs`; revocation in `ops/builders.rs`.
//!
//! Migration 6 added the planning columns: `crates.backfill` and `crates.binaries`,
//! `versions.rust_version`, `versions.plan` and `versions.plan_note`; versions that had tasks
//! before it count as planned with the whole matrix, and each crate's `binaries` comes from
//! its latest verified or no-binaries decision.

mod db;
pub mod error;
mod migrations;
pub mod model;
mod ops;
pub mod policy;
mod postgres;
mod rules;
mod sqlite;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Result, StoreError};
pub use migrations::SCHEMA_VERSION;
pub use model::*;
pub use ops::builders::MAX_BUILDER_CAPACITY;
pub use policy::Policy;
pub use sqlite::SqliteSync;
pub use store::{BackendConfig, BackendKind, DEFAULT_POOL_SIZE, Store, StoreConfig};
