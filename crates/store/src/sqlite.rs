//! The SQLite backend: one database file, embedded, for a coordinator on one machine.
//!
//! - One *writer* connection behind a mutex. Every write operation runs on tokio's blocking
//!   pool (`spawn_blocking`), takes the mutex and runs as one `BEGIN IMMEDIATE` transaction,
//!   so writes are serialised in this process and take the database write lock up front
//!   (no lock upgrades, hence no `SQLITE_BUSY` deadlocks) against other processes.
//! - A few *reader* connections for the UI and API reads. In WAL mode they read a consistent
//!   snapshot while the writer writes.
//! - `journal_mode=WAL`, `busy_timeout` (other processes: the admin CLI, a second
//!   coordinator by mistake) and `foreign_keys=ON` on every connection.
//! - `synchronous=NORMAL` by default: in WAL mode a commit survives the process being killed
//!   (the WAL is written before `COMMIT` returns) and the database never corrupts; only a
//!   power loss or kernel crash can lose the last few transactions. `FULL` also fsyncs each
//!   commit, for machines where that matters more than write throughput (every lease and
//!   result then waits for the disk).
//!
//! The operations themselves are `async fn`s over [`Db`]; here they are driven to completion
//! with `futures::executor::block_on` on the blocking thread. That is sound because SQLite
//! calls never wait on anything asynchronous: every await in an operation completes at once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

use crate::db::{Cell, Db, Dialect, Op, Param, Row, sqlite_sql};
use crate::error::{Result, StoreError};
use crate::migrations::{Migration, SCHEMA_VERSION, SQLITE};
use crate::policy::Policy;

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reader connections kept open.
const READERS: usize = 2;

/// What `synchronous` to run with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSync {
    /// Commits survive a process crash; a power loss may lose the last ones.
    #[default]
    Normal,
    /// Every commit is fsynced.
    Full,
}

pub(crate) struct SqliteBackend {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: AtomicUsize,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// Opens (creating if needed) the database and migrates it. Blocking: call from
    /// `spawn_blocking`.
    pub(crate) fn open(path: &Path, sync: SqliteSync) -> Result<Self> {
        let path = if path.is_dir() {
            path.join("store.sqlite3")
        } else {
            path.to_owned()
        };
        let mut writer = connect(&path, sync, true)?;
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| connect(&path, sync, false).map(|c| Arc::new(Mutex::new(c))))
            .collect::<Result<_>>()?;
        Ok(Self {
            path,
            writer: Arc::new(Mutex::new(writer)),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `op` in a write transaction.
    pub(crate) async fn write<A, T>(&self, policy: Arc<Policy>, args: A, op: Op<A, T>) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        let conn = Arc::clone(&self.writer);
        run_blocking(move || {
            let mut conn = lock(&conn);
            transaction(&mut conn, "BEGIN IMMEDIATE", |db| {
                futures::executor::block_on(op(db, &policy, &args))
            })
        })
        .await
    }

    /// Runs `op` in a read transaction on one of the reader connections.
    pub(crate) async fn read<A, T>(&self, policy: Arc<Policy>, args: A, op: Op<A, T>) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = Arc::clone(&self.readers[index]);
        run_blocking(move || {
            let mut conn = lock(&conn);
            transaction(&mut conn, "BEGIN", |db| {
                futures::executor::block_on(op(db, &policy, &args))
            })
        })
        .await
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
}

fn connect(path: &Path, sync: SqliteSync, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot open SQLite database {}: {e}",
            path.display()
        ))
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{}: cannot switch to WAL mode (got {mode})",
            path.display()
        )));
    }
    let sync = match sync {
        SqliteSync::Normal => "NORMAL",
        SqliteSync::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = {sync};"
    ))?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Takes a connection. If an earlier holder panicked mid-transaction, the mutex is poisoned
/// and the transaction may still be open: roll it back, and carry on with a clean connection.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    let guard = conn
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !guard.is_autocommit() {
        // Best effort: if even this fails, the next BEGIN reports the problem.
        let _ = guard.execute_batch("ROLLBACK");
    }
    guard
}

fn transaction<T>(
    conn: &mut Connection,
    begin: &str,
    body: impl FnOnce(&mut dyn Db) -> Result<T>,
) -> Result<T> {
    conn.execute_batch(begin)?;
    let result = body(&mut SqliteDb { conn: &mut *conn });
    match result {
        Ok(value) => match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(value),
            Err(error) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(error.into())
            }
        },
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<i64> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = apply_migrations(conn, SQLITE);
    match result {
        Ok(version) => {
            conn.execute_batch("COMMIT")?;
            Ok(version)
        }
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

fn apply_migrations(conn: &Connection, migrations: &[Migration]) -> Result<i64> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for migration in migrations.iter().filter(|m| m.version > current) {
        conn.execute_batch(migration.sql)?;
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                migration.version,
                migration.name,
                jiff::Timestamp::now().as_millisecond()
            ],
        )?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied SQLite migration"
        );
    }
    Ok(SCHEMA_VERSION)
}

/// A transaction on the SQLite connection.
struct SqliteDb<'c> {
    conn: &'c mut Connection,
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Null => ToSqlOutput::Owned(Value::Null),
            Param::Int(v) => ToSqlOutput::Owned(Value::Integer(v)),
            Param::Bool(v) => ToSqlOutput::Owned(Value::Integer(i64::from(v))),
            Param::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Param::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Param::IntArray(_)
            | Param::TextArray(_)
            | Param::BoolArray(_)
            | Param::OptTextArray(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "array parameters are for Postgres only".into(),
                ));
            }
        })
    }
}

impl SqliteDb<'_> {
    fn prepare(&self, sql: &str, params: &[Param<'_>]) -> Result<rusqlite::CachedStatement<'_>> {
        let mut statement = self.conn.prepare_cached(&sqlite_sql(sql))?;
        if statement.parameter_count() != params.len() {
            return Err(StoreError::Backend(
                format!(
                    "statement takes {} parameters, {} given: {sql}",
                    statement.parameter_count(),
                    params.len()
                )
                .into(),
            ));
        }
        for (index, param) in params.iter().enumerate() {
            statement.raw_bind_parameter(index + 1, param)?;
        }
        Ok(statement)
    }
}

#[async_trait]
impl Db for SqliteDb<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        let mut statement = self.prepare(sql, params)?;
        Ok(statement.raw_execute()? as u64)
    }

    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        let mut statement = self.prepare(sql, params)?;
        let columns = statement.column_count();
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(columns);
            for index in 0..columns {
                cells.push(match row.get_ref(index)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    ValueRef::Text(v) => Cell::Text(
                        String::from_utf8(v.to_vec())
                            .map_err(|_| StoreError::corrupt("text column is not UTF-8"))?,
                    ),
                    ValueRef::Blob(v) => Cell::Blob(v.to_vec()),
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }
}
