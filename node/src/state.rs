//! The node's own memory, in SQLite under its data dir: the jobs it took, the artifacts it
//! holds and the attestations it signed.
//!
//! A job is recorded as `running` before any work starts and moved to `finished` in the same
//! transaction that records its artifact and attestation. So after a crash (kill -9, power
//! loss) every job is either finished with all its records, or still `running`; opening the
//! state turns the latter into `abandoned` and hands them back, so the node can report them
//! instead of leaving them dangling.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use std::str::FromStr;

use buildsrs_domain::{
    ArtifactId, CrateName, CrateVersion, LeaseId, Sha256Digest, TargetTriple, TaskId,
};
use rusqlite::{Connection, OptionalExtension, params};

/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

const MIGRATIONS: &[&str] = &[
    // 1: jobs, artifacts, attestations.
    "CREATE TABLE jobs (
        id            INTEGER PRIMARY KEY,
        crate_name    TEXT NOT NULL,
        version       TEXT NOT NULL,
        target        TEXT NOT NULL,
        source_sha256 TEXT,
        task_id       INTEGER,
        lease_id      TEXT,
        lease_epoch   INTEGER,
        state         TEXT NOT NULL CHECK (state IN ('running', 'finished', 'abandoned')),
        outcome       TEXT,
        detail        TEXT,
        started_at    INTEGER NOT NULL,
        finished_at   INTEGER
     );
     CREATE INDEX jobs_by_state ON jobs (state);
     CREATE TABLE artifacts (
        blake3     TEXT PRIMARY KEY,
        size       INTEGER NOT NULL,
        path       TEXT NOT NULL,
        crate_name TEXT NOT NULL,
        version    TEXT NOT NULL,
        target     TEXT NOT NULL,
        job_id     INTEGER NOT NULL REFERENCES jobs (id),
        added_at   INTEGER NOT NULL
     );
     CREATE TABLE attestations (
        id         INTEGER PRIMARY KEY,
        job_id     INTEGER NOT NULL REFERENCES jobs (id),
        blake3     TEXT NOT NULL,
        signed     TEXT NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE INDEX attestations_by_artifact ON attestations (blake3);",
];

/// Errors from the node's state database.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("node state {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The database was written by a newer node.
    #[error("node state {path} has schema version {found}; this node knows up to {SCHEMA_VERSION}")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
    },
    /// No such job.
    #[error("no job {0} in the node state")]
    NoSuchJob(i64),
}

/// What a job is about when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStart {
    /// Crate name.
    pub crate_name: CrateName,
    /// Crate version.
    pub version: CrateVersion,
    /// Target triple.
    pub target: TargetTriple,
    /// The index checksum the source must match.
    pub source_sha256: Option<Sha256Digest>,
    /// The coordinator's task and lease, when the job came from one.
    pub lease: Option<JobLease>,
}

/// The coordinator's task and lease a job works under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLease {
    /// The task.
    pub task_id: TaskId,
    /// The lease, to renew and to submit under.
    pub lease_id: LeaseId,
    /// The lease's fencing epoch.
    pub epoch: i64,
}

/// A job as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    /// Local id.
    pub id: i64,
    /// What the job was.
    pub start: JobStart,
    /// `running`, `finished` or `abandoned`.
    pub state: String,
    /// The outcome's kind when finished (`OutcomeKind::as_str`: `built`, `build_failed`, …).
    pub outcome: Option<String>,
    /// A one-line explanation of the outcome.
    pub detail: Option<String>,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds.
    pub finished_at: Option<i64>,
}

/// An artifact the node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRecord {
    /// Hash and size.
    pub id: ArtifactId,
    /// Where the archive is.
    pub path: PathBuf,
    /// Crate name.
    pub crate_name: CrateName,
    /// Crate version.
    pub version: CrateVersion,
    /// Target triple.
    pub target: TargetTriple,
    /// The job that built it.
    pub job_id: i64,
    /// When it was last built here (Unix seconds): retention counts from then.
    pub added_at: i64,
}

/// What a finished job produced, recorded atomically with its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEnd {
    /// The outcome's kind (`OutcomeKind::as_str`: `built`, `no_binaries`, …).
    pub outcome: String,
    /// One line for people.
    pub detail: String,
    /// The artifact and where it is, when the build produced one.
    pub artifact: Option<(ArtifactId, PathBuf)>,
    /// The signed attestation (canonical JSON), when there is one.
    pub attestation: Option<String>,
}

