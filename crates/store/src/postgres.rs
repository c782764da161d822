//! The Postgres backend: a deadpool pool of tokio-postgres connections, for production and
//! for several coordinator processes sharing one database.
//!
//! Write operations run at `READ COMMITTED` and lock what they change (`FOR UPDATE`, and
//! `FOR UPDATE SKIP LOCKED` where claimers compete, see [`crate::ops::lease`]); no
//! `SERIALIZABLE` is needed. Should two transactions still deadlock (or a serialization
//! failure occur), the operation is rolled back and run again, a few times, from the start:
//! operations are plain functions of their inputs, so that is safe. Reads run in
//! `REPEATABLE READ, READ ONLY` transactions, so a page of results is one snapshot.
//!
//! Statements are prepared once per connection and cached. TLS is not used: the database is
//! expected on the same host or a private network (`sslmode` in the URL is not honoured).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{IsolationLevel, NoTls};

use crate::db::{Cell, Db, Dialect, Op, Param, Row};
use crate::error::{Result, StoreError};
use crate::migrations::{POSTGRES, SCHEMA_VERSION};
use crate::policy::Policy;

/// Key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x6275_696c_6473_7273; // "buildsrs"

/// How often a deadlocked or serialization-failed operation is tried again.
const MAX_RETRIES: u32 = 8;

#[derive(Debug)]
pub(crate) struct PgBackend {
    pool: Pool,
}

impl PgBackend {
    /// Connects, checks the server answers, and migrates.
    pub(crate) async fn open(url: &str, pool_size: usize) -> Result<Self> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::invalid(format!("database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("buildsrs-store");
        // Our statements are prepared once per connection and shaped so that one plan fits
        // every parameter; planning them again on each run (PostgreSQL's default for the
        // first executions and whenever it guesses a custom plan is cheaper) costs more
        // server CPU than some of them take to run.
        let options = config.get_options().unwrap_or_default().to_owned();
        config.options(format!("{options} -c plan_cache_mode=force_generic_plan").trim());
        let where_ = describe(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(15)))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("{where_}: {e}")))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to {where_}: {e}")))?;
        migrate(&mut client).await?;
        Ok(Self { pool })
    }

    /// Runs `op` in a write transaction, retrying on deadlock or serialization failure.
    pub(crate) async fn write<A, T>(&self, policy: &Policy, args: &A, op: Op<A, T>) -> Result<T> {
        retrying(|| self.run(false, policy, args, op)).await
    }

    /// Runs `op`, which must be a single statement, with no transaction around it: the
    /// statement is its own transaction, which saves the round trips of `BEGIN` and `COMMIT`.
    /// For operations written as one call of a server-side function. A second statement is
    /// refused, since it would not be atomic with the first. Retried like [`Self::write`].
    pub(crate) async fn write_one_statement<A, T>(
        &self,
        policy: &Policy,
        args: &A,
        op: Op<A, T>,
    ) -> Result<T> {
        retrying(|| async {
            let client = self.pool.get().await?;
            let mut db = PgStatement {
                client: &client,
                done: false,
            };
            op(&mut db, policy, args).await
        })
        .await
    }

    /// Runs `op` in a read-only snapshot.
    pub(crate) async fn read<A, T>(&self, policy: &Policy, args: &A, op: Op<A, T>) -> Result<T> {
        self.run(true, policy, args, op).await
    }

    async fn run<A, T>(
        &self,
        read_only: bool,
        policy: &Policy,
        args: &A,
        op: Op<A, T>,
    ) -> Result<T> {
        let mut client = self.pool.get().await?;
        let builder = client.build_transaction();
        let builder = if read_only {
            builder
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
        } else {
            builder.isolation_level(IsolationLevel::ReadCommitted)
        };
        let tx = builder.start().await?;
        let mut db = PgDb { tx };
        let result = op(&mut db, policy, args).await;
        match result {
            Ok(value) => {
                db.tx.commit().await?;
                Ok(value)
            }
            Err(error) => {
                // Dropping the transaction rolls back too; doing it here returns the
                // connection to the pool clean and at once.
                let _ = db.tx.rollback().await;
                Err(error)
            }
        }
    }

    /// The pool, for the test harness.
    #[cfg(feature = "testing")]
    pub(crate) fn close(&self) {
        self.pool.close();
    }
}

/// Names the server and database without the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("(default)");
    format!("Postgres database {db:?} at {host}:{port}")
}

/// Runs `attempt` until it succeeds, fails for good, or has deadlocked (or failed to
/// serialize) [`MAX_RETRIES`] times. Operations are plain functions of their inputs, so
/// running one again from the start is safe.
async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(error) if retries < MAX_RETRIES && is_retryable(&error) => {
                retries += 1;
                tracing::debug!(retries, %error, "retrying a Postgres operation");
                // A little jitter so that the two parties of a deadlock do not collide again
                // at once.
                let jitter = u64::from(retries) * 3 + u64::from(std::process::id() % 5);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            other => return other,
        }
    }
}

