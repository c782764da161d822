//! Migrations and schema guarantees, on both backends, through the databases' own clients:
//! reopening is idempotent, a database from a newer buildsrs is refused, the event log
//! refuses updates and deletes, the search index covers crates stored before it, and the
//! planning columns (migration 6) are filled in from what was stored before them.
#![allow(clippy::unwrap_used)]

mod common;

use buildsrs_store::testing::TestStore;
use buildsrs_store::{BackendKind, SCHEMA_VERSION, Store, StoreError, VersionPlan, store_test};
use common::*;

/// The SQL of the test database's backend: `sqlite` or `postgres`.
fn by_backend<'a>(db: &TestStore, sqlite: &'a str, postgres: &'a str) -> &'a str {
    match db.store.backend() {
        BackendKind::Sqlite => sqlite,
        BackendKind::Postgres => postgres,
    }
}

/// Runs SQL on the test database with the backend's own client; returns the error text.
async fn raw(db: &TestStore, sql: &str) -> Result<(), String> {
    if let Some(path) = db.url.strip_prefix("sqlite:") {
        let conn = rusqlite::Connection::open(path).unwrap();
        return conn.execute_batch(sql).map_err(|e| e.to_string());
    }
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let result = client.batch_execute(sql).await.map_err(|e| {
        e.as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned())
    });
    drop(client);
    let _ = driver.await;
    result
}

store_test!(schema_guarantees, |db: TestStore| async move {
    // Reopening applies nothing twice.
    let again = Store::open_url(&db.url).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), SCHEMA_VERSION);
    drop(again);

    // Something to log.
    matrix(&db.store).await;
    assert!(!db.store.events(0, 10).await.unwrap().is_empty());
    for sql in ["UPDATE events SET kind = 'forged'", "DELETE FROM events"] {
        let error = raw(&db, sql).await.unwrap_err();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }

    // A database migrated by a newer buildsrs is refused, not used.
    raw(
        &db,
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
    )
    .await
    .unwrap();
    let error = Store::open_url(&db.url).await.unwrap_err();
    assert!(
        matches!(error, StoreError::SchemaTooNew { found: 999, .. }),
        "{error}"
    );
});

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error() {
    let error = Store::open_url("postgres://postgres@127.0.0.1:1/nothing")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
}

/// Undoes migration 6 (the planning columns) by hand. Migrations apply above the highest
/// one recorded, so undoing an older one means undoing the later ones too (7 rebuilds the
/// attestations' checks, which applying again keeps; 8 adds the download URL column, 9 the
/// retry time and capacity, 10 the operator, 11 the publishing back-off and blob addresses).
const UNDO_6_SQLITE: &str = "ALTER TABLE crates DROP COLUMN backfill; \
     ALTER TABLE crates DROP COLUMN binaries; ALTER TABLE versions DROP COLUMN rust_version; \
     ALTER TABLE versions DROP COLUMN plan; ALTER TABLE versions DROP COLUMN plan_note; \
     ALTER TABLE versions DROP COLUMN download_url; ALTER TABLE tasks DROP COLUMN retried_at; \
     ALTER TABLE builders DROP COLUMN capacity; ALTER TABLE builders DROP COLUMN operator; \
     ALTER TABLE builders DROP COLUMN blob_address; \
     ALTER TABLE artifacts DROP COLUMN publish_failures; \
     ALTER TABLE artifacts DROP COLUMN publish_after; \
     DELETE FROM schema_migrations WHERE version >= 6;";
const UNDO_6_POSTGRES: &str = "ALTER TABLE crates DROP COLUMN backfill, DROP COLUMN binaries; \
     ALTER TABLE versions DROP COLUMN rust_version, DROP COLUMN plan, DROP COLUMN plan_note, \
     DROP COLUMN download_url; ALTER TABLE tasks DROP COLUMN retried_at; \
     ALTER TABLE builders DROP COLUMN capacity, DROP COLUMN operator, DROP COLUMN blob_address; \
     ALTER TABLE artifacts DROP COLUMN publish_failures, DROP COLUMN publish_after; \
     DELETE FROM schema_migrations WHERE version >= 6;";

// Stores a crate with a verified version and an unplanned one as schema 5 knew them, then
// runs migration 6 on them: versions that had tasks were planned with the whole matrix,
// others not; crates get their latest decision as `binaries`.
store_test!(
    planning_columns_cover_what_was_stored_before_them,
    |db: TestStore| async move {
        let undo = by_backend(&db, UNDO_6_SQLITE, UNDO_6_POSTGRES);
        let keys = world(&db.store, 2, 2).await;
        for key in &keys {
            let held = lease(&db.store, key, t(1)).await;
            assert_eq!(held.version, "1.0.0");
            submit(&db.store, &held, key, built(1), t(2)).await;
        }
        db.store
            .upsert_versions(vec![line("other", "1.0.0", false)], t(3))
            .await
            .unwrap();
        raw(&db, undo).await.unwrap();
        let reopened = Store::open_url(&db.url).await.unwrap();
        assert_eq!(reopened.schema_version().await.unwrap(), SCHEMA_VERSION);
        let demo = reopened.crate_info("demo").await.unwrap().unwrap();
        assert_eq!((demo.binaries, demo.backfill), (Some(true), 0));
        let plans: Vec<_> = demo
            .versions
            .iter()
            .map(|v| (v.plan, v.rust_version.clone()))
            .collect();
        assert_eq!(
            plans,
            [
                (Some(VersionPlan::Matrix), None),
                (Some(VersionPlan::Matrix), None)
            ]
        );
        let other = reopened.crate_info("other").await.unwrap().unwrap();
        assert_eq!(other.binaries, None);
        assert_eq!(other.versions[0].plan, None);
    }
);