/// Counts for `buildsrs-node status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Jobs running now.
    pub running: i64,
    /// Jobs finished.
    pub finished: i64,
    /// Jobs a crash interrupted.
    pub abandoned: i64,
    /// Artifacts held.
    pub artifacts: i64,
    /// Bytes of artifacts held.
    pub artifact_bytes: i64,
    /// Attestations signed.
    pub attestations: i64,
}

/// The node's state database. Cheap to share behind an `Arc`; calls are short and
/// synchronous (SQLite on local disk), serialised by a mutex.
#[derive(Debug)]
pub struct NodeState {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl NodeState {
    /// Opens (creating if needed) the state, migrates it, and marks jobs a crash left
    /// `running` as `abandoned`, returning them.
    pub fn open(path: &Path) -> Result<(Self, Vec<JobRecord>), StateError> {
        let sqlite = |source| StateError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        // FULL: a job recorded as finished must survive power loss, like its artifact file.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        migrate(&mut conn, path)?;

        let now = jiff::Timestamp::now().as_second();
        let tx = conn.transaction().map_err(sqlite)?;
        let abandoned = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' ORDER BY id"
                ))
                .map_err(sqlite)?;
            let rows = stmt.query_map([], job_from_row).map_err(sqlite)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sqlite)?
        };
        tx.execute(
            "UPDATE jobs SET state = 'abandoned', outcome = 'abandoned',
                 detail = 'interrupted: the node stopped while this job ran', finished_at = ?1
             WHERE state = 'running'",
            [now],
        )
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        let state = Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        };
        Ok((state, abandoned))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        move |source| StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Records a job as running, before any of its work starts.
    pub fn begin_job(&self, job: &JobStart) -> Result<i64, StateError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO jobs (crate_name, version, target, source_sha256, task_id, lease_id,
                               lease_epoch, state, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8)",
            params![
                job.crate_name.as_str(),
                job.version.as_str(),
                job.target.as_str(),
                job.source_sha256.map(|d| d.to_hex()),
                job.lease.map(|l| l.task_id.0),
                job.lease.map(|l| l.lease_id.to_string()),
                job.lease.map(|l| l.epoch),
                jiff::Timestamp::now().as_second()
            ],
        )
        .map_err(self.sqlite())?;
        Ok(conn.last_insert_rowid())
    }

    /// Records a job's outcome, artifact and attestation in one transaction.
    pub fn finish_job(&self, job_id: i64, result: &JobEnd) -> Result<(), StateError> {
        let mut conn = self.conn();
        let sqlite = self.sqlite();
        let now = jiff::Timestamp::now().as_second();
        let tx = conn.transaction().map_err(&sqlite)?;
        let job: Option<(CrateName, CrateVersion, TargetTriple)> = tx
            .query_row(
                "SELECT crate_name, version, target FROM jobs WHERE id = ?1 AND state = 'running'",
                [job_id],
                |row| Ok((parsed(row, 0)?, parsed(row, 1)?, parsed(row, 2)?)),
            )
            .optional()
            .map_err(&sqlite)?;
        let Some((crate_name, version, target)) = job else {
            return Err(StateError::NoSuchJob(job_id));
        };
        tx.execute(
            "UPDATE jobs SET state = 'finished', outcome = ?2, detail = ?3, finished_at = ?4
             WHERE id = ?1",
            params![job_id, result.outcome, result.detail, now],
        )
        .map_err(&sqlite)?;
        if let Some((id, path)) = &result.artifact {
            tx.execute(
                "INSERT INTO artifacts (blake3, size, path, crate_name, version, target, job_id, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (blake3) DO UPDATE SET path = excluded.path, job_id = excluded.job_id,
                                                    added_at = excluded.added_at",
                params![
                    id.blake3.to_hex(),
                    id.size as i64,
                    path.to_string_lossy(),
                    crate_name.as_str(),
                    version.as_str(),
                    target.as_str(),
                    job_id,
                    now
                ],
            )
            .map_err(&sqlite)?;
            if let Some(signed) = &result.attestation {
                tx.execute(
                    "INSERT INTO attestations (job_id, blake3, signed, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![job_id, id.blake3.to_hex(), signed, now],
                )
                .map_err(&sqlite)?;
            }
        }
        tx.commit().map_err(&sqlite)
    }

    /// The most recent jobs, newest first.
    pub fn recent_jobs(&self, limit: u32) -> Result<Vec<JobRecord>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(self.sqlite())?;
        let rows = stmt
            .query_map([limit], job_from_row)
            .map_err(self.sqlite())?;
        rows.collect::<Result<_, _>>().map_err(self.sqlite())
    }

    /// The artifact with this hash, if the node holds it.
    pub fn artifact(
        &self,
        blake3: &buildsrs_keys::Blake3Hash,
    ) -> Result<Option<ArtifactRecord>, StateError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT blake3, size, path, crate_name, version, target, job_id, added_at FROM artifacts WHERE blake3 = ?1",
            [blake3.to_hex()],
            artifact_from_row,
        )
        .optional()
        .map_err(self.sqlite())
    }

    /// Every artifact the node holds.
    pub fn artifacts(&self) -> Result<Vec<ArtifactRecord>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT blake3, size, path, crate_name, version, target, job_id, added_at FROM artifacts ORDER BY added_at, blake3")
            .map_err(self.sqlite())?;
        let rows = stmt
            .query_map([], artifact_from_row)
            .map_err(self.sqlite())?;
        rows.collect::<Result<_, _>>().map_err(self.sqlite())
    }

    /// Forgets an artifact (retention): the node no longer holds it. Its attestations stay,
    /// as the record of what this node built.
    pub fn remove_artifact(&self, blake3: &buildsrs_keys::Blake3Hash) -> Result<(), StateError> {
        self.conn()
            .execute("DELETE FROM artifacts WHERE blake3 = ?1", [blake3.to_hex()])
            .map(|_| ())
            .map_err(self.sqlite())
    }

    /// The signed attestations (canonical JSON) this node made for an artifact.
    pub fn attestations_for(
        &self,
        blake3: &buildsrs_keys::Blake3Hash,
    ) -> Result<Vec<String>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT signed FROM attestations WHERE blake3 = ?1 ORDER BY id")
            .map_err(self.sqlite())?;
        let rows = stmt
            .query_map([blake3.to_hex()], |row| row.get(0))
            .map_err(self.sqlite())?;
        rows.collect::<Result<_, _>>().map_err(self.sqlite())
    }

    /// Counts for a status line.
    pub fn summary(&self) -> Result<Summary, StateError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT
               (SELECT count(*) FROM jobs WHERE state = 'running'),
               (SELECT count(*) FROM jobs WHERE state = 'finished'),
               (SELECT count(*) FROM jobs WHERE state = 'abandoned'),
               (SELECT count(*) FROM artifacts),
               (SELECT coalesce(sum(size), 0) FROM artifacts),
               (SELECT count(*) FROM attestations)",
            [],
            |row| {
                Ok(Summary {
                    running: row.get(0)?,
                    finished: row.get(1)?,
                    abandoned: row.get(2)?,
                    artifacts: row.get(3)?,
                    artifact_bytes: row.get(4)?,
                    attestations: row.get(5)?,
                })
            },
        )
        .map_err(self.sqlite())
    }
}

