//! Migrations and schema guarantees, on both backends, through the databases' own clients:
//! reopening is idempotent, a database from a newer buildsrs is refused, and the event log
//! refuses updates and deletes.
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