fn is_retryable(error: &StoreError) -> bool {
    let StoreError::Backend(source) = error else {
        return false;
    };
    source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|code| {
            *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
        })
}

async fn migrate(client: &mut deadpool_postgres::Client) -> Result<i64> {
    let tx = client.transaction().await?;
    tx.query("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for migration in POSTGRES.iter().filter(|m| m.version > current) {
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[
                &migration.version,
                &migration.name,
                &jiff::Timestamp::now().as_millisecond(),
            ],
        )
        .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied Postgres migration"
        );
    }
    tx.commit().await?;
    Ok(SCHEMA_VERSION)
}

/// A transaction on a pooled connection.
struct PgDb<'c> {
    tx: deadpool_postgres::Transaction<'c>,
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql_checked(ty, out),
            Param::Int(v) if *ty == Type::INT2 => i16::try_from(v)?.to_sql_checked(ty, out),
            Param::Int(v) => v.to_sql_checked(ty, out),
            Param::Bool(v) => v.to_sql_checked(ty, out),
            Param::Text(v) => v.to_sql_checked(ty, out),
            Param::Blob(v) => v.to_sql_checked(ty, out),
            Param::IntArray(v) => v.to_sql_checked(ty, out),
            Param::TextArray(v) => v.to_sql_checked(ty, out),
            Param::BoolArray(v) => v.to_sql_checked(ty, out),
            Param::OptTextArray(v) => v.to_sql_checked(ty, out),
        }
    }

    // Each variant checks the actual type in `to_sql` above.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn params_ref<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

fn convert(row: &tokio_postgres::Row) -> Result<Row> {
    let mut cells = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let cell = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(index)?.map(Cell::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(index)?
                .map(|v| Cell::Int(i64::from(v)))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(index)?
                .map(|v| Cell::Int(i64::from(v)))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(index)?
                .map(|v| Cell::Int(i64::from(v)))
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME {
            row.try_get::<_, Option<String>>(index)?.map(Cell::Text)
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(index)?.map(Cell::Blob)
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(index)?.map(Cell::Real)
        } else {
            return Err(StoreError::corrupt(format!(
                "column {} has unsupported type {ty}",
                column.name()
            )));
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

/// A pooled connection outside any transaction, good for one statement (see
/// [`PgBackend::write_one_statement`]).
struct PgStatement<'c> {
    client: &'c deadpool_postgres::Client,
    done: bool,
}

impl PgStatement<'_> {
    async fn prepare(&mut self, sql: &str) -> Result<tokio_postgres::Statement> {
        if std::mem::replace(&mut self.done, true) {
            return Err(StoreError::Backend(
                format!(
                    "an operation run as one statement issued a second one, which would not \
                     be atomic with the first: {sql}"
                )
                .into(),
            ));
        }
        Ok(self.client.prepare_cached(sql).await?)
    }
}

#[async_trait]
impl Db for PgStatement<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        let statement = self.prepare(sql).await?;
        Ok(self.client.execute(&statement, &params_ref(params)).await?)
    }

    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        let statement = self.prepare(sql).await?;
        self.client
            .query(&statement, &params_ref(params))
            .await?
            .iter()
            .map(convert)
            .collect()
    }
}

#[async_trait]
impl Db for PgDb<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        let statement = self.tx.prepare_cached(sql).await?;
        Ok(self.tx.execute(&statement, &params_ref(params)).await?)
    }

    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        let statement = self.tx.prepare_cached(sql).await?;
        self.tx
            .query(&statement, &params_ref(params))
            .await?
            .iter()
            .map(convert)
            .collect()
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::db::params;
    use crate::testing::FreshDatabase;

    fn two_inserts<'a>(
        db: &'a mut dyn Db,
        _: &'a Policy,
        _: &'a (),
    ) -> futures::future::BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            db.execute("INSERT INTO crates_probe (n) VALUES ($1)", params![1_i64])
                .await?;
            db.execute("INSERT INTO crates_probe (n) VALUES ($1)", params![2_i64])
                .await
        })
    }

    #[tokio::test]
    async fn an_operation_run_as_one_statement_cannot_issue_a_second() {
        let database = FreshDatabase::create().await;
        let backend = PgBackend::open(&database.url, 1).await.unwrap();
        let client = backend.pool.get().await.unwrap();
        client
            .batch_execute("CREATE TABLE crates_probe (n BIGINT)")
            .await
            .unwrap();
        drop(client);

        let error = backend
            .write_one_statement(&Policy::default(), &(), two_inserts)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("second"), "{error}");

        let client = backend.pool.get().await.unwrap();
        let rows: Vec<i64> = client
            .query("SELECT n FROM crates_probe ORDER BY n", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(
            rows,
            vec![1],
            "the second statement never reached the server"
        );
        drop(client);
        backend.close();
    }
}