const JOB_COLUMNS: &str = "id, crate_name, version, target, source_sha256, task_id, lease_id, \
                           lease_epoch, state, outcome, detail, started_at, finished_at";

/// Column `index` parsed by its domain type's one rule: a row this code did not write is an
/// error, not a value.
fn parsed<T>(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(index)?;
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Like [`parsed`], for a column that may be null.
fn parsed_opt<T>(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Option<T>>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match row.get_ref(index)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => parsed(row, index).map(Some),
    }
}

fn job_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let task_id: Option<i64> = row.get(5)?;
    let lease_id: Option<LeaseId> = parsed_opt(row, 6)?;
    let epoch: Option<i64> = row.get(7)?;
    let lease = match (task_id, lease_id, epoch) {
        (Some(task_id), Some(lease_id), Some(epoch)) => Some(JobLease {
            task_id: TaskId(task_id),
            lease_id,
            epoch,
        }),
        _ => None,
    };
    Ok(JobRecord {
        id: row.get(0)?,
        start: JobStart {
            crate_name: parsed(row, 1)?,
            version: parsed(row, 2)?,
            target: parsed(row, 3)?,
            source_sha256: parsed_opt(row, 4)?,
            lease,
        },
        state: row.get(8)?,
        outcome: row.get(9)?,
        detail: row.get(10)?,
        started_at: row.get(11)?,
        finished_at: row.get(12)?,
    })
}

