//! Migrations and schema guarantees, on both backends, through the databases' own clients:
//! reopening is idempotent, a database from a newer buildsrs is refused, the event log
//! refuses updates and deletes, and the search index covers crates stored before it.
#![allow(clippy::unwrap_used)]

mod common;

use buildsrs_store::testing::TestStore;
use buildsrs_store::{SCHEMA_VERSION, Store, StoreError};
use common::*;

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

async fn schema_guarantees(db: TestStore) {
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
}

#[tokio::test]
async fn schema_guarantees_sqlite() {
    schema_guarantees(TestStore::sqlite().await).await;
}

#[tokio::test]
async fn schema_guarantees_postgres() {
    schema_guarantees(TestStore::postgres().await).await;
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error() {
    let error = Store::open_url("postgres://postgres@127.0.0.1:1/nothing")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
}

/// Undoes migration 5 (the crate name trigram index) by hand, adds a crate while the index is
/// missing, and reopens: the migration runs again and search finds the crate through the
/// index built from the rows already there.
async fn search_index_covers_crates_from_before_it(db: TestStore, undo: &str) {
    raw(&db, undo).await.unwrap();
    let no = if db.url.starts_with("sqlite:") {
        "0"
    } else {
        "false"
    };
    raw(
        &db,
        &format!("INSERT INTO crates (name, watched, first_seen) VALUES ('Older-Crate', {no}, 0)"),
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

#[tokio::test]
async fn search_index_covers_crates_from_before_it_sqlite() {
    search_index_covers_crates_from_before_it(
        TestStore::sqlite().await,
        "DROP TRIGGER crates_trigrams_insert; DROP TRIGGER crates_trigrams_delete; \
         DROP TRIGGER crates_trigrams_rename; DROP TABLE crate_name_trigrams; \
         CREATE INDEX crates_lower_name ON crates (lower(name)); \
         DELETE FROM schema_migrations WHERE version = 5;",
    )
    .await;
}

#[tokio::test]
async fn search_index_covers_crates_from_before_it_postgres() {
    search_index_covers_crates_from_before_it(
        TestStore::postgres().await,
        "DROP INDEX IF EXISTS crates_name_trigrams; \
         CREATE INDEX crates_lower_name ON crates (lower(name) text_pattern_ops); \
         DELETE FROM schema_migrations WHERE version = 5;",
    )
    .await;
}

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