const UNDO_5_SQLITE: &str = "DROP TRIGGER crates_trigrams_insert; \
     DROP TRIGGER crates_trigrams_delete; DROP TRIGGER crates_trigrams_rename; \
     DROP TABLE crate_name_trigrams; CREATE INDEX crates_lower_name ON crates (lower(name)); \
     DELETE FROM schema_migrations WHERE version = 5;";
const UNDO_5_POSTGRES: &str = "DROP INDEX IF EXISTS crates_name_trigrams; \
     CREATE INDEX crates_lower_name ON crates (lower(name) text_pattern_ops); \
     DELETE FROM schema_migrations WHERE version = 5;";

// Undoes migration 5 (the crate name trigram index) by hand, adds a crate while the index is
// missing, and reopens: the migration runs again and search finds the crate through the
// index built from the rows already there.
store_test!(
    search_index_covers_crates_from_before_it,
    |db: TestStore| async move {
        let undo_5 = by_backend(&db, UNDO_5_SQLITE, UNDO_5_POSTGRES);
        let undo_6 = by_backend(&db, UNDO_6_SQLITE, UNDO_6_POSTGRES);
        raw(&db, &format!("{undo_6} {undo_5}")).await.unwrap();
        let no = by_backend(&db, "0", "false");
        raw(
            &db,
            &format!(
                "INSERT INTO crates (name, watched, first_seen) VALUES ('Older-Crate', {no}, 0)"
            ),
        )
        .await
        .unwrap();
        let reopened = Store::open_url(&db.url).await.unwrap();
        assert_eq!(reopened.schema_version().await.unwrap(), SCHEMA_VERSION);
        for text in ["older", "der_cr", "OLDER-CRATE", "ol"] {
            let found = reopened
                .search_crates(text, buildsrs_store::Page::first(5))
                .await
                .unwrap();
            let names: Vec<_> = found.items.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["Older-Crate"], "{text}");
        }
    }
);

#[tokio::test]
async fn postgres_migration_builds_the_trigram_index_where_pg_trgm_exists() {
    let db = TestStore::postgres().await;
    // Where the server ships pg_trgm (Debian's does), the migration must have built the
    // index rather than fallen back to scanning (web/README.md shows the difference).
    raw(
        &db,
        "DO $$ BEGIN \
           IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') \
              AND NOT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'crates_name_trigrams') \
           THEN RAISE EXCEPTION 'pg_trgm is available but crates_name_trigrams is missing'; \
           END IF; END $$;",
    )
    .await
    .unwrap();
}

// A builder stored before migration 10 with a name that breaks today's rule (it could
// name itself `x revoked` then) gets a safe name from the migration, so every stored name
// reads back through `BuilderName`; one that follows the rule keeps it.
store_test!(
    migration_10_gives_rule_breaking_names_a_safe_one,
    |db: TestStore| async move {
        matrix(&db.store).await;
        let kept = buildsrs_store::testing::register(&db.store, 1, "kept-name", t(0)).await;
        let renamed = buildsrs_store::testing::register(&db.store, 2, "placeholder", t(0)).await;
        raw(
            &db,
            &format!(
                "ALTER TABLE builders DROP COLUMN operator; \
                 ALTER TABLE builders DROP COLUMN blob_address; \
                 ALTER TABLE artifacts DROP COLUMN publish_failures; \
                 ALTER TABLE artifacts DROP COLUMN publish_after; \
                 DELETE FROM schema_migrations WHERE version >= 10; \
                 UPDATE builders SET name = 'x revoked' WHERE public_key = '{renamed}';"
            ),
        )
        .await
        .unwrap();
        let reopened = Store::open_url(&db.url).await.unwrap();
        assert_eq!(reopened.schema_version().await.unwrap(), SCHEMA_VERSION);
        let kept = reopened.builder(&kept).await.unwrap().unwrap();
        assert_eq!(kept.name, "kept-name");
        let renamed = reopened.builder(&renamed).await.unwrap().unwrap();
        assert!(renamed.name.starts_with("builder-"), "{:?}", renamed.name);
        assert_eq!(renamed.operator, None);
        assert_eq!(reopened.builders().await.unwrap().len(), 2);
    }
);