fn artifact_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ArtifactRecord> {
    let size: i64 = row.get(1)?;
    let path: String = row.get(2)?;
    let blake3 = parsed(row, 0)?;
    Ok(ArtifactRecord {
        id: ArtifactId {
            blake3,
            size: size as u64,
        },
        path: PathBuf::from(path),
        crate_name: parsed(row, 3)?,
        version: parsed(row, 4)?,
        target: parsed(row, 5)?,
        job_id: row.get(6)?,
        added_at: row.get(7)?,
    })
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    let sqlite = |source| StateError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite)?;
    if current > SCHEMA_VERSION {
        return Err(StateError::TooNew {
            path: path.to_owned(),
            found: current,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(sqlite)?;
        tx.execute_batch(migration).map_err(sqlite)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> JobStart {
        JobStart {
            crate_name: name.parse().unwrap(),
            version: "1.0.0".parse().unwrap(),
            target: "x86_64-unknown-linux-gnu".parse().unwrap(),
            source_sha256: None,
            lease: None,
        }
    }

    #[test]
    fn a_finished_job_keeps_its_artifact_and_attestation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.sqlite3");
        let (state, abandoned) = NodeState::open(&path).unwrap();
        assert!(abandoned.is_empty());
        let id = state.begin_job(&job("demo")).unwrap();
        let artifact = ArtifactId::of_bytes(b"archive");
        state
            .finish_job(
                id,
                &JobEnd {
                    outcome: "built".into(),
                    detail: "2 binaries".into(),
                    artifact: Some((artifact, dir.path().join("a.tar.gz"))),
                    attestation: Some("{\"signature\":\"..\"}".into()),
                },
            )
            .unwrap();
        let held = state.artifact(&artifact.blake3).unwrap().unwrap();
        assert_eq!(
            (held.id, held.crate_name.as_str(), held.job_id),
            (artifact, "demo", id)
        );
        assert_eq!(state.attestations_for(&artifact.blake3).unwrap().len(), 1);
        let summary = state.summary().unwrap();
        assert_eq!(
            (summary.finished, summary.artifacts, summary.artifact_bytes),
            (1, 1, 7)
        );
        // Finishing twice is refused and changes nothing.
        assert!(matches!(
            state.finish_job(
                id,
                &JobEnd {
                    outcome: "x".into(),
                    detail: String::new(),
                    artifact: None,
                    attestation: None
                }
            ),
            Err(StateError::NoSuchJob(_))
        ));
        assert_eq!(
            state.recent_jobs(10).unwrap()[0].outcome.as_deref(),
            Some("built")
        );
    }

    #[test]
    fn jobs_left_running_by_a_crash_are_reported_as_abandoned_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.sqlite3");
        {
            let (state, _) = NodeState::open(&path).unwrap();
            state.begin_job(&job("interrupted")).unwrap();
            let done = state.begin_job(&job("done")).unwrap();
            state
                .finish_job(
                    done,
                    &JobEnd {
                        outcome: "no_binaries".into(),
                        detail: String::new(),
                        artifact: None,
                        attestation: None,
                    },
                )
                .unwrap();
            // Dropped without finishing the first job: as if the process died.
        }
        let (state, abandoned) = NodeState::open(&path).unwrap();
        assert_eq!(abandoned.len(), 1);
        assert_eq!(abandoned[0].start.crate_name, "interrupted");
        let jobs = state.recent_jobs(10).unwrap();
        assert_eq!(jobs.iter().filter(|j| j.state == "abandoned").count(), 1);
        drop(state);
        let (_, again) = NodeState::open(&path).unwrap();
        assert!(again.is_empty(), "an abandoned job is reported once");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            NodeState::open(&path),
            Err(StateError::TooNew { found: 99, .. })
        ));
    }
}
